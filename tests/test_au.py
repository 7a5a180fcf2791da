"""Shipped AU models: checksums, whole-pipeline predictions on real photos, bad model files, training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aulib.au.codes import AUS
from aulib.au.emotion_rules import PROTOTYPES, EmotionRules
from aulib.au.linear import LinearBank, NotFittedError
from aulib.au.models import AUIntensity, AUOccurrence, shipped_feature_version
from aulib.models import MANIFEST, MODELS_DIR, ModelFileError, model_path, sha256_of, shipped_location

from .conftest import DATA, sample

REFERENCE = Path(__file__).with_name("au_bank_reference.npz")


def test_manifest_checksums_match_the_shipped_files():
    manifest = json.loads(MANIFEST.read_text())
    assert "non-commercial" in manifest["licence"]
    for name, entry in manifest["models"].items():
        assert sha256_of(shipped_location(name, entry)) == entry["sha256"], name
        assert entry["licence"], name
        if "source" in entry:  # third-party weights shipped as they are: where they come from
            assert entry["kind"] in ("face_detector", "landmark_predictor", "iris_landmarks"), name
        else:  # trained here: reproducible by one command, with its figures
            assert entry["command"].startswith("aulib ") and entry["dataset"], name
            assert entry.get("figures") or entry.get("evaluation"), name


def test_shipped_models_cover_the_documented_au_set():
    occ, inten = AUOccurrence.shipped(), AUIntensity.shipped()
    assert occ.aus == inten.aus == list(AUS) == [1, 2, 4, 5, 6, 7, 9, 12, 14, 15, 17, 20, 23, 24, 25, 26, 27]
    assert occ.n_features == 6084 + 136 + 1280  # HOG + geometry + CNN embedding


def test_shipped_banks_compute_the_file_formula_exactly():
    """Features of real faces (single_face.jpg, one face of multi_face.jpg, two CK+48 crops): the
    estimators' outputs equal, to the last bit, the formula evaluated here on the raw file arrays
    (``((X − mean) / scale) · coefᵀ + intercept − threshold``), so the file layout is the model."""
    ref = np.load(REFERENCE)
    X = ref["X"]
    occ, inten = AUOccurrence.shipped(), AUIntensity.shipped()
    assert occ.aus == ref["aus"].tolist()
    with np.load(MODELS_DIR / "au_svm.npz") as z:
        before = ((X - z["mean"]) / z["scale"]) @ z["coef"].T + z["intercept"] - z["threshold"]
    with np.load(MODELS_DIR / "au_svr.npz") as z:
        before_r = np.clip(((X - z["mean"]) / z["scale"]) @ z["coef"].T + z["intercept"], 0.0, 5.0)
    np.testing.assert_array_equal(occ.decision_function(X), before)
    np.testing.assert_array_equal(inten.predict(X), before_r)
    assert occ.predict(X)[0, occ.aus.index(12)] == 1  # the smiling face smiles


def test_bank_save_load_round_trip_is_exact_and_keeps_the_shipped_layout(tmp_path):
    for cls in (AUOccurrence, AUIntensity):
        bank = cls.shipped()
        bank.save(tmp_path / cls.file)
        again = cls.load(tmp_path / cls.file, bank.feature_version_)
        with np.load(MODELS_DIR / cls.file) as shipped, np.load(tmp_path / cls.file) as saved:
            assert saved.files == shipped.files
            for key in shipped.files:
                assert saved[key].dtype == shipped[key].dtype
                np.testing.assert_array_equal(saved[key], shipped[key])
        for name in ("aus_", "mean_", "scale_", "coef_", "intercept_", "threshold_"):
            np.testing.assert_array_equal(getattr(again, name), getattr(bank, name))
        assert again.get_params()["au_numbers"] == tuple(bank.aus)


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
    # a video's rows carry their frame, a row without a face its reason
    clip = get_img_aus_occurrences(sample("face_noface.mov"))
    assert clip.frame.is_monotonic_increasing and clip.frame.nunique() == len(clip) > 1
    no_face = clip[clip.success == 0]
    assert len(no_face) and no_face.error.str.contains("no face").all()


def test_corrupted_model_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "au_svm.npz"
    shutil.copy(MODELS_DIR / "au_svm.npz", bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch") as e:
        AUOccurrence.shipped(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(ModelFileError, match="not found"):
        model_path("au_svm.npz", tmp_path / "missing.npz")


def test_model_of_another_kind_or_feature_set_is_refused(tmp_path):
    version = shipped_feature_version()
    bank = AUOccurrence.load(MODELS_DIR / "au_svm.npz", version)
    with pytest.raises(ModelFileError, match="is a svm model, expected svr"):
        AUIntensity.load(MODELS_DIR / "au_svm.npz", version)
    other = tmp_path / "other.npz"
    bank.feature_version_ = "hog-something-else"
    bank.save(other)
    with pytest.raises(ModelFileError, match="trained on features"):
        AUOccurrence.load(other, version)
    assert LinearBank.peek_version(other) == "hog-something-else"
    with pytest.raises(ModelFileError, match="not a valid aulib .npz model"):
        AUOccurrence.load(tmp_path / "missing.npz")


def test_emotion_rules_percentages():
    rules = EmotionRules([1, 2, 4, 5, 6, 12, 15, 26])
    occ = np.zeros((1, 8))
    occ[0, [4, 5]] = 1  # AU6 + AU12
    pct = dict(zip(PROTOTYPES, rules(occ)[0]))
    assert pct["happiness"] == 100 and pct["sadness"] == 0
    assert rules.modelled["disgust"] == (15,)  # AU9/AU16 not in this bank: left out of the denominator


def _blobs(seed: int, n_subjects: int = 12, per_subject: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small, learnable AU problem: 2 feature blocks, AU a depends on block 1, AU b on block 2.

    Each subject has its own offset (as faces do), so only subject-grouped CV gives honest figures.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_subjects), per_subject)
    y = rng.integers(0, 2, size=(len(groups), 2))
    X = rng.normal(size=(len(groups), 8)) + rng.normal(size=(n_subjects, 8))[groups] * 0.5
    X[:, 0] += 4.0 * y[:, 0]
    X[:, 5] += 4.0 * y[:, 1]
    return X.astype(np.float32), y, groups


def test_occurrence_fit_learns_a_separable_problem_and_predicts_unseen_subjects():
    X, y, groups = _blobs(0)
    est = AUOccurrence(au_numbers=(6, 12), Cs=(0.1, 1.0), blocks=(4, 4), block_weights=(1.0, 1.0), cv=3)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(X)
    est.fit(X, y, groups)
    assert est.aus == [6, 12] and est.coef_.shape == (2, 8) and est.mean_.shape == (8,)
    assert est.threshold_.shape == (2,) and set(est.C_) <= {0.1, 1.0}
    # Each AU leans on its own informative feature.
    assert abs(est.coef_[0, 0]) > 5 * abs(est.coef_[0, 5]) and abs(est.coef_[1, 5]) > 5 * abs(est.coef_[1, 0])
    Xt, yt, _ = _blobs(1)  # new subjects
    accuracy = (est.predict(Xt) == yt).mean(axis=0)
    assert (accuracy > 0.9).all(), accuracy
    np.testing.assert_array_equal(est.predict(Xt), (est.decision_function(Xt) > 0).astype(np.int8))
    from sklearn.base import clone

    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "coef_")
    with pytest.raises(ValueError, match="AU6: all training labels"):
        clone(est).fit(X, np.c_[np.zeros(len(X)), y[:, 1]], groups)


def test_intensity_fit_recovers_a_linear_scale_and_skips_uncoded_rows(tmp_path):
    X, y, groups = _blobs(2)
    target = np.clip(2.5 + 0.6 * (X[:, [0, 5]] - X[:, [0, 5]].mean(0)), 0, 5)
    target[::7, 0] = np.nan  # present, intensity not coded
    est = AUIntensity(au_numbers=(12, 25), Cs=(0.3, 1.0), blocks=(8,), block_weights=(1.0,), cv=3)
    est.fit(X, target, groups)
    pred = est.predict(X)
    assert ((pred >= 0) & (pred <= 5)).all()
    ok = ~np.isnan(target[:, 0])
    assert np.corrcoef(pred[ok, 0], target[ok, 0])[0, 1] > 0.9
    assert np.corrcoef(pred[:, 1], target[:, 1])[0, 1] > 0.9
    est.save(tmp_path / "bank.npz")
    again = AUIntensity.load(tmp_path / "bank.npz")
    np.testing.assert_array_equal(again.predict(X), pred)
    with pytest.raises(ValueError, match=r"y must be \(N, 2\)"):
        est.fit(X, target[:, :1], groups)


def test_training_smoke_runs_the_real_training_code(tmp_path):
    if not (DATA / "ckplus48").exists():
        pytest.skip("CK+48 data not available")
    from aulib.training.au import train_svm, train_svr
    from aulib.training.datasets import CKPlus

    subjects = sorted(CKPlus.load(DATA).table.subject.unique())[:8]
    rep = train_svm(DATA, tmp_path, aus=[12, 25], Cs=(1.0,), folds=2, cache_dir=None, subjects=subjects,
                    log=lambda *_: None)
    assert rep["subjects"] == subjects and len(rep["per_au"]) == 2
    assert rep["per_au"][0]["roc_auc"] > 0.6
    rep2 = train_svr(DATA, tmp_path, aus=[12, 25], Cs=(1.0,), folds=2, cache_dir=None, subjects=subjects,
                     log=lambda *_: None)
    assert len(rep2["per_au"]) == 2
    bank = AUOccurrence.load(tmp_path / "au_svm.npz", rep["feature_version"])
    assert bank.aus == [12, 25] and bank.n_features == 7500
    assert [r["threshold"] for r in rep["per_au"]] == bank.threshold_.astype(float).tolist()
    assert AUIntensity.load(tmp_path / "au_svr.npz", rep2["feature_version"]).aus == [12, 25]


def test_probabilities_are_calibrated_and_coherent_with_occurrence_and_intensity(analyzer):
    """AUxx_p is a probability, AUxx_c = 1 exactly when it passes the AU's p-threshold, and AUxx_r ≥ 1
    exactly when the AU is present (≤ 1 when absent), on real faces and through video smoothing."""
    from aulib.table import intensity_column, occurrence_column, probability_column

    occ = analyzer.occurrence
    assert occ.calibrated
    video_thr, image_thr = analyzer.occurrence_thresholds, analyzer.image_occurrence_thresholds
    np.testing.assert_array_equal(analyzer.svm_thresholds, occ.probability_threshold())
    np.testing.assert_array_equal(video_thr, image_thr)  # video frames fuse the AU heads as images do
    assert ((image_thr > 0) & (image_thr < 1)).all() and (video_thr != analyzer.svm_thresholds).any()
    frames = [(analyzer.analyze(sample(n)), image_thr)
              for n in ("single_face.jpg", "multi_face.jpg", "Image_with_alpha.png")]
    frames.append((analyzer.analyze(sample("WolfgangLanger_Pexels.mp4"), max_frames=60), video_thr))
    for df, thr in frames:
        ok = df[df.success == 1]
        assert len(ok)
        for k, au in enumerate(analyzer.aus):
            p, c, r = ok[probability_column(au)], ok[occurrence_column(au)], ok[intensity_column(au)]
            assert ((p >= 0) & (p <= 1)).all()
            assert ((p > thr[k]) == (c == 1)).all(), au
            assert (r[c == 1] >= 1).all() and (r[c == 0] <= 1).all(), au


def test_intensity_blends_the_svr_with_the_probability_and_stays_coherent():
    """AUxx_r = coherent(w·SVR + (1 − w)·5·AUxx_p): the rule in the README, with its edge cases; and on
    real faces (images fuse the probability with the multitask heads first) the table's intensity is
    that rule applied to the face's own SVR output, fused probability and decision."""
    from aulib.analyzer import Analyzer
    from aulib.au.models import INTENSITY_SVR_WEIGHT as w
    from aulib.au.models import au_intensity, coherent_intensity
    from aulib.io import read_image

    svr, p = np.array([0.2, 3.0, 0.0, 5.0, 0.5]), np.array([0.9, 0.1, 0.0, 1.0, 0.4])
    c = np.array([1, 0, 0, 1, 0])
    blend = w * svr + (1 - w) * 5 * p
    np.testing.assert_allclose(au_intensity(svr, p, None), blend)
    got = au_intensity(svr, p, c)
    np.testing.assert_allclose(got, coherent_intensity(blend, c))
    assert got[0] >= 1 and got[1] <= 1 and got[2] == 0 and got[3] == 5  # present ≥ 1, absent ≤ 1, range 0–5
    np.testing.assert_allclose(au_intensity(svr, None, None), svr)  # no calibrated probability: the SVR alone
    assert 0.5 <= w < 1
    a = Analyzer()
    faces = a.get(read_image(sample("multi_face.jpg")))
    assert len(faces) >= 4
    for f in faces:
        np.testing.assert_allclose(f.au_intensity, au_intensity(f.au_svr, f.au_prob, f.au_occurrence), atol=1e-6)


