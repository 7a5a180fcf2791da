"""AU occurrence (linear SVM per AU) and intensity (linear SVR per AU) estimators.

Both follow scikit-learn's estimator contract: hyper-parameters in ``__init__``, ``fit(X, y)``
sets the learned arrays of :class:`~aulib.au.linear.LinearBank`, ``predict``/``decision_function``
read them. :meth:`shipped` loads the checksum-verified models in ``aulib/models``.

Why fit works the way it does:

* **Linear SVM/SVR solved in the dual.** With ~2,000 samples and 7,500 features a precomputed
  linear kernel makes libsvm fit in ~0.1 s; the primal weights ``w = Σ αᵢ yᵢ zᵢ`` are recovered and
  stored as plain arrays, so inference is one matrix product.
* **Feature blocks, weighted.** Each feature is standardised and the blocks (HOG, landmark
  geometry, CNN embedding) are scaled by ``sqrt(block size / weight)``, so the kernel is
  Σ weight × (block kernel / block size): the 136 landmark coordinates are not drowned by 6,084
  HOG values.
* **C and the decision threshold are chosen inside fit** by subject-grouped cross-validation
  over ``groups`` (like scikit-learn's ``LogisticRegressionCV``), per AU, so a caller evaluating
  ``fit`` on training folds gets nested, subject-independent figures.
* **Mirrored copies** (``X_mirror``: features of the horizontally flipped faces; the template is
  symmetric) are extra training samples with the same labels and groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aulib.au.embedding import embedding_cnn_for
from aulib.au.features import EMB_DIM, GEO_DIM, HOG_DIM, feature_version
from aulib.au.linear import LinearBank
from aulib.face.record import Face
from aulib.models import model_entry, model_path

THRESHOLDS = tuple(np.linspace(-1.0, 1.0, 41).tolist())


def shipped_feature_version() -> str:
    """Feature layout the shipped AU models expect (names the CNN whose embedding they use)."""
    version = LinearBank.peek_version(model_path(AUOccurrence.file))
    return feature_version(model_entry(embedding_cnn_for(version))["sha256"])


@dataclasses.dataclass(eq=False)
class _SupportVectorBank(LinearBank):
    """Shared fit machinery: block-weighted standardisation, one kernel, per-AU grouped CV."""

    Cs: tuple[float, ...] = (0.3, 1.0, 3.0)
    blocks: tuple[int, ...] = (HOG_DIM, GEO_DIM, EMB_DIM)
    block_weights: tuple[float, ...] = (1.0, 0.5, 0.5)
    cv: int = 5

    @classmethod
    def shipped(cls, path: str | Path | None = None, features: str | None = None) -> _SupportVectorBank:
        """The shipped model (checksum-verified); ``path`` reads a user's copy of it instead.

        ``features`` is the feature version the caller computes (default: the one the shipped
        models expect); a bank trained on other features is refused.
        """
        return cls.load(model_path(cls.file, path), features or shipped_feature_version())

    def _prepare(self, X: np.ndarray, X_mirror: np.ndarray | Sequence[np.ndarray] | None,
                 ) -> tuple[np.ndarray, int, int]:
        """Learn the scaling; return (scaled originals then extra copies, originals, copies per original).

        ``X_mirror``: one array of extra training copies of the originals (their mirror images), or a
        list of such arrays (mirrors, occluded copies …), each row labelled like its original."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or sum(self.blocks) != X.shape[1]:
            raise ValueError(f"X must be (N, {sum(self.blocks)}) for blocks {self.blocks}, got {X.shape}")
        if len(self.blocks) != len(self.block_weights):
            raise ValueError("blocks and block_weights must have the same length")
        extra = [] if X_mirror is None else [X_mirror] if isinstance(X_mirror, np.ndarray) else list(X_mirror)
        parts = [X] + [np.asarray(e, dtype=np.float32) for e in extra]
        for p in parts[1:]:
            if p.shape != X.shape:
                raise ValueError(f"X_mirror must have the shape of X {X.shape}, got {p.shape}")
        mean = X.mean(0)
        sd = X.std(0) + 1e-3
        block = np.concatenate([np.full(n, np.sqrt(n / w)) for n, w in zip(self.blocks, self.block_weights)])
        self.mean_, self.scale_ = mean.astype(np.float32), (sd * block).astype(np.float32)
        Z = np.vstack([(p - mean) / self.scale_ for p in parts]).astype(np.float32)
        return Z, len(X), len(parts)

    def _check_targets(self, y: np.ndarray, n: int) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        if y.ndim == 1:
            y = y[:, None]
        if y.shape != (n, len(self.au_numbers)):
            raise ValueError(f"y must be (N, {len(self.au_numbers)}) for AUs {list(self.au_numbers)}, got {y.shape}")
        return y

    def _folds(self, idx: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Subject-grouped folds over rows ``idx`` (positions into ``idx``)."""
        from sklearn.model_selection import GroupKFold

        subjects = len(np.unique(groups[idx]))
        if subjects < 2:  # sklearn would say only "n_splits=2 ... greater than the number of groups"
            raise ValueError(f"{type(self).__name__} fit: choosing C by subject-grouped CV needs at least 2 subjects "
                             f"(has {subjects}); train on more subjects")
        k = max(2, min(self.cv, subjects))
        return list(GroupKFold(k).split(idx, groups=groups[idx]))


def _scored(faces: Sequence[Face]) -> list[Face]:
    """The faces an AU model can score: described successfully, with their AU feature vector."""
    return [f for f in faces if f.success and f.features is not None]


def _rows(idx: np.ndarray, n: int, copies: int) -> np.ndarray:
    """Kernel rows of originals ``idx`` and of their mirrored copies."""
    return np.concatenate([idx + c * n for c in range(copies)])


@dataclasses.dataclass(eq=False)
class AUOccurrence(_SupportVectorBank):
    """One class-balanced linear SVM per AU. ``predict(X)`` → (N, K) 0/1; ``decision_function`` → margins.

    ``fit(X, y, groups, X_mirror)``: ``y`` (N, K) 0/1 per AU in ``au_numbers`` order; per AU, C from
    ``Cs`` and a threshold from ``thresholds`` are chosen by ``cv``-fold subject-grouped CV (best
    F1). Learned besides the bank arrays: ``C_`` (K,) and ``cv_f1_`` (K,) (the inner CV F1; neither
    is stored in the file), and ``platt_`` (K, 2): Platt scaling ``p = 1 / (1 + exp(−(a·m + b)))`` of
    the thresholded margin ``m`` (:meth:`decision_function`), fitted on the same inner out-of-fold
    margins, so :meth:`predict_proba` is calibrated on faces of subjects the SVM did not see. An AU is
    present when ``m > 0``, i.e. when its probability exceeds :meth:`probability_threshold`
    (``1 / (1 + exp(−b))``): the F1-tuned decision, written as a probability.
    """

    kind, file = "svm", "au_svm.npz"
    OPTIONAL = {"platt": "platt_"}
    thresholds: tuple[float, ...] = THRESHOLDS

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            X_mirror: np.ndarray | Sequence[np.ndarray] | None = None) -> AUOccurrence:
        from sklearn.metrics import f1_score
        from sklearn.svm import SVC

        Z, n, copies = self._prepare(X, X_mirror)
        Y = self._check_targets(y, n).astype(np.int8)
        groups = np.arange(n) if groups is None else np.asarray(groups)
        K = Z @ Z.T
        thresholds = np.asarray(self.thresholds)

        def fit_one(yk: np.ndarray, idx: np.ndarray, C: float) -> SVC:
            rows = _rows(idx, n, copies)
            return SVC(kernel="precomputed", C=C, class_weight="balanced").fit(K[np.ix_(rows, rows)],
                                                                               np.tile(yk[idx], copies))

        everyone = np.arange(n)
        folds = self._folds(everyone, groups)
        coefs, intercepts, chosen, platt = [], [], [], []
        for k, au in enumerate(self.au_numbers):
            yk = Y[:, k]
            _both_classes(au, yk, groups, "")
            for i, (tr, _) in enumerate(folds):  # else sklearn: "got 1 class", naming no AU
                _both_classes(au, yk[tr], groups[tr], f" of inner CV fold {i + 1}/{len(folds)} (choosing C)")
            best: tuple[float, float, float, np.ndarray] = (self.Cs[0], 0.0, -1.0, np.zeros(n))
            for C in self.Cs:
                scores = np.zeros(n)
                for tr, te in folds:
                    scores[te] = fit_one(yk, tr, C).decision_function(K[np.ix_(te, _rows(tr, n, copies))])
                f1s = [f1_score(yk, scores > t, zero_division=0) for t in thresholds]
                i = int(np.argmax(f1s))
                if f1s[i] > best[2]:
                    best = (C, float(thresholds[i]), float(f1s[i]), scores)
            platt.append(fit_platt(best[3] - best[1], yk))
            final = fit_one(yk, everyone, best[0])
            sv = _rows(everyone, n, copies)[final.support_]
            coefs.append((final.dual_coef_[0] @ Z[sv]).astype(np.float32))
            intercepts.append(float(final.intercept_[0]))
            chosen.append(best)
        self._set_learned(np.array(self.au_numbers), self.mean_, self.scale_, np.stack(coefs), np.array(intercepts),
                          np.array([c[1] for c in chosen]), self.feature_version)
        self.C_ = np.array([c[0] for c in chosen])
        self.cv_f1_ = np.array([c[2] for c in chosen])
        self.platt_ = np.array(platt)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(N, K) SVM margins minus the per-AU threshold chosen by subject-grouped CV (> 0 = present)."""
        return self._scores(X) - self.threshold_

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int8)

    @property
    def calibrated(self) -> bool:
        return getattr(self, "platt_", None) is not None

    def probability(self, margins: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of thresholded margins (see the class docstring)."""
        a, b = self._learned("platt_").T
        return 1.0 / (1.0 + np.exp(-(np.asarray(margins, np.float64) * a + b)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, K) calibrated probability that each AU is present."""
        return self.probability(self.decision_function(X))

    def probability_threshold(self) -> np.ndarray:
        """(K,) the probability at which each AU is called present (its margin 0)."""
        return self.probability(np.zeros(len(self.aus)))

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        """Model stage: ``aus``, ``au_score``, ``au_occurrence`` and (calibrated banks) ``au_prob`` of every
        successful face, in one product."""
        ok = _scored(faces)
        if ok:
            scores = self.decision_function(np.stack([f.features for f in ok]))
            probs = self.probability(scores) if self.calibrated else [None] * len(ok)
            aus = tuple(self.aus)
            for f, s, p in zip(ok, scores, probs):
                f.aus, f.au_score, f.au_occurrence, f.au_prob = aus, s, (s > 0).astype(np.int8), p
        return faces


def _both_classes(au: int, y: np.ndarray, groups: np.ndarray, where: str) -> None:
    """Refuse an SVM fit whose labels for ``au`` are all one class, saying which AU, where (``where``: ""
    for the whole fit, else which inner fold) and what to do."""
    if y.min() != y.max():
        return
    lacking, state = ("positive", "present") if y.max() <= 0 else ("negative", "absent")
    raise ValueError(f"AU{au}: all training labels{where} are {int(y[0])} (no {lacking} example among {len(y)} "
                     f"images of {len(np.unique(groups))} subjects); an SVM needs both classes: add images (more "
                     f"subjects) where AU{au} is {state}, or leave AU{au} out of the AUs trained")


def fit_platt(margins: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling ``(a, b)`` of out-of-fold margins (logistic regression of ``y`` on the margin,
    with Platt's target smoothing so a separable AU does not get an infinite slope)."""
    from scipy.optimize import minimize

    y = np.asarray(y, np.float64)
    pos, neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))
    m = np.asarray(margins, np.float64)

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * m + ab[1]
        p = 1 / (1 + np.exp(-z))
        nll = float(np.sum(np.logaddexp(0, z) - t * z))
        g = p - t
        return nll, np.array([g @ m, g.sum()])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


# AUxx_r = coherent(w · SVR + (1 − w) · 5 · AUxx_p): the intensity SVR's own estimate blended with the
# occurrence probability on the 0–5 scale. Why: the SVRs learn intensity from few coded images (9–165
# per AU; CK+ codes most present AUs without one), while the occurrence models see every image, and a
# stronger AU is a more certain one. Out of fold on CK+ (5 subject folds, the SVRs and SVMs refitted per
# fold; ``aulib train svr`` reports it in reports/au.md), mean r / MAE / ICC(3,1) over the 17 AUs:
# SVR alone made coherent 0.637 / 0.196 / 0.523; w = 0.75: 0.672 / 0.197 / 0.611; w = 0.5: 0.680 /
# 0.213 / 0.656. w = 0.75 is the largest share of the probability that keeps MAE where it was (0.197
# vs 0.196; beyond it MAE grows, as an absent AU's probability adds a little intensity) while r and
# ICC gain; choosing w inside the CV folds by ICC alone picks 0.5. Per-AU stacked weights did worse
# (ICC 0.612): too few codes per AU.
INTENSITY_SVR_WEIGHT = 0.75


def au_intensity(svr: np.ndarray, prob: np.ndarray | None, occurrence: np.ndarray | None) -> np.ndarray:
    """``AUxx_r`` from the SVRs' 0–5 output ``svr``, the calibrated probability ``prob`` (None: the SVR
    alone, e.g. an uncalibrated occurrence bank) and the occurrence decision (None: not made coherent)."""
    r = np.clip(np.asarray(svr, np.float64), 0.0, 5.0)
    if prob is not None:
        r = INTENSITY_SVR_WEIGHT * r + (1.0 - INTENSITY_SVR_WEIGHT) * 5.0 * np.asarray(prob, np.float64)
    return r if occurrence is None else coherent_intensity(r, occurrence)


def coherent_intensity(intensity: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    """Intensities that agree with the occurrences, FACS-style: a present AU is at least trace level
    (``AUxx_r ≥ 1``, intensity A), an absent one at most 1. The intensity SVRs and occurrence SVMs are
    separate models that can disagree (an AU called present at intensity 0.02); the occurrence
    decision — tuned for F1 on unseen subjects — wins and the intensity is clipped to its side."""
    r = np.asarray(intensity, np.float64)
    present = np.asarray(occurrence) == 1
    return np.where(present, np.clip(r, 1.0, 5.0), np.clip(r, 0.0, 1.0))


@dataclasses.dataclass(eq=False)
class AUIntensity(_SupportVectorBank):
    """One linear ε-SVR per AU on the 0–5 FACS intensity scale (0 absent, 1–5 = A–E), clipped to 0–5.

    ``fit(X, y, groups, X_mirror)``: ``y`` (N, K) intensities with NaN where an AU is present but its
    intensity was not coded (those rows are left out of that AU's fit). Per AU, C from ``Cs`` is
    chosen by ``cv``-fold subject-grouped CV (lowest MAE); learned ``C_`` (K,).
    """

    kind, file = "svr", "au_svr.npz"
    Cs: tuple[float, ...] = (0.1, 0.3, 1.0)
    cv: int = 4
    epsilon: float = 0.2

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            X_mirror: np.ndarray | Sequence[np.ndarray] | None = None) -> AUIntensity:
        from sklearn.svm import SVR

        Z, n, copies = self._prepare(X, X_mirror)
        Y = self._check_targets(y, n)
        groups = np.arange(n) if groups is None else np.asarray(groups)
        K = Z @ Z.T

        def fit_one(yk: np.ndarray, idx: np.ndarray, C: float) -> SVR:
            rows = _rows(idx, n, copies)
            return SVR(kernel="precomputed", C=C, epsilon=self.epsilon).fit(K[np.ix_(rows, rows)],
                                                                            np.tile(yk[idx], copies))

        coefs, intercepts, chosen = [], [], []
        for k, au in enumerate(self.au_numbers):
            idx = np.flatnonzero(~np.isnan(Y[:, k]))
            if len(np.unique(groups[idx])) < 2:
                raise ValueError(f"AU{au}: intensity coded for fewer than 2 subjects; cannot choose C")
            yk = np.nan_to_num(Y[:, k])
            best = (self.Cs[0], np.inf)
            for C in self.Cs:
                pred = np.zeros(len(idx))
                for tr, te in self._folds(idx, groups):
                    m = fit_one(yk, idx[tr], C)
                    pred[te] = np.clip(m.predict(K[np.ix_(idx[te], _rows(idx[tr], n, copies))]), 0, 5)
                mae = float(np.mean(np.abs(yk[idx] - pred)))
                if mae < best[1]:
                    best = (C, mae)
            final = fit_one(yk, idx, best[0])
            coefs.append((final.dual_coef_[0] @ Z[_rows(idx, n, copies)[final.support_]]).astype(np.float32))
            intercepts.append(float(final.intercept_[0]))
            chosen.append(best[0])
        self._set_learned(np.array(self.au_numbers), self.mean_, self.scale_, np.stack(coefs), np.array(intercepts),
                          np.zeros(len(self.au_numbers)), self.feature_version)
        self.C_ = np.array(chosen)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(N, K) raw SVR outputs (not clipped)."""
        return self._scores(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self._scores(X), 0.0, 5.0)

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        """Model stage: ``au_svr`` (this bank's 0–5 output) of every successful face, in one product, and
        ``au_intensity`` from it — with the occurrence stage's probability and decision when it ran first
        (:func:`au_intensity`)."""
        ok = _scored(faces)
        if ok:
            aus = tuple(self.aus)
            for f, v in zip(ok, self.predict(np.stack([f.features for f in ok]))):
                f.au_svr = v
                if f.au_occurrence is not None and tuple(f.aus) == aus:
                    v = au_intensity(v, f.au_prob, f.au_occurrence)
                f.aus, f.au_intensity = aus, v
        return faces
