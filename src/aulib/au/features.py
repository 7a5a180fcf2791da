"""The feature vector the AU models read, built from a :class:`~aulib.face.Face`.

One function for training and inference, so the two can never drift apart: HOG of the aligned,
masked 112 px face (6084 values) followed by the aligned landmark geometry (136 values).
"""

from __future__ import annotations

import numpy as np

from aulib.face.hog import HogExtractor, geometry, mirror
from aulib.face.pipeline import Face, FaceMasker

FEATURE_VERSION = "hog8x2x9-112+geom136-v1"


def face_features(face: Face) -> np.ndarray:
    """(D,) float32 feature vector of a successfully processed face."""
    if face.hog is None or face.geometry is None:
        raise ValueError("face has no features (landmark fit failed or features=False)")
    return np.concatenate([face.hog, face.geometry]).astype(np.float32)


def mirrored_features(face: Face, hog: HogExtractor, masker: FaceMasker) -> np.ndarray:
    """Features of the horizontally mirrored face (for training copies and test-time averaging)."""
    assert face.aligned is not None and face.aligned_landmarks is not None
    import cv2

    crop, pts = mirror(face.aligned, face.aligned_landmarks)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    masked, _ = masker(gray, pts)
    return np.concatenate([hog(masked), geometry(pts, crop.shape[0])]).astype(np.float32)
