"""The result table: the only module that knows column names.

One row per face per frame (DESIGN.md contract, OpenFace-compatible names): ``input, frame,
timestamp, face, success, error``, the box and 68 landmarks in original-image pixels, then
``AUxx_c`` (0/1), ``AUxx_r`` (0–5), ``rule_*`` (0–100 %), ``emotion`` + ``p_*`` (CNN, sum 1) and
``mt_AUxx_c`` (multitask heads). Images have ``frame`` 0 and ``timestamp`` 0.0; an input or frame
with no usable face gets one ``success=0`` row with an ``error`` message and NaN elsewhere, so a
batch never loses track of an input.

Rows are built from :class:`~aulib.face.Face` records (:func:`face_rows`); front ends read tables
back through the column-group helpers (:func:`au_intensity`, :func:`emotion_probs`,
:func:`landmarks` …) instead of parsing column strings themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from aulib.au.emotion_rules import PROTOTYPES
from aulib.face.record import EMOTIONS, Face, au_name

# rule_* columns, in the order EmotionRules returns them.
RULE_EMOTIONS: tuple[str, ...] = tuple(PROTOTYPES)
N_LANDMARKS = 68

ID_COLUMNS = ["input", "frame", "timestamp", "face", "success", "error"]
BOX_COLUMNS = ["face_x", "face_y", "face_width", "face_height", "face_score"]
LANDMARK_COLUMNS = [f"x_{i}" for i in range(N_LANDMARKS)] + [f"y_{i}" for i in range(N_LANDMARKS)]
FACE_COLUMNS = ID_COLUMNS + BOX_COLUMNS + LANDMARK_COLUMNS
TEXT_COLUMNS = ("input", "error", "emotion")
INT_COLUMNS = ("frame", "face", "success")

_AU_COLUMN = re.compile(r"^AU(\d\d)_([cr])$")
_MT_COLUMN = re.compile(r"^mt_AU(\d\d)_c$")


# ---------------------------------------------------------------------------------- column names
def occurrence_column(au: int) -> str:
    return f"{au_name(au)}_c"


def intensity_column(au: int) -> str:
    return f"{au_name(au)}_r"


def rule_column(emotion: str) -> str:
    return f"rule_{emotion}"


def prob_column(emotion: str) -> str:
    return f"p_{emotion}"


def mt_column(au: int) -> str:
    return f"mt_{au_name(au)}_c"


def columns(aus: Sequence[int], mt_aus: Sequence[int] = (), emotion: bool = True) -> list[str]:
    """Every output column, in order, for an analyzer with these AU sets (pinned by a golden test)."""
    cols = list(FACE_COLUMNS)
    cols += [occurrence_column(a) for a in aus] + [intensity_column(a) for a in aus]
    cols += [rule_column(e) for e in RULE_EMOTIONS]
    if emotion:
        cols += ["emotion"] + [prob_column(e) for e in EMOTIONS]
    cols += [mt_column(a) for a in mt_aus]
    return cols


# ---------------------------------------------------------------------------------- rows
def empty_row(input_name: str, error: str, frame: int = 0, timestamp: float = 0.0) -> dict:
    """The ``success=0`` row for an input or frame with no usable face."""
    return {"input": input_name, "frame": frame, "timestamp": timestamp, "face": 0, "success": 0, "error": error}


def face_row(face: Face, input_name: str, frame: int = 0, timestamp: float = 0.0) -> dict:
    """One table row from a :class:`Face` record: id, box, landmarks and whatever predictions it has."""
    row: dict = {"input": input_name, "frame": frame, "timestamp": timestamp, "face": face.id,
                 "success": int(face.success), "error": face.error}
    x, y, w, h = (float(v) for v in face.box)
    row.update(face_x=x, face_y=y, face_width=w, face_height=h, face_score=float(face.score))
    if face.landmarks is not None:
        pts = np.asarray(face.landmarks, np.float64)
        row.update(zip(LANDMARK_COLUMNS[:N_LANDMARKS], pts[:, 0].tolist()))
        row.update(zip(LANDMARK_COLUMNS[N_LANDMARKS:], pts[:, 1].tolist()))
    if not face.success:
        return row
    if face.au_occurrence is not None:
        row.update(zip(map(occurrence_column, face.aus), face.au_occurrence.tolist()))
    if face.au_intensity is not None:
        row.update(zip(map(intensity_column, face.aus), _finite(face.au_intensity).tolist()))
    if face.rules is not None:
        row.update(zip(map(rule_column, RULE_EMOTIONS), np.asarray(face.rules, np.float64).tolist()))
    if face.emotion_probs is not None:
        row["emotion"] = face.emotion
        row.update(zip(map(prob_column, EMOTIONS), np.asarray(face.emotion_probs, np.float64).tolist()))
    if face.mt_au_occurrence is not None:
        row.update(zip(map(mt_column, face.mt_aus), face.mt_au_occurrence.tolist()))
    return row


def face_rows(faces: Sequence[Face], input_name: str, frame: int = 0, timestamp: float = 0.0) -> list[dict]:
    """Rows for the faces of one image/frame; one ``success=0`` "no face detected" row if none."""
    if not faces:
        return [empty_row(input_name, "no face detected", frame, timestamp)]
    return [face_row(f, input_name, frame, timestamp) for f in faces]


def to_frame(rows: Sequence[dict], cols: Sequence[str]) -> pd.DataFrame:
    """Rows → DataFrame with every column of ``cols`` present (NaN where not computed), typed.

    Built column-wise from one float matrix (a few ms per 1,000 rows): occurrences ``*_c`` are
    nullable integers (``<NA>`` for rows without a face), ``frame``/``face``/``success`` integers,
    ``input``/``error`` strings, ``emotion`` a label or None.
    """
    num = [c for c in cols if c not in TEXT_COLUMNS and c not in INT_COLUMNS]
    values = np.array([[r.get(c) for c in num] for r in rows], dtype=np.float64).reshape(len(rows), len(num))
    data: dict[str, object] = {c: values[:, j] for j, c in enumerate(num)}
    for c in INT_COLUMNS:
        data[c] = np.array([r.get(c) or 0 for r in rows], dtype=np.int64)
    data["input"] = [str(r.get("input") or "") for r in rows]
    data["error"] = [str(r.get("error") or "") for r in rows]
    if "emotion" in cols:
        data["emotion"] = pd.Series([r.get("emotion") for r in rows], dtype=object)
    df = pd.DataFrame({c: data[c] for c in cols}, index=pd.RangeIndex(len(rows)))
    occ = [c for c in cols if c.endswith("_c")]
    if occ:
        df[occ] = df[occ].round().astype("Int64")
    return df


def _finite(a: np.ndarray) -> np.ndarray:
    """Float64 copy with NaN for NaN/inf: inf never reaches a table."""
    a = np.array(a, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    return a


# ---------------------------------------------------------------------------------- column groups
def aus(df: pd.DataFrame) -> list[int]:
    """AU numbers that have an occurrence or intensity column, ascending."""
    return sorted({int(m.group(1)) for c in df.columns if (m := _AU_COLUMN.match(str(c)))})


def mt_aus(df: pd.DataFrame) -> list[int]:
    """AU numbers of the multitask heads present in the table."""
    return sorted(int(m.group(1)) for c in df.columns if (m := _MT_COLUMN.match(str(c))))


def _group(df: pd.DataFrame, names: Sequence[str], labels: Sequence[str]) -> pd.DataFrame:
    present = [(n, lab) for n, lab in zip(names, labels) if n in df.columns]
    return df[[n for n, _ in present]].set_axis([lab for _, lab in present], axis=1)


def au_occurrence(df: pd.DataFrame) -> pd.DataFrame:
    """``AUxx_c`` columns as a frame whose columns are ``AU01``, ``AU02`` … (0/1, ``<NA>`` without a face)."""
    a = aus(df)
    return _group(df, [occurrence_column(x) for x in a], [au_name(x) for x in a])


def au_intensity(df: pd.DataFrame) -> pd.DataFrame:
    """``AUxx_r`` columns as a frame whose columns are ``AU01`` … (0–5, NaN without a face)."""
    a = aus(df)
    return _group(df, [intensity_column(x) for x in a], [au_name(x) for x in a])


def emotion_probs(df: pd.DataFrame) -> pd.DataFrame:
    """CNN probabilities with the emotion names as columns (empty frame when no emotion model ran)."""
    return _group(df, [prob_column(e) for e in EMOTIONS], list(EMOTIONS))


def rule_scores(df: pd.DataFrame) -> pd.DataFrame:
    """% of each emotion prototype's AUs present, emotion names as columns (0–100)."""
    return _group(df, [rule_column(e) for e in RULE_EMOTIONS], list(RULE_EMOTIONS))


def mt_au_occurrence(df: pd.DataFrame) -> pd.DataFrame:
    """The multitask network's AU heads (0/1), columns ``AU01`` …; empty without them."""
    a = mt_aus(df)
    return _group(df, [mt_column(x) for x in a], [au_name(x) for x in a])


def landmarks(df: pd.DataFrame) -> np.ndarray:
    """(N, 68, 2) landmark coordinates (x, y) in original-image pixels; NaN rows without a face."""
    xy = df.reindex(columns=LANDMARK_COLUMNS).to_numpy(np.float64)
    return np.stack([xy[:, :N_LANDMARKS], xy[:, N_LANDMARKS:]], axis=2)


def boxes(df: pd.DataFrame) -> np.ndarray:
    """(N, 4) face boxes x, y, w, h in original-image pixels."""
    return df.reindex(columns=BOX_COLUMNS[:4]).to_numpy(np.float64)


def has_emotion(df: pd.DataFrame) -> bool:
    """True when the table holds CNN emotion columns."""
    return "emotion" in df.columns


def is_aulib_table(df: pd.DataFrame) -> bool:
    """True when ``df`` has the identifying columns of an aulib result table."""
    return set(ID_COLUMNS) <= set(map(str, df.columns))
