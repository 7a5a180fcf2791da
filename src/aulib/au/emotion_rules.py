"""AU → emotion percentages from FACS emotion prototypes.

Prototypes: EMFACS-7 (Friesen & Ekman, 1983, *EMFACS-7: Emotional Facial Action Coding System*,
unpublished manual, University of California San Francisco), as tabulated in Lucey et al. (2010),
"The Extended Cohn-Kanade Dataset (CK+)", CVPR Workshops, Table 2, and in aulib's DESIGN.md:

=========== ===============================
happiness   6 + 12
sadness     1 + 4 + 15
surprise    1 + 2 + 5 + 26
fear        1 + 2 + 4 + 5 + 7 + 20 + 26
anger       4 + 5 + 7 + 23
disgust     9 + 15 + 16
contempt    12 + 14 (unilateral)
=========== ===============================

``rule_<emotion>`` is the percentage (0–100) of the prototype's AUs that the occurrence models
detect. Prototype AUs that aulib does not model (AU16, too rare in CK+ to train) are left out of
the denominator, and the table says so in ``MODELLED`` so the percentage is honest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aulib.face.record import Face

PROTOTYPES: dict[str, tuple[int, ...]] = {
    "anger": (4, 5, 7, 23),
    "contempt": (12, 14),
    "disgust": (9, 15, 16),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "happiness": (6, 12),
    "sadness": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
}


class EmotionRules:
    """Percentages of prototype AUs present, for the AU set a model bank provides."""

    def __init__(self, aus: list[int]) -> None:
        self.aus = list(aus)
        self.modelled = {e: tuple(a for a in p if a in self.aus) for e, p in PROTOTYPES.items()}
        self._matrix = np.zeros((len(self.aus), len(PROTOTYPES)), np.float32)
        for j, e in enumerate(PROTOTYPES):
            for a in self.modelled[e]:
                self._matrix[self.aus.index(a), j] = 100.0 / len(self.modelled[e])

    def __call__(self, occurrence: np.ndarray) -> np.ndarray:
        """(N, K) 0/1 occurrences in ``aus`` order → (N, 7) percentages in ``PROTOTYPES`` order."""
        return np.asarray(occurrence, np.float32) @ self._matrix

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        """Model stage: ``rules`` of every face whose AU occurrences are known (after the SVMs)."""
        ok = [f for f in faces if f.success and f.au_occurrence is not None]
        if ok:
            for f, r in zip(ok, self(np.stack([f.au_occurrence for f in ok]))):
                f.rules = r
        return faces
