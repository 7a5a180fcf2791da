"""``aulib train svm|svr``: fit the AU banks on CK+, with subject-independent figures.

Why this design:

* **Same features as inference.** Every CK+ crop goes through :meth:`FacePipeline.cropped` and
  :func:`aulib.au.features.features_matrix` — the code path ``Analyzer`` uses
  (:mod:`aulib.training.crops`).
* **Subject-independent figures.** The figures are out-of-fold over ``GroupKFold`` subject folds:
  each outer training fold gets its own :meth:`AUOccurrence.fit` / :meth:`AUIntensity.fit`, which
  choose C (and the SVM thresholds) by an inner subject-grouped CV, so no figure ever saw its test
  subjects, not even through the feature scaling. The shipped bank is one more ``fit`` on everyone.
* The estimators (:mod:`aulib.au.models`) explain the solver, the block weighting and the extra
  training copies (each face mirrored, and once with a synthetic occluder: same F1 on clean faces,
  +0.10 on occluded ones, ``aulib evaluate occlusion``); measured in the same nested CV,
  HOG+geometry alone reach ≈ 0.72 mean F1 and adding the FER+ CNN embedding ≈ 0.76 (see
  :mod:`aulib.au.embedding`).
* Tried and dropped: stacking a second-level logistic regression on all 17 AUs' out-of-fold margins
  (AU co-occurrence) lowered the mean F1 from 0.782 to 0.737 (it helps AU06/AU07, hurts the rare AUs);
  test-time mirror averaging (each face's margin averaged with its mirror image's, the per-fold models
  of the same nested CV) lowered it from 0.781 to 0.768 — the mirrored faces alone score 0.754, so
  the extra view adds noise rather than a second opinion (the emotion CNN's flip averaging does help).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score, mean_absolute_error, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import GroupKFold

from aulib.au.codes import AUS
from aulib.au.embedding import EmotionEmbeddingCNN
from aulib.au.features import feature_version
from aulib.au.models import INTENSITY_SVR_WEIGHT, AUIntensity, AUOccurrence, au_intensity
from aulib.training import CACHE, REPORTS
from aulib.training.crops import crop_features
from aulib.training.datasets import CKPlus, au_counts

Log = Callable[[str], None]


def load_features(data_dir: str | Path, cache_dir: str | Path | None, subjects: Sequence[str] | None = None,
                  cnn: str = "emotion_cnn.onnx") -> tuple[CKPlus, np.ndarray, np.ndarray, str]:
    """CK+ frames with AU codes whose face could be fitted, their features, the features of their
    training copies (2, N, D: mirrored, occluded; see :func:`crop_features`) and the feature version."""
    ck = CKPlus.load(data_dir).with_facs()
    if subjects:
        ck = ck.of_subjects(subjects)
    embedder = EmotionEmbeddingCNN(name=cnn)
    X, Xm, Xo, ok = crop_features(ck.image_paths(), cache_dir, embedder)
    return ck.take(ok), X[ok], np.stack([Xm[ok], Xo[ok]]), feature_version(embedder.sha256)


def _out_of_fold(estimator: AUOccurrence | AUIntensity, X: np.ndarray, Y: np.ndarray, groups: np.ndarray,
                 Xm: np.ndarray, folds: int, *outputs: str) -> list[np.ndarray]:
    """(N, K) ``outputs`` (method names) of ``estimator`` fitted without each sample's subjects."""
    out = [np.zeros(Y.shape) for _ in outputs]
    for tr, te in GroupKFold(folds).split(X, groups=groups):
        fold = clone(estimator).fit(X[tr], Y[tr], groups[tr], [c[tr] for c in Xm])
        for o, name in zip(out, outputs):
            o[te] = getattr(fold, name)(X[te])
    return out


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |observed rate − mean probability| over ``bins`` equal-width
    probability bins, weighted by how many predictions fall in each."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            err += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(err / len(y))


def occurrence_estimator(version: str, cv: int, aus: Sequence[int] = AUS, Cs: Sequence[float] = (0.3, 1.0, 3.0),
                         geo_weight: float = 0.5, emb_weight: float = 0.5) -> AUOccurrence:
    """The SVM bank as ``aulib train svm`` fits it (also refitted per fold by ``aulib train multitask``)."""
    return AUOccurrence(au_numbers=tuple(aus), Cs=tuple(Cs), block_weights=(1.0, geo_weight, emb_weight),
                        feature_version=version, cv=cv)


