"""The training datasets, one reader each: CK+48 (AU codes, emotions, subject-wise splits) and FER+.

**CK+48** (48×48 gray Cohn-Kanade+ crops). Label codes in ``labels/images_au.csv``: -1 absent,
0 present (intensity not coded), 1–5 = intensity A–E. Roles: ``peak``, ``peak-1``, ``peak-2``
(reuse the peak's codes) and ``neutral_first_frame`` (no AU active). The 219 peak frames listed
under two source folders are kept once, so a frame can never sit on both sides of a split or count
twice in a metric. Rows with ``facs_source == "missing"`` have an emotion but no AU codes: the AU
banks train on :meth:`CKPlus.with_facs`, the multitask CNN keeps them for its emotion loss and
masks their AU targets (-1). CK+ is licensed for non-commercial research only.

**FER+** (FER2013 images with the FER+ crowd votes): :func:`read_ferplus`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aulib.face.record import EMOTIONS

NEUTRAL_ROLE = "neutral_first_frame"
FERPLUS_SPLITS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
# CK+ emotion folder names → FER+ names (neutral first frames are labelled "neutral").
CKPLUS_EMOTION = {
    "neutral": "neutral", "happy": "happiness", "happiness": "happiness", "surprise": "surprise",
    "sadness": "sadness", "anger": "anger", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}


@dataclass
class CKPlus:
    """The unique CK+48 frames: ``table`` (one row per image, the label sheet's columns) under ``root``."""

    root: Path
    table: pd.DataFrame

    @classmethod
    def load(cls, data_dir: str | Path) -> CKPlus:
        """Read ``<data_dir>/ckplus48/labels/images_au.csv`` (``data_dir`` is the shared data folder)."""
        root = Path(data_dir) / "ckplus48"
        labels = root / "labels" / "images_au.csv"
        if not labels.is_file():
            raise FileNotFoundError(f"{labels}: CK+48 labels not found")
        t = pd.read_csv(labels, dtype={"sequence": str})
        unknown = set(t.emotion) - set(CKPLUS_EMOTION)
        if unknown:
            raise ValueError(f"{labels}: unknown emotion labels {sorted(unknown)}")
        return cls(root, t.drop_duplicates(["subject", "sequence", "frame"]).reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.table)

    def take(self, rows: np.ndarray | pd.Series) -> CKPlus:
        """The frames selected by a boolean mask or integer positions."""
        rows = np.asarray(rows)
        t = self.table[rows] if rows.dtype == bool else self.table.iloc[rows]
        return CKPlus(self.root, t.reset_index(drop=True))

    def with_facs(self) -> CKPlus:
        """Only the frames with AU codes (what the AU banks train on)."""
        return self.take((self.table.facs_source != "missing").to_numpy())

    def of_subjects(self, subjects: Sequence[str]) -> CKPlus:
        return self.take(self.table.subject.isin(subjects).to_numpy())

    def au_columns(self) -> list[str]:
        return [c for c in self.table.columns if c.startswith("AU")]

    def image_paths(self) -> list[Path]:
        return [self.root / p for p in self.table.path]

    @property
    def subjects(self) -> np.ndarray:
        """Subject id per image: the groups of every split (never split a subject across folds)."""
        return self.table.subject.to_numpy()

    @property
    def emotion(self) -> np.ndarray:
        """Emotion per image as an index into :data:`aulib.face.record.EMOTIONS`."""
        return np.array([EMOTIONS.index(CKPLUS_EMOTION[e]) for e in self.table.emotion], np.int64)

    def codes(self, au: int) -> np.ndarray:
        """Raw codes of ``au`` per image; neutral frames are -1 (absent) whatever the sheet says."""
        c = self.table[f"AU{au}"].fillna(-1).to_numpy().astype(int)
        c[(self.table.role == NEUTRAL_ROLE).to_numpy()] = -1
        return c

    def occurrence(self, aus: Sequence[int]) -> np.ndarray:
        """(N, K) int8 targets: 1 present (code ≥ 0), 0 absent, -1 unknown (frame without AU codes)."""
        y = np.stack([(self.codes(a) >= 0).astype(np.int8) for a in aus], axis=1)
        y[(self.table.facs_source == "missing").to_numpy()] = -1
        return y

    def intensity(self, aus: Sequence[int]) -> np.ndarray:
        """(N, K) intensity 0–5 (absent = 0, A–E = 1–5), NaN where present but not coded or unknown."""
        out = []
        for a in aus:
            codes = self.codes(a)
            c = codes.astype(float)
            c[codes == 0] = np.nan  # present, intensity not coded: excluded from the SVR fit
            c[codes == -1] = 0.0
            out.append(c)
        y = np.stack(out, axis=1)
        y[(self.table.facs_source == "missing").to_numpy()] = np.nan
        return y


def au_counts(ck: CKPlus) -> pd.DataFrame:
    """Positive counts per AU (frames with AU codes): peak images, all images, coded intensities."""
    ck = ck.with_facs()
    rows = []
    peak = (ck.table.role == "peak").to_numpy()
    for col in ck.au_columns():
        c = ck.codes(int(col[2:]))
        rows.append({"au": int(col[2:]), "peak_pos": int(((c >= 0) & peak).sum()), "all_pos": int((c >= 0).sum()),
                     "intensity_coded": int((c >= 1).sum())})
    return pd.DataFrame(rows).sort_values("peak_pos", ascending=False).reset_index(drop=True)


def subject_split(subjects: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


@dataclass
class FerPlus:
    """One FER+ split: image paths, (N, 8) vote distributions (soft labels), (N, 8) raw votes."""

    paths: list[Path]
    soft: np.ndarray
    votes: np.ndarray

    def subset(self, n: int | None) -> FerPlus:
        """The first ``n`` images (all when ``n`` is None): smoke runs."""
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
    if split not in FERPLUS_SPLITS:
        raise ValueError(f"FER+ split must be one of {sorted(FERPLUS_SPLITS)}, not {split!r}")
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
    if not votes:
        raise ValueError(f"{label_csv}: no usable image rows")
    vv = np.stack(votes)
    return FerPlus(paths, vv / vv.sum(axis=1, keepdims=True), vv)
