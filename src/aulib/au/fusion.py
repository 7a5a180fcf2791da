"""AU occurrence from two models at once: the SVMs' calibrated probability and the multitask heads.

With ``--emotion-model multitask`` (every frame), and for images in the default mode (the heads run
as :class:`aulib.cnn.inference.AUHeads`), the 15-head network also scores 14 of the 17 AUs. The two models
err differently (HOG + geometry + embedding SVMs vs a network trained end to end on the AU labels),
so for those AUs :class:`AUFusion` makes ``AUxx_p`` the mean of both probabilities and calls the AU
present above the mean of their two thresholds (the SVM's p-threshold, the head's 0.5). Measured on
the 18 CK+ subjects neither model saw in training (the multitask network's held-out subjects; the
SVMs retrained without them), mean F1 over the 14 AUs: SVMs 0.809, multitask heads 0.844, fused
0.848 (``scripts/au_fusion_heldout.py``). The other three AUs keep the SVMs' answer; ``AUxx_r`` is
made coherent with the fused occurrence and the ``rule_*`` percentages follow it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aulib.au.emotion_rules import EmotionRules
from aulib.au.models import AUOccurrence, coherent_intensity
from aulib.face.record import Face


class AUFusion:
    """Model stage, after the AU stages and the multitask network (see the module docstring)."""

    def __init__(self, occurrence: AUOccurrence, heads: Sequence[int], head_thresholds: np.ndarray,
                 rules: EmotionRules) -> None:
        self.aus = list(occurrence.aus)
        self.heads = [int(a) for a in heads]
        self.index = [(self.aus.index(a), j) for j, a in enumerate(self.heads) if a in self.aus]
        self.rules = rules
        t = occurrence.probability_threshold().astype(np.float64)
        for k, j in self.index:
            t[k] = (t[k] + float(head_thresholds[j])) / 2
        self.thresholds = t  # (K,) probability above which each AU is present, fused where fused

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        for f in faces:
            if not (f.success and f.au_prob is not None and f.mt_au_probs is not None
                    and list(f.aus) == self.aus and list(f.mt_aus) == self.heads):
                continue
            p = np.asarray(f.au_prob, np.float64).copy()
            for k, j in self.index:
                p[k] = (p[k] + float(f.mt_au_probs[j])) / 2
            f.au_prob = p
            f.au_occurrence = (p > self.thresholds).astype(np.int8)
            if f.au_intensity is not None:
                f.au_intensity = coherent_intensity(f.au_intensity, f.au_occurrence)
            f.rules = self.rules(f.au_occurrence[None])[0]
        return faces
