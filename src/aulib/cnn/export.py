"""Export a trained EfficientNet-Lite0 to ONNX, check it against torch, install it in the models folder.

Needs torch (training extra). The exported graph takes 0–255 RGB float (N, 3, S, S) named
``image`` with a dynamic batch axis and returns probabilities (``emotion_probs`` and, for the
multitask model, ``au_probs``); see :class:`aulib.cnn.model.ExportWrapper`.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aulib.cnn.model import EfficientNetLite0, ExportWrapper

OPSET = 17
TOLERANCE = 1e-4


def export_onnx(net: EfficientNetLite0, path: str | Path, n_aus: int = 0, opset: int = OPSET) -> Path:
    """Write ``net`` (eval mode) as ONNX to ``path`` and assert onnxruntime agrees with torch.

    The check feeds a batch of 3 random images and requires every output to match torch within
    ``TOLERANCE`` (absolute, on probabilities): an export bug would otherwise ship silently.
    """
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = net.training
    wrapper = ExportWrapper(net, n_aus=n_aus).eval()
    size = net.image_size
    example = torch.rand(2, 3, size, size) * 255.0
    outputs = ["emotion_probs"] + (["au_probs"] if n_aus else [])
    tmp = path.with_name(path.name + ".tmp")
    # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not installed here.
    # Its deprecation notice and the "Slice steps" note (from reordering F.pad's pads) are noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        torch.onnx.export(
            wrapper, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["image"],
            output_names=outputs, dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
            do_constant_folding=True,
        )
    check = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255.0
    with torch.no_grad():
        ref = wrapper(check)
    ref_list = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(tmp), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": check.numpy()})
    for name, r, g in zip(outputs, ref_list, got, strict=True):
        diff = float(np.abs(r.numpy() - g).max())
        if diff > TOLERANCE:
            tmp.unlink()
            raise AssertionError(f"{path}: ONNX output {name} differs from torch by {diff:.2e} > {TOLERANCE}")
    tmp.replace(path)
    net.train(was_training)
    return path


def install_model(onnx_path: str | Path, info: dict[str, Any], name: str | None = None) -> Path:
    """Copy ``onnx_path`` into ``aulib/models`` (as ``name``) and (re)write its manifest entry."""
    from aulib.models import MODELS_DIR, register

    onnx_path = Path(onnx_path)
    dest = MODELS_DIR / (name or onnx_path.name)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(onnx_path, tmp)
    tmp.replace(dest)
    register(dest, info)
    return dest
