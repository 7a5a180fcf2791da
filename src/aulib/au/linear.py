"""A bank of linear models (one per AU) stored as plain arrays in an ``.npz`` — no pickle.

Prediction for all AUs and all faces is one standardisation and one matrix product:
``scores = ((X - mean) / scale) @ W.T + b``, so a folder of 1,000 faces costs milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aulib.models import ModelFileError


class LinearBank:
    """K linear models sharing one feature standardisation.

    Attributes (learned state, scikit-learn style with trailing underscore): ``aus_`` (K,) AU
    numbers, ``mean_``/``scale_`` (D,), ``coef_`` (K, D), ``intercept_`` (K,), ``threshold_`` (K,)
    decision thresholds (occurrence models; 0 for regressors), ``kind_`` "svm" or "svr".
    """

    def __init__(self, aus: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, threshold: np.ndarray, kind: str, feature_version: str) -> None:
        self.aus_ = np.asarray(aus, dtype=np.int64)
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.scale_ = np.asarray(scale, dtype=np.float32)
        self.coef_ = np.asarray(coef, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float32)
        self.threshold_ = np.asarray(threshold, dtype=np.float32)
        self.kind_ = kind
        self.feature_version_ = feature_version
        k, d = self.coef_.shape
        if not (len(self.aus_) == len(self.intercept_) == len(self.threshold_) == k
                and self.mean_.shape == self.scale_.shape == (d,)):
            raise ValueError("inconsistent array shapes in linear model bank")

    @property
    def n_features(self) -> int:
        return self.coef_.shape[1]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(N, K) raw scores for (N, D) features."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {X.shape[1]}")
        return ((X - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path, aus=self.aus_, mean=self.mean_, scale=self.scale_, coef=self.coef_,
            intercept=self.intercept_, threshold=self.threshold_, kind=np.array(self.kind_),
            feature_version=np.array(self.feature_version_),
        )

    @staticmethod
    def peek_version(path: str | Path) -> str:
        """The feature version a saved bank was trained on (to pick the matching CNN)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return str(z["feature_version"])
        except (OSError, ValueError, KeyError) as e:
            raise ModelFileError(f"{path}: not a valid aulib .npz model ({e})") from None

    @classmethod
    def load(cls, path: str | Path, kind: str, feature_version: str) -> LinearBank:
        """Load arrays (``allow_pickle=False``) and refuse a file of another kind or feature set."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{path}: not a valid aulib .npz model ({e})") from None
        missing = {"aus", "mean", "scale", "coef", "intercept", "threshold", "kind", "feature_version"} - set(arrays)
        if missing:
            raise ModelFileError(f"{path}: not an aulib linear model (missing {sorted(missing)})")
        if str(arrays["kind"]) != kind:
            raise ModelFileError(f"{path}: is a {arrays['kind']} model, expected {kind}")
        if str(arrays["feature_version"]) != feature_version:
            raise ModelFileError(
                f"{path}: trained on features {arrays['feature_version']}, this aulib computes {feature_version}"
            )
        try:
            return cls(arrays["aus"], arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"],
                       arrays["threshold"], kind, feature_version)
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from None
