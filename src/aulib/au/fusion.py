"""AU occurrence from two models at once: the SVMs' calibrated probability and the multitask heads.

With ``--emotion-model multitask`` (every frame), and for images in the default mode (the heads run
as :class:`aulib.cnn.inference.AUHeads`), the multitask network also scores the AUs (all 17; an older
network's 14). The two models err differently (HOG + geometry + embedding SVMs vs a network trained
end to end on the AU labels), so for the AUs both score :class:`AUFusion` makes ``AUxx_p`` the mean
of both probabilities and calls the AU present above the mean of their two thresholds (the SVM's
p-threshold, the head's 0.5). Both probabilities are calibrated (the SVMs' margins and the heads'
logits are Platt-scaled on out-of-fold outputs, :func:`aulib.cnn.inference.au_heads`), so their
mean is one too: expected calibration error 0.009 (0.021 with the heads' raw sigmoid).
Measured by 5-fold subject-grouped CV on CK+ with both models refitted
without each fold's subjects (``aulib train multitask``, reports/au.md), mean F1 over the 17 AUs:
SVMs 0.781, heads 0.782, fused 0.801 — the two models alone are equal, together better; the
weakest AUs gain most (AU07 0.60 → 0.64, AU15 0.55 → 0.61, AU23 0.62 → 0.67, AU26 0.35 → 0.49).
AUs without a head keep the SVMs' answer; ``AUxx_r`` is computed again from the fused probability
(:func:`aulib.au.models.au_intensity`) and the ``rule_*`` percentages follow the fused occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aulib.au.emotion_rules import EmotionRules
from aulib.au.models import AUOccurrence, au_intensity, coherent_intensity
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
            if f.au_svr is not None and len(f.au_svr) == len(p):  # intensity from the fused probability
                f.au_intensity = au_intensity(f.au_svr, p, f.au_occurrence)
            elif f.au_intensity is not None:
                f.au_intensity = coherent_intensity(f.au_intensity, f.au_occurrence)
            f.rules = self.rules(f.au_occurrence[None])[0]
        return faces
