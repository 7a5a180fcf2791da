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

from aulib.au.codes import AUS
from aulib.face.record import EMOTIONS

NEUTRAL_ROLE = "neutral_first_frame"
ROLES = ("peak", "peak-1", "peak-2", NEUTRAL_ROLE)
# Columns the readers use (the AU columns of :data:`aulib.au.codes.AUS` are required too).
REQUIRED_COLUMNS = ("path", "subject", "sequence", "frame", "role", "emotion", "facs_source")
# The AU banks nest two subject-grouped CVs (outer figures, inner choice of C): each inner CV needs two
# subjects, so the outer training folds need two, so the sheet needs three.
MIN_SUBJECTS = 3
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
        """Read ``<data_dir>/ckplus48/labels/images_au.csv`` (``data_dir`` is the shared data folder).

        The sheet is checked here, before any image is read, because a bad sheet otherwise surfaces
        minutes later as a pandas KeyError or an "int()" message that names neither file nor row:
        ValueError naming the file (and the column / line) for an empty sheet, missing columns,
        unknown labels and AU codes that are not integers −1…5, or too few subjects to split.
        """
        root = Path(data_dir) / "ckplus48"
        labels = root / "labels" / "images_au.csv"
        if not labels.is_file():
            raise FileNotFoundError(f"{labels}: CK+48 labels not found")
        try:
            t = pd.read_csv(labels, dtype={"sequence": str})
        except pd.errors.EmptyDataError:
            raise ValueError(f"{labels}: empty file (expected a header line and one row per image)") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise ValueError(f"{labels}: not a readable CSV ({' '.join(str(e).split())})") from None
        _check_fields(labels)
        _check_sheet(labels, t)
        ck = cls(root, t.drop_duplicates(["subject", "sequence", "frame"]).reset_index(drop=True))
        coded = ck.with_facs().table.subject.nunique()
        if coded < MIN_SUBJECTS:
            raise ValueError(f"{labels}: training needs at least {MIN_SUBJECTS} subjects with AU codes for its "
                             f"subject-grouped cross-validation (has {coded})")
        return ck

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


def _line(t: pd.DataFrame, mask: pd.Series) -> int:
    """File line of the first row where ``mask`` holds (line 1 is the header)."""
    return int(t.index[mask.to_numpy()][0]) + 2


def _check_fields(labels: Path) -> None:
    """Refuse a sheet with a row of fewer or more fields than its header, naming the line: pandas fills missing
    fields with NaN, and a sheet cut inside a row (an interrupted copy) trained that row with every AU read as
    absent (blank = absent) — a peak frame of AU1, 2, 25 and 27 taught as a negative of each — without a word."""
    with open(labels, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            return
        for row in rows:
            if row and len(row) != len(header):
                cut = " (the file was cut inside it?)" if len(row) < len(header) else ""
                raise ValueError(f"{labels}: line {rows.line_num}: {len(row)} fields, expected {len(header)}{cut}")


def _check_sheet(labels: Path, t: pd.DataFrame) -> None:
    """Refuse a CK+ label sheet the readers cannot use, naming the file and the column or line."""
    missing = [c for c in (*REQUIRED_COLUMNS, *(f"AU{a}" for a in AUS)) if c not in t.columns]
    if missing:
        raise ValueError(f"{labels}: missing column(s) {', '.join(missing)}")
    if t.empty:
        raise ValueError(f"{labels}: no image rows (only a header)")
    for col in ("path", "subject", "role", "emotion", "facs_source"):
        blank = t[col].isna() | (t[col].astype(str).str.strip() == "")
        if blank.any():
            raise ValueError(f"{labels}: line {_line(t, blank)}: column {col} is empty")
    for col, known in (("emotion", CKPLUS_EMOTION), ("role", ROLES)):
        bad = ~t[col].isin(list(known))
        if bad.any():
            raise ValueError(f"{labels}: line {_line(t, bad)}: unknown {col} {t[col][bad].iloc[0]!r} "
                             f"(expected one of {', '.join(sorted(known))})")
    for col in t.columns:
        if not col.startswith("AU"):
            continue
        if not col[2:].isdigit():
            raise ValueError(f"{labels}: column {col!r}: AU columns must be named AU<number>")
        raw = t[col]
        codes = pd.to_numeric(raw, errors="coerce")
        # Blank = absent (as CKPlus.codes reads it); anything else must be an integer code -1…5.
        bad = (codes.isna() & raw.notna()) | (codes.notna() & ((codes % 1 != 0) | (codes < -1) | (codes > 5)))
        if bad.any():
            v = raw[bad].iloc[0]
            shown = f"{v:g}" if isinstance(v, (int, float, np.number)) else repr(str(v))
            raise ValueError(f"{labels}: line {_line(t, bad)}, column {col}: AU code {shown} is not "
                             "one of -1 (absent), 0 (present) or 1-5 (intensity A-E)")
        t[col] = codes


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
    with open(label_csv, newline="", encoding="utf-8-sig") as f:  # Excel saves a BOM before the first name
        try:
            rows = list(csv.reader(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{label_csv}: not a readable CSV ({e})") from None
    for line, row in enumerate(rows, 1):
        if not any(x.strip() for x in row):
            continue  # blank line (e.g. at the end)
        v = _votes(label_csv, line, row)
        emo, other = v[:8], v[8:]
        if emo.sum() <= 0 or emo.max() < other.max():
            continue
        paths.append(folder / row[0])
        votes.append(emo)
    if not votes:
        raise ValueError(f"{label_csv}: no usable image rows")
    vv = np.stack(votes)
    return FerPlus(paths, vv / vv.sum(axis=1, keepdims=True), vv)


def _votes(label_csv: Path, line: int, row: list[str]) -> np.ndarray:
    """The 10 vote counts of one label.csv row, refused (naming file and line) unless finite and ≥ 0.

    A NaN vote trains the network to NaN and a negative one makes a "probability" below 0, so a bad
    row must stop the reader rather than reach the loss; a short row or a header line is refused
    too instead of being dropped silently (it would shrink the training set unnoticed).
    """
    where = f"{label_csv}: line {line}"
    if len(row) < 12:
        raise ValueError(f"{where}: {len(row)} fields, expected 12 (image name, face box, 10 vote counts)")
    if not row[0].strip():
        raise ValueError(f"{where}: empty image name")
    try:
        v = np.array([float(x) for x in row[2:12]], dtype=np.float64)
    except ValueError:
        bad = next(x for x in row[2:12] if not _is_float(x))
        raise ValueError(f"{where}: vote {bad!r} is not a number (label.csv has no header line)") from None
    if not np.isfinite(v).all() or (v < 0).any():
        bad = next(x for x, y in zip(row[2:12], v) if not np.isfinite(y) or y < 0)
        raise ValueError(f"{where}: vote {bad.strip()!r} is not a finite count ≥ 0")
    return v.astype(np.float32)


def _is_float(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True
