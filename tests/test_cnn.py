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
    from aulib.training.metrics import majority_accuracy

    votes = np.array([[5, 5, 0, 0, 0, 0, 0, 0], [0, 0, 7, 1, 0, 0, 0, 0]], float)
    probs = np.zeros((2, 8))
    probs[0, 1] = probs[1, 2] = 1  # first row: predicts the second of two tied classes
    acc = majority_accuracy(probs, votes)
    assert acc["tie_aware"] == 1.0
    assert acc["first_max"] == 0.5
    assert acc["ties_excluded"] == 1.0 and acc["n_ties_excluded"] == 1  # only the untied second row counts


def test_binary_f1_ignores_unknown_labels() -> None:
    from aulib.training.metrics import binary_f1

    labels = np.array([[1], [0], [-1], [1]])
    probs = np.array([[0.9], [0.1], [0.9], [0.2]])
    assert binary_f1(labels, probs)[0] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------- data


@needs_data
def test_ckplus_reader_dedupes_and_splits_by_subject() -> None:
    from aulib.au.codes import AUS
    from aulib.training.datasets import CKPlus, au_counts, subject_split

    ck = CKPlus.load(DATA)
    keys = {(p.name, s) for p, s in zip(ck.image_paths(), ck.subjects, strict=True)}
    assert len(keys) == len(ck) == 1086  # the 219 frames stored in two folders appear once
    counts = au_counts(ck).sort_values("all_pos", ascending=False)
    assert sorted(counts.au.head(17)) == list(AUS)  # the banks and the multitask heads: the 17 most frequent
    tr, va = subject_split(ck.subjects, 0.2, seed=0)
    assert not set(ck.subjects[tr]) & set(ck.subjects[va])
    assert len(tr) + len(va) == len(ck)
    y = ck.occurrence(AUS)
    unknown = (y == -1).all(axis=1)
    assert unknown.sum() == 21  # facs_source=missing rows are masked, not "absent"
    assert len(ck.with_facs()) == 1065 and (ck.with_facs().occurrence(AUS) >= 0).all()


