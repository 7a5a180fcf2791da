"""Features of dataset crops through the same face pipeline inference uses (cropped-face mode)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from rich.progress import track

from aulib.au.embedding import EmotionEmbeddingCNN
from aulib.au.features import feature_version, features_matrix, mirrored_face
from aulib.face import Face, FacePipeline
from aulib.io import read_image


def crop_features(paths: list[Path], cache_dir: str | Path | None = None,
                  embedder: EmotionEmbeddingCNN | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of each dataset crop and of its mirror image, plus a success mask.

    Returns ``X`` (N, D), ``X_mirror`` (N, D) and ``ok`` (N,) bool; failed fits have zero rows
    and ``ok`` False. Cached in ``cache_dir`` under a hash of the paths and the feature version.
    """
    embedder = embedder or EmotionEmbeddingCNN()
    version = feature_version(embedder.sha256)
    key = hashlib.sha256(("\n".join(map(str, paths)) + version).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"features-{key}.npz" if cache_dir else None
    if cache and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["X"], z["Xm"], z["ok"]
    fp = FacePipeline()
    faces: list[Face] = []
    mirrored: list[Face] = []
    okv = np.zeros(len(paths), bool)
    for i, p in enumerate(track(paths, description="features", transient=True)):
        face = fp.cropped(read_image(p))
        if face.success:
            okv[i] = True
            faces.append(face)
            mirrored.append(mirrored_face(face, fp.hog, fp.masker))
    if not faces:
        raise ValueError("no face could be fitted in any training image")
    parts = [features_matrix(faces[i:i + 256], embedder)[0] for i in range(0, len(faces), 256)]
    mparts = [features_matrix(mirrored[i:i + 256], embedder)[0] for i in range(0, len(mirrored), 256)]
    X = np.zeros((len(paths), parts[0].shape[1]), np.float32)
    Xm = np.zeros_like(X)
    X[okv], Xm[okv] = np.concatenate(parts), np.concatenate(mparts)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, X=X, Xm=Xm, ok=okv)
    return X, Xm, okv
