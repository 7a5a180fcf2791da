"""Fit confidence (OpenFace's ``confidence`` column): 0–1, how much to trust this face's landmarks.

OpenFace reports its landmark detector's own certainty; aulib's equivalent signals are the face
detector's score and how far the fitted rigid points (eye corners, nose, …) lie from the 2D mean face
after a similarity alignment (``Face.fit_error``, a fraction of the crop side; the pipeline refuses
fits above :data:`~aulib.face.pipeline.MAX_FIT_ERROR` = 0.1). Mapping::

    confidence = clip(score, 0, 1) · clip((MAX_FIT_ERROR − fit_error) / (MAX_FIT_ERROR − GOOD_FIT_ERROR), 0, 1)

with ``GOOD_FIT_ERROR = 0.04`` (the median fit on FER2013 crops; CK+ frontal faces 0.02): a typical
or better fit keeps the detector's score, a fit near the refusal limit goes to 0. In a video the
score of a followed face is that of its last detection. Faces whose fit was refused get 0.
OpenFace users' usual filter ``confidence >= 0.8`` keeps fits up to ``fit_error`` ≈ 0.052.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aulib.face.pipeline import MAX_FIT_ERROR
from aulib.face.record import Face

GOOD_FIT_ERROR = 0.04


def fit_confidence(score: float, fit_error: float) -> float:
    """Confidence 0–1 from a detector score and a rigid-point fit error (0 when either is not finite)."""
    if not (np.isfinite(score) and np.isfinite(fit_error)):
        return 0.0
    fit = (MAX_FIT_ERROR - fit_error) / (MAX_FIT_ERROR - GOOD_FIT_ERROR)
    return float(np.clip(score, 0.0, 1.0) * np.clip(fit, 0.0, 1.0))


class FitConfidence:
    """Model stage: fills ``Face.confidence`` for every face of the batch (0 for failed fits)."""

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        for f in faces:
            f.confidence = fit_confidence(f.score, f.fit_error) if f.success else 0.0
        return faces
