"""AU F1 of the SVMs, the multitask heads and their fusion on the 18 CK+ subjects neither saw in training.

The multitask network was trained on CK+ with a seeded 20 % subject split held out
(``aulib.training.datasets.subject_split(seed=0)``); here the SVMs are retrained the shipped way on the
other subjects, and the three answers are scored on the held-out ones (the 14 AUs both models have).
Figures quoted in ``aulib.au.fusion`` and ``aulib.cnn.inference.AUHeads`` (the fusion images get by
default). Run: ``python scripts/au_fusion_heldout.py [DATA_DIR]``.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import f1_score

from aulib.au.codes import AUS
from aulib.au.models import AUOccurrence
from aulib.cnn.inference import MultitaskCNN
from aulib.training import CACHE
from aulib.training.au import load_features
from aulib.training.crops import aligned_crops
from aulib.training.datasets import CKPlus, subject_split


def main(data: str) -> None:
    everyone = CKPlus.load(data)
    _, va = subject_split(everyone.subjects, 0.2, seed=0)
    held = set(everyone.subjects[va].tolist())
    ck, X, copies, version = load_features(data, CACHE)
    aus = list(AUS)
    Y, groups = ck.occurrence(aus), ck.subjects
    te = np.array([g in held for g in groups])
    tr = ~te
    bank = AUOccurrence(au_numbers=tuple(aus), feature_version=version, cv=5)
    bank.fit(X[tr], Y[tr], groups[tr], [c[tr] for c in copies])
    p_svm, t_svm = bank.predict_proba(X[te]), bank.probability_threshold()
    crops = np.asarray(aligned_crops(ck.image_paths(), CACHE)["crops"])[te]
    mt = MultitaskCNN()
    p_mt = mt.predict(crops)[1]
    rows = []
    for j, au in enumerate(mt.aus):
        k = aus.index(au)
        y = Y[te, k]
        fused = (p_svm[:, k] + p_mt[:, j]) / 2 > (t_svm[k] + mt.thresholds[j]) / 2
        rows.append((f1_score(y, p_svm[:, k] > t_svm[k]), f1_score(y, p_mt[:, j] >= mt.thresholds[j]),
                     f1_score(y, fused)))
        print(f"AU{au:02d} positives {int(y.sum()):3d}  SVM {rows[-1][0]:.3f}  multitask {rows[-1][1]:.3f}  "
              f"fused {rows[-1][2]:.3f}")
    m = np.mean(rows, axis=0)
    others = [a for a in aus if a not in mt.aus]  # the SVMs' answer in every mode
    rest = [f1_score(Y[te, aus.index(a)], p_svm[:, aus.index(a)] > t_svm[aus.index(a)]) for a in others]
    print(f"all {len(aus)} AUs ({', '.join(f'AU{a:02d} {f:.3f}' for a, f in zip(others, rest))} SVM only): "
          f"SVM {np.mean([r[0] for r in rows] + rest):.3f}, fused {np.mean([r[2] for r in rows] + rest):.3f} "
          "(what images get by default)")
    print(f"mean over {len(rows)} AUs: SVM {m[0]:.3f}, multitask {m[1]:.3f}, fused {m[2]:.3f} "
          f"({len(held)} held-out subjects, {int(te.sum())} images)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
