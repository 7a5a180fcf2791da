"""Graph passes on exported ONNX models (needs ``onnx``: the ``train``/``dev`` extras).

:func:`fold_pads` moves the zero ``Pad`` that TF-style "same" padding puts in front of a convolution
into the ``Conv``'s own (possibly asymmetric) ``pads``. PyTorch cannot express asymmetric conv padding,
so the exporter writes ``F.pad`` + ``Conv``; onnxruntime then runs each Pad as a separate copy and,
worse, reorders the activations out of and back into its blocked NCHWc layout around it. On
EfficientNet-Lite0 at 112 px that was 38 % of the run time (23 % Pad, 15 % reorders); folded, the
outputs are the same to float rounding (checked by :func:`fold_pads_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _constant_values(model: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Values of tensors computed from constants only (e.g. a Pad's ``pads``), by running the graph
    once with them as extra outputs."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for n in names:
        if n not in known:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, np.float32)
    values = sess.run(names, feeds)
    return dict(zip(names, values))


def _prune(model: Any) -> None:
    """Drop nodes whose outputs nothing reads (the constant subgraphs that computed the pads)."""
    graph = model.graph
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _mode(pad: Any) -> bytes:
    """A Pad node's ``mode`` attribute (ONNX's default: constant)."""
    return next((a.s for a in pad.attribute if a.name == "mode"), b"constant")


def fold_pads(model: Any) -> tuple[Any, int]:
    """``model`` with every constant zero Pad that feeds only Convs folded into them; and how many."""
    import onnx
    from onnx import helper

    graph = model.graph
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pads = [n for n in graph.node if n.op_type == "Pad" and len(n.input) >= 2 and _mode(n) == b"constant"
            and all(c.op_type == "Conv" for c in consumers.get(n.output[0], []))]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    need = [n.input[1] for n in pads if n.input[1] not in inits]
    values = {**inits, **(_constant_values(model, need) if need else {})}
    folded = 0
    for pad in pads:
        if len(pad.input) >= 3 and pad.input[2] and np.any(values.get(pad.input[2], np.zeros(1)) != 0):
            continue  # padding with a non-zero value is not a conv padding
        p = np.asarray(values[pad.input[1]]).astype(np.int64).ravel()
        if p.size != 8 or p[0] or p[1] or p[4] or p[5] or np.any(p < 0):
            continue  # only spatial, non-negative padding of an NCHW tensor
        top, left, bottom, right = int(p[2]), int(p[3]), int(p[6]), int(p[7])
        for conv in consumers[pad.output[0]]:
            old = next((a for a in conv.attribute if a.name == "pads"), None)
            base = list(helper.get_attribute_value(old)) if old is not None else [0, 0, 0, 0]
            new = [base[0] + top, base[1] + left, base[2] + bottom, base[3] + right]
            if old is not None:
                conv.attribute.remove(old)
            conv.attribute.append(helper.make_attribute("pads", new))
            conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    _prune(model)
    return model, folded


def fold_pads_file(path: str | Path, tolerance: float = 1e-4) -> int:
    """Fold the pads of the ONNX file at ``path`` in place, after checking on random images that
    every output is unchanged within ``tolerance``; returns how many Pads were folded."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    model = onnx.load(str(path))
    before = model.SerializeToString()
    model, folded = fold_pads(model)
    if not folded:
        return 0
    onnx.checker.check_model(model)
    after = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    a = ort.InferenceSession(before, opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(after, opts, providers=["CPUExecutionProvider"])
    inp = a.get_inputs()[0]
    side = [d if isinstance(d, int) else 3 for d in inp.shape]
    x = np.random.default_rng(0).random(side, np.float32) * 255
    for name, u, v in zip([o.name for o in a.get_outputs()], a.run(None, {inp.name: x}), b.run(None, {inp.name: x}),
                          strict=True):
        diff = float(np.abs(u - v).max())
        if diff > tolerance:
            raise AssertionError(f"{path}: folding the pads changed output {name} by {diff:.2e}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(after)
    tmp.replace(path)
    return folded
