"""FER+ and CK+ readers for the CNNs, the aligned-crop cache, and the subject-wise CK+ split.

Numpy only (no torch) so evaluation can use it without the training extra.

Crops must match inference: the shipped CNNs see the aligned 112×112 crop that
:class:`aulib.face.FacePipeline` makes, so training and evaluation crops are made by the same
pipeline (``FacePipeline.cropped``: the dataset images are already face crops). Computing them
takes minutes, so it is done once into a uint8 ``.npy`` cache (gray, 112×112) plus a JSON
sidecar with the image names and which images fell back to a plain resize because the landmark
fit failed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aulib.results import EMOTIONS  # FER+ order (label.csv columns 2..9)

FERPLUS_COLUMNS = EMOTIONS + ["unknown", "NF"]
FERPLUS_SPLITS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}

# CK+ emotion folder names → FER+ names (neutral first frames are labelled "neutral").
CKPLUS_EMOTION = {
    "neutral": "neutral", "happy": "happiness", "happiness": "happiness", "surprise": "surprise",
    "sadness": "sadness", "anger": "anger", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}
# The 14 AUs with the most positive CK+ images (after removing the 219 duplicate peak frames and
# the rows without FACS codes): AU25 366, AU1 258, AU17 249, AU4 243, AU6 204, AU2 201, AU5 177,
# AU12 165, AU7 162, AU27 144, AU9 135, AU24 81, AU23 78, AU15 75 (next: AU20 51, AU14 48).
# ``top_ckplus_aus`` recomputes this ranking; a test pins it.
CKPLUS_AUS: list[int] = [1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 23, 24, 25, 27]

CROP_SIZE = 112


@dataclass
class FerPlus:
    """One FER+ split: image paths, (N, 8) vote distributions (soft labels), (N, 8) raw votes."""

    paths: list[Path]
    soft: np.ndarray
    votes: np.ndarray

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def majority_sets(self) -> np.ndarray:
        """(N, 8) bool: which classes share the maximum vote count (ties kept)."""
        return self.votes == self.votes.max(axis=1, keepdims=True)

    def subset(self, n: int | None) -> FerPlus:
        if n is None:
            return self
        return FerPlus(self.paths[:n], self.soft[:n], self.votes[:n])


def read_ferplus(data_dir: str | Path, split: str = "train") -> FerPlus:
    """Read ``ferplus/<FER2013Split>/label.csv``; drop images whose majority is unknown or not-a-face.

    label.csv rows: image name, face box, then 10 vote counts (8 emotions, unknown, NF). An image
    is kept when some emotion gets at least as many votes as unknown and NF (a tie with
    unknown/NF keeps it) and it has at least one emotion vote. Soft label = the 8 emotion votes
    normalised to sum 1 (unknown/NF votes are ignored).
    """
    folder = Path(data_dir) / "ferplus" / FERPLUS_SPLITS[split]
    label_csv = folder / "label.csv"
    if not label_csv.is_file():
        raise FileNotFoundError(f"{label_csv}: FER+ label file not found")
    paths, votes = [], []
    with open(label_csv, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 12:
                continue
            v = np.array([float(x) for x in row[2:12]], dtype=np.float32)
            emo, other = v[:8], v[8:]
            if emo.sum() <= 0 or emo.max() < other.max():
                continue
            paths.append(folder / row[0])
            votes.append(emo)
    vv = np.stack(votes)
    return FerPlus(paths, vv / vv.sum(axis=1, keepdims=True), vv)


@dataclass
class CkPlus:
    """CK+48 images (duplicates removed): paths, subjects, emotion index, (N, 14) AU labels.

    ``aus`` holds 1 (present, any code ≥ 0), 0 (absent, -1) or -1 (unknown: ``facs_source`` is
    ``missing``, so the row must not count in AU losses/metrics). Neutral first frames are coded
    as all-absent by the dataset.
    """

    paths: list[Path]
    subjects: np.ndarray
    emotion: np.ndarray
    aus: np.ndarray
    roles: np.ndarray
    au_numbers: list[int]

    def take(self, idx: np.ndarray) -> CkPlus:
        return CkPlus(
            [self.paths[i] for i in idx], self.subjects[idx], self.emotion[idx], self.aus[idx],
            self.roles[idx], self.au_numbers,
        )

    def __len__(self) -> int:
        return len(self.paths)


def _ckplus_rows(data_dir: str | Path) -> tuple[Path, list[dict[str, str]]]:
    root = Path(data_dir) / "ckplus48"
    label_csv = root / "labels" / "images_au.csv"
    if not label_csv.is_file():
        raise FileNotFoundError(f"{label_csv}: CK+ label file not found")
    with open(label_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    seen: set[tuple[str, int, int]] = set()
    unique = []
    for r in rows:
        # The same peak frame appears in two source folders: keep the first copy only, so it can
        # never sit on both sides of a split or count twice in a metric.
        key = (r["subject"], int(r["sequence"]), int(r["frame"]))
        if key in seen:
            continue
        seen.add(key)
        unique.append(r)
    return root, unique


def top_ckplus_aus(data_dir: str | Path, k: int = 14) -> list[tuple[int, int]]:
    """(AU number, positive images) for the ``k`` most frequent AUs in deduplicated CK+."""
    _, rows = _ckplus_rows(data_dir)
    counts: dict[int, int] = {}
    for r in rows:
        if r["facs_source"] == "missing":
            continue
        for col, val in r.items():
            if col.startswith("AU") and val not in ("", None) and float(val) >= 0:
                counts[int(col[2:])] = counts.get(int(col[2:]), 0) + 1
    return sorted(counts.items(), key=lambda t: (-t[1], t[0]))[:k]


def read_ckplus(data_dir: str | Path, au_numbers: Sequence[int] = CKPLUS_AUS) -> CkPlus:
    """Read ``ckplus48/labels/images_au.csv`` into a :class:`CkPlus` (duplicates removed)."""
    root, rows = _ckplus_rows(data_dir)
    paths, subjects, emotion, aus, roles = [], [], [], [], []
    for r in rows:
        paths.append(root / r["path"])
        subjects.append(r["subject"])
        emotion.append(EMOTIONS.index(CKPLUS_EMOTION[r["emotion"]]))
        roles.append(r["role"])
        if r["facs_source"] == "missing":
            aus.append([-1] * len(au_numbers))
        else:
            aus.append([int(float(r[f"AU{n}"]) >= 0) for n in au_numbers])
    return CkPlus(
        paths, np.array(subjects), np.array(emotion, np.int64), np.array(aus, np.int8),
        np.array(roles), list(au_numbers),
    )


def subject_split(
    subjects: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with whole subjects held out, never single images.

    Images of one person are far more alike than images of two people, so an image-wise split
    would measure memorisation of identities. The held-out subjects are a seeded random 20 %.
    """
    uniq = np.array(sorted(set(subjects.tolist())))
    rng = np.random.default_rng(seed)
    n_val = max(1, round(len(uniq) * val_fraction))
    val_subjects = set(rng.permutation(uniq)[:n_val].tolist())
    is_val = np.array([s in val_subjects for s in subjects])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# ----------------------------------------------------------------------------------------------
