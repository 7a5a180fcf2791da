"""Convert dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat``) to ONNX, once.

Why: dlib spends ~0.5 s (holding the GIL) deserialising the 100 MB ``.dat`` file in every process —
a third of the start-up of ``aulib analyze photo.jpg``. The same ensemble of regression trees as an
ONNX graph loads in tens of milliseconds in onnxruntime, which aulib already uses, and gives the same
integer landmarks (see ``tests/test_landmarks_onnx.py`` and the agreement figures this script prints).

The ``.dat`` format (dlib/serialize.h, dlib/image_processing/shape_predictor.h): every number is a
compact integer (control byte: low nibble = byte count, bit 0x80 = negative; then little-endian
bytes); a float is two of them (int64 mantissa, int16 exponent: value = mantissa·2^exponent); a
matrix stores -rows, -cols, then its elements; a std::vector stores its size, then its items.
shape_predictor = version 1, initial_shape (136×1), forests (15 cascades × 500 trees; a tree = 15
splits {idx1, idx2, thresh} + 16 leaf vectors of 136 floats), anchor_idx (15 × 400), deltas
(15 × 400 × 2 floats).

The graph reproduces dlib's arithmetic (``shape_predictor::operator()``): per cascade, the
similarity transform from the initial to the current shape (closed-form 2-D Umeyama in double, cast
to float), feature pixels at ``rect(tform·delta + current[anchor])`` rounded with floor(x + 0.5)
(0 outside the image), each tree's leaf chosen by ``pix[idx1] - pix[idx2] > thresh`` at 4 levels, and
the 500 leaf vectors added to the shape one after another in float32 (a CumSum, so the rounding is
dlib's sequential order). Inputs: ``image`` (H, W) uint8 gray, ``rect`` (4,) float64 left, top,
right, bottom (dlib.rectangle's integers). Output: ``points`` (68, 2) int64, dlib's ``parts()``.

Run once (needs the ``face-recognition-models`` wheel for the source file and ``onnx``)::

    python scripts/convert_shape_predictor.py    # writes src/aulib/models/shape_predictor_68.onnx + .data

``tests/test_landmarks_onnx.py`` compares it with dlib on the samples and dataset crops.

Provenance: dlib's shape_predictor_68_face_landmarks.dat (Davis King, dlib-models, CC0), from the
face-recognition-models 0.3.0 wheel; trained on iBUG 300-W, whose terms exclude commercial use.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aulib.models import MODELS_DIR, model_path, register  # noqa: E402

OUT = MODELS_DIR / "shape_predictor_68.onnx"
# The 65 MB of leaf values and tables live beside the graph as ONNX external data: onnxruntime
# memory-maps such a file (session in ~25 ms) where it parses and copies initializers stored inside
# the protobuf (~140 ms).
DATA = "shape_predictor_68.data"
SOURCE = "shape_predictor_68_face_landmarks.dat"


# ---------------------------------------------------------------- .dat parsing


def tokens(data: bytes) -> np.ndarray:
    """Every compact integer of a dlib serialisation stream, in order (int64).

    A ``shape_predictor`` file consists of nothing else (floats are mantissa/exponent pairs), so the
    whole file is one token stream; the structure is then read off it by position.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    lengths = (buf & 0x0F).astype(np.int64)
    starts = []
    p, n = 0, len(data)
    step = (lengths + 1).tolist()
    append = starts.append
    while p < n:
        append(p)
        p += step[p]
    if p != n:
        raise ValueError("truncated stream: the last integer runs past the end of the file")
    st = np.asarray(starts, dtype=np.int64)
    ctrl = buf[st]
    size = (ctrl & 0x0F).astype(np.int64)
    if (ctrl & 0x70).any() or (size > 8).any():
        raise ValueError("not a dlib binary serialisation (control byte with bits 0x70 or > 8 bytes)")
    value = np.zeros(len(st), dtype=np.uint64)
    for k in range(8):
        has = size > k
        byte = np.zeros(len(st), dtype=np.uint64)
        byte[has] = buf[st[has] + 1 + k]
        value |= byte << np.uint64(8 * k)
    out = value.astype(np.int64)
    neg = (ctrl & 0x80) != 0
    out[neg] = -out[neg]
    return out