def train_svm(data_dir: str | Path, out: str | Path, aus: Sequence[int] = AUS, Cs: Sequence[float] = (0.3, 1.0, 3.0),
              geo_weight: float = 0.5, emb_weight: float = 0.5, folds: int = 5,
              cache_dir: str | Path | None = CACHE, subjects: Sequence[str] | None = None,
              cnn: str = "emotion_cnn.onnx", log: Log = print) -> dict:
    """Fit one class-balanced linear SVM per AU; write ``au_svm.npz`` into ``out`` and return the report."""
    t0 = time.time()
    ck, X, Xm, version = load_features(data_dir, cache_dir, subjects, cnn)
    Y, groups = ck.occurrence(aus), ck.subjects
    folds = min(folds, len(np.unique(groups)))
    params = dict(aus=aus, Cs=Cs, geo_weight=geo_weight, emb_weight=emb_weight)
    scores, probs = _out_of_fold(occurrence_estimator(version, max(2, folds - 1), **params), X, Y, groups, Xm,
                                 folds, "decision_function", "predict_proba")
    bank = occurrence_estimator(version, folds, **params).fit(X, Y, groups, list(Xm))
    n = len(X)
    per_au = []
    for k, au in enumerate(aus):
        y, s = Y[:, k], scores[:, k]
        pred = s > 0
        row = {
            "au": au, "positives": int(y.sum()), "n": int(n), "C": float(bank.C_[k]),
            "threshold": float(bank.threshold_[k]),
            "f1": float(f1_score(y, pred, zero_division=0)),
            "precision": float(precision_score(y, pred, zero_division=0)),
            "recall": float(recall_score(y, pred, zero_division=0)),
            "roc_auc": float(roc_auc_score(y, s)) if 0 < y.sum() < n else float("nan"),
            "ece": calibration_error(y, probs[:, k]), "brier": float(np.mean((probs[:, k] - y) ** 2)),
            "p_threshold": float(bank.probability_threshold()[k]),
        }
        per_au.append(row)
        log(f"AU{au:02d} F1 {row['f1']:.3f} P {row['precision']:.3f} R {row['recall']:.3f} "
            f"AUC {row['roc_auc']:.3f} (C={row['C']}, thr={row['threshold']:+.2f}, pos={row['positives']})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bank.save(out / AUOccurrence.file)
    report = {
        "model": AUOccurrence.file, "per_au": per_au, "mean_f1": float(np.mean([r["f1"] for r in per_au])),
        "mean_roc_auc": float(np.nanmean([r["roc_auc"] for r in per_au])),
        "ece_all": calibration_error(Y.ravel(), probs.ravel()),
        "mean_ece": float(np.mean([r["ece"] for r in per_au])),
        "subjects": sorted(np.unique(groups).tolist()), "n_images": int(n), "folds": folds,
        "geo_weight": geo_weight, "emb_weight": emb_weight, "Cs": list(Cs), "feature_version": version,
        "au_counts": au_counts(ck).to_dict(orient="records"), "seconds": round(time.time() - t0, 1),
    }
    log(f"mean out-of-fold F1 over {len(aus)} AUs: {report['mean_f1']:.3f}")
    return report


def _fusion_lines(r: dict, svm: dict | None = None) -> list[str]:
    """The images' AU decision (SVMs + multitask heads, :mod:`aulib.au.fusion`) under subject-grouped CV; when
    the SVM section (``svm``) comes from a later run than these figures, the section says so."""
    lines = [f"## Images: SVMs and multitask heads voting together — mean F1 **{r['mean_f1_fused']:.3f}**", "",
             f"What `aulib analyze` decides for images and crops (and for every frame with `--emotion-model "
             f"multitask`): `AUxx_p` = mean of the SVM's calibrated probability and the multitask network's AU "
             f"head, Platt-scaled, present above the mean of their thresholds (the SVM's p-threshold, the "
             f"head's 0.5 on the calibrated scale). The heads' Platt scaling of each fold is fitted on the other "
             f"folds' out-of-fold head outputs (the shipped one on all of them). "
             f"Protocol: {r['folds']} subject-grouped folds (the same GroupKFold as above, {r['subjects']} "
             f"subjects, {r['n_images']} images); in each, the SVM bank (its own inner CV for C and thresholds) "
             f"and the network ({r['epochs']} epochs, fixed schedule, no epoch selection"
             + (f", started from `{r['init_from']}`" if "init_from" in r else "") + ") are fitted on the "
             "training subjects only and scored on the held-out ones (`aulib train multitask`, "
             "`aulib.training.multitask`). Heads alone at 0.5. ECE: calibration error of the fused `AUxx_p`, "
             f"{r['ece_fused_all']:.3f} over all decisions (10 bins).", "",
             f"Mean F1: SVMs {r['mean_f1_svm']:.3f}, heads {r['mean_f1_heads']:.3f}, fused "
             f"**{r['mean_f1_fused']:.3f}**."
             + (f" Without the heads' Platt scaling: fused F1 {r['mean_f1_fused_uncalibrated']:.3f}, ECE "
                f"{r['ece_fused_uncalibrated_all']:.3f} (the heads' own ECE {r['ece_heads_uncalibrated_all']:.3f} "
                f"→ {r['ece_heads_all']:.3f} scaled): the pos-weighted heads overstate presence, and their mean "
                "with the SVMs' probability would not be a probability." if "ece_heads_all" in r else ""), "",
             "| AU | positives | F1 SVMs | F1 heads | F1 fused | ECE fused |", "|---|---|---|---|---|---|"]
    lines += [f"| AU{a['au']:02d} | {a['positives']} | {a['f1_svm']:.3f} | {a['f1_heads']:.3f} | "
              f"{a['f1_fused']:.3f} | {a['ece_fused']:.3f} |" for a in r["per_au"]]
    if svm and abs(svm["mean_f1"] - r["mean_f1_svm"]) > 5e-4:
        lines += ["", "**Measured before the SVM bank above was retrained** (its folds' SVMs scored "
                  f"{r['mean_f1_svm']:.3f} here against {svm['mean_f1']:.3f} above): the heads and their fusion "
                  "have not been re-run on its features since (`aulib train multitask`, ≈ 1 h on a CPU)."]
    return lines + [""]


def icc_3_1(y: np.ndarray, yhat: np.ndarray) -> float:
    """ICC(3,1): two-way mixed, consistency, single rater (Shrout & Fleiss 1979)."""
    data = np.stack([y, yhat], axis=1).astype(float)
    n, k = data.shape
    grand = data.mean()
    ss_rows = k * ((data.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((data.mean(0) - grand) ** 2).sum()
    ss_err = ((data - grand) ** 2).sum() - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_err = ss_err / ((n - 1) * (k - 1))
    denom = ms_rows + (k - 1) * ms_err
    return float((ms_rows - ms_err) / denom) if denom > 0 else float("nan")


def train_svr(data_dir: str | Path, out: str | Path, aus: Sequence[int] = AUS, Cs: Sequence[float] = (0.1, 0.3, 1.0),
              geo_weight: float = 0.5, emb_weight: float = 0.5, folds: int = 5,
              cache_dir: str | Path | None = CACHE, subjects: Sequence[str] | None = None,
              cnn: str = "emotion_cnn.onnx", log: Log = print) -> dict:
    """Fit one linear ε-SVR per AU on the 0–5 scale; write ``au_svr.npz`` into ``out`` and return the report.

    Targets: absent = 0, coded A–E = 1–5; "present, intensity not coded" is left out (of the fits
    and of the figures). C is chosen by a ``folds - 1``-fold subject-grouped CV inside ``fit``.
    """
    t0 = time.time()
    ck, X, Xm, version = load_features(data_dir, cache_dir, subjects, cnn)
    Y, groups = ck.intensity(aus), ck.subjects
    folds = min(folds, len(np.unique(groups)))
    est = AUIntensity(au_numbers=tuple(aus), Cs=tuple(Cs), block_weights=(1.0, geo_weight, emb_weight),
                      cv=max(2, folds - 1), feature_version=version)
    (oof,) = _out_of_fold(est, X, Y, groups, Xm, folds, "predict")
    # AUxx_r as the pipeline outputs it combines the SVR with the occurrence SVMs' probability and
    # decision (aulib.au.models.au_intensity): the SVM bank is refitted on the same folds to score that too
    occ = occurrence_estimator(version, max(2, folds - 1), aus, geo_weight=geo_weight, emb_weight=emb_weight)
    prob, present = _out_of_fold(occ, X, ck.occurrence(aus), groups, Xm, folds, "predict_proba", "predict")
    output = au_intensity(oof, prob, present)
    bank = clone(est).fit(X, Y, groups, list(Xm))
    per_au = []

    def agreement(yt: np.ndarray, yp: np.ndarray) -> dict[str, float]:
        coded = yt > 0
        return {"pearson_r": float(np.corrcoef(yt, yp)[0, 1]) if yt.std() > 0 and yp.std() > 0 else float("nan"),
                "mae": float(mean_absolute_error(yt, yp)),
                "mae_coded": float(mean_absolute_error(yt[coded], yp[coded])) if coded.any() else float("nan"),
                "icc_3_1": icc_3_1(yt, yp)}

    for k, au in enumerate(aus):
        idx = np.flatnonzero(~np.isnan(Y[:, k]))
        yt = Y[idx, k]
        row = {"au": au, "n": int(len(idx)), "coded_positives": int((yt > 0).sum()), "C": float(bank.C_[k]),
               **agreement(yt, oof[idx, k]),
               **{f"output_{m}": v for m, v in agreement(yt, output[idx, k]).items()}}
        per_au.append(row)
        log(f"AU{au:02d} r {row['pearson_r']:.3f} MAE {row['mae']:.3f} ICC {row['icc_3_1']:.3f} "
            f"(C={row['C']}, coded={row['coded_positives']}); as output: r {row['output_pearson_r']:.3f} "
            f"MAE {row['output_mae']:.3f} ICC {row['output_icc_3_1']:.3f}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bank.save(out / AUIntensity.file)
    report = {
        "model": AUIntensity.file, "per_au": per_au,
        "mean_pearson_r": float(np.nanmean([r["pearson_r"] for r in per_au])),
        "mean_mae": float(np.mean([r["mae"] for r in per_au])),
        "mean_icc_3_1": float(np.nanmean([r["icc_3_1"] for r in per_au])),
        **{f"mean_output_{m}": float(np.nanmean([r[f"output_{m}"] for r in per_au]))
           for m in ("pearson_r", "mae", "icc_3_1")},
        "output_rule": f"coherent({INTENSITY_SVR_WEIGHT} * SVR + {1 - INTENSITY_SVR_WEIGHT} * 5 * AUxx_p)",
        "subjects": sorted(np.unique(groups).tolist()), "n_images": int(len(X)), "folds": folds,
        "geo_weight": geo_weight, "emb_weight": emb_weight, "Cs": list(Cs), "feature_version": version,
        "seconds": round(time.time() - t0, 1),
    }
    log(f"mean out-of-fold r {report['mean_pearson_r']:.3f}, MAE {report['mean_mae']:.3f}, "
        f"ICC(3,1) {report['mean_icc_3_1']:.3f}; AUxx_r as output: r {report['mean_output_pearson_r']:.3f}, "
        f"MAE {report['mean_output_mae']:.3f}, ICC(3,1) {report['mean_output_icc_3_1']:.3f}")
    return report


def write_report(svm: dict | None, svr: dict | None, reports_dir: str | Path = REPORTS,
                 fusion: dict | None = None) -> Path:
    """Write ``reports/au.md`` and ``reports/au.json`` from the training reports (generated, never hand-edited);
    a section left None keeps the one already written."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    jpath = reports_dir / "au.json"
    try:  # a damaged au.json (hand-edited, cut short) must not fail a training whose models are already in place
        old = json.loads(jpath.read_text()) if jpath.exists() else {}
    except (OSError, ValueError):
        old = {}
    if not isinstance(old, dict):
        old = {}
    data = {"svm": svm or old.get("svm"), "svr": svr or old.get("svr"), "fusion": fusion or old.get("fusion")}
    jpath.write_text(json.dumps(data, indent=2) + "\n")
    lines = ["# AU models — subject-independent evaluation on CK+", "",
             "Generated by `aulib train svm` / `aulib train svr` / `aulib train multitask` (do not edit). "
             "All figures are out-of-fold "
             "over subject-grouped folds (GroupKFold, no subject in both train and test); C and thresholds "
             "are chosen inside each training fold. Data: CK+ (non-commercial research licence).", ""]
    if data["svm"]:
        s = data["svm"]
        lines += [f"## Occurrence (linear SVM per AU) — mean F1 **{s['mean_f1']:.3f}**, "
                  f"mean ROC-AUC {s['mean_roc_auc']:.3f}", "",
                  f"{s['n_images']} images of {len(s['subjects'])} subjects, {s['folds']} folds, "
                  f"features `{s['feature_version']}`.", ""]
        if "ece_all" in s:
            lines += [f"`AUxx_p` calibration (Platt scaling fitted on each training fold's inner out-of-fold "
                      f"margins, scored on the held-out subjects): expected calibration error "
                      f"**{s['ece_all']:.3f}** over all AU decisions (10 bins), mean per AU {s['mean_ece']:.3f}. "
                      "`AUxx_c` = 1 exactly when `AUxx_p` exceeds the AU's p-threshold (the F1-tuned margin "
                      "0 as a probability).", ""]
        lines += ["| AU | positives | F1 | precision | recall | ROC-AUC | ECE | Brier | p-threshold | C | threshold |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| AU{r['au']:02d} | {r['positives']} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} "
                  f"| {r['roc_auc']:.3f} | {r.get('ece', float('nan')):.3f} | {r.get('brier', float('nan')):.3f} "
                  f"| {r.get('p_threshold', float('nan')):.2f} | {r['C']} | {r['threshold']:+.2f} |"
                  for r in s["per_au"]]
        lines += ["", "### Positive counts in the visible CK+ labels (unique images, duplicates removed)", "",
                  "| AU | peak images | peak + peak-1 + peak-2 | intensity coded |", "|---|---|---|---|"]
        lines += [f"| AU{c['au']:02d} | {c['peak_pos']} | {c['all_pos']} | {c['intensity_coded']} |"
                  for c in s["au_counts"] if c["all_pos"] > 0]
        lines.append("")
    if data["fusion"]:
        lines += _fusion_lines(data["fusion"], data["svm"])
    if data["svr"]:
        s = data["svr"]
        lines += [f"## Intensity (linear SVR per AU, 0–5) — mean r **{s['mean_pearson_r']:.3f}**, "
                  f"MAE {s['mean_mae']:.3f}, ICC(3,1) {s['mean_icc_3_1']:.3f}", ""]
        if "mean_output_pearson_r" in s:
            lines += [f"`AUxx_r` as aulib outputs it, `{s['output_rule']}` (`coherent`: ≥ 1 exactly when the AU "
                      f"is present; `aulib.au.models.au_intensity`), scored on the same folds with the SVMs "
                      f"refitted per fold: mean r **{s['mean_output_pearson_r']:.3f}**, MAE "
                      f"{s['mean_output_mae']:.3f}, ICC(3,1) **{s['mean_output_icc_3_1']:.3f}** (the last columns). "
                      "Images fuse the probability with the multitask heads first; these figures use the SVMs'.",
                      ""]
        out = "output_pearson_r" in s["per_au"][0]
        lines += ["| AU | images | coded | Pearson r | MAE | MAE (coded) | ICC(3,1) | C |"
                  + (" output r | output MAE | output ICC |" if out else ""),
                  "|---|---|---|---|---|---|---|---|" + ("---|---|---|" if out else "")]
        lines += [f"| AU{r['au']:02d} | {r['n']} | {r['coded_positives']} | {r['pearson_r']:.3f} | {r['mae']:.3f} "
                  f"| {r['mae_coded']:.3f} | {r['icc_3_1']:.3f} | {r['C']} |"
                  + (f" {r['output_pearson_r']:.3f} | {r['output_mae']:.3f} | {r['output_icc_3_1']:.3f} |"
                     if out else "") for r in s["per_au"]]
        lines.append("")
    md = reports_dir / "au.md"
    md.write_text("\n".join(lines))
    return md
