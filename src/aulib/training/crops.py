"""Dataset crops through the inference face pipeline, computed once into one on-disk cache.

The dataset images are already face crops, so every model trains on what
:meth:`aulib.face.FacePipeline.cropped` makes of them — the code path ``Analyzer`` uses with
``cropped=True``: the CNNs on the aligned 112×112 crop (gray), the AU banks on
:func:`aulib.au.features.features_matrix` of the face and of its mirror image.

Both take minutes, so both go through :func:`cached`: one folder per result under the cache root,
named by a hash of what determines it (kind, settings, feature version and, per image, its resolved
path, size and modification time: :func:`file_keys`), holding one
``.npy`` per array (memory-mapped when read back, so the 28k FER+ crops cost no RAM) and written
atomically, so a killed run never leaves a half cache behind.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from aulib.au.embedding import EmotionEmbeddingCNN
from aulib.au.features import feature_version, features_matrix, mirrored_face
from aulib.face import Face, FacePipeline
from aulib.io import read_image

CROP_SIZE = 112
T = TypeVar("T")


def file_keys(paths: Sequence[Path]) -> list[str]:
    """One cache-key line per image: resolved path, size and mtime (ns).

    Why not the path string alone: an image replaced at the same path, or the same relative
    ``--data`` given from another directory, would reuse crops or features of other pixels. One
    ``stat`` per file keeps this cheap for the ~30k FER+ images (hashing their bytes would not be).
    A missing image raises FileNotFoundError naming it, before minutes of work on the others.
    """
    folders: dict[Path, Path] = {}  # each folder resolved once: the images sit in a few folders
    out = []
    for p in map(Path, paths):
        st = p.stat()  # follows a symlinked image: size and mtime are its target's
        if p.parent not in folders:
            folders[p.parent] = p.parent.resolve()
        out.append(f"{folders[p.parent] / p.name}\t{st.st_size}\t{st.st_mtime_ns}")
    return out


def files_digest(paths: Sequence[Path]) -> str:
    """A short hash of :func:`file_keys` (names result files that depend on these images)."""
    return hashlib.sha256("\n".join(file_keys(paths)).encode()).hexdigest()[:12]


# What the cached crops and features also depend on besides the images and the CNN: the face pipeline's fits.
@functools.lru_cache(maxsize=1)
def pipeline_revision() -> str:
    """A digest of the face pipeline's code (``aulib/face/*.py``) and of its models' checksums (detector,
    landmarks): any change of either starts a new cache. It was a number raised by hand; about 70 pipeline commits
    later a checkout's old cache still gave the old crops, and ``aulib evaluate cnn`` the figures of the crops
    before them. (The AU banks and emotion networks are not part of it: installing them keeps the crops.)"""
    import json

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted((root / "face").glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    models = json.loads((root / "models" / "manifest.json").read_text(encoding="utf-8"))["models"]
    for name in ("retinaface_mnet025.onnx", "shape_predictor_68.onnx", "shape_predictor_68.data"):
        h.update(f"{name} {models.get(name, {}).get('sha256')}\0".encode())
    return h.hexdigest()[:16]


def cached(cache_dir: str | Path | None, kind: str, key: Sequence[str],
           compute: Callable[[], dict[str, np.ndarray]] | None) -> dict[str, np.ndarray] | None:
    """``compute()``'s arrays, stored under ``cache_dir/<kind>-<hash of key>/`` (no caching when None).

    With ``compute`` None only an existing cache is read (None when there is none). ``key`` must name
    everything the arrays depend on, the images' contents included (:func:`file_keys`): a folder whose
    key matches is reused without a look at the images.
    """
    digest = hashlib.sha256("\n".join([kind, f"pipeline {pipeline_revision()}", *key]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"{kind}-{digest}" if cache_dir is not None else None
    if folder is None or not folder.is_dir():
        if compute is None:
            return None
        if folder is None:
            return compute()
        arrays = compute()
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a)
        tmp.replace(folder)
    return {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in sorted(folder.glob("*.npy"))}


def _gray_crop(pipeline: FacePipeline | None, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """(gray CROP_SIZE² uint8 crop, fell_back) of one dataset image.

    The aligned face when the landmark fit succeeds; else (or with ``pipeline`` None) the whole
    image resized, which is roughly what a 48×48 dataset crop is anyway.
    """
    if pipeline is not None:
        face = pipeline.cropped(rgb)
        if face.success and face.aligned is not None:
            crop = cv2.cvtColor(face.aligned, cv2.COLOR_RGB2GRAY)
            if crop.shape[0] != CROP_SIZE:
                crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
            return crop, False
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC), True


def progress(items: Sequence[T], description: str) -> Iterator[T]:
    """``items``, with a progress bar on a terminal, and a plain line to stderr at every tenth of the way
    otherwise: a run logged to a file (``2> train.log``, a batch job) showed nothing for the 4–10 minutes its
    crops and features took."""
    if sys.stderr is not None and sys.stderr.isatty():
        from rich.progress import track

        yield from track(items, description=description, transient=True)
        return
    n, step, t0 = len(items), max(1, len(items) // 10), time.monotonic()
    for i, item in enumerate(items):
        yield item
        if (i + 1) % step == 0 or i + 1 == n:
            print(f"{description}: {i + 1}/{n} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)


def aligned_crops(paths: Sequence[Path], cache_dir: str | Path | None, align: bool = True,
                  only_cached: bool = False) -> dict[str, np.ndarray] | None:
    """``crops`` (N, 112, 112) uint8 gray and ``fallback`` (N,) bool (landmark fit failed: plain resize).

    ``align=False`` skips the face pipeline (plain resize of every image: smoke tests);
    ``only_cached`` returns None instead of computing crops that are not cached yet.
    """

    def compute() -> dict[str, np.ndarray]:
        pipeline = FacePipeline(features=False) if align else None
        crops = np.zeros((len(paths), CROP_SIZE, CROP_SIZE), np.uint8)
        fallback = np.zeros(len(paths), bool)
        for i, p in enumerate(progress(paths, "aligned crops")):
            crops[i], fallback[i] = _gray_crop(pipeline, read_image(p))
        return {"crops": crops, "fallback": fallback}

    try:
        files = file_keys(paths)
    except FileNotFoundError:
        if only_cached:
            return None  # nothing cached can match an image that is not there
        raise
    key = [f"align={align}", f"size={CROP_SIZE}", *files]
    return cached(cache_dir, "crops", key, None if only_cached else compute)


def crop_features(paths: Sequence[Path], cache_dir: str | Path | None,
                  embedder: EmotionEmbeddingCNN) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AU features of each dataset crop, of its mirror image and of an occluded copy, plus a success mask.

    Returns ``X`` (N, D), ``X_mirror`` (N, D), ``X_occluded`` (N, D) and ``ok`` (N,) bool; failed fits
    have zero rows and ``ok`` False. The occluded copy has one synthetic occluder (hand, bar or noise
    over brows, eyes or mouth; :func:`aulib.training.occlusion.training_plan`, a different draw from the
    one the occlusion evaluation scores) and falls back to the clean features when its fit fails.
    Training on these copies too cut the AU F1 lost to occluders by half (reports/occlusion.md). The
    cache key includes the feature version (which names the embedding CNN).
    """
    from aulib.training.occlusion import occlude, training_plan

    version = feature_version(embedder.sha256)

    def batched(faces: list[Face]) -> np.ndarray:
        return np.concatenate([features_matrix(faces[i:i + 256], embedder)[0] for i in range(0, len(faces), 256)])

    def compute() -> dict[str, np.ndarray]:
        fp = FacePipeline()
        faces: list[Face] = []
        mirrored: list[Face] = []
        occluded: list[Face] = []
        ok = np.zeros(len(paths), bool)
        where = training_plan(len(paths))
        for i, p in enumerate(progress(paths, "features")):
            rgb = read_image(p)
            face = fp.cropped(rgb)
            if face.success:
                ok[i] = True
                faces.append(face)
                mirrored.append(mirrored_face(face, fp.hog, fp.masker))
                hidden = fp.cropped(occlude(rgb, face.landmarks, *where[i], seed=100_000 + i))
                occluded.append(hidden if hidden.success else face)
        if not faces:
            raise ValueError("no face could be fitted in any training image")
        out: dict[str, np.ndarray] = {"ok": ok}
        for key, group in (("X", faces), ("X_mirror", mirrored), ("X_occluded", occluded)):
            feats = batched(group)
            out[key] = np.zeros((len(paths), feats.shape[1]), np.float32)
            out[key][ok] = feats
        return out

    z = cached(cache_dir, "features-occ", [version, *file_keys(paths)], compute)
    assert z is not None  # computed when not cached
    return np.asarray(z["X"]), np.asarray(z["X_mirror"]), np.asarray(z["X_occluded"]), np.asarray(z["ok"])
