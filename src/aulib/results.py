"""The output table: column names (DESIGN.md contract, OpenFace-compatible) and row builders.

One row per face per frame. Images have ``frame`` 0 and ``timestamp`` 0.0. Inputs with no face
or that cannot be read get one row with ``success`` 0, an ``error`` message and NaN elsewhere,
so a batch never loses track of an input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EMOTIONS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
RULE_EMOTIONS = ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]

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


def to_frame(rows: list[dict], cols: list[str]) -> pd.DataFrame:
    """Rows → DataFrame with every contract column present (NaN where not computed), typed."""
    df = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)
    for c in ("frame", "face", "success"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype("int64")
    df["error"] = df["error"].fillna("").astype(str)
    df["input"] = df["input"].fillna("").astype(str)
    if "emotion" in df:
        df["emotion"] = df["emotion"].astype(object).where(df["emotion"].notna(), None)
    num = [c for c in cols if c not in ("input", "error", "emotion", "frame", "face", "success")]
    df[num] = df[num].apply(pd.to_numeric, errors="coerce").astype("float64")
    for c in [c for c in cols if c.endswith("_c")]:
        df[c] = df[c].astype("Float64").round().astype("Int64") if df[c].notna().any() else df[c]
    return df


def finite(a: np.ndarray) -> np.ndarray:
    """Replace NaN/inf by NaN-safe values: NaN/inf never reach the output as inf."""
    a = np.asarray(a, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    return a
