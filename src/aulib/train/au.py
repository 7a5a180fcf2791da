"""Training of the AU occurrence SVMs and intensity SVRs on CK+, with subject-grouped CV.

Why this design:

* **Same features as inference.** Every CK+ crop goes through :meth:`FacePipeline.cropped` and
  :func:`aulib.au.features.face_features` — the code path ``Analyzer`` uses.
* **Subject-independent figures.** All splits are ``GroupKFold`` over subjects. Hyper-parameters
  (C) and decision thresholds are chosen *inside* each outer training fold (nested CV), so the
  reported out-of-fold F1 never saw its test subjects.
* **Linear SVM solved in the dual.** With ~2,000 samples and 6,220 features a precomputed linear
  kernel makes libsvm fit in ~0.1 s; the primal weights ``w = Σ αᵢ yᵢ xᵢ`` are recovered and
  stored as plain arrays (:class:`aulib.au.linear.LinearBank`), so inference is one matrix product.
* **Three feature blocks, weighted.** Kernel = HOG kernel + ``geo_weight`` × geometry kernel +
  ``emb_weight`` × CNN-embedding kernel (each normalised by its dimension), so the 136 landmark
  coordinates are not drowned by 6,084 HOG values. Measured in the same nested CV: HOG+geometry
  alone ≈ 0.72 mean F1, with the FER+ CNN embedding ≈ 0.76 (see :mod:`aulib.au.embedding`).
* **Mirrored training copies** (the template is symmetric) double the data for left/right AUs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, mean_absolute_error, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.svm import SVC, SVR

from aulib.au.embedding import EmotionEmbeddingCNN
from aulib.au.features import EMB_DIM, GEO_DIM, HOG_DIM, feature_version
from aulib.au.linear import LinearBank
from aulib.datasets.ckplus import DEFAULT_AUS, CKPlus, au_counts
from aulib.train.features import crop_features

THRESHOLDS = np.linspace(-1.0, 1.0, 41)


@dataclass
class Prepared:
    """Scaled features (originals then mirrors), the scaling, and the CK+ table."""

    Z: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n: int
    ck: CKPlus
    version: str


def prepare(data_dir: str | Path, cache_dir: str | Path | None, geo_weight: float, emb_weight: float,
            subjects: list[str] | None = None, cnn: str = "emotion_cnn.onnx") -> Prepared:
    """Load CK+, compute (cached) features, and scale them so a dot product is the block kernel."""
    ck = CKPlus.load(data_dir)
    if subjects:
        ck.table = ck.table[ck.table.subject.isin(subjects)].reset_index(drop=True)
    embedder = EmotionEmbeddingCNN(name=cnn)
    X, Xm, ok = crop_features(ck.image_paths(), cache_dir, embedder)
    if not ok.all():
        ck.table = ck.table[ok].reset_index(drop=True)
        X, Xm = X[ok], Xm[ok]
    mean = X.mean(0)
    sd = X.std(0) + 1e-3
    assert X.shape[1] == HOG_DIM + GEO_DIM + EMB_DIM
    block = np.r_[np.full(HOG_DIM, np.sqrt(HOG_DIM)), np.full(GEO_DIM, np.sqrt(GEO_DIM / geo_weight)),
                  np.full(EMB_DIM, np.sqrt(EMB_DIM / emb_weight))]
    scale = (sd * block).astype(np.float32)
    Z = np.vstack([(X - mean) / scale, (Xm - mean) / scale]).astype(np.float32)
    return Prepared(Z, mean.astype(np.float32), scale, len(X), ck, feature_version(embedder.sha256))


def _fit_svm(K: np.ndarray, y: np.ndarray, idx: np.ndarray, C: float, n: int) -> SVC:
    both = np.r_[idx, idx + n]
    return SVC(kernel="precomputed", C=C, class_weight="balanced").fit(K[np.ix_(both, both)], np.r_[y[idx], y[idx]])


def _scores(model: SVC, K: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray, n: int) -> np.ndarray:
    both = np.r_[train_idx, train_idx + n]
    return model.decision_function(K[np.ix_(test_idx, both)])


def _best_threshold(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    f1s = [f1_score(y, s > t, zero_division=0) for t in THRESHOLDS]
    i = int(np.argmax(f1s))
    return float(THRESHOLDS[i]), float(f1s[i])


def _oof(K, y, groups, idx, C, n, folds) -> np.ndarray:
    """Out-of-fold scores over ``idx`` (subject-grouped)."""
    s = np.zeros(len(idx))
    for tr, te in GroupKFold(folds).split(idx, y[idx], groups[idx]):
        m = _fit_svm(K, y, idx[tr], C, n)
        s[te] = _scores(m, K, idx[tr], idx[te], n)
    return s


def _select(K, y, groups, idx, Cs, n, folds) -> tuple[float, float, float]:
    """Choose C and threshold by grouped CV on ``idx``: returns (C, threshold, inner F1)."""
    best = (Cs[0], 0.0, -1.0)
    for C in Cs:
        t, f = _best_threshold(y[idx], _oof(K, y, groups, idx, C, n, folds))
        if f > best[2]:
            best = (C, t, f)
    return best


def _primal(model: SVC, Z: np.ndarray, train_idx: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """Primal weights of a precomputed-linear-kernel SVC trained on rows ``train_idx`` (+ mirrors)."""
    both = np.r_[train_idx, train_idx + n]
    sv = both[model.support_]
    w = model.dual_coef_[0] @ Z[sv]
    return w.astype(np.float32), float(model.intercept_[0])


def train_svm(data_dir: str | Path, out: str | Path, aus: list[int] | None = None, Cs=(0.3, 1.0, 3.0),
              geo_weight: float = 0.5, emb_weight: float = 0.5, folds: int = 5,
              cache_dir: str | Path | None = "cache", subjects: list[str] | None = None,
              cnn: str = "emotion_cnn.onnx", log=print) -> dict:
    """Train one class-balanced linear SVM per AU; write ``au_svm.npz`` and return the report."""
    t0 = time.time()
    aus = aus or DEFAULT_AUS
    p = prepare(data_dir, cache_dir, geo_weight, emb_weight, subjects, cnn)
    K = p.Z @ p.Z.T
    Y = p.ck.occurrence(aus)
    groups = p.ck.groups()
    n = p.n
    all_idx = np.arange(n)
    folds = min(folds, len(np.unique(groups)))
    per_au, coefs, intercepts, thresholds = [], [], [], []
    for k, au in enumerate(aus):
        y = Y[:, k]
        oof = np.zeros(n)
        oof_pred = np.zeros(n, bool)
        for tr, te in GroupKFold(folds).split(all_idx, y, groups):
            C, t, _ = _select(K, y, groups, tr, Cs, n, max(2, folds - 1))
            m = _fit_svm(K, y, tr, C, n)
            oof[te] = _scores(m, K, tr, te, n)
            oof_pred[te] = oof[te] > t
        C, t, inner = _select(K, y, groups, all_idx, Cs, n, folds)
        final = _fit_svm(K, y, all_idx, C, n)
        w, b = _primal(final, p.Z, all_idx, n)
        coefs.append(w)
        intercepts.append(b)
        thresholds.append(t)
        row = {
            "au": au, "positives": int(y.sum()), "n": int(n), "C": C, "threshold": t,
            "f1": float(f1_score(y, oof_pred, zero_division=0)),
            "precision": float(precision_score(y, oof_pred, zero_division=0)),
            "recall": float(recall_score(y, oof_pred, zero_division=0)),
            "roc_auc": float(roc_auc_score(y, oof)) if 0 < y.sum() < n else float("nan"),
        }
        per_au.append(row)
        log(f"AU{au:02d} F1 {row['f1']:.3f} P {row['precision']:.3f} R {row['recall']:.3f} "
            f"AUC {row['roc_auc']:.3f} (C={C}, thr={t:+.2f}, pos={row['positives']})")
    bank = LinearBank(np.array(aus), p.mean, p.scale, np.stack(coefs), np.array(intercepts),
                      np.array(thresholds), "svm", p.version)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bank.save(out / "au_svm.npz")
    report = {
        "model": "au_svm.npz", "per_au": per_au, "mean_f1": float(np.mean([r["f1"] for r in per_au])),
        "mean_roc_auc": float(np.nanmean([r["roc_auc"] for r in per_au])),
        "subjects": sorted(np.unique(groups).tolist()), "n_images": int(n), "folds": folds,
        "geo_weight": geo_weight, "emb_weight": emb_weight, "Cs": list(Cs), "feature_version": p.version,
        "au_counts": au_counts(p.ck).to_dict(orient="records"), "seconds": round(time.time() - t0, 1),
    }
    log(f"mean out-of-fold F1 over {len(aus)} AUs: {report['mean_f1']:.3f}")
    return report


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


def train_svr(data_dir: str | Path, out: str | Path, aus: list[int] | None = None, Cs=(0.1, 0.3, 1.0),
              geo_weight: float = 0.5, emb_weight: float = 0.5, folds: int = 5,
              cache_dir: str | Path | None = "cache", subjects: list[str] | None = None,
              cnn: str = "emotion_cnn.onnx", log=print) -> dict:
    """Train one linear ε-SVR per AU on the 0–5 scale; write ``au_svr.npz`` and return the report.

    Targets: absent = 0, coded A–E = 1–5; "present, intensity not coded" is excluded. C is chosen
    by subject-grouped CV (lowest MAE) inside each outer fold; figures are out-of-fold.
    """
    t0 = time.time()
    aus = aus or DEFAULT_AUS
    p = prepare(data_dir, cache_dir, geo_weight, emb_weight, subjects, cnn)
    K = p.Z @ p.Z.T
    Yi = p.ck.intensity(aus)
    groups = p.ck.groups()
    n = p.n
    folds = min(folds, len(np.unique(groups)))

    def fit(idx, y, C):
        both = np.r_[idx, idx + n]
        return SVR(kernel="precomputed", C=C, epsilon=0.2).fit(K[np.ix_(both, both)], np.r_[y[idx], y[idx]])

    def predict(m, tr, te):
        return np.clip(m.predict(K[np.ix_(te, np.r_[tr, tr + n])]), 0, 5)

    def choose(idx, y):
        best = (Cs[0], np.inf)
        for C in Cs:
            pred = np.zeros(len(idx))
            inner = max(2, min(folds - 1, len(np.unique(groups[idx]))))
            for tr, te in GroupKFold(inner).split(idx, y[idx], groups[idx]):
                pred[te] = predict(fit(idx[tr], y, C), idx[tr], idx[te])
            mae = mean_absolute_error(y[idx], pred)
            if mae < best[1]:
                best = (C, mae)
        return best[0]

    per_au, coefs, intercepts = [], [], []
    for k, au in enumerate(aus):
        y_all = Yi[:, k]
        idx = np.flatnonzero(~np.isnan(y_all))
        y = np.nan_to_num(y_all)
        oof = np.zeros(n)
        for tr, te in GroupKFold(folds).split(idx, y[idx], groups[idx]):
            C = choose(idx[tr], y)
            oof[idx[te]] = predict(fit(idx[tr], y, C), idx[tr], idx[te])
        C = choose(idx, y)
        final = fit(idx, y, C)
        both = np.r_[idx, idx + n]
        w = (final.dual_coef_[0] @ p.Z[both[final.support_]]).astype(np.float32)
        coefs.append(w)
        intercepts.append(float(final.intercept_[0]))
        yt, yp = y[idx], oof[idx]
        coded = yt > 0
        row = {
            "au": au, "n": int(len(idx)), "coded_positives": int(coded.sum()), "C": C,
            "pearson_r": float(np.corrcoef(yt, yp)[0, 1]) if yt.std() > 0 else float("nan"),
            "mae": float(mean_absolute_error(yt, yp)),
            "mae_coded": float(mean_absolute_error(yt[coded], yp[coded])) if coded.any() else float("nan"),
            "icc_3_1": icc_3_1(yt, yp),
        }
        per_au.append(row)
        log(f"AU{au:02d} r {row['pearson_r']:.3f} MAE {row['mae']:.3f} ICC {row['icc_3_1']:.3f} "
            f"(C={C}, coded={row['coded_positives']})")
    bank = LinearBank(np.array(aus), p.mean, p.scale, np.stack(coefs), np.array(intercepts),
                      np.zeros(len(aus)), "svr", p.version)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bank.save(out / "au_svr.npz")
    report = {
        "model": "au_svr.npz", "per_au": per_au,
        "mean_pearson_r": float(np.nanmean([r["pearson_r"] for r in per_au])),
        "mean_mae": float(np.mean([r["mae"] for r in per_au])),
        "mean_icc_3_1": float(np.nanmean([r["icc_3_1"] for r in per_au])),
        "subjects": sorted(np.unique(groups).tolist()), "n_images": int(n), "folds": folds,
        "geo_weight": geo_weight, "emb_weight": emb_weight, "Cs": list(Cs), "feature_version": p.version,
        "seconds": round(time.time() - t0, 1),
    }
    log(f"mean out-of-fold r {report['mean_pearson_r']:.3f}, MAE {report['mean_mae']:.3f}, "
        f"ICC(3,1) {report['mean_icc_3_1']:.3f}")
    return report


def write_report(svm: dict | None, svr: dict | None, reports_dir: str | Path = "reports") -> Path:
    """Write ``reports/au.md`` and ``reports/au.json`` from the training reports (generated, never hand-edited)."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    jpath = reports_dir / "au.json"
    old = json.loads(jpath.read_text()) if jpath.exists() else {}
    data = {"svm": svm or old.get("svm"), "svr": svr or old.get("svr")}
    jpath.write_text(json.dumps(data, indent=2) + "\n")
    lines = ["# AU models — subject-independent evaluation on CK+", "",
             "Generated by `aulib train svm` / `aulib train svr` (do not edit). All figures are out-of-fold "
             "over subject-grouped folds (GroupKFold, no subject in both train and test); C and thresholds "
             "are chosen inside each training fold. Data: CK+ (non-commercial research licence).", ""]
    if data["svm"]:
        s = data["svm"]
        lines += [f"## Occurrence (linear SVM per AU) — mean F1 **{s['mean_f1']:.3f}**, "
                  f"mean ROC-AUC {s['mean_roc_auc']:.3f}", "",
                  f"{s['n_images']} images of {len(s['subjects'])} subjects, {s['folds']} folds, "
                  f"features `{s['feature_version']}`.", "",
                  "| AU | positives | F1 | precision | recall | ROC-AUC | C | threshold |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| AU{r['au']:02d} | {r['positives']} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} "
                  f"| {r['roc_auc']:.3f} | {r['C']} | {r['threshold']:+.2f} |" for r in s["per_au"]]
        lines += ["", "### Positive counts in the visible CK+ labels (unique images, duplicates removed)", "",
                  "| AU | peak images | peak + peak-1 + peak-2 | intensity coded |", "|---|---|---|---|"]
        lines += [f"| AU{c['au']:02d} | {c['peak_pos']} | {c['all_pos']} | {c['intensity_coded']} |"
                  for c in s["au_counts"] if c["all_pos"] > 0]
        lines.append("")
    if data["svr"]:
        s = data["svr"]
        lines += [f"## Intensity (linear SVR per AU, 0–5) — mean r **{s['mean_pearson_r']:.3f}**, "
                  f"MAE {s['mean_mae']:.3f}, ICC(3,1) {s['mean_icc_3_1']:.3f}", "",
                  "| AU | images | coded | Pearson r | MAE | MAE (coded) | ICC(3,1) | C |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| AU{r['au']:02d} | {r['n']} | {r['coded_positives']} | {r['pearson_r']:.3f} | {r['mae']:.3f} "
                  f"| {r['mae_coded']:.3f} | {r['icc_3_1']:.3f} | {r['C']} |" for r in s["per_au"]]
        lines.append("")
    md = reports_dir / "au.md"
    md.write_text("\n".join(lines))
    return md
