"""Rebuild a trainable emotion run (``best.pt``) from a shipped emotion network (``emotion_cnn.onnx``).

Why: ``aulib train multitask`` starts its network (and the network of every CV fold) from an emotion
run's ``best.pt``, but training runs are not kept in the repository, only their ONNX exports — and
retraining the emotion network takes about 70 minutes of CPU per network (more on a slow machine). So
the subject-grouped fusion CV could not be re-run after the AU banks changed. This rebuilds the
checkpoint from the exported graph.

The export folded every BatchNorm into the convolution before it (``W' = W·γ/σ``, ``b' = β − μγ/σ``),
so the original ``W, γ, β, μ, σ`` cannot be recovered; but an equivalent network can. Each convolution
gets ``W'`` and its BatchNorm ``running_mean = m``, ``running_var = v``, ``weight = √(v + ε)``,
``bias = m + b'``: in eval mode that is exactly ``W'x + b'`` for any ``m, v``; in train mode (batch
statistics, as fine-tuning runs) it is ``W'x + b'`` wherever the batch's statistics are ``m, v``. So
``m, v`` are set to the statistics of ``W'x`` on real training crops (CK+ and FER+ crops from the
training cache), measured layer by layer through the folded network. The script checks that the
rebuilt network in eval mode reproduces the ONNX outputs, and reports how far train mode moves them.

    python scripts/emotion_run_from_onnx.py --out runs/emotion-rebuilt/best.pt
    aulib train multitask --init-from runs/emotion-rebuilt ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def folded_convs(onnx_path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The (weight, bias) of every Conv of the graph in node order, and the final Gemm's (weight, bias)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    convs = [(init[n.input[1]], init[n.input[2]]) for n in m.graph.node if n.op_type == "Conv"]
    (gemm,) = [n for n in m.graph.node if n.op_type == "Gemm"]
    return convs, (init[gemm.input[1]], init[gemm.input[2]])


def conv_bn_pairs(net: object) -> list[tuple[object, object]]:
    """(conv, its BatchNorm) of the network in forward order: the order the export wrote its Convs in."""
    pairs = [(net._conv_stem, net._bn0)]
    for b in net._blocks:
        if b.has_expand:
            pairs.append((b._expand_conv, b._bn0))
        pairs += [(b._depthwise_conv, b._bn1), (b._project_conv, b._bn2)]
    pairs.append((net._conv_head, net._bn1))
    return pairs


def rebuild(onnx_path: Path, crops: np.ndarray) -> object:
    """The EfficientNet-Lite0 emotion network equivalent to ``onnx_path`` (see the module docstring); ``crops``
    (N, 112, 112) uint8 gray faces give the BatchNorm statistics."""
    import torch

    from aulib.training.torch_model import BN_EPS, EfficientNetLite0, normalise

    convs, (fc_w, fc_b) = folded_convs(onnx_path)
    net = EfficientNetLite0(fc_w.shape[0], crops.shape[-1])
    pairs = conv_bn_pairs(net)
    if len(pairs) != len(convs):
        raise ValueError(f"{onnx_path}: {len(convs)} convolutions, the network has {len(pairs)}")
    biases = []
    for (conv, bn), (w, b) in zip(pairs, convs):
        if tuple(conv.weight.shape) != w.shape:
            raise ValueError(f"{onnx_path}: conv weight {w.shape} where the network has {tuple(conv.weight.shape)}")
        conv.weight.data = torch.from_numpy(w.copy())
        biases.append(torch.from_numpy(b.copy()))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - BN_EPS)
        bn.weight.data.fill_(1.0)
        bn.bias.data = biases[-1].clone()
    net._fc.weight.data = torch.from_numpy(fc_w.copy())
    net._fc.bias.data = torch.from_numpy(fc_b.copy())
    # Statistics of each convolution's output W'x on real crops, through the (exact) folded network.
    stats: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(pairs))}
    hooks = [conv.register_forward_hook(lambda mod, inp, out, i=i: stats[i].append(
        torch.stack([out.mean((0, 2, 3)), (out * out).mean((0, 2, 3))])))
        for i, (conv, _) in enumerate(pairs)]
    net.eval()
    with torch.no_grad():
        for s in range(0, len(crops), 64):
            x = torch.from_numpy(np.repeat(crops[s:s + 64, None].astype(np.float32), 3, axis=1))
            net(normalise(x))
    for h in hooks:
        h.remove()
    for i, (_, bn) in enumerate(pairs):
        m1, m2 = torch.stack(stats[i]).mean(0)
        var = (m2 - m1 * m1).clamp(min=1e-8)
        bn.running_mean.copy_(m1)
        bn.running_var.copy_(var)
        bn.weight.data = torch.sqrt(var + BN_EPS)
        bn.bias.data = m1 + biases[i]
    return net


def main() -> None:
    import torch

    from aulib.models import model_path
    from aulib.training import CACHE
    from aulib.training.crops import aligned_crops
    from aulib.training.datasets import CKPlus, read_ferplus
    from aulib.training.torch_model import normalise

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", type=Path, default=None, help="the emotion network (default: the shipped one)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True, help="the best.pt to write")
    ap.add_argument("--faces", type=int, default=4000, help="FER+ training crops for the statistics (+ all CK+)")
    args = ap.parse_args()
    onnx_path = args.onnx or model_path("emotion_cnn.onnx")
    ck = CKPlus.load(args.data).with_facs()
    fer = read_ferplus(args.data, "train")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(fer.paths), min(args.faces, len(fer.paths)), replace=False))
    crops = np.concatenate([aligned_crops(ck.image_paths(), CACHE)["crops"],
                            aligned_crops(fer.paths, CACHE)["crops"][pick]])
    net = rebuild(onnx_path, crops)
    # eval mode must give the ONNX model's probabilities
    import onnxruntime as ort

    test = crops[rng.choice(len(crops), 256, replace=False)]
    x = np.repeat(test[:, None].astype(np.float32), 3, axis=1)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        net.eval()
        got = torch.softmax(net(normalise(torch.from_numpy(x))), 1).numpy()
        net.train()
        net._dropout.p, p = 0.0, net._dropout.p
        train = torch.softmax(net(normalise(torch.from_numpy(x))), 1).numpy()
        net._dropout.p = p
    net.eval()
    print(f"eval mode vs ONNX: max |Δp| {np.abs(got - ref).max():.2e}; train mode (batch statistics of 256 crops): "
          f"max |Δp| {np.abs(train - ref).max():.3f}, same class {np.mean(train.argmax(1) == ref.argmax(1)):.3f}")
    if np.abs(got - ref).max() > 1e-4:
        raise SystemExit("the rebuilt network does not reproduce the ONNX model")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "source": str(onnx_path), "rebuilt_by": "scripts/emotion_run_from_onnx.py"},
               args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
