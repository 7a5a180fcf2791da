"""Numpy metrics shared by CNN training (per-epoch validation) and :mod:`aulib.training.evaluate`."""

from __future__ import annotations

import numpy as np


def majority_accuracy(probs: np.ndarray, votes: np.ndarray) -> dict[str, float]:
    """FER+ majority-vote accuracy of ``probs`` (N, 8) against raw ``votes`` (N, 8).

    ``tie_aware`` (the headline figure) counts a prediction correct when it is among the classes
    sharing the maximum vote count; ``first_max`` breaks vote ties by taking the first class in
    FER+ order (neutral first), as ``argmax`` does; ``ties_excluded`` is the plurality accuracy
    over the images whose top vote count is not shared (``n_ties_excluded`` of them).
    """
    if not len(probs):  # an empty subset (occlusion --limit 5): NaN, without numpy's "Mean of empty slice"
        return {"tie_aware": float("nan"), "first_max": float("nan"), "ties_excluded": float("nan"),
                "n_ties_excluded": 0}
    pred = probs.argmax(axis=1)
    top = votes == votes.max(axis=1, keepdims=True)
    unique = top.sum(axis=1) == 1
    hit = pred == votes.argmax(axis=1)
    return {
        "tie_aware": float(top[np.arange(len(pred)), pred].mean()),
        "first_max": float(hit.mean()),
        "ties_excluded": float(hit[unique].mean()) if unique.any() else float("nan"),
        "n_ties_excluded": int(unique.sum()),
    }


def confusion(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """(n, n) counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per true class (row-normalised diagonal); NaN for a class with no samples."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(axis=1)


def binary_f1(labels: np.ndarray, probs: np.ndarray, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """Per-column F1 of ``probs >= threshold`` against 0/1 ``labels``; entries < 0 are ignored.

    Shapes (N, K) → (K,). F1 is 0 where a column has no positive and no predicted positive.
    """
    valid = labels >= 0
    pred = probs >= threshold
    pos = labels == 1
    tp = (pred & pos & valid).sum(axis=0)
    fp = (pred & ~pos & valid).sum(axis=0)
    fn = (~pred & pos & valid).sum(axis=0)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