@needs_data
def test_ferplus_reader_drops_unknown_majority_and_normalises_votes() -> None:
    from aulib.training.datasets import read_ferplus

    fer = read_ferplus(DATA, "valid")
    assert 3000 < len(fer.paths) < 3589
    np.testing.assert_allclose(fer.soft.sum(axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------------- torch / model


@needs_torch
def test_imagenet_weights_load_with_zero_missing_or_unexpected_keys() -> None:
    import torch

    from aulib.training.torch_model import EfficientNetLite0, imagenet_state_dict, load_imagenet_backbone

    net = EfficientNetLite0(1000, 224)
    result = net.load_state_dict(imagenet_state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.02)
    # Fine-tuning nets: everything but the resized classifier comes from ImageNet.
    assert sorted(load_imagenet_backbone(EfficientNetLite0(8, 112))) == ["_fc.bias", "_fc.weight"]
    if (DATA / "samples" / "free-mountain-vector-01.jpg").is_file():
        from PIL import Image

        from aulib.training.torch_model import normalise

        img = Image.open(DATA / "samples" / "free-mountain-vector-01.jpg").convert("RGB").resize((224, 224))
        x = torch.from_numpy(np.asarray(img, np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            top5 = net.eval()(normalise(x)).topk(5).indices[0].tolist()
        assert {970, 979} & set(top5)  # ImageNet "alp" / "valley": the port and padding are faithful


@needs_torch
@needs_data
def test_training_smoke_run_exports_onnx_that_onnxruntime_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    from aulib.training.cnn import train_emotion

    onnx_path = train_emotion(DATA, tmp_path / "run", epochs=1, batch_size=16, max_batches=2, subset=32,
                              align=False, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert onnx_path.is_file() and (tmp_path / "run" / "last.pt").is_file()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    out = sess.run(None, {"image": image})
    assert out[0].shape == (3, 8)
    np.testing.assert_allclose(out[0].sum(axis=1), 1.0, atol=1e-5)
    # the int8 tool (aulib train quantize): backbone quantised, first convolutions and outputs float
    from aulib.training.quantize import FLOAT_FIRST_CONVS, quantize_cnn

    crops = np.random.default_rng(1).integers(0, 256, (40, 112, 112), dtype=np.uint8)
    int8 = quantize_cnn(onnx_path, tmp_path / "int8.onnx", crops)
    nodes = _graph_nodes(int8)
    produced = {o: n.op_type for n in nodes for o in n.output}
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert all(produced.get(c.input[1]) != "DequantizeLinear" for c in convs[:FLOAT_FIRST_CONVS])
    assert all(produced.get(c.input[1]) == "DequantizeLinear" for c in convs[FLOAT_FIRST_CONVS:])
    got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # softmax stays float: no 1/255 grid
    assert np.abs(got - out[0]).max() < 0.1


@needs_torch
@needs_data
def test_pack_rebuilds_the_pipeline_crops_exactly_and_trains_where_the_dataset_is_not(tmp_path: Path) -> None:
    """A pack (sources + matrices) rebuilds the very crops the face pipeline made and cached, and
    train_emotion reads it instead of the dataset: the way the networks are trained on an accelerator."""
    from aulib.training.cnn import export_emotion, train_emotion
    from aulib.training.crops import aligned_crops
    from aulib.training.datasets import read_ferplus
    from aulib.training.portable import pack, unpack

    cache = tmp_path / "cache"
    summary = pack(DATA, tmp_path / "p.npz", cache_dir=cache, workers=1, subset=24)
    assert summary["train"]["images"] == summary["valid"]["images"] == 24
    assert summary["train"]["bytes"] < 24 * 2304  # smaller than the raw 48×48 sources
    z = unpack(tmp_path / "p.npz")
    for split in ("train", "valid"):
        ds = read_ferplus(DATA, split).subset(24)
        cached = aligned_crops(ds.paths, cache, only_cached=True)  # pack filled the cache training reads
        assert cached is not None and bool(z[split]["exact"])
        np.testing.assert_array_equal(z[split]["crops"], cached["crops"])
        np.testing.assert_array_equal(z[split]["fallback"], cached["fallback"])
        np.testing.assert_array_equal(z[split]["soft"], ds.soft)
        np.testing.assert_array_equal(z[split]["votes"], ds.votes)
    assert not bool(z["train"]["fallback"].all())  # real aligned crops, not only resizes
    run = tmp_path / "run"
    train_emotion(tmp_path / "no-dataset-here", run, epochs=1, batch_size=8, max_batches=2, pack=tmp_path / "p.npz",
                  export=False, cache_dir=None, log=lambda m: None)
    assert (run / "best.pt").is_file() and not (run / "emotion_cnn.onnx").exists()
    onnx_path = export_emotion(run, epochs=1, ema=0.999, n_train=24, command="test", log=lambda m: None)
    assert onnx_path.is_file() and (run / "emotion_cnn.json").is_file()


def _graph_nodes(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path)).graph.node)


@needs_torch
@needs_data
def test_multitask_smoke_run_resumes_and_records_17_heads(tmp_path: Path) -> None:
    import json

    import onnxruntime as ort

    from aulib.au.codes import AUS
    from aulib.cnn.inference import au_thresholds
    from aulib.training.multitask import train_multitask

    kw = dict(folds=0, max_batches=2, subset=32, align=False, cache_dir=tmp_path / "cache", threads=1,
              log=lambda m: None)
    onnx_path, report = train_multitask(DATA, tmp_path / "mt", epochs=1, init_from=None, **kw)
    assert report is None  # folds=0: no CV
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": np.zeros((2, 3, 112, 112), np.float32)})
    assert out[0].shape == (2, 8) and out[1].shape == (2, len(AUS))
    info = json.loads((tmp_path / "mt" / "multitask_cnn.json").read_text())
    assert info["aus"] == list(AUS) and info["ckplus_training_subjects"] == "all"
    assert np.allclose(au_thresholds(info, "multitask_cnn.onnx"), 0.5)  # what MultitaskCNN applies
    messages: list[str] = []
    kw["log"] = messages.append
    train_multitask(DATA, tmp_path / "mt", epochs=2, init_from=None, **kw)  # resumes from last.pt
    assert any("resumed" in m and "epoch 2" in m for m in messages)


@needs_torch
@needs_data
def test_multitask_cross_validation_refits_both_models_per_subject_fold_and_resumes(tmp_path: Path) -> None:
    """Both models of the fused AU decision are fitted without each fold's subjects; a rerun reads
    the saved fold predictions instead of training again."""
    from aulib.training.multitask import cross_validate

    subjects = ["S010", "S026", "S032", "S034"]  # each has these AUs present and absent (a fold's SVMs need both)
    messages: list[str] = []
    kw = dict(folds=2, epochs=1, init_from=None, subjects=subjects, max_batches=1, fer_subset=64, aus=(1, 4, 12, 25),
              cache_dir=tmp_path / "cache", log=messages.append)
    report = cross_validate(DATA, tmp_path / "run", **kw)
    assert report["folds"] == 2 and report["subjects"] == len(subjects) and [r["au"] for r in report["per_au"]] == [
        1, 4, 12, 25]
    assert all(0 <= r["f1_fused"] <= 1 and 0 <= r["ece_fused"] <= 1 for r in report["per_au"])
    assert sum("epoch 1/1" in m for m in messages) == 2  # one network per fold
    assert len(list((tmp_path / "run" / "cv").glob("fold*.npz"))) == 2
    messages.clear()
    again = cross_validate(DATA, tmp_path / "run", **kw)
    assert not any("epoch" in m for m in messages) and again["per_au"] == report["per_au"]
    from aulib.training.au import write_report

    md = write_report(None, None, tmp_path / "reports", fusion=report).read_text()
    assert "SVMs and multitask heads voting together" in md and "| AU12 |" in md
    write_report(None, None, tmp_path / "reports")  # a later svm/svr run keeps the fusion section
    assert "voting together" in (tmp_path / "reports" / "au.md").read_text()


def test_only_cnn_training_imports_torch() -> None:
    code = ("import sys, aulib.cnn.inference, aulib.analyzer, aulib.cli, aulib.training, aulib.training.datasets, "
            "aulib.training.crops, aulib.training.au, aulib.training.metrics, aulib.training.evaluate; "
            "assert 'torch' not in sys.modules, 'torch imported'; import aulib.training.multitask; "
            "assert 'torch' in sys.modules")
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


@pytest.mark.parametrize("name", ["emotion_cnn.onnx", "emotion_cnn_ema.onnx", "multitask_cnn.onnx"])
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
    from aulib.au.codes import AUS
    from aulib.cnn import EMOTIONS, MultitaskCNN

    if not _shipped("multitask_cnn.onnx"):
        pytest.skip("multitask_cnn.onnx not shipped yet")
    model = MultitaskCNN()
    emo, au = model.predict(np.stack([aligned_sample, aligned_sample]))
    assert emo.shape == (2, 8) and au.shape == (2, len(AUS)) and model.aus == list(AUS)  # a head for every AU
    np.testing.assert_allclose(emo.sum(axis=1), 1.0, atol=1e-5)
    assert ((au >= 0) & (au <= 1)).all()
    assert EMOTIONS[int(emo[0].argmax())] == "happiness"
    assert au[0, model.aus.index(12)] > 0.5  # lip corner puller: the smile


def test_flip_averages_the_emotion_over_the_mirror_image(aligned_sample: np.ndarray) -> None:
    from aulib.au.embedding import EmotionEmbeddingCNN
    from aulib.cnn import EmotionCNN

    model = EmotionCNN()
    crops = np.stack([aligned_sample, aligned_sample[:, ::-1]])
    plain = model.predict(crops)
    both = model.predict(crops, flip=True)
    np.testing.assert_allclose(both[0], (plain[0] + plain[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(both[0], both[1], atol=1e-5)  # a face and its mirror now agree
    emb = EmotionEmbeddingCNN()
    p0, e0 = emb.predict_with_embedding(crops)
    p1, e1 = emb.predict_with_embedding(crops, flip=True)
    np.testing.assert_allclose(e1, e0, atol=1e-5)  # the AU features are the crop's own
    np.testing.assert_allclose(p1, both, atol=1e-5)


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


def test_a_damaged_second_ensemble_network_is_refused_where_it_is_used(tmp_path: Path,
                                                                        aligned_sample: np.ndarray) -> None:
    """The image ensemble's network loads in a background thread; its failure surfaces, naming the
    file, when an image needs it (not as a lost thread or a silently single-network answer)."""
    from aulib.cnn.inference import SecondOpinion
    from aulib.face import Face
    from aulib.models import MODELS_DIR, ModelFileError

    bad = tmp_path / "emotion_cnn_ema.onnx"
    bad.write_bytes((MODELS_DIR / "emotion_cnn_ema.onnx").read_bytes()[:1000])
    stage = SecondOpinion(bad)
    stage.prefetch()
    face = Face(box=np.zeros(4, np.float32), score=1.0, aligned=aligned_sample, matrix=np.eye(2, 3),
                emotion_probs=np.full(8, 0.125, np.float32))
    assert stage.run([face], flip=False)[0].emotion_probs[0] == np.float32(0.125)  # video: never loaded
    with pytest.raises(ModelFileError, match=str(bad)):
        stage.run([face], flip=True)


def test_the_image_mode_au_heads_load_only_for_images_and_name_a_damaged_file(tmp_path: Path,
                                                                              aligned_sample: np.ndarray) -> None:
    """The multitask AU heads that vote with the SVMs on images load in the background; video frames
    (flip=False) never touch them; a damaged file is a ModelFileError naming it where an image needs it."""
    from aulib.cnn.inference import AUHeads
    from aulib.face import Face
    from aulib.models import MODELS_DIR, ModelFileError

    face = Face(box=np.zeros(4, np.float32), score=1.0, aligned=aligned_sample, matrix=np.eye(2, 3))
    good = AUHeads()
    assert good.run([face], flip=False)[0].mt_au_probs is None and good._model is None  # video: never loaded
    good.prefetch()
    heads = good.run([face], flip=True)[0].mt_au_probs
    assert heads is not None and heads.shape == (len(good.aus),) and ((heads >= 0) & (heads <= 1)).all()
    assert face.mt_au_occurrence is None  # the mt_AUxx_c columns stay those of --emotion-model multitask
    bad = tmp_path / "multitask_cnn.onnx"
    bad.write_bytes((MODELS_DIR / "multitask_cnn.onnx").read_bytes()[:1000])
    stage = AUHeads(bad)
    stage.prefetch()
    with pytest.raises(ModelFileError, match=str(bad)):
        stage.run([face], flip=True)


def test_multitask_applies_the_thresholds_its_manifest_entry_records(aligned_sample: np.ndarray,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import aulib.cnn.inference as inference
    from aulib.cnn import MultitaskCNN
    from aulib.models import model_entry

    if not _shipped("multitask_cnn.onnx"):
        pytest.skip("multitask_cnn.onnx not shipped yet")
    entry = model_entry("multitask_cnn.onnx")
    shipped = MultitaskCNN()
    # The shipped entry: one threshold per AU head (0.5 each, on the heads' raw sigmoid) and each head's
    # Platt scaling, which carries the threshold onto the calibrated scale; older entries had one "au_threshold".
    k = len(entry["aus"])
    assert shipped.platt is not None and shipped.platt.shape == (k, 2)
    raw = np.float32(entry["au_thresholds"])
    np.testing.assert_allclose(shipped.thresholds, inference.calibrate(raw, shipped.platt))
    assert shipped.thresholds.shape == (k,)
    # Another per-AU list in the entry is what predict_aus applies.
    probs = shipped.predict(aligned_sample)[1][0]
    tuned = np.where(np.arange(k) % 2 == 0, 0.05, 0.95)
    monkeypatch.setattr(inference, "model_entry", lambda name: {**entry, "au_thresholds": tuned.tolist()})
    legacy = {k2: v for k2, v in entry.items() if k2 != "au_thresholds"}
    assert np.allclose(inference.au_thresholds({**legacy, "au_threshold": 0.4}, "x.onnx"), 0.4)
    model = MultitaskCNN()
    scaled = inference.calibrate(tuned.astype(np.float32), model.platt)
    np.testing.assert_allclose(model.thresholds, scaled)
    np.testing.assert_array_equal(model.predict_aus(aligned_sample)[0], (probs >= scaled))


def test_manifest_thresholds_and_class_order_are_validated() -> None:
    from aulib.cnn.inference import au_thresholds, emotion_classes
    from aulib.face.record import EMOTIONS
    from aulib.models import ModelFileError

    aus = {"aus": [1, 2, 4]}
    np.testing.assert_allclose(au_thresholds({**aus, "au_threshold": 0.4}, "m"), [0.4] * 3)
    np.testing.assert_allclose(au_thresholds({**aus, "au_thresholds": [0.2, 0.5, 0.7]}, "m"), [0.2, 0.5, 0.7])
    np.testing.assert_allclose(au_thresholds(aus, "m"), [0.5] * 3)
    for bad in ([0.2, 0.5], [0.2, 0.5, 1.5], "high", [0.1, float("nan"), 0.3], {"AU01": 0.3}):
        with pytest.raises(ModelFileError, match="^m: au_thresholds"):
            au_thresholds({**aus, "au_thresholds": bad}, "m")
    # Platt scaling of the heads: the thresholds move onto the calibrated scale, decisions do not change
    from aulib.cnn.inference import au_heads, calibrate

    platt = [[2.0, -1.0], [1.0, 0.0], [0.5, 0.3]]
    _, t, scaling = au_heads({**aus, "au_platt": platt}, "m")
    np.testing.assert_allclose(t, 1 / (1 + np.exp(-np.array([-1.0, 0.0, 0.3]))), atol=1e-6)
    raw = np.array([[0.3, 0.5, 0.9], [0.7, 0.4, 0.1]], np.float32)
    np.testing.assert_array_equal(calibrate(raw, scaling) >= t, raw >= 0.5)
    assert au_heads(aus, "m")[2] is None
    for bad in ([[1.0, 0.0]] * 2, [[-1.0, 0.0]] * 3, [[1.0, float("inf")]] * 3, "x"):
        with pytest.raises(ModelFileError, match="^m: au_platt"):
            au_heads({**aus, "au_platt": bad}, "m")
    assert emotion_classes({"classes": list(EMOTIONS)}, "m") == list(EMOTIONS)
    with pytest.raises(ModelFileError, match="emotion_cnn.onnx: classes .* differ"):
        emotion_classes({"classes": EMOTIONS[::-1]}, "emotion_cnn.onnx")
    with pytest.raises(ModelFileError, match="records no class order"):
        emotion_classes({}, "emotion_cnn.onnx")


def test_cnn_with_another_class_order_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import aulib.cnn.inference as inference
    from aulib.cnn import EmotionCNN
    from aulib.models import ModelFileError, model_entry

    if not _shipped("emotion_cnn.onnx"):
        pytest.skip("emotion_cnn.onnx not shipped yet")
    entry = model_entry("emotion_cnn.onnx")
    assert entry["classes"] == EmotionCNN().classes  # the shipped order is read from the manifest
    swapped = ["happiness", "neutral", *entry["classes"][2:]]
    monkeypatch.setattr(inference, "model_entry", lambda name: {**entry, "classes": swapped})
    with pytest.raises(ModelFileError, match="emotion_cnn.onnx: classes"):
        EmotionCNN()
