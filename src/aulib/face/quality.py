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

A face cut by the frame edge is fitted all the same — its hidden landmarks extrapolated, the AUs of
the hidden part read from the border's replicated pixels — and its fit can look perfect. So the
confidence is also multiplied by the fraction of the 68 landmarks inside the image: a face whose
mouth and chin are below the frame (20 of 68 points out) keeps at most 0.71, under the usual 0.8
filter; a face fully in view is unchanged.

A blurred face's fit looks as good as a sharp one's (smooth gradients fit the mean face well) while its
reading fades: the sample smile blurred with σ 16 px read "neutral" at confidence 1.00. So the confidence
is also multiplied by :func:`aulib.face.sharpness.blur_factor` of ``Face.blur``: 1 for a face with as
much detail as the 48 px training faces have, down to 0 for one blurred well beyond the blurriest of them
(the smile at σ 8 px keeps 0.84, at σ 12 px 0.3). A noisy face is the same case the other way round: its fit
looks fine while white noise pulls its reading towards neutral, so the confidence is also multiplied by
:func:`aulib.face.sharpness.noise_factor` of ``Face.noise``.

A landmark fit that has settled on the wrong features also looks perfect: dlib's trees fit their frontal
mean face over a profile's cheek and ear (the B/W sample portrait mirrored, letterboxed or rotated 10°:
confidence 0.90–0.99 while it read the face as frontal, AU12 present). The face detector finds the eyes,
nose and mouth on its own; so the confidence is also multiplied by :func:`keypoint_factor` of
``Face.disagreement`` (:meth:`aulib.face.detect.Detection.disagreement`): 1 up to :data:`KEYPOINTS_OK`, 0 from
:data:`KEYPOINTS_BAD`.

A photo's landmarks are the mean of five fits from boxes 2 % apart (:meth:`aulib.face.pipeline.FacePipeline.fit`);
how far those fits lie from their mean (``Face.spread``, a fraction of the eye distance) says how firmly the
face's features hold the fit: 0.005–0.026 on the Pexels clip's face (every 40th frame), 0.006–0.029 on the sample
photos' faces but one (multi_face.jpg's man in sunglasses, whose eye points are guesses and whose AUs moved by up
to 1.0 when the photo was cropped by a pixel: 0.055), the sample smile 0.013 / 0.020 / 0.042 / 0.16 with white
noise of σ 20 / 40 / 80 / 160, the B/W profile 0.084. So a photo's confidence is also multiplied by
:func:`spread_factor`: 1 up to :data:`SPREAD_OK`, 0 from :data:`SPREAD_BAD` (1 for a video frame's single fit,
which has no spread).
A face too small to read is the last case: its few pixels are measured sharp and clean at their own scale, and
its fit looks fine, while its reading drifts. The sample faces shrunk until their 68 landmarks spanned 20 / 16 /
12 px (``--cropped`` crops of 28 / 22 / 16 px) moved their AU intensities by 0.24 / 0.28 / 0.43 on average against
0.10–0.14 from 24 px up, and a quarter of them changed emotion, at confidence 0.94–0.98. The training faces span
31 px or more (FER2013Valid's 5th percentile; 1st 28 px). So the confidence is also multiplied by
:func:`resolution_factor` of the landmarks' span: 1 from :data:`SPAN_OK` px, 0 at :data:`SPAN_NONE` px.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aulib.face.pipeline import MAX_FIT_ERROR
from aulib.face.record import Face
from aulib.face.sharpness import blur_factor, noise_factor

GOOD_FIT_ERROR = 0.04
# Landmarks vs the detector's keypoints (fraction of the face's side): every scan of the sample videos ≤ 0.09,
# 98.6 % of FER2013Valid faces ≤ 0.10; fits ≥ 0.14 were profiles and faces on their side fitted as frontal,
# the B/W sample profile's 0.20–0.34.
KEYPOINTS_OK = 0.10
KEYPOINTS_BAD = 0.20
# How far a photo's five landmark fits lie from their mean (fraction of the eye distance): the fit holds up to
# SPREAD_OK (every sample face but one ≤ 0.029), and nothing of it does from SPREAD_BAD (the smile under noise of
# σ 160: 0.16).
SPREAD_OK = 0.03
SPREAD_BAD = 0.12
# The span of a face's landmarks (the longer side of their box, image pixels) below which its reading drifts
# (measured on the sample faces shrunk: see above), and where nothing of it is left to trust.
SPAN_OK = 24.0
SPAN_NONE = 10.0


def resolution_factor(landmarks: np.ndarray | None) -> float:
    """The factor of ``confidence`` for a face's size: 1 from :data:`SPAN_OK` px of landmark span, falling
    linearly to 0 at :data:`SPAN_NONE` (1 when unknown)."""
    if landmarks is None:
        return 1.0
    p = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if not p.size or not np.isfinite(p).all():
        return 1.0
    span = float(np.ptp(p, axis=0).max())
    return float(np.clip((span - SPAN_NONE) / (SPAN_OK - SPAN_NONE), 0.0, 1.0))


def spread_factor(spread: float) -> float:
    """The factor of ``confidence`` for the spread of a photo's landmark fits (1 when unknown: a video frame)."""
    if not np.isfinite(spread):
        return 1.0
    return float(np.clip((SPREAD_BAD - spread) / (SPREAD_BAD - SPREAD_OK), 0.0, 1.0))


def keypoint_factor(disagreement: float) -> float:
    """The factor of ``confidence`` for a fit's disagreement with the detector's keypoints (1 when unknown)."""
    if not np.isfinite(disagreement):
        return 1.0
    return float(np.clip((KEYPOINTS_BAD - disagreement) / (KEYPOINTS_BAD - KEYPOINTS_OK), 0.0, 1.0))


def fit_confidence(score: float, fit_error: float) -> float:
    """Confidence 0–1 from a detector score and a rigid-point fit error (0 when either is not finite)."""
    if not (np.isfinite(score) and np.isfinite(fit_error)):
        return 0.0
    fit = (MAX_FIT_ERROR - fit_error) / (MAX_FIT_ERROR - GOOD_FIT_ERROR)
    return float(np.clip(score, 0.0, 1.0) * np.clip(fit, 0.0, 1.0))


def visible_fraction(landmarks: np.ndarray | None, image_size: tuple[int, int] | None) -> float:
    """Fraction of the landmarks inside the ``(width, height)`` image (1 pixel of tolerance); 1 when
    either is unknown."""
    if landmarks is None or image_size is None:
        return 1.0
    w, h = image_size
    p = np.asarray(landmarks, np.float64).reshape(-1, 2)
    inside = (p[:, 0] >= -1) & (p[:, 0] <= w) & (p[:, 1] >= -1) & (p[:, 1] <= h)
    return float(inside.mean())


class FitConfidence:
    """Model stage: fills ``Face.confidence`` for every face of the batch (0 for failed fits)."""

    def run(self, faces: Sequence[Face]) -> Sequence[Face]:
        for f in faces:
            f.confidence = (fit_confidence(f.score, f.fit_error) * visible_fraction(f.landmarks, f.image_size)
                            * blur_factor(f.blur) * noise_factor(f.noise) * keypoint_factor(f.disagreement)
                            * resolution_factor(f.landmarks) * spread_factor(f.spread)
                            if f.success else 0.0)
        return faces
