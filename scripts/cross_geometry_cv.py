"""The AU occurrence bank trained on one run's cached crop features and scored on another's, in the subject
folds of ``aulib train svm``: how much a change of the face pipeline's crops is worth to a bank trained
before it.

    python scripts/cross_geometry_cv.py OLD_CACHE NEW_CACHE

Each cache folder is one ``aulib train svm --cache DIR`` run (its ``features-occ-*`` folder), e.g. OLD_CACHE
made with a worktree of an earlier release (``PYTHONPATH=<worktree>/src python -m aulib train svm --out
/tmp/x --reports /tmp/x --cache OLD_CACHE``). Prints mean F1 over the 17 AUs for train old / test old, train
old / test new (a bank trained before the change, used after it) and train new / test new. Used for the
cropped-mode landmark fix (0.781, 0.778, 0.788).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold

from aulib.au.codes import AUS
from aulib.au.embedding import EmotionEmbeddingCNN
from aulib.au.features import feature_version
from aulib.training.au import occurrence_estimator
from aulib.training.datasets import CKPlus

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(cache: str) -> dict[str, np.ndarray]:
    (folder,) = Path(cache).glob("features-occ-*")
    return {k: np.load(folder / f"{k}.npy") for k in ("X", "X_mirror", "X_occluded", "ok")}


def main(old_cache: str, new_cache: str) -> None:
    old, new = load(old_cache), load(new_cache)
    ok = old["ok"] & new["ok"]
    ck = CKPlus.load(DATA).with_facs().take(ok)
    y, groups = ck.occurrence(AUS), ck.subjects
    bank = occurrence_estimator(feature_version(EmotionEmbeddingCNN().sha256), 4)

    def cv(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> float:
        x, copies, xt = train["X"][ok], [train["X_mirror"][ok], train["X_occluded"][ok]], test["X"][ok]
        scores = np.zeros(y.shape)
        for tr, te in GroupKFold(5).split(x, groups=groups):
            fold = clone(bank).fit(x[tr], y[tr], groups[tr], [c[tr] for c in copies])
            scores[te] = fold.decision_function(xt[te])
        return float(np.mean([f1_score(y[:, k], scores[:, k] > 0) for k in range(len(AUS))]))

    print(f"{int(ok.sum())} images; mean F1 over {len(AUS)} AUs:")
    print(f"  train old, test old: {cv(old, old):.4f}")
    print(f"  train old, test new: {cv(old, new):.4f}")
    print(f"  train new, test new: {cv(new, new):.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
