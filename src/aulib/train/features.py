"""Features of dataset crops through the same face pipeline inference uses (cropped-face mode)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from rich.progress import track

from aulib.au.features import FEATURE_VERSION, face_features, mirrored_features
from aulib.face import FacePipeline
from aulib.io import read_image


def crop_features(paths: list[Path], cache_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of each dataset crop and of its mirror image, plus a success mask.

    Returns ``X`` (N, D), ``X_mirror`` (N, D) and ``ok`` (N,) bool; failed fits have zero rows
    and ``ok`` False. Cached in ``cache_dir`` under a hash of the paths and the feature version.
    """
    key = hashlib.sha256(("\n".join(map(str, paths)) + FEATURE_VERSION).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"features-{key}.npz" if cache_dir else None
    if cache and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["X"], z["Xm"], z["ok"]
    fp = FacePipeline()
    feats, mirrored, ok = [], [], []
    for p in track(paths, description="features", transient=True):
        face = fp.cropped(read_image(p))
        if face.success:
            feats.append(face_features(face))
            mirrored.append(mirrored_features(face, fp.hog, fp.masker))
            ok.append(True)
        else:
            ok.append(False)
            feats.append(None)
            mirrored.append(None)
    d = next(f.shape[0] for f in feats if f is not None)
    X = np.stack([f if f is not None else np.zeros(d, np.float32) for f in feats])
    Xm = np.stack([f if f is not None else np.zeros(d, np.float32) for f in mirrored])
    okv = np.array(ok)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, X=X, Xm=Xm, ok=okv)
    return X, Xm, okv
