"""The feature vector the AU models read, built from :class:`~aulib.face.Face` records.

One function for training and inference, so the two can never drift apart: HOG of the aligned,
masked 112 px face (6084 values), the aligned landmark geometry (136 values), and the emotion
CNN's embedding of the aligned crop (1280 values, :mod:`aulib.au.embedding`). The feature version
names the exact CNN file (sha256 prefix), so AU models are refused if the CNN they were trained
with is swapped.
"""

from __future__ import annotations

import numpy as np

from aulib.face.hog import HogExtractor, geometry, mirror
from aulib.face.pipeline import Face, FaceMasker

HAND_VERSION = "hog8x2x9-112+geom136"
HOG_DIM, GEO_DIM, EMB_DIM = 6084, 136, 1280


def feature_version(cnn_sha256: str) -> str:
    """Identifier of the feature layout, tied to the CNN file that makes the embedding."""
    return f"{HAND_VERSION}+emb{EMB_DIM}:{cnn_sha256[:12]}"


def face_features(face: Face) -> np.ndarray:
    """(6220,) float32 hand-crafted part (HOG + geometry) of a successfully processed face."""
    if face.hog is None or face.geometry is None:
        raise ValueError("face has no features (landmark fit failed or features=False)")
    return np.concatenate([face.hog, face.geometry]).astype(np.float32)


def features_matrix(faces: list[Face], embedder) -> tuple[np.ndarray, np.ndarray]:
    """(N, 7500) AU features of successfully processed faces and the CNN emotion probabilities (N, 8).

    One batched CNN run for all faces gives both the embedding and the emotion probabilities.
    """
    hand = np.stack([face_features(f) for f in faces])
    probs, emb = embedder.predict_with_embedding(np.stack([f.aligned for f in faces]))
    return np.concatenate([hand, emb], axis=1), probs


def mirrored_face(face: Face, hog: HogExtractor, masker: FaceMasker) -> Face:
    """The horizontally mirrored face with its own HOG/geometry (training copies)."""
    assert face.aligned is not None and face.aligned_landmarks is not None
    import cv2

    crop, pts = mirror(face.aligned, face.aligned_landmarks)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    masked, m = masker(gray, pts)
    return Face(box=face.box, score=face.score, aligned=crop, aligned_landmarks=pts, mask=m, masked=masked,
                hog=hog(masked), geometry=geometry(pts, crop.shape[0]))
