"""``aulib plot``: pictures of an analysis table.

A video input becomes time series (x = ``timestamp`` in seconds): AU intensities on top, emotion
probabilities (CNN ``p_*``, or the rule percentages when the table has no CNN columns) below, one
pair of panels per face id. An image becomes bar charts, one row per face. Drawn with
matplotlib's object API on an Agg canvas (no pyplot global state, no display needed), so it works
headless, in threads and inside the Streamlit app.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MAX_FACES = 4  # panels stay readable; pick others with --face


def _cols(df: pd.DataFrame) -> tuple[list[str], list[str], str]:
    aus = [c for c in df.columns if c.startswith("AU") and c.endswith("_r")]
    emo = [c for c in df.columns if c.startswith("p_")]
    if emo and df[emo].notna().any().any():
        return aus, emo, "emotion probability"
    return aus, [c for c in df.columns if c.startswith("rule_")], "% of prototype AUs"


def select(df: pd.DataFrame, input_name: str | None = None, face: int | None = None) -> pd.DataFrame:
    """Successful rows of one input (default: the first in the table) and optionally one face."""
    if df.empty:
        raise ValueError("the table has no rows")
    name = input_name if input_name is not None else str(df["input"].iloc[0])
    sub = df[(df["input"].astype(str) == name) & (df["success"] == 1)]
    if face is not None:
        sub = sub[sub["face"] == face]
    if sub.empty:
        which = f", face {face}" if face is not None else ""
        raise ValueError(f"no successfully analysed face for input {name!r}{which}")
    return sub


def figure(df: pd.DataFrame, input_name: str | None = None, face: int | None = None):
    """The matplotlib Figure for one input of an analysis table (see module docstring)."""
    from matplotlib.figure import Figure

    sub = select(df, input_name, face)
    aus, emo, emo_label = _cols(sub)
    faces = sorted(sub["face"].unique())[:MAX_FACES]
    video = sub["frame"].nunique() > 1
    title = Path(str(sub["input"].iloc[0])).name
    n_all = sub["face"].nunique()
    if n_all > len(faces):
        title += f" (faces {', '.join(map(str, faces))} of {n_all}; choose with --face)"
    fig = Figure(figsize=(11, 3.2 * len(faces) * (2 if video else 1)), dpi=100, layout="constrained")
    if video:
        axes = fig.subplots(2 * len(faces), 1, sharex=True, squeeze=False)[:, 0]
        for n, fid in enumerate(faces):
            f = sub[sub["face"] == fid].sort_values("timestamp")
            t = f["timestamp"].to_numpy()
            top, bottom = axes[2 * n], axes[2 * n + 1]
            cmap = _colors(len(aus))
            for k, c in enumerate(aus):
                top.plot(t, f[c].to_numpy(), lw=1.2, color=cmap[k], label=c[:-2])
            top.set_ylabel("AU intensity (0–5)")
            top.set_ylim(0, max(1.0, float(np.nanmax(f[aus].to_numpy())) * 1.1) if aus else 1)
            top.set_title(f"{title} — face {fid}")
            top.legend(ncol=9, fontsize=7, loc="upper left")
            cm2 = _colors(len(emo))
            for k, c in enumerate(emo):
                bottom.plot(t, f[c].to_numpy(), lw=1.2, color=cm2[k], label=c.split("_", 1)[1])
            bottom.set_ylabel(emo_label)
            bottom.legend(ncol=8, fontsize=7, loc="upper left")
        axes[-1].set_xlabel("time (s)")
    else:
        axes = fig.subplots(len(faces), 2, squeeze=False, width_ratios=[2, 1])
        for n, fid in enumerate(faces):
            r = sub[sub["face"] == fid].iloc[0]
            a, b = axes[n]
            vals = r[aus].astype(float).to_numpy()
            occ = [r.get(c[:-2] + "_c") == 1 for c in aus]
            a.bar([c[:-2] for c in aus], vals, color=["tab:red" if o else "tab:gray" for o in occ])
            a.set_ylim(0, 5)
            a.set_ylabel("AU intensity (red: present)")
            a.set_title(f"{title} — face {fid}")
            a.tick_params(axis="x", labelrotation=60, labelsize=8)
            b.barh([c.split("_", 1)[1] for c in emo], r[emo].astype(float).to_numpy(), color="tab:blue")
            b.set_xlabel(emo_label)
            b.invert_yaxis()
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def plot_table(table: str | Path | pd.DataFrame, out: str | Path, input_name: str | None = None,
               face: int | None = None) -> Path:
    """Read an analysis table (path or DataFrame) and save its plot to ``out`` (format by extension)."""
    from aulib.output import read_table

    df = table if isinstance(table, pd.DataFrame) else read_table(table)
    fig = figure(df, input_name, face)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
