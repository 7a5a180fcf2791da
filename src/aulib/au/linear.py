"""Banks of linear models (one per AU), as scikit-learn-style estimators stored as plain arrays.

Prediction for all AUs and all faces is one standardisation and one matrix product:
``scores = ((X - mean_) / scale_) @ coef_.T + intercept_``, so a folder of 1,000 faces costs
milliseconds. The learned state is a handful of arrays, saved in an ``.npz`` (no pickle) whose
layout the shipped ``au_svm.npz``/``au_svr.npz`` fix: ``aus, mean, scale, coef, intercept,
threshold, kind, feature_version``.

The estimator contract (hyper-parameters in ``__init__``, learned attributes ending in ``_`` set
by ``fit``, ``get_params``/``set_params`` so :func:`sklearn.base.clone` works) is implemented with
a dataclass rather than by subclassing :class:`sklearn.base.BaseEstimator`: importing
``sklearn.base`` costs about a second, and every ``Analyzer`` start-up loads these banks. ``fit``
imports scikit-learn's solvers when it runs.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aulib.au.codes import AUS
from aulib.models import ModelFileError

NPZ_KEYS = ("aus", "mean", "scale", "coef", "intercept", "threshold", "kind", "feature_version")


class NotFittedError(ValueError, AttributeError):
    """Prediction asked of a bank that was neither fitted nor loaded (same bases as scikit-learn's)."""


@dataclasses.dataclass(eq=False)
class LinearBank:
    """Base of the AU banks: K linear models sharing one feature standardisation.

    Learned attributes (set by ``fit`` or :meth:`load`): ``aus_`` (K,) AU numbers, ``mean_``/``scale_``
    (D,), ``coef_`` (K, D), ``intercept_`` (K,), ``threshold_`` (K,) decision thresholds (0 for
    regressors) and ``feature_version_``. Subclasses are dataclasses whose fields are the
    hyper-parameters and implement ``fit``; ``kind`` names the model type stored in the file and
    ``file`` the shipped file name. Hyper-parameters common to all banks: ``au_numbers``, the AU of
    each column of ``y``, and ``feature_version``, the feature layout of ``X`` (recorded in the file).
    """

    kind: ClassVar[str]
    file: ClassVar[str]
    au_numbers: tuple[int, ...] = AUS
    feature_version: str = ""

    # ------------------------------------------------------------------ estimator protocol
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters by name (the dataclass fields), as scikit-learn's ``clone`` expects."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def set_params(self, **params: Any) -> LinearBank:
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no hyper-parameter {name!r}")
            setattr(self, name, value)
        return self

    def _set_learned(self, aus: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                     intercept: np.ndarray, threshold: np.ndarray, feature_version: str) -> None:
        """Store the learned arrays with the dtypes the file and :meth:`decision_function` use."""
        coef = np.asarray(coef, dtype=np.float32)
        k, d = coef.shape
        arrays = (np.asarray(aus, dtype=np.int64), np.asarray(mean, dtype=np.float32),
                  np.asarray(scale, dtype=np.float32), np.asarray(intercept, dtype=np.float32),
                  np.asarray(threshold, dtype=np.float32))
        if not (len(arrays[0]) == len(arrays[3]) == len(arrays[4]) == k and arrays[1].shape == arrays[2].shape == (d,)):
            raise ValueError("inconsistent array shapes in linear model bank")
        # a training run that produced NaN or infinite weights (its checksum recorded as valid) gave every face
        # NaN probabilities, read as "absent", without a word; a zero scale divides by zero
        bad = [n for n, a in zip(("mean", "scale", "intercept", "threshold", "coef"), (*arrays[1:], coef))
               if not np.isfinite(a).all()]
        if bad or not (arrays[2] != 0).all():
            raise ValueError(f"{', '.join(bad) or 'scale'} holds {'NaN or infinite' if bad else 'zero'} values: "
                             "not a usable model (retrain it)")
        self.aus_, self.mean_, self.scale_, self.intercept_, self.threshold_ = arrays
        self.coef_ = coef
        self.feature_version_ = str(feature_version)

    # ------------------------------------------------------------------ prediction
    @property
    def aus(self) -> list[int]:
        """AU numbers of the output columns, as plain ints (after ``fit``/``load``)."""
        return [int(a) for a in self._learned("aus_")]

    @property
    def n_features(self) -> int:
        return int(self._learned("coef_").shape[1])

    def _learned(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or load()") from None

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """(N, K) raw linear scores for (N, D) features."""
        coef = self._learned("coef_")
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if X.shape[1] != coef.shape[1]:
            raise ValueError(f"expected {coef.shape[1]} features, got {X.shape[1]}")
        return ((X - self.mean_) / self.scale_) @ coef.T + self.intercept_

    # ------------------------------------------------------------------ files
    # Optional learned arrays a subclass adds to the file (name → attribute), e.g. calibration.
    OPTIONAL: ClassVar[dict[str, str]] = {}

    def save(self, path: str | Path) -> None:
        """Write the learned arrays as a compressed ``.npz`` (the shipped layout, no pickle)."""
        extra = {k: getattr(self, a) for k, a in self.OPTIONAL.items() if getattr(self, a, None) is not None}
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:  # whole or not at all: a shipped bank cut short fails every analysis
            np.savez_compressed(
                f, aus=self._learned("aus_"), mean=self.mean_, scale=self.scale_, coef=self.coef_,
                intercept=self.intercept_, threshold=self.threshold_, kind=np.array(self.kind),
                feature_version=np.array(self.feature_version_), **extra,
            )
        tmp.replace(path)

    @staticmethod
    def peek_version(path: str | Path) -> str:
        """The feature version a saved bank was trained on (to pick the matching CNN)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return str(z["feature_version"])
        except (OSError, ValueError, KeyError) as e:
            raise ModelFileError(f"{path}: not a valid aulib .npz model ({e})") from None

    @classmethod
    def load(cls, path: str | Path, feature_version: str | None = None) -> LinearBank:
        """A fitted bank from ``path`` (``allow_pickle=False``).

        Refuses a file of another kind (an SVR file read as SVMs) and, when ``feature_version`` is
        given, one trained on another feature layout, each with a one-line :class:`ModelFileError`.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise ModelFileError(f"{path}: not a valid aulib .npz model ({e})") from None
        missing = set(NPZ_KEYS) - set(arrays)
        if missing:
            raise ModelFileError(f"{path}: not an aulib linear model (missing {sorted(missing)})")
        if str(arrays["kind"]) != cls.kind:
            raise ModelFileError(f"{path}: is a {arrays['kind']} model, expected {cls.kind}")
        if feature_version is not None and str(arrays["feature_version"]) != feature_version:
            raise ModelFileError(
                f"{path}: trained on features {arrays['feature_version']}, this aulib computes {feature_version}"
            )
        bank = cls(au_numbers=tuple(int(a) for a in arrays["aus"]), feature_version=str(arrays["feature_version"]))
        try:
            bank._set_learned(arrays["aus"], arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"],
                              arrays["threshold"], str(arrays["feature_version"]))
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from None
        for key, attr in cls.OPTIONAL.items():
            if key in arrays:
                value = np.asarray(arrays[key], np.float64)
                if value.shape[:1] != (len(bank.aus_),) or not np.isfinite(value).all():
                    raise ModelFileError(f"{path}: {key} does not match its {len(bank.aus_)} AUs")
                setattr(bank, attr, value)
        return bank