def test_platt_scaling_recovers_a_known_calibration():
    """Margins drawn from a known logistic model: the fitted (a, b) come back and the ECE is small."""
    from aulib.au.models import fit_platt
    from aulib.training.au import calibration_error

    rng = np.random.default_rng(0)
    m = rng.normal(0, 2, 20000)
    y = (rng.random(m.size) < 1 / (1 + np.exp(-(1.5 * m - 0.5)))).astype(int)
    a, b = fit_platt(m, y)
    assert a == pytest.approx(1.5, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)
    assert calibration_error(y, 1 / (1 + np.exp(-(a * m + b)))) < 0.02
    assert calibration_error(y, np.full(m.size, 0.9)) > 0.3


def test_multitask_heads_and_svms_vote_together():
    """With the multitask network, the AUs it shares with the SVMs are decided on the mean of both
    probabilities at the mean of both thresholds; the answer stays coherent (p, c, r, rules)."""
    from aulib.analyzer import Analyzer
    from aulib.io import read_image
    from aulib.table import intensity_column, occurrence_column, probability_column, rule_column

    a = Analyzer(emotion_model="multitask")
    assert a.fusion is not None
    svm_only = Analyzer(emotion_model="none", tta=False)  # images otherwise fuse the heads too
    img = read_image(sample("multi_face.jpg"))
    fused, alone = a.get(img), svm_only.get(img)
    assert len(fused) == len(alone) >= 4
    thr = a.occurrence_thresholds
    for f, g in zip(fused, alone):
        for j, au in enumerate(f.mt_aus):
            k = f.aus.index(au)
            assert f.au_prob[k] == pytest.approx((g.au_prob[k] + f.mt_au_probs[j]) / 2, abs=1e-6)
        assert ((f.au_prob > thr) == (f.au_occurrence == 1)).all()
        assert (f.au_intensity[f.au_occurrence == 1] >= 1).all() and (f.au_intensity[f.au_occurrence == 0] <= 1).all()
    df = a.analyze_frame(img)
    assert ((df[probability_column(12)] > thr[a.aus.index(12)]) == (df[occurrence_column(12)] == 1)).all()
    assert (df[intensity_column(12)][df[occurrence_column(12)] == 1] >= 1).all()
    assert df[rule_column("happiness")].notna().all()