class Reader:
    """Cursor over the token stream with dlib's container layouts."""

    def __init__(self, tok: np.ndarray) -> None:
        self.tok, self.i = tok, 0

    def int(self) -> int:
        v = int(self.tok[self.i])
        self.i += 1
        return v

    def expect(self, value: int, what: str) -> None:
        got = self.int()
        if got != value:
            raise ValueError(f"{what}: expected {value}, found {got} at token {self.i - 1}")

    def floats(self, n: int) -> np.ndarray:
        """``n`` floats (mantissa, exponent pairs) as float32, like dlib's ``ldexp((float)m, e)``."""
        pair = self.tok[self.i:self.i + 2 * n].reshape(n, 2)
        self.i += 2 * n
        if (pair[:, 1] >= 32000).any():
            raise ValueError("inf/nan in the model")
        return np.ldexp(pair[:, 0].astype(np.float32), pair[:, 1].astype(np.int32)).astype(np.float32)

    def matrix(self, rows: int) -> np.ndarray:
        self.expect(-rows, "matrix rows")
        self.expect(-1, "matrix columns")
        return self.floats(rows)


def parse(data: bytes) -> dict[str, Any]:
    """The predictor's arrays: initial (136,), splits idx (C, T, 15, 2), thresh (C, T, 15),
    leaves (C, T, 16, 136), anchor (C, P), deltas (C, P, 2)."""
    r = Reader(tokens(data))
    r.expect(1, "shape_predictor version")
    initial = r.matrix(136)
    cascades = r.int()
    idx, thr, leaves = [], [], []
    for _ in range(cascades):
        trees = r.int()
        for _ in range(trees):
            r.expect(15, "splits per tree")
            blk = r.tok[r.i:r.i + 60].reshape(15, 4)
            r.i += 60
            idx.append(blk[:, :2].copy())
            if (blk[:, 3] >= 32000).any():
                raise ValueError("inf/nan threshold")
            thr.append(np.ldexp(blk[:, 2].astype(np.float32), blk[:, 3].astype(np.int32)).astype(np.float32))
            r.expect(16, "leaves per tree")
            leaves.append(np.stack([r.matrix(136) for _ in range(16)]))
    if r.int() != cascades:
        raise ValueError("anchor_idx: wrong number of cascades")
    anchor = []
    for _ in range(cascades):
        n = r.int()
        anchor.append(r.tok[r.i:r.i + n].copy())
        r.i += n
    if r.int() != cascades:
        raise ValueError("deltas: wrong number of cascades")
    deltas = []
    for _ in range(cascades):
        n = r.int()
        deltas.append(r.floats(2 * n).reshape(n, 2))
    if r.i != len(r.tok):
        raise ValueError(f"{len(r.tok) - r.i} tokens left after the predictor")
    trees = len(idx) // cascades
    return {
        "initial": initial,
        "idx": np.stack(idx).reshape(cascades, trees, 15, 2),
        "thresh": np.stack(thr).reshape(cascades, trees, 15),
        "leaves": np.stack(leaves).reshape(cascades, trees, 16, 136),
        "anchor": np.stack(anchor),
        "deltas": np.stack(deltas),
    }


# ---------------------------------------------------------------- graph


def path_matrix(depth: int = 4) -> np.ndarray:
    """A (nodes × leaves) matrix of ±1/0 with ``argmax(s @ A)`` = the leaf a tree's split outcomes
    ``s`` (+1 "greater", -1 not, in node order) lead to: the reached leaf scores ``depth``, every
    other leaf at most ``depth - 2``. A whole forest's walk becomes one small matrix product."""
    nodes, n_leaves = 2 ** depth - 1, 2 ** depth
    a = np.zeros((nodes, n_leaves), np.float32)
    for leaf in range(n_leaves):
        i = leaf + nodes
        while i > 0:
            parent = (i - 1) // 2
            a[parent, leaf] = 1 if i == 2 * parent + 1 else -1  # left child ⇔ "greater"
            i = parent
    return a


