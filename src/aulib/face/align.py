"""Similarity alignment of a face onto a canonical 68-point template, and face masking.

Every later stage (HOG, AU models, CNN) sees faces in one geometry: the face is rotated, scaled
and translated — never sheared — so its rigid points (eye corners, nose, brow roots, jaw
ends) land on the template; expressive points (mouth, brows, eyelids) are left free to move,
which is exactly the signal the AU models read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from aulib.face.landmarks import checked_points

# The CK+ and FER+ faces every model learnt from are 48 px photos: their aligned crops span a median 51 source
# pixels (crop scale 112 / 51 = 2.2: FER2013Valid median 2.16, CK+ 2.25; 5th–95th percentile 1.7–2.6).
TRAINED_SOURCE_PX = 51
# A crop holding more than this many times that detail is brought down to it (matched_detail): only faces of
# photos and videos, never a dataset face (their crops hold at most ≈ 1.3 times it).
SHARPER_THAN_TRAINED = 1.5

# Points that move little with expression: jaw ends, brow roots, nose bridge/base, eye corners.
RIGID_POINTS = np.array([0, 1, 15, 16, 21, 22, 27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45])


@lru_cache(maxsize=1)
def unit_template() -> np.ndarray:
    """The canonical 68 points in unit-square coordinates (data file ``template68.json``)."""
    data = json.loads((Path(__file__).with_name("template68.json")).read_text())
    return np.asarray(data["points"], dtype=np.float64)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2×3 matrix) mapping ``src`` points onto ``dst``.

    Umeyama (1991), closed form: no iterations, no RANSAC randomness, so alignment is exactly
    reproducible. In 2-D the optimal rotation and scale need no SVD: with both point sets centred,
    ``scale·cos = Σ s·d / Σ|s|²`` and ``scale·sin = Σ s×d / Σ|s|²`` (the least-squares fit of one set of
    complex numbers to the other, which is never a reflection). Same matrix as the SVD form to 1e-14,
    a third of its time (it runs once or twice per face in the video face stage, which bounds the speed).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = float((s * s).sum())
    if var > 0:
        c = float((s * d).sum()) / var
        n = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / var
    else:  # all source points in one place: no rotation or scale to find
        c, n = 1.0, 0.0
    m = np.array([[c, -n, 0.0], [n, c, 0.0]])
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


@dataclass
class AlignedFace:
    """A face warped to the canonical crop.

    ``crop``: (S, S, 3) uint8 RGB; ``landmarks``: (68, 2) in crop pixels; ``matrix``: the 2×3
    similarity transform from original-image pixels to crop pixels; ``fit_error``: RMS distance of
    the rigid points from the template, as a fraction of the crop size — large values mean the
    landmark fit is not a plausible face.
    """

    crop: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray
    fit_error: float


class Aligner:
    """Warp faces to a ``size``×``size`` crop (default 112 px, as OpenFace's 112 px similarity crop)."""

    def __init__(self, size: int = 112, border: int = cv2.BORDER_REPLICATE) -> None:
        self.size = size
        self.border = border
        self.template = unit_template() * size

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> AlignedFace:
        landmarks = checked_points(landmarks)
        m = umeyama(landmarks[RIGID_POINTS], self.template[RIGID_POINTS])
        crop = cv2.warpAffine(
            image, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=self.border
        )
        pts = landmarks.astype(np.float64) @ m[:, :2].T + m[:, 2]
        err = float(np.sqrt(((pts[RIGID_POINTS] - self.template[RIGID_POINTS]) ** 2).sum(1).mean()))
        return AlignedFace(crop, pts.astype(np.float32), m.astype(np.float32), err / self.size)


def matched_detail(crop: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The aligned ``crop`` (made by ``matrix``, image → crop) with no more detail than the training faces had.

    Why: the AU models and the emotion networks learnt from 48 px faces, whose crops are upscaled and soft;
    a face of a photo or a video frame (150–400 px) gives a crop with 3–8 times that detail — skin texture,
    stubble, hair, sharp edges the models never saw, which move the HOG histograms and the networks'
    inputs off what they learnt. A crop spanning more than :data:`SHARPER_THAN_TRAINED` × the training
    faces' :data:`TRAINED_SOURCE_PX` source pixels is shrunk to that many pixels (area average) and enlarged
    back (bilinear, as the training crops were warped). Measured: the laughing man with a hand on his
    forehead (``Image_with_alpha.png``, crop scale 0.27) happiness 0.71 → 0.89 with AU04 0.23 → 0.11;
    WolfgangLanger_Pexels.mp4 (crop scale 0.4) raw AU trace jitter 0.250 → 0.180, mean r with OpenFace over
    15 AUs 0.444 → 0.456 (single_face.mp4 0.619 → 0.627); the same frames as photos and shrunk until the face
    is 55 px wide agree on the emotion 0.955 → 0.977 of the time. Dataset faces are left as they are.
    """
    n = crop.shape[0]
    scale = float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))
    if not (scale > 0 and np.isfinite(scale)) or n / scale <= SHARPER_THAN_TRAINED * TRAINED_SOURCE_PX:
        return crop
    small = cv2.resize(crop, (TRAINED_SOURCE_PX, TRAINED_SOURCE_PX), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (crop.shape[1], n), interpolation=cv2.INTER_LINEAR)


class FaceMasker:
    """Zero every pixel outside the face, as OpenFace does before HOG.

    The region is the convex hull of the aligned landmarks with the brow points raised by
    ``forehead`` × (brow-to-chin height), so the forehead wrinkles of AU1/AU2 stay visible
    while hair and background are removed.
    """

    def __init__(self, forehead: float = 0.2) -> None:
        self.forehead = forehead

    def mask(self, landmarks: np.ndarray, size: int) -> np.ndarray:
        """Boolean (size, size) mask of the face region for aligned ``landmarks``."""
        pts = checked_points(landmarks).copy()
        height = pts[8, 1] - pts[17:27, 1].min()
        raised = pts[17:27].copy()
        raised[:, 1] -= self.forehead * height
        hull = cv2.convexHull(np.vstack([pts, raised]).astype(np.float32)).astype(np.int32)
        m = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(m, hull, 1, lineType=cv2.LINE_8)
        return m.astype(bool)

    def __call__(self, crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the masked copy of ``crop`` and the boolean mask."""
        m = self.mask(landmarks, crop.shape[0])
        out = crop.copy()
        out[~m] = 0
        return out, m
