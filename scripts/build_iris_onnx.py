"""Convert MediaPipe's iris landmark model to the ONNX graph aulib ships (``models/iris_landmark.onnx``), once.

Source: ``mediapipe/modules/iris_landmark/iris_landmark.tflite`` inside the ``mediapipe`` 0.10.14 wheel on
PyPI (Google LLC, Apache-2.0; later wheels no longer carry it). Input: a 64×64 RGB eye crop in [0, 1],
square, 2.3× the eye-corner distance, corners horizontal, the eye MediaPipe calls "left" (face-mesh
points 33/133: the image-left eye, the subject's right; the other eye is mirrored first); output
``output_iris`` (N, 15): five (x, y, z) points in crop pixels, the iris centre
first, then four points on the iris boundary; ``output_eyes_contours_and_brows`` (N, 213): 71 (x, y, z)
points, the first 16 the eyelids' contour with the eye's corners at 0 (outer, face-mesh 33) and 8 (inner,
133), which :mod:`aulib.face.gaze` measures the iris against.

Steps, each checked: tflite → ONNX with ``tflite2onnx`` (outputs equal to LiteRT's within 3e-5, checked
when ``ai-edge-litert`` is installed); the batch dimension made dynamic (both eyes of every face of a
batch in one call); both heads kept (until 2026-12-03 only the iris branch: the eyelid head costs ≈ 9 % more
per eye, 1.71 → 1.86 ms, and gives the eye corners in the iris's own frame, see ``aulib.face.gaze``); and
every ``PRelu(x, a)`` rewritten as the identical
``x + (1 − a) · Relu(−x)`` with both per-channel products as 1×1 depthwise convolutions. Why:
onnxruntime's PRelu kernel is a generic broadcast that took 60 % of the time (3.3 → 1.7 ms per eye on
one core as ``Relu(x) + a · Min(x, 0)``, 1.61 ms as ``x + (a − 1) · Min(x, 0)``); and its fast
convolutions run in a blocked channel layout (NCHWc) that elementwise ``Min``/``Mul`` do not have, so
each PRelu still cost two layout conversions (15 % of the time) plus three passes over the tensor. As
depthwise convolutions the negation fuses with its ``Relu`` and the scaling with the ``Add`` (one
convolution each, in the blocked layout): 1.68 → 1.34 ms per eye (9 alternating runs, batch 8, one
core); outputs equal within 1.2e-5 crop pixels.

Run with the ``dev`` tools plus ``pip install tflite2onnx`` (one-off, not a dependency)::

    pip download --no-deps mediapipe==0.10.14 -d /tmp/mp
    python scripts/build_iris_onnx.py /tmp/mp/mediapipe-0.10.14-*.whl

The initializers come out in a different order on each run (so the file's bytes and sha256 differ);
the graph and its outputs do not.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aulib.models import MODELS_DIR, register  # noqa: E402

MEMBER = "mediapipe/modules/iris_landmark/iris_landmark.tflite"
OUT = MODELS_DIR / "iris_landmark.onnx"


def depthwise(m: object, name: str, inp: str, out: str, scale: np.ndarray) -> object:
    """``out = scale[ch] · inp`` per channel as a 1×1 depthwise convolution (its weights added to ``m``)."""
    from onnx import helper, numpy_helper

    c = len(scale)
    m.graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32).reshape(c, 1, 1, 1), name))
    return helper.make_node("Conv", [inp, name], [out], group=c, kernel_shape=[1, 1])


def rewrite(model_path: Path) -> object:
    """Dynamic batch, both heads, PRelu → x + (1 − a)·Relu(−x) (depthwise 1×1 convolutions)."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.utils import Extractor

    m = onnx.load(str(model_path))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for o in m.graph.output:
        o.type.tensor_type.shape.dim[0].dim_param = "N"
    for n in m.graph.node:  # the flattening Reshapes carry a fixed batch of 1
        if n.op_type == "Reshape":
            size = 15 if n.output[0] == "output_iris" else 213
            name = f"{n.output[0]}_shape"
            m.graph.initializer.append(numpy_helper.from_array(np.array([-1, size], np.int64), name))
            n.input[1] = name
    del m.graph.value_info[:]
    m = Extractor(m).extract_model([m.graph.input[0].name], ["output_eyes_contours_and_brows", "output_iris"])
    nodes = []
    for n in m.graph.node:
        if n.op_type != "PRelu":
            nodes.append(n)
            continue
        x, a = n.input
        y = n.output[0]
        slope = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == a)).reshape(-1)
        nodes += [depthwise(m, f"{a}_neg", x, f"{y}_neg", -np.ones(len(slope))),
                  helper.make_node("Relu", [f"{y}_neg"], [f"{y}_relu_neg"]),
                  depthwise(m, f"{a}_one_minus", f"{y}_relu_neg", f"{y}_scaled", np.float32(1) - slope),
                  helper.make_node("Add", [x, f"{y}_scaled"], [y])]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    used = {i for n in m.graph.node for i in n.input}
    keep = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    m.producer_name = "aulib scripts/build_iris_onnx.py"
    onnx.checker.check_model(m)
    return m


def check(tflite: Path, onnx_path: Path) -> float:
    """Largest |difference| of both heads' points against LiteRT (NaN when ai-edge-litert is missing)."""
    import onnxruntime as ort

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return float("nan")
    it = Interpreter(str(tflite))
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = {o["name"]: o["index"] for o in it.get_output_details()}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((4, 64, 64, 3), np.float32)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x.transpose(0, 3, 1, 2).copy()})))
    worst = 0.0
    for i in range(len(x)):
        it.set_tensor(inp, x[i:i + 1])
        it.invoke()
        for name in names:
            worst = max(worst, float(np.abs(it.get_tensor(outs[name]).reshape(-1) - got[name][i]).max()))
    return worst


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    import onnx
    import tflite2onnx

    wheel = Path(sys.argv[1])
    with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as d:
        data = z.read(MEMBER)
        tflite = Path(d) / "iris_landmark.tflite"
        tflite.write_bytes(data)
        raw = Path(d) / "raw.onnx"
        tflite2onnx.convert(str(tflite), str(raw))
        onnx.save(rewrite(raw), str(OUT))
        diff = check(tflite, OUT)
    print(f"max |ONNX - LiteRT| on random crops: {diff:.2e}")
    entry = register(OUT, {
        "kind": "iris_landmarks",
        "architecture": "MediaPipe iris landmark network (64x64 RGB eye crop in [0,1], the image-left eye "
                        "(face-mesh 33/133), the other mirrored; "
                        "output_iris (N,15) = 5 points x,y,z in crop pixels, centre first; "
                        "output_eyes_contours_and_brows (N,213) = 71 points, eyelid contour first, "
                        "corners at 0 and 8), "
                        "PRelu rewritten as x + (1-a)*Relu(-x), the per-channel products as 1x1 depthwise convolutions",
        "source": f"{wheel.name} (PyPI), {MEMBER}, sha256 {hashlib.sha256(data).hexdigest()}; converted by "
                  "scripts/build_iris_onnx.py (tflite2onnx)",
        "upstream": "google-ai-edge/mediapipe, modules/iris_landmark (MediaPipe Iris, Ablavatski et al. 2020)",
        "licence": "Apache-2.0, Copyright Google LLC. Text in models/LICENSES/mediapipe-iris.Apache-2.0.txt.",
    })
    print(f"wrote {OUT} ({entry['bytes']} bytes, sha256 {entry['sha256']})")


if __name__ == "__main__":
    main()
