"""Int8 quantisation of a trained CNN (static, onnxruntime's QDQ format) — a tool, not the shipped default.

Why it exists: the emotion CNN costs ≈2.5 ms per face on one core at batch 16 in float32, the second
largest stage of the video pipeline after gaze. EfficientNet-*Lite* was designed for integer inference
(no squeeze-excitation, ReLU6) and onnxruntime runs int8 convolutions with VNNI/AVX2 kernels: the int8
network takes ≈1.1 ms per face with the same FER2013Valid accuracy (0.8653 vs 0.8655 tie-aware).

Why it is not shipped (measured; ``aulib train quantize runs/x/emotion_cnn.onnx --install``, then
``aulib train svm``/``svr`` on its embedding, then ``aulib analyze WolfgangLanger_Pexels.mp4``): the
AU models read the CNN's pooled embedding, which int8 moves by 3.6–5 % (relative L2 on CK+ crops), and
that error is not smooth in time. On the Pexels clip the AU trace jitter rose from 0.058 to 0.063–0.067
(OpenFace: 0.064) and AU06's correlation with OpenFace fell from 0.80 to 0.72–0.75; CK+ subject-CV F1
0.781 → 0.774–0.777. Emotion-only users who want the speed can quantise and install it themselves.

Recipe (the standard one for CNNs): the backbone's convolutions, ReLU6 clips and residual adds are
quantised (:data:`QUANTISED_OPS`), weights int8 per output channel, activations uint8 per tensor,
ranges from min/max calibration on :data:`CALIBRATION_FACES` aligned FER2013 *training* crops (fixed
seed; never the validation faces the accuracy is reported on). Pooling, the final fully connected
layer and softmax/sigmoid stay float32 (≈0.1 % of the compute): quantising them too put the output
probabilities on a 1/255 grid that no longer summed to 1. The first convolutions stay float32 too
(:data:`FLOAT_FIRST_CONVS`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from aulib.cnn.inference import CHUNK, _as_batch, run_chunked

CALIBRATION_FACES = 512
QUANTISED_OPS = ["Conv", "Clip", "Add"]
# The first convolutions (EfficientNet-Lite0: the stem and the first block, 32 and 16 channels at
# 56×56) stay float32. They cost little, and the rounding there is amplified by every later layer:
# with them int8 the pooled embedding moved 5.0 % (relative L2 on the CK+ crops), with them float
# 3.6 %, at the same speed (1.12 vs 1.13 ms per face); that embedding feeds the AU models.
FLOAT_FIRST_CONVS = 3
QUANTIZATION = ("int8 static quantisation of the backbone (onnxruntime QDQ; Conv/Clip/Add: weights int8 per "
                f"channel, activations uint8, min/max ranges from {CALIBRATION_FACES} FER2013Train crops, seed 0); "
                "pooling, the final layer and softmax/sigmoid float32")


def calibration_batches(crops: np.ndarray, size: int, n: int = CALIBRATION_FACES, seed: int = 0) -> list[np.ndarray]:
    """``n`` crops drawn without replacement (seeded) as network input batches of :data:`CHUNK`."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(crops), min(n, len(crops)), replace=False))
    picked = np.asarray(crops[idx])
    return [_as_batch(picked[i:i + CHUNK], size) for i in range(0, len(picked), CHUNK)]


def quantize_cnn(fp32: str | Path, out: str | Path, crops: np.ndarray, size: int = 112) -> Path:
    """Write the int8 version of the float32 ONNX ``fp32`` to ``out``, calibrated on ``crops``
    ((N, H, W) or (N, H, W, 3) uint8 aligned faces); returns ``out``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from aulib.models import onnx_session

    fp32, out = Path(fp32), Path(out)
    input_name = onnx_session(fp32, fp32).get_inputs()[0].name
    batches = calibration_batches(crops, size)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))  # shape inference + graph clean-up, as onnxruntime advises
        part = out.with_name(out.name + ".tmp")
        quantize_static(str(pre), str(part), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=QUANTISED_OPS,
                        nodes_to_exclude=first_convs(pre, FLOAT_FIRST_CONVS))
        part.replace(out)
    return out


def first_convs(path: str | Path, n: int) -> list[str]:
    """Names of the first ``n`` Conv nodes of an ONNX graph and of the activations right after them."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    convs = [node for node in nodes if node.op_type == "Conv"][:n]
    outputs = {o for c in convs for o in c.output}
    return [c.name for c in convs] + [node.name for node in nodes
                                      if node.op_type == "Clip" and node.input and node.input[0] in outputs]


