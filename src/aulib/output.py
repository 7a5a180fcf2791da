"""Writing result tables (CSV, Parquet, JSON lines) and the human-readable per-face report.

Text in tables: the ``input`` and ``error`` columns are always valid Unicode. A file name that is
not valid UTF-8 (Linux allows any bytes but ``/`` and NUL) is decoded by Python with
``surrogateescape``; :func:`aulib.results.table_text` turns each such byte into ``\\xNN`` and
doubles literal backslashes, so the text is reversible (:func:`aulib.results.text_path` gives the
path back) and every format stores it unchanged. Readers here never turn text into NaN: an input
named ``NA``, ``None``, ``null`` or ``nan`` stays that string, and newlines, quotes, commas or
U+2028 inside a name survive (CSV quotes every text cell, JSON escapes them).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from aulib.results import EMOTIONS, RULE_EMOTIONS, table_text

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}
TEXT_COLUMNS = ("input", "error", "emotion")
INT_COLUMNS = ("frame", "face", "success")


def table_format(path: str | Path) -> str:
    """``csv``, ``parquet`` or ``json`` from the file extension; ValueError for anything else."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown output format (use .csv, .parquet or .json)")
    return fmt


def write_table(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``df`` in ``fmt`` (default: from the extension; JSON = one object per line)."""
    path = Path(path)
    fmt = fmt or table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with TableAppender(path, fmt) as w:
        w.append(df)
    return path


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Column types as :func:`aulib.results.to_frame` makes them (text columns never NaN)."""
    for c in ("input", "error"):
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    for c in INT_COLUMNS:
        if c in df.columns and df[c].notna().all():
            df[c] = df[c].astype("int64")
    occ = [c for c in df.columns if c.endswith("_c")]
    if occ:
        df[occ] = df[occ].astype("float64").round().astype("Int64")
    return df


def _read_json_lines(path: Path) -> pd.DataFrame:
    """JSON lines read record by record: no type guessing on text (``"1"`` stays a string)."""
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


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table written by :func:`write_table` or :class:`TableAppender` (``columns``: only those)."""
    path = Path(path)
    fmt = table_format(path)
    if fmt == "csv":
        text = {c: "str" for c in TEXT_COLUMNS}
        # keep_default_na=False: only empty cells are missing, an input named "NA" or "null" is text
        df = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""], usecols=columns,
                         encoding="utf-8")
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
    """Append DataFrame chunks to one table file as they come, so long inputs need flat memory.

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

    def _text(self, df: pd.DataFrame, header: bool) -> bytes:
        if self.fmt == "csv":
            # every text cell quoted: a lone "\r" in a file name is not a line end to pandas' writer
            # (its line terminator is "\n") but is one to every reader
            text = df.to_csv(index=False, header=header, quoting=csv.QUOTE_NONNUMERIC)
        else:
            text = df.to_json(orient="records", lines=True, force_ascii=True, double_precision=15)
        if text and not text.endswith("\n"):
            text += "\n"
        return text.encode("utf-8")

    def append(self, df: pd.DataFrame) -> None:
        """Write the rows of ``df`` (same columns for every chunk)."""
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

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
            if self._f is None:
                self._f = open(self.path, "ab" if self.mode == "a" else "wb")
            header = self.fmt == "csv" and self._f.tell() == 0
            if len(df) or header:
                self._f.write(self._text(df, header))
        self.rows += len(df)

    def size(self) -> int:
        """Bytes written so far, flushed and synced to disk (CSV/JSON)."""
        if self._f is None:
            return self.path.stat().st_size if self.path.exists() else 0
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
            self._fpq.close()
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None


def report(df: pd.DataFrame) -> str:
    """The seed ``get_au`` report for each face: occurrences, intensities, emotion %, CNN emotion."""
    aus = sorted({c[:-2] for c in df.columns if c.startswith("AU") and c.endswith("_c")})
    out = []
    for _, r in df.iterrows():
        head = f"{r['input']}" + (f"  frame {r['frame']}" if r.get("frame", 0) else "") + f"  face {r['face']}"
        if not r["success"]:
            out.append(f"{head}: no result — {r['error']}")
            continue
        out.append(f"{head}  box ({r['face_x']:.0f}, {r['face_y']:.0f}, {r['face_width']:.0f}×{r['face_height']:.0f})")
        present = [a for a in aus if r[f"{a}_c"] == 1]
        out.append("  AUs present:   " + (", ".join(present) if present else "none"))
        out.append("  AU intensity:  " + "  ".join(f"{a} {r[f'{a}_r']:.1f}" for a in aus))
        rules = sorted(RULE_EMOTIONS, key=lambda e: -r[f"rule_{e}"])
        out.append("  Emotion (% of prototype AUs): " + "  ".join(f"{e} {r[f'rule_{e}']:.0f}%" for e in rules))
        if "emotion" in df.columns and isinstance(r.get("emotion"), str):
            probs = sorted(EMOTIONS, key=lambda e: -r[f"p_{e}"])[:3]
            out.append(f"  CNN emotion:   {r['emotion']}  (" + ", ".join(f"{e} {r[f'p_{e}']:.2f}" for e in probs) + ")")
        mt = [c[3:-2] for c in df.columns if c.startswith("mt_") and r[c] == 1]
        if any(c.startswith("mt_") for c in df.columns):
            out.append("  Multitask AUs: " + (", ".join(mt) if mt else "none"))
    return "\n".join(out)


def output_paths(files: list[Path], root: Path, name: Callable[[str], str], text_names: bool = False) -> list[Path]:
    """One distinct path under ``root`` per input: the inputs' folders below their common parent
    are mirrored and ``name(file name)`` gives the file name.

    Two inputs that would still share a path (``a.jpg`` and ``a.png`` → ``a_overlay.png``, or one
    input's path being a folder on another's) both get a short hash of their full path before the
    extension, so no output overwrites another. ``text_names``: file and folder names in the
    table-text form (:func:`aulib.results.table_text`), for writers (OpenCV, FFmpeg) that only take
    valid UTF-8 paths. Folders are compared lexically (``os.path.abspath``): two symlinks to one
    file are two inputs with two outputs.
    """
    if not files:
        return []
    absolute = [os.path.abspath(p) for p in files]
    base = os.path.commonpath([os.path.dirname(a) for a in absolute])
    out: list[Path] = []
    for a in absolute:
        rel = os.path.relpath(os.path.dirname(a), base)
        rel_dir = "" if rel == "." else rel
        fname = name(os.path.basename(a))
        if text_names:
            rel_dir, fname = table_text(rel_dir), table_text(fname)
        out.append(root / rel_dir / fname)
    keys = [str(p) for p in out]
    count = Counter(keys)
    parents = {str(q) for p in out for q in p.parents}
    for i, k in enumerate(keys):
        if count[k] > 1 or k in parents:
            digest = hashlib.sha1(os.fsencode(absolute[i])).hexdigest()[:8]
            p = out[i]
            out[i] = p.with_name(f"{p.stem}-{digest}{p.suffix}") if p.suffix else p.with_name(f"{p.name}-{digest}")
    return out
