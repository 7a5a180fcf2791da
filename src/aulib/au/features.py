"""The feature vector the AU models read, built from :class:`~aulib.face.Face` records.

One function for training and inference, so the two can never drift apart: HOG of the aligned,
masked 112 px face (6084 values), the aligned landmark geometry (136 values), and the emotion
CNN's embedding of the aligned crop (1280 values, :mod:`aulib.au.embedding`). The feature version
names the exact CNN file (sha256 prefix), so AU models are refused if the CNN they were trained
with is swapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aulib.cnn.inference import crops_of, network_outputs
from aulib.face.align import FaceMasker
from aulib.face.hog import HogExtractor, geometry, mirror
from aulib.face.record import Face

if TYPE_CHECKING:
    from aulib.video.keyframes import Keyframes

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


class AUFeatures:
    """Model stage: the AU feature vector (``Face.features``) of every successful face.

    One batched run of the embedding CNN gives each face its ``embedding``; the feature vector is
    HOG + geometry + embedding (:func:`face_features` + 1280 values). The same run's emotion
    probabilities are stored in ``Face.emotion_probs`` when ``emotion`` is true, i.e. when the
    embedding CNN is also the emotion model the caller wants (one network run serves both).
    """

    def __init__(self, embedder, emotion: bool = True) -> None:
        self.embedder = embedder
        self.emotion = emotion

    def run(self, faces: Sequence[Face], flip: bool = False, keyframes: Keyframes | None = None) -> Sequence[Face]:
        """``keyframes`` (video, :mod:`aulib.video.keyframes`): the faces it names take the time-weighted
        mean of their neighbours' embedding and emotion instead of running the network."""
        ok = [f for f in faces if f.success]
        outputs = network_outputs(ok, keyframes, lambda run: self.embedder.predict_with_embedding(
            crops_of(run), flip and self.emotion))
        for f, (p, f.embedding) in zip(ok, outputs):
            f.features = np.concatenate([face_features(f), f.embedding]).astype(np.float32)
            if self.emotion:
                f.emotion_probs = p
        return faces


def features_matrix(faces: list[Face], embedder) -> tuple[np.ndarray, np.ndarray]:
    """(N, 7500) AU features of successfully processed faces and the CNN emotion probabilities (N, 8)
    (training: the faces' records are filled as by :class:`AUFeatures`)."""
    AUFeatures(embedder).run(faces)
    return np.stack([f.features for f in faces]), np.stack([f.emotion_probs for f in faces])


def mirrored_face(face: Face, hog: HogExtractor, masker: FaceMasker) -> Face:
    """The horizontally mirrored face with its own HOG/geometry (training copies)."""
    assert face.aligned is not None and face.aligned_landmarks is not None
    import cv2

    crop, pts = mirror(face.aligned, face.aligned_landmarks)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    masked, m = masker(gray, pts)
    return Face(box=face.box, score=face.score, matrix=face.matrix, aligned=crop, aligned_landmarks=pts, mask=m,
                masked=masked, hog=hog(masked), geometry=geometry(pts, crop.shape[0]))