def onnx_predict(path: str | Path, crops: np.ndarray) -> list[np.ndarray]:
    """Every output of the ONNX CNN at ``path`` (a run's file, not in the manifest) for ``crops``."""
    from aulib.models import onnx_session

    return run_chunked(onnx_session(path, path), crops)


def compare(fp32: str | Path, int8: str | Path, crops: np.ndarray, votes: np.ndarray) -> dict[str, Any]:
    """FER+ majority accuracy of both graphs on the same crops, and how often their top class agrees."""
    from aulib.training.metrics import majority_accuracy

    out: dict[str, Any] = {}
    top = {}
    for key, path in (("fp32", fp32), ("int8", int8)):
        probs = onnx_predict(path, crops)[0]
        acc = majority_accuracy(probs, votes)
        out[key] = {"tie_aware": round(float(acc["tie_aware"]), 4), "first_max": round(float(acc["first_max"]), 4)}
        top[key] = probs.argmax(1)
    out["top_class_agreement"] = round(float((top["fp32"] == top["int8"]).mean()), 4)
    return out


KINDS = ("emotion_cnn.onnx", "multitask_cnn.onnx")


def quantize_run(model: str | Path, data_dir: str | Path, *, install: bool = False,
                 cache_dir: str | Path | None = None, log: Any = print) -> Path:
    """Quantise a trained float32 CNN of a run folder (``emotion_cnn.onnx`` or ``multitask_cnn.onnx``)
    into ``<stem>_int8.onnx`` beside it, with its manifest info ``<stem>_int8.json`` (from the run's
    ``<stem>.json``, or the shipped entry when the run has none) including the FER2013Valid accuracy
    of both graphs; with ``install``, ship it under the package's name (then retrain the AU models).
    """
    import json

    from aulib.models import model_entry
    from aulib.training import CACHE
    from aulib.training.cnn import install_model
    from aulib.training.crops import aligned_crops
    from aulib.training.datasets import read_ferplus

    fp32 = Path(model)
    name = fp32.name
    if name not in KINDS:
        raise ValueError(f"{fp32}: expected a training run's {' or '.join(KINDS)}")
    out = fp32.with_name(fp32.stem + "_int8.onnx")
    sidecar = fp32.with_name(fp32.stem + ".json")
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
    else:
        info = {k: v for k, v in model_entry(name).items() if k not in ("sha256", "bytes")}
    cache = Path(cache_dir) if cache_dir is not None else CACHE
    train = aligned_crops(read_ferplus(data_dir, "train").paths, cache)
    valid = read_ferplus(data_dir, "valid")
    xva = aligned_crops(valid.paths, cache)
    assert train is not None and xva is not None  # computed when not cached
    log(f"quantising {fp32} → {out}")
    quantize_cnn(fp32, out, np.asarray(train["crops"]))
    figures = compare(fp32, out, np.asarray(xva["crops"]), valid.votes)
    log(f"FER2013Valid majority accuracy (tie-aware / first max): float32 {figures['fp32']['tie_aware']:.4f} / "
        f"{figures['fp32']['first_max']:.4f}, int8 {figures['int8']['tie_aware']:.4f} / "
        f"{figures['int8']['first_max']:.4f}; same top class on {figures['top_class_agreement']:.2%} of faces")
    info["quantization"] = QUANTIZATION
    info.setdefault("evaluation", {})["ferplus_valid_fp32_vs_int8"] = figures
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    if install:
        log(f"installed {install_model(out, info, name, log=log)}")
    return out
