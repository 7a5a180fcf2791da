"""Writing result tables (CSV, Parquet, JSON lines) and the human-readable per-face report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aulib.results import EMOTIONS, RULE_EMOTIONS

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json"}


def table_format(path: str | Path) -> str:
    """``csv``, ``parquet`` or ``json`` from the file extension; ValueError for anything else."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown output format (use .csv, .parquet or .json)")
    return fmt


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` in the format named by the extension (JSON = one object per line)."""
    path = Path(path)
    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    fmt = table_format(path)
    if fmt == "csv":
        df = pd.read_csv(path, dtype={"error": "string", "input": "string", "emotion": "string"})
        df["error"] = df["error"].fillna("")
        return df
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, orient="records", lines=True)


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
