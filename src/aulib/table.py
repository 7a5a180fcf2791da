"""The result table: the only module that knows column names.

One row per face per frame (the README's "Output columns", OpenFace-compatible names): ``input, frame,
timestamp, face, success, error``, the box and 68 landmarks in original-image pixels, then
``AUxx_c`` (0/1), ``AUxx_r`` (0–5), ``rule_*`` (0–100 %), ``emotion`` + ``p_*`` (CNN, sum 1) and
``mt_AUxx_c`` (multitask heads). Images have ``frame`` 0 and ``timestamp`` 0.0; an input or frame
with no usable face gets one ``success=0`` row with an ``error`` message and NaN elsewhere, so a
batch never loses track of an input.

Rows are built from :class:`~aulib.face.Face` records (:func:`face_rows`); front ends read tables
back through the column-group helpers (:func:`au_intensity`, :func:`emotion_probs`,
:func:`landmarks` …) instead of parsing column strings themselves.

Rows travel as :class:`Rows` (the dicts :func:`face_rows` makes, with the table's columns) until a
DataFrame is asked for: CSV and JSON lines are written from them with the standard library, so a
small job (one photo to a CSV) never imports pandas, which is a quarter of such a run's time.
The CSV writer is byte-for-byte pandas' ``to_csv(quoting=QUOTE_NONNUMERIC)`` of the same table except
that a missing value is an empty field, not ``""`` (tests/test_table.py checks it; see :func:`csv_text`).

Files: CSV, Parquet and JSON lines (:func:`write_table`, :func:`read_table`, :class:`TableAppender`
for chunks). Text in tables: the ``input`` and ``error`` columns are always valid Unicode. A file
name that is not valid UTF-8 (Linux allows any bytes but ``/`` and NUL) is decoded by Python with
``surrogateescape``; :func:`table_text` turns each such byte into ``\\xNN`` and doubles literal
backslashes, so the text is reversible (:func:`text_path` gives the path back) and every format
stores it unchanged. Readers never turn text into NaN: an input named ``NA``, ``None``, ``null``
or ``nan`` stays that string, and newlines, quotes, commas or U+2028 inside a name survive (CSV
quotes every text cell, JSON escapes them).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
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
# OpenFace 2 channels (same names, units and signs as OpenFace's FeatureExtraction CSV), after the AU, rule and
# emotion columns: ``face_id`` (= ``face``), ``confidence`` (0–1), head pose (mm, radians; camera at the origin),
# gaze; blink AU45 (0/1 and 0–5) ends the AU blocks. See aulib.face.pose/blink/gaze/quality.
POSE_COLUMNS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
BLINK_AU = 45
BLINK_COLUMNS = ["AU45_c", "AU45_r"]
# Gaze (after the head pose): OpenFace's names and units.
GAZE_COLUMNS = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x",
                "gaze_angle_y"]
OPENFACE_COLUMNS = ["face_id", "confidence", *POSE_COLUMNS, *GAZE_COLUMNS]
TEXT_COLUMNS = ("input", "error", "emotion")
INT_COLUMNS = ("frame", "face", "success", "face_id")

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


def probability_column(au: int) -> str:
    return f"{au_name(au)}_p"


def columns(aus: Sequence[int], mt_aus: Sequence[int] = (), emotion: bool = True) -> list[str]:
    """Every output column, in order, for an analyzer with these AU sets (pinned by a golden test)."""
    cols = list(FACE_COLUMNS)
    # each AU block ends with blink (AU45), as OpenFace's does: its scripts take the intensities as the label slice
    # df.loc[:, "AU01_r":"AU45_r"], which with AU45 among the OpenFace channels took in 43 columns (rule_*,
    # emotion, p_*, confidence, pose_T* …) and gave a mean AU intensity of 13.8, without a word
    cols += [occurrence_column(a) for a in aus if a != BLINK_AU] + [BLINK_COLUMNS[0]]
    cols += [intensity_column(a) for a in aus if a != BLINK_AU] + [BLINK_COLUMNS[1]]
    cols += [rule_column(e) for e in RULE_EMOTIONS]
    if emotion:
        cols += ["emotion"] + [prob_column(e) for e in EMOTIONS]
    cols += [mt_column(a) for a in mt_aus]
    cols += OPENFACE_COLUMNS
    cols += [probability_column(a) for a in aus]  # added last (models v2): earlier positions unchanged
    return cols


GAZE_VECTORS = [GAZE_COLUMNS[0:3], GAZE_COLUMNS[3:6]]
GAZE_ANGLES = GAZE_COLUMNS[6:]
# Angles in radians that wrap at ±π (a head turned upside down reads +3.13 and −3.13 in turn):
# smoothing averages them as angles, not as numbers (:mod:`aulib.video.smooth`).
ANGLE_COLUMNS = POSE_COLUMNS[3:]


def trace_scale(column: str) -> float:
    """Relative smoothing width of a trace column: gaze moves in fast steps (saccades), so half."""
    return 0.5 if column in GAZE_COLUMNS else 1.0


class CoherentRows:
    """After video smoothing moved ``AUxx_p`` and ``AUxx_r``, in place: each ``AUxx_c`` decided again
    from the smoothed probability (``AUxx_p`` > the AU's ``p_thresholds`` entry; kept when None or
    no probability) and the occurrence/intensity rule re-applied
    (:func:`aulib.au.models.coherent_intensity`); the ``rule_*`` percentages follow the new occurrences;
    ``gaze_angle_x/y`` are computed again from the smoothed per-eye vectors (smoothing the angles on
    their own let them drift up to 5° from the vectors of the same row where an eye's vector came and went).
    Built once per video (column names, rule matrix), called on every chunk of rows."""

    def __init__(self, aus: Sequence[int], p_thresholds: Sequence[float] | None = None) -> None:
        from aulib.au.emotion_rules import EmotionRules

        self.occ, self.inten = [occurrence_column(a) for a in aus], [intensity_column(a) for a in aus]
        self.prob = [probability_column(a) for a in aus]
        self.p_thresholds = None if p_thresholds is None else [float(t) for t in p_thresholds]
        self.rules = EmotionRules(list(aus)) if p_thresholds is not None else None

    def __call__(self, rows: Sequence[dict]) -> None:
        from aulib.au.models import coherent_intensity
        from aulib.face.gaze import gaze_angles

        occ, inten = self.occ, self.inten
        for row in rows:
            if row.get("success") and GAZE_ANGLES[0] in row:
                vec = np.array([row.get(c, np.nan) for c in GAZE_COLUMNS[:6]], np.float64)
                row.update(zip(GAZE_ANGLES, gaze_angles(vec).tolist()))
            if not row.get("success") or not occ or occ[0] not in row or inten[0] not in row:
                continue
            if self.p_thresholds is not None:
                for pk, ok_, t in zip(self.prob, occ, self.p_thresholds):
                    v = row.get(pk)
                    if v is not None and np.isfinite(v):
                        row[ok_] = int(v > t)
            c = np.array([row.get(k, np.nan) for k in occ], np.float64)
            if self.rules is not None and np.isfinite(c).all() and rule_column(RULE_EMOTIONS[0]) in row:
                row.update(zip(map(rule_column, RULE_EMOTIONS), self.rules(c[None])[0].astype(np.float64).tolist()))
            r = np.array([row.get(k, np.nan) for k in inten], np.float64)
            ok = np.isfinite(c) & np.isfinite(r)
            fixed = coherent_intensity(r, c)
            for k, v, good in zip(inten, fixed.tolist(), ok):
                if good:
                    row[k] = v


def trace_columns(aus: Sequence[int]) -> list[str]:
    """Columns that video smoothing steadies along time: the AU models' intensities and probabilities
    (the occurrences are then decided again from the smoothed probabilities, :class:`CoherentRows`), the
    head pose and the gaze vectors (see :func:`trace_scale`, :data:`GAZE_VECTORS`; the gaze angles are then
    computed from the smoothed vectors, :class:`CoherentRows`)."""
    return ([intensity_column(a) for a in aus] + [probability_column(a) for a in aus] + list(POSE_COLUMNS)
            + list(GAZE_COLUMNS[:6]))


# ---------------------------------------------------------------------------------- rows
def empty_row(input_name: str, error: str, frame: int = 0, timestamp: float = 0.0) -> dict:
    """The ``success=0`` row for an input or frame with no usable face (confidence 0, as OpenFace writes for a
    frame without a face and aulib for a refused fit; it was empty here)."""
    return {"input": input_name, "frame": frame, "timestamp": timestamp, "face": 0, "face_id": 0, "success": 0,
            "error": error, "confidence": 0.0}


def face_row(face: Face, input_name: str, frame: int = 0, timestamp: float = 0.0) -> dict:
    """One table row from a :class:`Face` record: id, box, landmarks and whatever predictions it has."""
    row: dict = {"input": input_name, "frame": frame, "timestamp": timestamp, "face": face.id, "face_id": face.id,
                 "success": int(face.success), "error": face.error}
    row["confidence"] = float(face.confidence) if face.success and np.isfinite(face.confidence) else \
        (0.0 if not face.success else np.nan)
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
    if face.au_prob is not None:
        row.update(zip(map(probability_column, face.aus), _finite(face.au_prob).tolist()))
    if face.rules is not None:
        row.update(zip(map(rule_column, RULE_EMOTIONS), np.asarray(face.rules, np.float64).tolist()))
    if face.emotion_probs is not None:
        row["emotion"] = face.emotion
        row.update(zip(map(prob_column, EMOTIONS), np.asarray(face.emotion_probs, np.float64).tolist()))
    if face.mt_au_occurrence is not None:
        row.update(zip(map(mt_column, face.mt_aus), face.mt_au_occurrence.tolist()))
    if face.pose is not None:
        row.update(zip(POSE_COLUMNS, _finite(face.pose).tolist()))
    if face.blink is not None:
        r, c = (float(v) for v in face.blink)
        if np.isfinite(r):
            row.update(AU45_r=r, AU45_c=int(c))
    if face.gaze is not None:
        row.update(zip(GAZE_COLUMNS, _finite(face.gaze).tolist()))
    return row


def face_rows(faces: Sequence[Face], input_name: str, frame: int = 0, timestamp: float = 0.0) -> list[dict]:
    """Rows for the faces of one image/frame; one ``success=0`` "no face detected" row if none."""
    if not faces:
        return [empty_row(input_name, "no face detected", frame, timestamp)]
    return [face_row(f, input_name, frame, timestamp) for f in faces]


@functools.lru_cache(maxsize=1)
def _text_dtype() -> object:
    """The dtype pandas infers for a column of strings: ``str`` with pandas ≥ 3, ``object`` before."""
    import pandas as pd

    return pd.Series(["text"]).dtype


def to_frame(rows: Sequence[dict], cols: Sequence[str]) -> pd.DataFrame:
    """Rows → DataFrame with every column of ``cols`` present (NaN where not computed), typed.

    Built column-wise from one float matrix (a few ms per 1,000 rows): occurrences ``*_c`` are
    nullable integers (``<NA>`` for rows without a face), ``frame``/``face``/``success`` integers,
    ``input``/``error`` strings (through :func:`table_text`: valid Unicode whatever the file
    name's bytes), ``emotion`` a label or None.
    """
    import pandas as pd

    num = [c for c in cols if c not in TEXT_COLUMNS and c not in INT_COLUMNS]
    values = np.array([[r.get(c) for c in num] for r in rows], dtype=np.float64).reshape(len(rows), len(num))
    data: dict[str, object] = {c: values[:, j] for j, c in enumerate(num)}
    for c in INT_COLUMNS:
        data[c] = np.array([r.get(c) or 0 for r in rows], dtype=np.int64)
    # a Series of the text dtype, not a list: an empty list became a float64 column, so the table of no rows
    # (an empty folder, an empty chunk) broke ``df.input.str`` and turned a concatenation's text into object
    for c in ("input", "error"):
        data[c] = pd.Series([table_text(str(r.get(c) or "")) for r in rows], dtype=_text_dtype())
    if "emotion" in cols:
        # inferred like input/error (pandas ≥ 3: the str dtype, as the table reads back from a file)
        # — also when no row has a label (a faceless image): it was object then, and pd.concat of two runs'
        # tables turned the column into object
        data["emotion"] = pd.Series([r.get("emotion") for r in rows], dtype=_text_dtype())
    df = pd.DataFrame({c: data[c] for c in cols}, index=pd.RangeIndex(len(rows)))
    occ = [c for c in cols if c.endswith("_c")]
    if occ:
        df[occ] = df[occ].round().astype("Int64")
    return df


class Rows:
    """A chunk of table rows as the analysis makes them (:func:`face_rows` dicts), with the table's
    columns; :meth:`frame` turns it into the typed DataFrame. Writers and the batch runner take
    these directly, so pandas is imported only when a DataFrame is really needed."""

    __slots__ = ("columns", "rows")

    def __init__(self, rows: Iterable[dict], columns: Sequence[str]) -> None:
        self.rows = list(rows)
        self.columns = list(columns)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"Rows({len(self.rows)} rows × {len(self.columns)} columns)"

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (:func:`to_frame`)."""
        return to_frame(self.rows, self.columns)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Rows:
        """A table's rows as dicts, every missing value (NaN, ``<NA>``, None) as None and the
        ``input``/``error`` text back to the raw strings rows carry (:func:`text_path`)."""
        rows = df.astype(object).where(df.notna(), None).to_dict("records")
        for r in rows:
            for c in ("input", "error"):
                if isinstance(r.get(c), str):
                    r[c] = text_path(r[c])
        return cls(rows, list(df.columns))

    @classmethod
    def concat(cls, parts: Sequence[Rows], columns: Sequence[str]) -> Rows:
        return cls((r for p in parts for r in p.rows), columns)


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text_cell(v: object) -> str:
    return table_text(str(v or ""))


def _label_cell(v: object) -> object:
    return None if _missing(v) else str(v)


def _int_cell(v: object) -> int:
    return int(v or 0)  # type: ignore[call-overload]


def _occurrence_cell(v: object) -> object:
    return None if _missing(v) else int(round(float(v)))  # type: ignore[arg-type]


def _float_cell(v: object) -> float | None:
    if v is None:
        return None
    f = float(v)  # type: ignore[arg-type]
    return None if math.isnan(f) else f


def _kind(column: str) -> str:
    """How :func:`to_frame` types a column: ``text`` (input, error), ``label``, ``int``, ``occurrence`` or
    ``float`` — the one rule the JSON and CSV writers share."""
    if column in ("input", "error"):
        return "text"
    if column in TEXT_COLUMNS:
        return "label"
    if column in INT_COLUMNS:
        return "int"
    return "occurrence" if column.endswith("_c") else "float"


_CELL: dict[str, Callable[[object], object]] = {"text": _text_cell, "label": _label_cell, "int": _int_cell,
                                                 "occurrence": _occurrence_cell, "float": _float_cell}


def _cells(columns: Sequence[str]) -> list[Callable[[object], object]]:
    """One converter per column, giving the value as :func:`to_frame` types it (None = missing)."""
    return [_CELL[_kind(c)] for c in columns]


def _quoted(text: str) -> str:
    """A text cell as ``csv.QUOTE_NONNUMERIC`` writes it: quoted, its quotes doubled."""
    return '"' + text.replace('"', '""') + '"'


def _csv_column(column: str, values: list[object]) -> list[str]:
    """The CSV cells of one column's values, typed as :func:`_cells` types them (written per kind here, not
    through a converter call per cell: see :func:`csv_text`)."""
    kind = _kind(column)
    if kind == "text":
        return [_quoted(table_text(str(v or ""))) for v in values]
    if kind == "label":
        return ["" if _missing(v) else _quoted(str(v)) for v in values]
    if kind == "int":
        return [str(int(v or 0)) for v in values]  # type: ignore[call-overload]
    floats = [math.nan if v is None else float(v) for v in values]  # type: ignore[arg-type]
    if kind == "occurrence":
        return ["" if f != f else str(int(round(f))) for f in floats]
    return ["" if f != f else repr(f) for f in floats]  # (f != f: NaN)


def csv_text(rows: Rows, header: bool = True) -> str:
    """CSV of ``rows`` as pandas writes :meth:`Rows.frame` with ``quoting=QUOTE_NONNUMERIC``, but for missing
    values: header and text cells quoted (a lone CR in a file name is then not a line end to any reader),
    numbers bare (floats as Python's shortest repr), a missing number or label an empty field; ``\n`` line ends.
    A missing value was the quoted ``""`` pandas writes: pandas and pyarrow read that as missing, but polars
    read every column holding one as text (its mean None, without an error), duckdb typed a faceless video's
    columns VARCHAR, and ``numpy.genfromtxt`` failed; all of them read an empty field as missing.

    Built column by column (one list comprehension per column, not one converter call per cell through
    ``csv.writer``): writing a 472-frame clip's 232 columns took 0.3–0.6 s, a tenth of the whole run."""
    cols = rows.columns
    lines = [",".join(_quoted(c) for c in cols)] if header else []
    if rows.rows and cols:
        cells = [_csv_column(c, [r.get(c) for r in rows.rows]) for c in cols]
        lines += [",".join(row) for row in zip(*cells)]
    elif rows.rows:  # rows without columns: an empty line each, as csv.writer writes them
        lines += [""] * len(rows.rows)
    return "".join(line + "\n" for line in lines)


def frame_csv(df: pd.DataFrame) -> bytes:
    """A DataFrame table as the CSV bytes :func:`write_table` writes, for the web app's downloads. They were
    pandas' ``to_csv``, text unquoted: an upload named ``NA`` or ``nan`` read back as a missing name, and the
    file was not the command line's."""
    return csv_text(Rows.from_frame(df)).encode("utf-8")


def json_text(rows: Rows) -> str:
    """JSON lines of ``rows``: one object per row with every column, missing values (and ±inf,
    which JSON has no word for) ``null``, ASCII only (any byte of a name is escaped)."""
    conv = _cells(rows.columns)
    cols = rows.columns
    lines = []
    for r in rows.rows:
        rec = {}
        for f, c in zip(conv, cols):
            v = f(r.get(c))
            rec[c] = None if isinstance(v, float) and not math.isfinite(v) else v
        lines.append(json.dumps(rec, ensure_ascii=True, allow_nan=False, separators=(",", ":")))
    return "".join(line + "\n" for line in lines)


def _finite(a: np.ndarray) -> np.ndarray:
    """Float64 copy with NaN for NaN/inf: inf never reaches a table."""
    a = np.array(a, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    return a


# ---------------------------------------------------------------------------------- text in tables
# control characters (C0, DEL, C1) and the bidirectional-text controls: a file name holding ESC set the terminal's
# title and colours when a report named it, a newline split its report line in two (read as another entry), and a
# right-to-left override (U+202E) showed "photo\u202egpj.exe" as "photoexe.jpg" — written as \uXXXX escapes
_CONTROLS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ESCAPE = re.compile(f"[\\\\{_CONTROLS}\\ud800-\\udfff]" if os.name != "nt" else f"[{_CONTROLS}\\ud800-\\udfff]")
_UNESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape(m: re.Match) -> str:
    c = m.group()
    if c == "\\":
        return "\\\\"
    o = ord(c)
    return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\u{o:04x}"


_CONTROL = re.compile(f"[{_CONTROLS}]")


def printable(text: str) -> str:
    """``text`` with its control and bidirectional-text characters written ``\\uXXXX`` (nothing else changed): for a
    message that may quote a name not passed through :func:`table_text` (an OS error's file name)."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _CONTROL.search(text) else text


def table_text(text: str) -> str:
    """Text as stored in a table's ``input``/``error`` columns: always valid Unicode, reversible.

    Paths are str as Python decodes them (``os.fsdecode``: a byte that is not UTF-8 becomes a lone
    surrogate U+DC80–U+DCFF, which UTF-8 writers and pyarrow refuse). Here such a byte is written
    ``\\xNN`` (other lone surrogates, control characters and bidirectional-text controls ``\\uXXXX``: a name is
    shown on one line, as it is, wherever it is printed) and, on POSIX, a literal backslash is doubled,
    so every backslash in a table starts an escape and :func:`text_path` restores the exact name.
    Names without backslashes, controls or undecodable bytes (nearly all) are unchanged. On Windows, where
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


def counted(n: int, noun: str) -> str:
    """``n`` and the noun in the number it takes, for messages: "1 row", "2 rows", "0 inputs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def names_file(text: str, path: str | os.PathLike[str]) -> bool:
    """Whether a table's ``input`` text names the local file ``path``, however either is spelt (``a.jpg``,
    ``./a.jpg``, a link to it): the same device and inode. The text is turned back into its path first
    (:func:`text_path`); a URL, or a name that is no file here, names no file. The ``--per-input`` check and
    ``aulib report --video`` both ask this, the one of a table written in another run or folder."""
    from aulib.storage import is_url

    if is_url(text) or is_url(path):
        return False
    try:
        return os.path.samefile(text_path(text), path)
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------- files
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}


def table_format(path: str | Path) -> str:
    """``csv``, ``parquet`` or ``json`` from the file extension; ValueError for anything else."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None and "://" not in str(path) and Path(path).is_dir():  # "unknown output format" said nothing of it
        raise ValueError(f"{path}: is a folder, not a table file: give a file name (.csv, .parquet or .json), or end "
                         "it with / for a partitioned Parquet table in it (or --per-input for one table per input)")
    if fmt is None:
        raise ValueError(f"{path}: unknown output format (use .csv, .parquet or .json)")
    return fmt


def _checked_format(path: Path, fmt: object) -> str:
    """``fmt`` (any case) or the one ``path``'s extension names; ValueError for another format, or one its extension
    contradicts: ``fmt='xlsx'`` (or ``5``, ``''``) wrote JSON Lines, and ``fmt='parquet'`` into ``x.csv`` a file that
    ``read_table`` and ``aulib plot`` then failed on."""
    if fmt is None:
        return table_format(path)
    named = fmt.lower() if isinstance(fmt, str) else None
    if named not in ("csv", "parquet", "json"):
        raise ValueError(f"{path}: format must be 'csv', 'parquet' or 'json', not {fmt!r}")
    by_name = FORMATS.get(path.suffix.lower())
    if by_name is not None and by_name != named:
        raise ValueError(f"{path}: a .{path.suffix.lower()[1:]} name for a {named} table: readers go by the name "
                         f"(name it .{'json' if named == 'json' else named}, or leave fmt out)")
    return named


def write_table(df: Rows | pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``df`` in ``fmt`` (default: from the extension; JSON = one object per line).

    Written beside ``path`` and renamed over it when complete: a full disk or an interrupted write
    leaves the earlier file (or none), never a cut or empty table under the name."""
    path = Path(path)
    fmt = _checked_format(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with TableAppender(tmp, fmt) as w:
            w.append(df)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Column types as :func:`to_frame` makes them (text columns never NaN)."""
    for c in ("input", "error"):
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    if "emotion" in df.columns and df["emotion"].dtype != _text_dtype():  # all missing: read as numbers/objects
        df["emotion"] = df["emotion"].astype(object).where(df["emotion"].notna(), None).astype(_text_dtype())
    for c in INT_COLUMNS:
        if c in df.columns and df[c].notna().all():
            df[c] = df[c].astype("int64")
    occ = [c for c in df.columns if c.endswith("_c")]
    if occ:
        df[occ] = df[occ].astype("float64").round().astype("Int64")
    if df.empty:  # a table of no rows: a CSV header gave 207 object columns where Parquet and to_frame give floats
        rest = [c for c in df.columns if df[c].dtype == object and c not in TEXT_COLUMNS]
        if rest:
            df[rest] = df[rest].astype("float64")
    return df


def _read_json_lines(path: Path) -> pd.DataFrame:
    """JSON lines read record by record: no type guessing on text (``"1"`` stays a string)."""
    import pandas as pd

    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for c in df.columns:
        if c not in TEXT_COLUMNS and df[c].dtype == object:
            df[c] = pd.to_numeric(df[c])
    return df


def read_table(path: str | bytes | os.PathLike, columns: list[str] | str | None = None) -> pd.DataFrame:
    """Read a table written by :func:`write_table` or :class:`TableAppender` (``columns``: only those; one name
    alone is one column). A file that does not parse as its format (empty, cut, another program's bytes) is a
    ValueError naming it: pandas' and pyarrow's own errors ("No columns to parse from file", "Parquet magic bytes
    not found in footer") did not say which file of a folder of tables it was."""
    if isinstance(path, bytes):  # aulib.analyze takes bytes paths: so does reading its tables
        path = os.fsdecode(path)
    if isinstance(columns, str):  # "AU12_r" was read as the columns 'A', 'U', '1', …
        columns = [columns]
    path = Path(path)
    try:
        return _read_table(path, columns)
    except ValueError as e:  # the parsers' errors (pandas, pyarrow, json, UnicodeDecodeError) are ValueErrors
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a table aulib can read ({type(e).__name__}: {e})") from None


class CutTableWarning(UserWarning):
    """A CSV table's last row is cut off (an interrupted copy, a full disk): it is left out of what is read."""


def cut_last_row(path: str | Path) -> str | None:
    """What to say of a CSV table whose last row has fewer fields than its header — a file cut in that row (aulib
    ends every row with a newline; OpenFace's tables end without one, whole) — or None.

    pandas filled the missing fields with NaN: a copy cut inside a row's ``AU12_r`` read ``success`` 1,
    ``AU12_r`` 3.4 for 3.4539 and no emotion, and ``aulib plot``/``report`` drew it without a word."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return None
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return None
        with open(path, encoding="utf-8", newline="") as f:  # only a file without a last newline is parsed here
            rows = csv.reader(f)
            header = next(rows, None)
            tail = collections.deque(rows, maxlen=1)
            last = tail[0] if tail else None
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if header is None or last is None or len(last) >= len(header):
        return None
    return (f"{path}: its last row is cut off ({len(last)} of {len(header)} fields; the file was cut — an "
            "interrupted copy or a full disk?): left out")


def _read_table(path: Path, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    if path.is_dir():  # "unknown output format (use .csv …)" for the folder a partitioned run wrote
        raise IsADirectoryError(f"{path}: a folder, not a table file"
                                + ("; a partitioned output: read it with aulib.batch.read_partitioned"
                                   if (path / "_aulib_manifest.json").exists() else ""))
    fmt = table_format(path)
    if columns is not None:  # one error for every format (pandas', pyarrow's schema dump, a KeyError before)
        have = {str(c).strip() for c in table_columns(path)}
        missing = [c for c in columns if c not in have]
        if missing and have:
            raise KeyError(f"{path}: no column {', '.join(map(repr, missing))} in this table "
                           f"({len(have)} columns, e.g. {', '.join(sorted(have)[:5])})")
    if fmt == "csv":
        text = {c: "str" for c in TEXT_COLUMNS}
        usecols = columns
        if columns is not None:  # names as the header spells them (see below)
            header = [str(c) for c in pd.read_csv(path, nrows=0, encoding="utf-8").columns]
            if any(c != c.strip() for c in header):
                usecols = [c for c in header if c.strip() in columns]
        # keep_default_na=False: only empty cells are missing, an input named "NA" or "null" is text
        df = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""], usecols=usecols,
                         encoding="utf-8")
        cut = cut_last_row(path)
        if cut is not None:
            import warnings

            warnings.warn(cut, CutTableWarning, stacklevel=3)
            df = df.iloc[:-1]
        # OpenFace writes "frame, timestamp, confidence, …" (a space after each comma): stripped, its columns
        # are the ones aulib's tables share with it. aulib never writes spaces around its names: no change there.
        if any(str(c) != str(c).strip() for c in df.columns):
            df.columns = [str(c).strip() for c in df.columns]
    elif fmt == "parquet":
        with open(path, "rb") as f:  # a Python file: pyarrow takes only UTF-8 path strings
            df = pd.read_parquet(f, columns=columns)
    else:
        df = _read_json_lines(path)
        if columns is not None:
            df = df[columns]
    return _typed(df)


def table_columns(path: str | Path) -> list[str]:
    """Column names of an existing table, reading only its header / schema / first line."""
    import pandas as pd

    path = Path(path)
    fmt = table_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with open(path, "rb") as f:
            return [c for c in pq.read_schema(f).names if not c.startswith("__index")]
    if fmt == "csv":
        return list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return list(json.loads(line))
    return []


class TableAppender:
    """Append chunks (:class:`Rows` or DataFrames) to one table file as they come, so long inputs
    need flat memory.

    CSV and JSON lines are plain appends (header once for CSV). Parquet goes through one
    :class:`pyarrow.parquet.ParquetWriter`: one row group per chunk, with a schema fixed by the
    first chunk (text columns forced to string, so a chunk whose ``emotion`` is all missing does
    not change it). :meth:`size` is the byte length of what was written so far (CSV/JSON),
    which the batch runner records to cut off a torn append on ``--resume``. Files are opened by
    Python (not by pandas/pyarrow), so any path the file system allows works.
    """

    def __init__(self, path: str | Path, fmt: str | None = None, mode: str = "w") -> None:
        self.path = Path(path)
        self.fmt = fmt or table_format(self.path)
        self.mode = mode
        self._f: IO[bytes] | None = None
        self._pq: Any = None
        self._fpq: Any = None
        self._schema: Any = None
        self.rows = 0

    def __enter__(self) -> TableAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, chunk: Rows | pd.DataFrame) -> None:
        """Write the rows of ``chunk`` (same columns for every chunk)."""
        with _naming(self.path):
            self._append(chunk)

    def _append(self, chunk: Rows | pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            df = chunk.frame() if isinstance(chunk, Rows) else chunk
            if self._pq is None:
                schema = pa.Schema.from_pandas(df, preserve_index=False)
                for c in TEXT_COLUMNS:
                    if c in schema.names:
                        schema = schema.set(schema.get_field_index(c), pa.field(c, pa.string()))
                self._schema = schema
                # through a Python file object: pyarrow refuses paths that are not valid UTF-8
                self._fpq = open(self.path, "wb")
                self._pq = pq.ParquetWriter(self._fpq, schema)
            self._pq.write_table(pa.Table.from_pandas(df, schema=self._schema, preserve_index=False))
        else:
            rows = chunk if isinstance(chunk, Rows) else Rows.from_frame(chunk)
            if self._f is None:
                self._f = open(self.path, "ab" if self.mode == "a" else "wb")
            header = self.fmt == "csv" and self._f.tell() == 0
            if len(rows) or header:
                text = csv_text(rows, header) if self.fmt == "csv" else json_text(rows)
                self._f.write(text.encode("utf-8"))
        self.rows += len(chunk)

    def size(self) -> int:
        """Bytes written so far, flushed and synced to disk (CSV/JSON)."""
        if self._f is None:
            return self.path.stat().st_size if self.path.exists() else 0
        with _naming(self.path):
            self._f.flush()
            os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        with _naming(self.path):
            if self._pq is not None:
                pq, self._pq = self._pq, None
                try:
                    pq.close()
                finally:
                    self._fpq.close()
            if self._f is not None:
                f, self._f = self._f, None
                try:
                    f.flush()
                    os.fsync(f.fileno())
                finally:
                    f.close()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Writes that fail (a full disk, a lost network mount) raise an OSError naming the table:
    a file object's own errors carry no file name ("[Errno 28] No space left on device")."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


# ------------------------------------------------------------------------------ OpenFace's own layout
# Decimals OpenFace 2's FeatureExtraction writes per column (its RecorderCSV): whatever is not listed, 2.
_OPENFACE_DECIMALS = {"timestamp": 3, **{c: 6 for c in GAZE_COLUMNS[:6]}, **{c: 3 for c in GAZE_ANGLES},
                      **{c: 1 for c in POSE_COLUMNS[:3]}, **{c: 3 for c in POSE_COLUMNS[3:]},
                      **{c: 1 for c in LANDMARK_COLUMNS}}


def openface_table(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of an aulib table in the layout of OpenFace 2's ``FeatureExtraction`` CSV, for scripts that
    index OpenFace's spaced names or read every field as a number (``df[' AU12_r']``, ``sep=", "``,
    ``np.loadtxt``; OpenFace's own column positions are not kept: it has columns aulib does not): ``frame``
    (counted from 1, as OpenFace does), ``face_id``, ``timestamp``, ``confidence``,
    ``success``, gaze, head pose, the 2-D landmarks, then every ``AUxx_r`` and every ``AUxx_c`` (aulib's AUs),
    all numbers. What aulib leaves empty is 0: every value of a ``success = 0`` row (confidence 0; OpenFace
    writes 0 where it never found a face, and its last estimate at a low confidence where it lost one — aulib has
    no estimate there), and the gaze of shut or hidden eyes (OpenFace's scripts test ``gaze_0_x == 0`` for a
    missing gaze). aulib's other columns (input, error, box, rule_*, emotion, p_*, AUxx_p, mt_*) are left out:
    keep the aulib table for them. One input's rows: OpenFace writes a file per video (ValueError for more)."""
    import pandas as pd

    if "input" in df.columns and df["input"].nunique() > 1:
        raise ValueError(f"the table holds {df['input'].nunique()} inputs; OpenFace's layout has one file per input: "
                         "pass one input's rows (df[df['input'] == name]), as aulib to-openface writes them")

    au_r = sorted(c for c in df.columns if (m := _AU_COLUMN.match(str(c))) and m.group(2) == "r")
    au_c = sorted(c for c in df.columns if (m := _AU_COLUMN.match(str(c))) and m.group(2) == "c")
    wanted = ["frame", "face_id", "timestamp", "confidence", "success", *GAZE_COLUMNS, *POSE_COLUMNS,
              *LANDMARK_COLUMNS, *au_r, *au_c]
    missing = [c for c in ("frame", "timestamp", "success") if c not in df.columns]
    if missing:
        raise ValueError(f"not an aulib analysis table: no {', '.join(missing)} column(s)")
    cols = [c for c in wanted if c in df.columns or c == "face_id"]
    failed = pd.to_numeric(df["success"], errors="coerce").to_numpy() != 1
    data: dict[str, np.ndarray] = {}
    for c in cols:
        source = c if c in df.columns else "face"  # (tables before face_id: the face number is the id)
        v = pd.to_numeric(df[source], errors="coerce").to_numpy(np.float64, na_value=np.nan) \
            if source in df.columns else np.zeros(len(df))
        v = np.where(np.isfinite(v), v, 0.0)
        if c not in ("frame", "timestamp", "success"):
            v[failed] = 0.0  # OpenFace's row for a frame without a face: all 0, confidence and face_id too
        data[c] = v
    data["frame"] = data["frame"] + 1
    for c in ("frame", "face_id", "success"):
        data[c] = data[c].round().astype(np.int64)
    return pd.DataFrame(data, columns=cols)


def openface_csv(df: pd.DataFrame) -> str:
    """:func:`openface_table` as OpenFace writes it: ``", "`` between the fields (so pandas reads the names as
    ``' AU12_r'``, as scripts written for OpenFace index them), each column at OpenFace's decimals."""
    import io

    t = openface_table(df)
    formats = ["%d" if t[c].dtype == "int64" else f"%.{_OPENFACE_DECIMALS.get(c, 2)}f" for c in t.columns]
    buf = io.StringIO()
    buf.write(", ".join(t.columns) + "\n")
    if len(t):  # one format per row, not one call per cell: 100,000 rows took 36 s
        np.savetxt(buf, t.to_numpy(np.float64), fmt=formats, delimiter=", ")
    return buf.getvalue()


# ---------------------------------------------------------------------------------- column groups
def aus(df: pd.DataFrame) -> list[int]:
    """AU numbers of the AU models' occurrence/intensity columns, ascending.

    Blink (``AU45_c``/``AU45_r``, from the eye aspect ratio, not from the AU models) is left out: read it
    with :func:`blink`.
    """
    return sorted({n for c in df.columns if (m := _AU_COLUMN.match(str(c))) and (n := int(m.group(1))) != BLINK_AU})


def head_pose(df: pd.DataFrame) -> pd.DataFrame:
    """Head pose columns ``Tx, Ty, Tz`` (mm) and ``Rx, Ry, Rz`` (radians), OpenFace's convention."""
    return _group(df, POSE_COLUMNS, [c.removeprefix("pose_") for c in POSE_COLUMNS])


def blink(df: pd.DataFrame) -> pd.DataFrame:
    """Blink columns ``closed`` (AU45_c, 0/1) and ``closure`` (AU45_r, 0–5)."""
    return _group(df, BLINK_COLUMNS, ["closed", "closure"])


def gaze(df: pd.DataFrame) -> pd.DataFrame:
    """Gaze columns ``angle_x``, ``angle_y`` (radians) and the unit vectors ``0_x`` … ``1_z``."""
    names = GAZE_COLUMNS[6:] + GAZE_COLUMNS[:6]
    return _group(df, names, [c.removeprefix("gaze_") for c in names])


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


def au_probability(df: pd.DataFrame) -> pd.DataFrame:
    """``AUxx_p`` columns (calibrated probability of presence, 0–1) as a frame with columns ``AU01`` …;
    empty for tables written before the probabilities existed."""
    a = aus(df)
    return _group(df, [probability_column(x) for x in a], [au_name(x) for x in a])


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


# ---------------------------------------------------------------------------------- text report
def _bar(value: float, full: float = 5.0, width: int = 10) -> str:
    """A text bar for an intensity (``█`` per half point on a 0–5 scale)."""
    if not np.isfinite(value):
        return ""
    return "█" * int(round(min(max(value / full, 0.0), 1.0) * width))


def _is_one(value: object) -> bool:
    """True for an occurrence of 1; False for 0 and for a missing value (``<NA>`` has no truth value)."""
    import pandas as pd

    return not pd.isna(value) and value == 1


# OpenFace users' usual filter (README): a face below it is reported with a warning
LOW_CONFIDENCE = 0.8


def report(df: pd.DataFrame) -> str:
    """The per-face report people read (``aulib analyze photo.jpg``): AUs with their FACS names,
    intensities, which emotion prototypes match and the CNN emotion.

    Headers name the frame for every row of a video (frame 0 included); images have none. Emotion
    prototypes are shown as counts ("2 of 2 prototype AUs") and only a full match is called a
    match: see :mod:`aulib.au.facs` for why a partial overlap is not an emotion.
    """
    from aulib.au.facs import au_label, prototype_matches, summarize_matches
    from aulib.io import is_video

    missing = [c for c in ("input", "frame", "face", "success", "error") if c not in df.columns]
    if missing:  # a column selection or another tool's table: it was a KeyError naming one column
        raise ValueError(f"report reads aulib's table; this one lacks {', '.join(missing)}")
    occ, inten, probs, mt = au_occurrence(df), au_intensity(df), emotion_probs(df), mt_au_occurrence(df)
    numbers = aus(df)
    names = [au_name(a) for a in numbers]
    width = max([len(au_label(a)) for a in numbers] + [10])
    videos = {str(n) for n, g in df.groupby("input")["frame"] if (g > 0).any()} if len(df) else set()
    out = []
    for i in range(len(df)):
        name = str(df["input"].iat[i])
        video = name in videos or is_video(name)
        when = f" ({df['timestamp'].iat[i]:.2f} s)" if "timestamp" in df.columns else ""
        head = name + (f"  frame {df['frame'].iat[i]}{when}" if video else "") + f"  face {df['face'].iat[i]}"
        if not df["success"].iat[i]:
            out.append(f"{head}: no result — {df['error'].iat[i]}")
            continue
        x, y, w, h = boxes(df.iloc[[i]])[0]
        conf = float(df["confidence"].iat[i]) if "confidence" in df.columns else float("nan")
        out.append(head + (f"  box ({x:.0f}, {y:.0f}, {w:.0f}×{h:.0f})" if np.isfinite([x, y, w, h]).all() else "")
                   + (f"  confidence {conf:.2f}" if np.isfinite(conf) else ""))
        if conf < LOW_CONFIDENCE:  # what the table's readers filter out (README: confidence >= 0.8)
            out.append(f"  warning: confidence below {LOW_CONFIDENCE}: part of the face is outside the image, its "
                       "landmark fit is poor or it is blurred or noisy; the AUs below may be wrong")
        present = [a for a, n in zip(numbers, names) if n in occ.columns and _is_one(occ[n].iat[i])]
        out.append("  AUs present:   " + (", ".join(au_label(a) for a in present) if present else
                                          "none" if len(occ.columns) else "not in this table (no AUxx_c columns)"))
        if len(inten.columns):
            out.append(f"  {'Action Unit (FACS)':<{width + 2}}present  intensity (0–5)")
            for a, n in zip(numbers, names):
                v = float(inten[n].iat[i]) if n in inten.columns else float("nan")
                mark = "yes" if a in present else "·"
                out.append(f"    {au_label(a):<{width}}  {mark:<7}  {v:4.1f} {_bar(v)}".rstrip())
        out.append("  Emotion prototypes (FACS/EMFACS): " + summarize_matches(prototype_matches(numbers, present)))
        label = df["emotion"].iat[i] if has_emotion(df) else None
        if isinstance(label, str):
            top = sorted(probs.columns, key=lambda e: -probs[e].iat[i])[:3]
            out.append(f"  CNN emotion:   {label}  (" + ", ".join(f"{e} {probs[e].iat[i]:.2f}" for e in top) + ")")
        if len(mt.columns):
            on = [a for a in mt_aus(df) if _is_one(mt[au_name(a)].iat[i])]
            out.append("  Multitask AUs: " + (", ".join(au_label(a) for a in on) if on else "none"))
    return "\n".join(out)