# Aligned-crop cache
# ----------------------------------------------------------------------------------------------


def _load_rgb(path: Path) -> np.ndarray:
    """Dataset image as (H, W, 3) uint8 RGB (gray crops are stacked to 3 channels)."""
    from PIL import Image

    with Image.open(path) as im:
        g = np.asarray(im.convert("L"))
    return np.repeat(g[:, :, None], 3, axis=2)


def _plain_crop(rgb: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)


def aligned_gray_crop(
    pipeline: object | None, rgb: np.ndarray, size: int = CROP_SIZE
) -> tuple[np.ndarray, bool]:
    """(gray (size, size) uint8 crop, fell_back) for one already-cropped face image.

    With a ``FacePipeline`` the crop is its aligned face; if the landmark fit fails (or
    ``pipeline`` is None) the whole image is resized instead, which is what a 48×48 dataset crop
    roughly is anyway.
    """
    import cv2

    if pipeline is not None:
        face = pipeline.cropped(rgb)  # type: ignore[attr-defined]
        if face.success and face.aligned is not None:
            crop = cv2.cvtColor(face.aligned, cv2.COLOR_RGB2GRAY)
            if crop.shape[0] != size:
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            return crop, False
    return _plain_crop(rgb, size), True


def make_pipeline() -> object:
    """The face pipeline used for training crops (no mask/HOG: only the aligned crop is needed)."""
    from aulib.face import FacePipeline

    try:
        return FacePipeline(features=False)
    except TypeError:  # older signature without ``features``
        return FacePipeline()


def build_crop_cache(
    paths: Sequence[Path], out: Path, align: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Aligned gray crops of ``paths`` as an (N, 112, 112) uint8 array, cached at ``out`` (.npy).

    Reuses the cache when its sidecar lists exactly the same images and alignment mode. The
    sidecar (``out`` with ``.json``) records names, ``aligned`` and the indices that fell back to
    a plain resize.
    """
    out = Path(out)
    meta_path = out.with_suffix(".json")
    names = [str(p) for p in paths]
    if out.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("names") == names and meta.get("aligned") == align:
            return np.load(out, mmap_mode="r"), meta
    pipeline = make_pipeline() if align else None
    crops = np.zeros((len(paths), CROP_SIZE, CROP_SIZE), np.uint8)
    fallback: list[int] = []
    for i, p in enumerate(paths):
        crops[i], fell_back = aligned_gray_crop(pipeline, _load_rgb(p))
        if fell_back:
            fallback.append(i)
        if progress is not None:
            progress(i + 1, len(paths))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npy")
    np.save(tmp, crops)
    tmp.replace(out)
    meta = {"names": names, "aligned": align, "fallback": fallback, "n": len(paths)}
    meta_path.write_text(json.dumps(meta))
    return crops, meta


def cache_file(cache_dir: Path, name: str, n: int | None, align: bool) -> Path:
    """Cache path for a dataset split; subset size and alignment mode are part of the name."""
    return Path(cache_dir) / f"{name}_{'all' if n is None else n}{'' if align else '_plain'}.npy"
