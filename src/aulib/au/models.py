"""AU occurrence and intensity predictors, loaded from the shipped, checksum-verified ``.npz`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aulib.au.embedding import embedding_cnn_for
from aulib.au.features import feature_version
from aulib.au.linear import LinearBank
from aulib.models import model_entry, model_path


def shipped_feature_version() -> str:
    """Feature layout the shipped AU models expect (names the CNN whose embedding they use)."""
    version = LinearBank.peek_version(model_path(AUOccurrence.file))
    return feature_version(model_entry(embedding_cnn_for(version))["sha256"])


class _ShippedBank:
    """A :class:`LinearBank` of kind ``kind`` read from shipped file ``file`` (checksum-verified).

    ``path`` reads a user's copy instead (its checksum must still match the manifest); ``features``
    is the feature version the caller computes (default: the one the shipped models expect).
    """

    file: str
    kind: str

    def __init__(self, path: str | Path | None = None, features: str | None = None) -> None:
        self.bank = LinearBank.load(model_path(self.file, path), self.kind, features or shipped_feature_version())
        self.aus = [int(a) for a in self.bank.aus_]


class AUOccurrence(_ShippedBank):
    """One linear SVM per AU. ``predict(X)`` → (N, K) 0/1; ``decision_function`` → margins."""

    file, kind = "au_svm.npz", "svm"

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(N, K) SVM margins minus the per-AU threshold chosen by subject-grouped CV (> 0 = present)."""
        return self.bank.decision_function(X) - self.bank.threshold_

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int8)


class AUIntensity(_ShippedBank):
    """One linear SVR per AU on the 0–5 FACS intensity scale (0 absent, 1–5 = A–E), clipped to 0–5."""

    file, kind = "au_svr.npz", "svr"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self.bank.decision_function(X), 0.0, 5.0)
