"""CNN emotion / multitask models: weights, data readers, training smoke run, shipped ONNX files."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parents[1].parent / "shared" / "data"
SAMPLE = DATA / "samples" / "single_face.jpg"
HAS_TORCH = importlib.util.find_spec("torch") is not None

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"dataset folder {DATA} not present")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch (training extra) not installed")


def _shipped(name: str) -> bool:
    from aulib.models import read_manifest

    return name in read_manifest().get("models", {})


# ---------------------------------------------------------------------------------------- metrics


def test_majority_accuracy_counts_tied_maxima_as_correct() -> None:
    from aulib.cnn.metrics import majority_accuracy

    votes = np.array([[5, 5, 0, 0, 0, 0, 0, 0], [0, 0, 7, 1, 0, 0, 0, 0]], float)
    probs = np.zeros((2, 8))
    probs[0, 1] = probs[1, 2] = 1  # first row: predicts the second of two tied classes
    acc = majority_accuracy(probs, votes)
    assert acc["tie_aware"] == 1.0
    assert acc["first_max"] == 0.5


def test_binary_f1_ignores_unknown_labels() -> None:
    from aulib.cnn.metrics import binary_f1

    labels = np.array([[1], [0], [-1], [1]])
    probs = np.array([[0.9], [0.1], [0.9], [0.2]])
    assert binary_f1(labels, probs)[0] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------- data


@needs_data
def test_ckplus_reader_dedupes_and_splits_by_subject() -> None:
    from aulib.cnn.data import CKPLUS_AUS, read_ckplus, subject_split, top_ckplus_aus

    ck = read_ckplus(DATA)
    keys = {(p.name, s) for p, s in zip(ck.paths, ck.subjects, strict=True)}
    assert len(keys) == len(ck)  # the 219 frames stored in two folders appear once
    assert sorted(a for a, _ in top_ckplus_aus(DATA)) == CKPLUS_AUS
    tr, va = subject_split(ck.subjects, 0.2, seed=0)
    assert not set(ck.subjects[tr]) & set(ck.subjects[va])
    assert len(tr) + len(va) == len(ck)
    assert (ck.aus == -1).all(axis=1).sum() > 0  # facs_source=missing rows are masked, not "absent"


@needs_data
def test_ferplus_reader_drops_unknown_majority_and_normalises_votes() -> None:
    from aulib.cnn.data import read_ferplus

    fer = read_ferplus(DATA, "valid")
    assert 3000 < len(fer.paths) < 3589
    np.testing.assert_allclose(fer.soft.sum(axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------------- torch / model


@needs_torch
def test_imagenet_weights_load_with_zero_missing_or_unexpected_keys() -> None:
    import torch

    from aulib.cnn.model import EfficientNetLite0, imagenet_state_dict, load_imagenet_backbone

    net = EfficientNetLite0(1000, 224)
    result = net.load_state_dict(imagenet_state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.02)
    # Fine-tuning nets: everything but the resized classifier comes from ImageNet.
    assert sorted(load_imagenet_backbone(EfficientNetLite0(8, 112))) == ["_fc.bias", "_fc.weight"]
    if (DATA / "samples" / "free-mountain-vector-01.jpg").is_file():
        from PIL import Image

        from aulib.cnn.model import normalise

        img = Image.open(DATA / "samples" / "free-mountain-vector-01.jpg").convert("RGB").resize((224, 224))
        x = torch.from_numpy(np.asarray(img, np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            top5 = net.eval()(normalise(x)).topk(5).indices[0].tolist()
        assert {970, 979} & set(top5)  # ImageNet "alp" / "valley": the port and padding are faithful


@needs_torch
@needs_data
def test_training_smoke_run_exports_onnx_that_onnxruntime_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    from aulib.cnn.train import train_emotion

    onnx_path = train_emotion(DATA, tmp_path / "run", epochs=1, batch_size=16, max_batches=2, subset=32,
                              align=False, log=lambda m: None)
    assert onnx_path.is_file() and (tmp_path / "run" / "last.pt").is_file()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    out = sess.run(None, {"image": image})
    assert out[0].shape == (3, 8)
    np.testing.assert_allclose(out[0].sum(axis=1), 1.0, atol=1e-5)


def test_multitask_smoke_run_and_resume(tmp_path: Path) -> None:
    import onnxruntime as ort

    from aulib.cnn.train import train_multitask

    kw = dict(batch_size=16, ck_per_batch=8, max_batches=2, subset=32, align=False, log=lambda m: None)
    onnx_path = train_multitask(DATA, tmp_path / "mt", epochs=1, init_from=None, **kw)
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": np.zeros((2, 3, 112, 112), np.float32)})
    assert out[0].shape == (2, 8) and out[1].shape == (2, 14)
    messages: list[str] = []
    kw["log"] = messages.append
    train_multitask(DATA, tmp_path / "mt", epochs=2, init_from=None, **kw)  # resumes from last.pt
    assert any("resumed" in m and "epoch 1" in m for m in messages)


def test_inference_module_does_not_import_torch() -> None:
    code = "import sys, aulib.cnn.inference; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- shipped models


@pytest.fixture(scope="module")
def aligned_sample() -> np.ndarray:
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} not present")
    from PIL import Image

    from aulib.face import FacePipeline

    img = np.asarray(Image.open(SAMPLE).convert("RGB"))
    faces = [f for f in FacePipeline(features=False)(img) if f.success]
    assert faces, "face pipeline found no face in the sample photo"
    return faces[0].aligned


@pytest.mark.parametrize("name", ["emotion_cnn.onnx", "multitask_cnn.onnx"])
def test_shipped_model_matches_manifest_checksum(name: str) -> None:
    from aulib.models import MODELS_DIR, model_path, sha256_of

    if not _shipped(name):
        pytest.skip(f"{name} not trained/shipped yet")
    from aulib.models import model_entry

    assert model_path(name) == MODELS_DIR / name
    assert sha256_of(MODELS_DIR / name) == model_entry(name)["sha256"]


def test_emotion_cnn_says_happiness_for_smiling_sample(aligned_sample: np.ndarray) -> None:
    from aulib.cnn import EMOTIONS, EmotionCNN

    if not _shipped("emotion_cnn.onnx"):
        pytest.skip("emotion_cnn.onnx not shipped yet")
    probs = EmotionCNN().predict(aligned_sample[None])
    assert probs.shape == (1, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert EMOTIONS[int(probs[0].argmax())] == "happiness"


def test_multitask_cnn_says_happiness_and_au12_for_smiling_sample(aligned_sample: np.ndarray) -> None:
    from aulib.cnn import EMOTIONS, MultitaskCNN

    if not _shipped("multitask_cnn.onnx"):
        pytest.skip("multitask_cnn.onnx not shipped yet")
    model = MultitaskCNN()
    emo, au = model.predict(np.stack([aligned_sample, aligned_sample]))
    assert emo.shape == (2, 8) and au.shape == (2, 14) and len(model.aus) == 14
    np.testing.assert_allclose(emo.sum(axis=1), 1.0, atol=1e-5)
    assert ((au >= 0) & (au <= 1)).all()
    assert EMOTIONS[int(emo[0].argmax())] == "happiness"
    assert au[0, model.aus.index(12)] > 0.5  # lip corner puller: the smile


def test_emotion_cnn_accepts_any_crop_size_and_channel_count(aligned_sample: np.ndarray) -> None:
    import cv2

    from aulib.cnn import EmotionCNN

    if not _shipped("emotion_cnn.onnx"):
        pytest.skip("emotion_cnn.onnx not shipped yet")
    model = EmotionCNN()
    ref = model.predict(aligned_sample)  # a single (112, 112, 3) crop
    gray = cv2.cvtColor(aligned_sample, cv2.COLOR_RGB2GRAY)
    rgba = cv2.cvtColor(aligned_sample, cv2.COLOR_RGB2RGBA)
    for crop in (gray, gray[:, :, None], rgba, cv2.resize(aligned_sample, (48, 48)),
                 cv2.resize(aligned_sample, (300, 300)), [aligned_sample, gray]):
        p = model.predict(crop)
        assert p.shape[1] == 8
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.predict(gray), ref, atol=1e-5)  # colour is converted to gray anyway


def test_corrupted_model_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    from aulib.cnn import EmotionCNN
    from aulib.models import MODELS_DIR, ModelFileError

    if not _shipped("emotion_cnn.onnx"):
        pytest.skip("emotion_cnn.onnx not shipped yet")
    bad = tmp_path / "emotion_cnn.onnx"
    shutil.copyfile(MODELS_DIR / "emotion_cnn.onnx", bad)
    data = bytearray(bad.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=str(bad)):
        EmotionCNN(path=bad)
    with pytest.raises(ModelFileError, match="not found"):
        EmotionCNN(path=tmp_path / "missing.onnx")
