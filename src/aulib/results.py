"""The output table: column names (DESIGN.md contract, OpenFace-compatible) and row builders.

One row per face per frame. Images have ``frame`` 0 and ``timestamp`` 0.0. Inputs with no face
or that cannot be read get one row with ``success`` 0, an ``error`` message and NaN elsewhere,
so a batch never loses track of an input.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from aulib.face import Face

from aulib.au.emotion_rules import PROTOTYPES

# The eight FER+ classes, in the CNN output order.
EMOTIONS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
# rule_* columns in the order EmotionRules returns them.
RULE_EMOTIONS = list(PROTOTYPES)

FACE_COLUMNS = (
    ["input", "frame", "timestamp", "face", "success", "error",
     "face_x", "face_y", "face_width", "face_height", "face_score"]
    + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
)


def au_name(au: int) -> str:
    """``AU01``-style zero-padded name."""
    return f"AU{au:02d}"


def columns(aus: list[int], mt_aus: list[int] | None = None, emotion: bool = True) -> list[str]:
    """All output columns, in order, for the given AU sets."""
    cols = list(FACE_COLUMNS)
    cols += [f"{au_name(a)}_c" for a in aus] + [f"{au_name(a)}_r" for a in aus]
    cols += [f"rule_{e}" for e in RULE_EMOTIONS]
    if emotion:
        cols += ["emotion"] + [f"p_{e}" for e in EMOTIONS]
    if mt_aus:
        cols += [f"mt_{au_name(a)}_c" for a in mt_aus]
    return cols


def empty_row(input_name: str, error: str, frame: int = 0, timestamp: float = 0.0) -> dict:
    """The ``success=0`` row for an input or frame with no usable face."""
    return {"input": input_name, "frame": frame, "timestamp": timestamp, "face": 0, "success": 0, "error": error}


def face_row(input_name: str, frame: int, timestamp: float, face_id: int, face: Face, pred: dict) -> dict:
    """One table row for a face: its box, landmarks (original pixels) and prediction columns."""
    row: dict = {"input": input_name, "frame": frame, "timestamp": timestamp, "face": face_id,
                 "success": int(face.success), "error": face.error}
    x, y, w, h = (float(v) for v in face.box)
    row.update(face_x=x, face_y=y, face_width=w, face_height=h, face_score=face.score)
    if face.landmarks is not None:
        pts = face.landmarks.astype(np.float64)
        row.update(zip((f"x_{i}" for i in range(len(pts))), pts[:, 0].tolist()))
        row.update(zip((f"y_{i}" for i in range(len(pts))), pts[:, 1].tolist()))
    row.update(pred)
    return row


def face_rows(faces: list[Face], input_name: str, frame: int = 0, timestamp: float = 0.0,
              preds: list[dict] | None = None, face_ids: list[int] | None = None) -> list[dict]:
    """Rows for the faces of one image/frame; one ``success=0`` "no face detected" row if none."""
    if not faces:
        return [empty_row(input_name, "no face detected", frame, timestamp)]
    preds = preds or [{} for _ in faces]
    ids = face_ids or list(range(len(faces)))
    return [face_row(input_name, frame, timestamp, i, f, p) for i, f, p in zip(ids, faces, preds)]


def to_frame(rows: list[dict], cols: list[str]) -> pd.DataFrame:
    """Rows → DataFrame with every contract column present (NaN where not computed), typed.

    Built column-wise from one float matrix (a few ms per 1,000 rows): occurrences ``*_c`` are
    nullable integers (``<NA>`` for rows without a face), ``frame``/``face``/``success`` integers,
    ``input``/``error`` strings (through :func:`table_text`: valid Unicode whatever the file
    name's bytes), ``emotion`` a label or None.
    """
    text, ints = ("input", "error", "emotion"), ("frame", "face", "success")
    num = [c for c in cols if c not in text and c not in ints]
    values = np.array([[r.get(c) for c in num] for r in rows], dtype=np.float64).reshape(len(rows), len(num))
    data: dict[str, object] = {c: values[:, j] for j, c in enumerate(num)}
    for c in ints:
        data[c] = np.array([r.get(c) or 0 for r in rows], dtype=np.int64)
    data["input"] = [table_text(str(r.get("input") or "")) for r in rows]
    data["error"] = [table_text(str(r.get("error") or "")) for r in rows]
    if "emotion" in cols:
        data["emotion"] = pd.Series([r.get("emotion") for r in rows], dtype=object)
    df = pd.DataFrame({c: data[c] for c in cols}, index=pd.RangeIndex(len(rows)))
    occ = [c for c in cols if c.endswith("_c")]
    if occ:
        df[occ] = df[occ].round().astype("Int64")
    return df


_ESCAPE = re.compile(r"[\\\ud800-\udfff]" if os.name != "nt" else r"[\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape(m: re.Match) -> str:
    c = m.group()
    if c == "\\":
        return "\\\\"
    o = ord(c)
    return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\u{o:04x}"


def table_text(text: str) -> str:
    """Text as stored in a table's ``input``/``error`` columns: always valid Unicode, reversible.

    Paths are str as Python decodes them (``os.fsdecode``: a byte that is not UTF-8 becomes a lone
    surrogate U+DC80–U+DCFF, which UTF-8 writers and pyarrow refuse). Here such a byte is written
    ``\\xNN`` (other lone surrogates ``\\uXXXX``) and, on POSIX, a literal backslash is doubled,
    so every backslash in a table starts an escape and :func:`text_path` restores the exact name.
    Names without backslashes or undecodable bytes (nearly all) are unchanged. On Windows, where
    a backslash is the path separator, backslashes are left alone.
    """
    return _ESCAPE.sub(_escape, text) if _ESCAPE.search(text) else text


def _unescape(m: re.Match) -> str:
    code = m.group(1)
    if code == "\\":
        return "\\"
    return chr(0xDC00 + int(code[1:], 16)) if code[0] == "x" else chr(int(code[1:], 16))


def text_path(text: str) -> str:
    """Inverse of :func:`table_text`: the path string (``os.fsencode`` gives the original bytes)."""
    if os.name == "nt":
        return re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4})", _unescape, text)
    return _UNESCAPE.sub(_unescape, text) if "\\" in text else text


def finite(a: np.ndarray) -> np.ndarray:
    """Replace NaN/inf by NaN-safe values: NaN/inf never reach the output as inf."""
    a = np.asarray(a, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    return a