def build(model: dict[str, Any]) -> Any:
    """The ONNX graph of the predictor (see the module docstring for what it computes).

    Layout: the shape is kept planar, ``(2, 68)`` = x row then y row (dlib interleaves x, y; the
    leaves and coefficients are permuted to match), so feature-pixel coordinates are ``(2, P)`` and
    every per-cascade step is a handful of vector ops. Element lookups use GatherElements, which
    onnxruntime runs ~10× faster per element than Gather; the image is padded by one black pixel so
    out-of-image feature pixels (dlib reads them as 0) are a clamp instead of a mask.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    initial = model["initial"].astype(np.float32)
    n_cas, n_trees = model["idx"].shape[:2]
    n_pix = model["deltas"].shape[1]
    n_pts = initial.size // 2
    planar = np.concatenate([np.arange(0, 2 * n_pts, 2), np.arange(1, 2 * n_pts, 2)])  # planar ← interleaved
    pts = initial.reshape(n_pts, 2).astype(np.float64)
    # dlib: mean and spread of the "from" points in double; the rotation-scale of the 2-D Umeyama
    # solution is [[a, -b], [b, a]] with a = Σ to_c·from_c / Σ|from_c|², b = Σ to_c·perp(from_c) /
    # Σ|from_c|². Σ from_c = 0, so "to" needs no centring: (a, b, -b, a) = cur_planar @ coef.
    fc = pts - pts.mean(axis=0)
    ss = float((fc * fc).sum())
    a_x, a_y = fc[:, 0] / ss, fc[:, 1] / ss           # coefficient of a on cur x, cur y
    b_x, b_y = -fc[:, 1] / ss, fc[:, 0] / ss          # b = Σ to_x·(-from_y) + to_y·from_x
    coef = np.stack([np.concatenate([a_x, a_y]), np.concatenate([b_x, b_y]),
                     -np.concatenate([b_x, b_y]), np.concatenate([a_x, a_y])], axis=1)  # (136, 4)

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, arr: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def i64(*v: int) -> np.ndarray:
        return np.array(v, np.int64)

    const("coef", coef)
    const("path", path_matrix())
    const("plus", np.array(1.0, np.float32))
    const("minus", np.array(-1.0, np.float32))
    const("zero_1", i64(0))
    leaves = model["leaves"][..., planar].reshape(n_cas * n_trees * 16, 2 * n_pts).astype(np.float32)
    const("leaves", leaves)
    # rect = [left, top, right, bottom] (double); image px = origin + size · normalised
    node("Reshape", ["rect", const("s22", i64(2, 2))], "rect22")                 # [[l, t], [r, b]]
    node("Gather", ["rect22", const("i0", np.array(0, np.int64))], "origin2", axis=0)
    node("Gather", ["rect22", const("i1", np.array(1, np.int64))], "corner2", axis=0)
    node("Sub", ["corner2", "origin2"], "size2")
    node("Mul", [const("eye2", np.eye(2)), node("Unsqueeze", ["size2", const("ax1", i64(1))], "size")], "scale")
    # +1.5: dlib's +0.5 before floor, +1 for the padding row/column (both exact in double)
    node("Add", ["origin2", const("c15", np.array(1.5))], "origin15")
    node("Unsqueeze", ["origin15", "ax1"], "shift")                               # (2, 1)
    node("Pad", ["image", const("pads", i64(1, 1, 1, 1))], "padded")             # black frame
    node("Shape", ["padded"], "hw_p")
    node("Gather", ["hw_p", const("rev", i64(1, 0))], "wh_p")                    # (W+2, H+2) int64
    node("Sub", ["wh_p", const("one_i", np.array(1, np.int64))], "wh_max")
    node("Cast", [node("Unsqueeze", ["wh_max", "ax1"], "hi_i")], "hi", to=TensorProto.DOUBLE)  # (2, 1)
    node("Gather", ["wh_p", const("i0v", i64(0))], "w_p")
    node("Concat", [const("one_i1", i64(1)), "w_p"], "stride1", axis=0)
    node("Unsqueeze", ["stride1", const("ax0", i64(0))], "stride")                # (1, 2): 1, W+2
    node("Reshape", ["padded", const("s1n", i64(1, -1))], "flat")                # (1, N) uint8

    cur = "init"  # (2, 68) float32, planar
    const(cur, initial.reshape(n_pts, 2).T.copy())
    for k in range(n_cas):
        p = f"c{k}_"
        d = model["deltas"][k].astype(np.float32)
        anchor = model["anchor"][k].astype(np.int64)
        # similarity transform initial → current (double, then float like dlib's matrix_cast<float>)
        node("Reshape", [cur, const(p + "s1", i64(1, -1))] if k == 0 else [cur, "c0_s1"], p + "row")
        node("Cast", [p + "row"], p + "row_d", to=TensorProto.DOUBLE)
        node("MatMul", [p + "row_d", "coef"], p + "m_d")                             # (1, 4): a, b, -b, a
        node("Cast", [p + "m_d"], p + "m_f", to=TensorProto.FLOAT)
        node("Reshape", [p + "m_f", const(p + "s221", i64(2, 2, 1)) if k == 0 else "c0_s221"], p + "m")
        # tform·delta: x = a·dx + (-b)·dy, y = b·dx + a·dy, each product and the sum rounded to float
        node("Mul", [p + "m", const(p + "d", d.T.reshape(2, 1, n_pix).copy())], p + "prod")  # (2, 2, P)
        node("ReduceSum", [p + "prod", "i0v"], p + "rel", keepdims=0)                # (2, P)
        node("GatherElements", [cur, const(p + "anchor", np.stack([anchor, anchor]))], p + "anc", axis=1)
        node("Add", [p + "rel", p + "anc"], p + "norm")                              # (2, P) float32
        # feature pixels: floor(origin + size·norm + 0.5) in the padded image, clamped onto its frame.
        # Gemm: diag(size)·norm + (origin + 1.5), exact in double (integer size, float32 norm). The
        # clamp bounds are integers and the values then non-negative, so Cast's truncation is floor.
        node("Cast", [p + "norm"], p + "norm_d", to=TensorProto.DOUBLE)
        node("Gemm", ["scale", p + "norm_d", "shift"], p + "shifted")
        node("Max", [p + "shifted", const("zero_d", np.array(0.0)) if k == 0 else "zero_d"], p + "lo")
        node("Min", [p + "lo", "hi"], p + "xy_d")
        node("Cast", [p + "xy_d"], p + "xy", to=TensorProto.INT64)
        node("MatMul", ["stride", p + "xy"], p + "lin")                              # (1, P): x + y·(W+2)
        node("GatherElements", ["flat", p + "lin"], p + "pix_u8", axis=1)
        node("Cast", [p + "pix_u8"], p + "pix", to=TensorProto.FLOAT)               # (1, P)
        # trees: every split's outcome at once, the reached leaves by one matrix product
        idx = model["idx"][k].astype(np.int64)
        node("GatherElements", [p + "pix", const(p + "i1", idx[:, :, 0].reshape(1, -1))], p + "v1", axis=1)
        node("GatherElements", [p + "pix", const(p + "i2", idx[:, :, 1].reshape(1, -1))], p + "v2", axis=1)
        node("Sub", [p + "v1", p + "v2"], p + "diff")
        node("Greater", [p + "diff", const(p + "thr", model["thresh"][k].reshape(1, -1).astype(np.float32))],
             p + "gt")
        node("Where", [p + "gt", "plus", "minus"], p + "sign")
        node("Reshape", [p + "sign", const(p + "s_t15", i64(n_trees, 15)) if k == 0 else "c0_s_t15"], p + "sign2")
        node("MatMul", [p + "sign2", "path"], p + "score")                           # (T, 16)
        node("ArgMax", [p + "score"], p + "leaf", axis=1, keepdims=0)
        node("Add", [p + "leaf", const(p + "base", np.arange(n_trees, dtype=np.int64) * 16 + k * n_trees * 16)],
             p + "rows")
        node("Gather", ["leaves", p + "rows"], p + "lv", axis=0)                     # (T, 136)
        # current += leaf, tree after tree, in float32: onnxruntime sums the leading axis of a
        # row-major tensor row after row (columns in parallel), which is dlib's rounding order
        node("Concat", [p + "row", p + "lv"], p + "stack", axis=0)
        node("ReduceSum", [p + "stack", "zero_1"], p + "next", keepdims=1)           # (1, 136)
        cur = node("Reshape", [p + "next", const(p + "s2", i64(2, -1)) if k == 0 else "c0_s2"], p + "cur")
    node("Cast", [cur], "final_d", to=TensorProto.DOUBLE)
    node("Mul", ["final_d", "size"], "final_sc")
    node("Add", ["final_sc", const("origin_half", np.array(0.5))], "final_h")
    node("Add", ["final_h", node("Unsqueeze", ["origin2", "ax1"], "origin")], "final_img")
    node("Floor", ["final_img"], "final_fl")
    node("Transpose", ["final_fl"], "final_t", perm=[1, 0])
    node("Cast", ["final_t"], "points", to=TensorProto.INT64)

    graph = helper.make_graph(
        nodes, "dlib_shape_predictor_68",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["H", "W"]),
         helper.make_tensor_value_info("rect", TensorProto.DOUBLE, [4])],
        [helper.make_tensor_value_info("points", TensorProto.INT64, [n_pts, 2])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="aulib")
    m.ir_version = 8
    m.doc_string = ("dlib shape_predictor_68_face_landmarks (ensemble of regression trees, Kazemi & Sullivan "
                    "2014) converted by aulib scripts/convert_shape_predictor.py; same integer points as dlib.")
    onnx.checker.check_model(m)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help="the .onnx to write (its data file goes beside it)")
    ap.add_argument("--no-register", action="store_true", help="do not write the manifest entries")
    args = ap.parse_args()
    src = model_path(SOURCE)
    data = src.read_bytes()
    model = parse(data)
    print(f"parsed {src}: {model['idx'].shape[0]} cascades x {model['idx'].shape[1]} trees, "
          f"{model['deltas'].shape[1]} feature pixels per cascade")
    import onnx

    data_file = args.out.with_name(DATA)
    data_file.unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save(build(model), str(args.out), save_as_external_data=True, all_tensors_to_one_file=True,
              location=DATA, size_threshold=1 << 16)
    data_file.chmod(0o644)  # onnx creates it owner-only; it ships in the package like every model file
    if args.no_register:
        print(f"wrote {args.out} and {data_file}")
        return
    common = {
        "kind": "landmark_predictor",
        "source": f"converted from shape_predictor_68_face_landmarks.dat (sha256 {hashlib.sha256(data).hexdigest()}, "
                  "face-recognition-models 0.3.0 wheel) by scripts/convert_shape_predictor.py",
        "upstream": "dlib-models shape_predictor_68_face_landmarks (Davis King)",
        "dataset": "iBUG 300-W",
        "licence": "The dlib model is released by Davis King in the public domain / CC0 1.0. It was trained "
                   "on the iBUG 300-W dataset, whose terms exclude commercial use: treat it as non-commercial "
                   "research only, like aulib's own models.",
    }
    entry = register(args.out, {
        **common,
        "architecture": "dlib ensemble of regression trees (15 cascades x 500 trees, depth 4, 500 feature "
                        "pixels per cascade), 68 points (iBUG 300-W order), as an ONNX graph: inputs image "
                        "(H, W) uint8 gray and rect (left, top, right, bottom) float64, output points (68, 2) "
                        "int64, the same integers as dlib's shape_predictor",
        "external_data": DATA,
    })
    data_entry = register(data_file, {**common, "architecture": f"external data (weights) of {args.out.name}"})
    print(f"wrote {args.out} ({entry['bytes']} bytes) and {data_file} ({data_entry['bytes']} bytes)")


if __name__ == "__main__":
    main()
