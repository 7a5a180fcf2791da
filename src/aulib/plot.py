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

from aulib import table

MAX_FACES = 4  # panels stay readable; pick others with --face


def _groups(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """AU intensities (columns ``AU01`` …) and emotion scores (columns = emotion names) with their
    label: CNN probabilities when the table has them, else the rule percentages."""
    emo = table.emotion_probs(df)
    if len(emo.columns) and emo.notna().any().any():
        return table.au_intensity(df), emo, "emotion probability"
    return table.au_intensity(df), table.rule_scores(df), "% of prototype AUs"


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
    _, _, emo_label = _groups(sub)
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
            aus, emo, _ = _groups(f)
            top, bottom = axes[2 * n], axes[2 * n + 1]
            cmap = _colors(len(aus.columns))
            for k, c in enumerate(aus.columns):
                top.plot(t, aus[c].to_numpy(float), lw=1.2, color=cmap[k], label=c)
            top.set_ylabel("AU intensity (0–5)")
            top.set_ylim(0, max(1.0, float(np.nanmax(aus.to_numpy(float))) * 1.1) if len(aus.columns) else 1)
            top.set_title(f"{title} — face {fid}")
            top.legend(ncol=9, fontsize=7, loc="upper left")
            cm2 = _colors(len(emo.columns))
            for k, c in enumerate(emo.columns):
                bottom.plot(t, emo[c].to_numpy(float), lw=1.2, color=cm2[k], label=c)
            bottom.set_ylabel(emo_label)
            bottom.legend(ncol=8, fontsize=7, loc="upper left")
        axes[-1].set_xlabel("time (s)")
    else:
        axes = fig.subplots(len(faces), 2, squeeze=False, width_ratios=[2, 1])
        for n, fid in enumerate(faces):
            r = sub[sub["face"] == fid].iloc[[0]]
            aus, emo, _ = _groups(r)
            occ = table.au_occurrence(r).reindex(columns=aus.columns)
            a, b = axes[n]
            present = [bool(v == 1) for v in occ.iloc[0].tolist()]
            a.bar(list(aus.columns), aus.iloc[0].to_numpy(float),
                  color=["tab:red" if o else "tab:gray" for o in present])
            a.set_ylim(0, 5)
            a.set_ylabel("AU intensity (red: present)")
            a.set_title(f"{title} — face {fid}")
            a.tick_params(axis="x", labelrotation=60, labelsize=8)
            b.barh(list(emo.columns), emo.iloc[0].to_numpy(float), color="tab:blue")
            b.set_xlabel(emo_label)
            b.invert_yaxis()
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


REQUIRED = table.ID_COLUMNS[:5]


def check_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Raise ValueError (naming the table) unless ``df`` looks like ``aulib analyze`` output:
    the row-identity columns and at least one AU intensity, emotion probability or rule column."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        shown = ", ".join(map(str, list(df.columns)[:6])) + (" …" if len(df.columns) > 6 else "")
        raise ValueError(f"{name}: not a table written by aulib analyze (no {', '.join(missing)} column; "
                         f"it has: {shown or 'no columns'})")
    aus, emo, _ = _groups(df)
    if not len(aus.columns) and not len(emo.columns):
        raise ValueError(f"{name}: has no AUxx_r, p_* or rule_* columns to plot (a table from aulib faces?)")
    for label, col in [(c, df[c]) for c in ("success", "face", "frame", "timestamp")] + \
            [(f"{c} intensity", aus[c]) for c in aus.columns] + [(f"{c} score", emo[c]) for c in emo.columns]:
        if not pd.api.types.is_numeric_dtype(col) and not col.isna().all():
            raise ValueError(f"{name}: column {label!r} is not numeric — not a table written by aulib analyze")
    return df


def _read(source: str | Path) -> pd.DataFrame:
    """Read a table file; any parser failure (garbage bytes, a foreign format) becomes one ValueError
    naming the file. Parsers raise many types (pandas, pyarrow, json, UnicodeDecodeError), hence the
    broad except around the call alone."""
    from aulib.io import check_regular_file
    from aulib.table import read_table, table_format

    path = check_regular_file(source, ValueError)
    fmt = table_format(path)
    try:
        return read_table(path)
    except Exception as e:
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise ValueError(f"{path}: cannot read as a {fmt} table ({detail})") from None


def plot_table(source: str | Path | pd.DataFrame, out: str | Path, input_name: str | None = None,
               face: int | None = None) -> Path:
    """Read an analysis table (path or DataFrame) and save its plot to ``out`` (format by extension).

    Raises ValueError with a message naming the file for an unsupported ``out`` format, a missing,
    empty, unparsable or foreign table, and an input/face the table does not have.
    """
    from matplotlib.figure import Figure

    out = Path(out)
    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in formats:
        raise ValueError(f"{out}: unknown image format (use .png, .jpg, .pdf or .svg)")
    name = "the table" if isinstance(source, pd.DataFrame) else str(source)
    df = check_table(source if isinstance(source, pd.DataFrame) else _read(source), name)
    try:
        fig = figure(df, input_name, face)
    except (TypeError, KeyError) as e:
        raise ValueError(f"{name}: cannot plot this table ({type(e).__name__}: {e})") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
