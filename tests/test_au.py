"""Shipped AU models: checksums, whole-pipeline predictions on real photos, bad model files, training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from aulib.au.emotion_rules import PROTOTYPES, EmotionRules
from aulib.au.linear import LinearBank
from aulib.au.models import AUIntensity, AUOccurrence, shipped_feature_version
from aulib.models import MANIFEST, MODELS_DIR, ModelFileError, model_path, sha256_of

from .conftest import DATA, sample


def test_manifest_checksums_match_the_shipped_files():
    manifest = json.loads(MANIFEST.read_text())
    assert "non-commercial" in manifest["licence"]
    for name, entry in manifest["models"].items():
        assert sha256_of(MODELS_DIR / name) == entry["sha256"], name
        assert entry["command"] and entry["dataset"] and (entry.get("figures") or entry.get("evaluation"))


def test_shipped_models_cover_the_documented_au_set():
    occ, inten = AUOccurrence(), AUIntensity()
    assert occ.aus == inten.aus == [1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27]
    assert occ.bank.n_features == 6084 + 136 + 1280  # HOG + geometry + CNN embedding


def test_smiling_face_has_au6_au12_and_happiness_highest(analyzer):
    df = analyzer.analyze(sample("single_face.jpg"))
    assert len(df) == 1 and df.success.iloc[0] == 1
    row = df.iloc[0]
    assert row.AU06_c == 1 and row.AU12_c == 1
    rules = {e: row[f"rule_{e}"] for e in PROTOTYPES}
    assert max(rules, key=rules.get) == "happiness" and rules["happiness"] == 100
    assert row.AU12_r > row.AU04_r
    values = df.filter(regex=r"^(AU|rule_)").to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert ((df.filter(regex=r"_r$") >= 0) & (df.filter(regex=r"_r$") <= 5)).all().all()


def test_every_face_of_multi_face_gets_predictions(analyzer):
    df = analyzer.analyze(sample("multi_face.jpg"))
    assert len(df) == 5 and df.success.all()
    assert df.face.tolist() == [0, 1, 2, 3, 4]
    # At least four of the five are smiling broadly.
    assert (df.AU12_c == 1).sum() >= 3


def test_no_face_and_unreadable_inputs_give_success_0_rows(analyzer, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    df = analyzer.analyze([sample("free-mountain-vector-01.jpg"), bad, sample("single_face.jpg")])
    assert df.success.tolist() == [0, 0, 1]
    assert df.error.iloc[0] == "no face detected"
    assert str(bad) in df.error.iloc[1]
    assert df.loc[0:1, "AU12_c"].isna().all()


def test_analyze_frame_accepts_bgr_and_gray_arrays(analyzer):
    from aulib.io import read_image

    rgb = read_image(sample("single_face.jpg"))
    a = analyzer.analyze_frame(rgb)
    b = analyzer.analyze_frame(rgb[:, :, ::-1], order="bgr")
    np.testing.assert_allclose(a.AU12_r, b.AU12_r)
    gray = analyzer.analyze_frame(rgb.mean(axis=2).astype(np.uint8))
    assert gray.success.iloc[0] == 1


def test_cropped_mode_on_ckplus_crops(analyzer, ckplus):
    t = ckplus.table
    happy = t[(t.role == "peak") & (t.emotion == "happy")].path.head(5)
    df = analyzer.analyze([ckplus.root / p for p in happy], cropped=True)
    assert df.success.all()
    assert (df.AU12_c == 1).mean() >= 0.8


def test_wrapper_functions():
    from aulib.analyzer import get_img_aus_intensities, get_img_aus_occurrences, get_img_emotions_occurrences

    p = sample("single_face.jpg")
    assert "AU12_c" in get_img_aus_occurrences(p).columns
    assert "AU12_r" in get_img_aus_intensities(p).columns
    assert get_img_emotions_occurrences(p).rule_happiness.iloc[0] == 100


def test_corrupted_model_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "au_svm.npz"
    shutil.copy(MODELS_DIR / "au_svm.npz", bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch") as e:
        AUOccurrence(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(ModelFileError, match="not found"):
        model_path("au_svm.npz", tmp_path / "missing.npz")


def test_model_of_another_kind_or_feature_set_is_refused(tmp_path):
    version = shipped_feature_version()
    bank = LinearBank.load(MODELS_DIR / "au_svm.npz", "svm", version)
    with pytest.raises(ModelFileError, match="is a svm model, expected svr"):
        LinearBank.load(MODELS_DIR / "au_svm.npz", "svr", version)
    other = tmp_path / "other.npz"
    LinearBank(bank.aus_, bank.mean_, bank.scale_, bank.coef_, bank.intercept_, bank.threshold_, "svm",
               "hog-something-else").save(other)
    with pytest.raises(ModelFileError, match="trained on features"):
        LinearBank.load(other, "svm", version)


def test_emotion_rules_percentages():
    rules = EmotionRules([1, 2, 4, 5, 6, 12, 15, 26])
    occ = np.zeros((1, 8))
    occ[0, [4, 5]] = 1  # AU6 + AU12
    pct = dict(zip(PROTOTYPES, rules(occ)[0]))
    assert pct["happiness"] == 100 and pct["sadness"] == 0
    assert rules.modelled["disgust"] == (15,)  # AU9/AU16 not in this bank: left out of the denominator


def test_training_smoke_runs_the_real_training_code(tmp_path):
    if not (DATA / "ckplus48").exists():
        pytest.skip("CK+48 data not available")
    from aulib.datasets.ckplus import CKPlus
    from aulib.train.au import train_svm, train_svr

    subjects = sorted(CKPlus.load(DATA).table.subject.unique())[:8]
    rep = train_svm(DATA, tmp_path, aus=[12, 25], Cs=(1.0,), folds=2, cache_dir=None, subjects=subjects,
                    log=lambda *_: None)
    assert rep["subjects"] == subjects and len(rep["per_au"]) == 2
    assert rep["per_au"][0]["roc_auc"] > 0.6
    rep2 = train_svr(DATA, tmp_path, aus=[12, 25], Cs=(1.0,), folds=2, cache_dir=None, subjects=subjects,
                     log=lambda *_: None)
    assert len(rep2["per_au"]) == 2
    bank = LinearBank.load(tmp_path / "au_svm.npz", "svm", rep["feature_version"])
    assert bank.aus_.tolist() == [12, 25] and bank.n_features == 7500
