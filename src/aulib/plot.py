"""``aulib plot``: pictures of an analysis table that answer "which AUs, when, and what emotion".

A video input becomes, per face id (up to :data:`MAX_FACES`), a block of panels on one shared
time axis (seconds): the AU intensities, either as **small multiples** (one small panel per AU,
all on the same 0–5 scale, each titled with its FACS name) or as a **heatmap** (AUs × time, one
colour scale), then the emotions: CNN probabilities as **stacked areas** (they sum to 1, so the
stack shows the mix at every moment), or, without the CNN, the rule percentages as lines.
``aus`` picks AUs (default all), ``smooth`` applies a centred rolling mean over that many seconds
(by timestamp, so dropped frames and ``--every`` do not change its meaning); frames without the
face are left blank rather than bridged.

An image input becomes one clear panel per face (columns), sharing the AU axis and the 0–5
intensity scale, so faces compare at a glance; present AUs (occurrence model) are coloured.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no display needed),
so it works headless, in threads, inside the Streamlit app and in :mod:`aulib.report_html`.
Column groups come from :mod:`aulib.table` helpers; labels from :mod:`aulib.au.facs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from aulib import table
from aulib.au.facs import au_label
from aulib.face.record import au_name

MAX_FACES = 4  # video: panels stay readable; pick others with --face
MAX_IMAGE_FACES = 6  # image: one column per face
STYLES = ("auto", "lines", "heatmap")
LINES_MAX_AUS = 6  # auto style: small multiples up to this many AUs, a heatmap above

#: One fixed colour per emotion (colour-blind-friendly Okabe–Ito hues, neutral grey), shared by the
#: plots and the HTML report so an emotion looks the same everywhere.
EMOTION_COLORS: dict[str, str] = {
    "neutral": "#bbbbbb", "happiness": "#e69f00", "surprise": "#56b4e9", "sadness": "#0072b2",
    "anger": "#d55e00", "disgust": "#009e73", "fear": "#cc79a7", "contempt": "#8c6d31",
}
AU_CMAP = "magma_r"  # white at 0 (nothing), dark at 5: absent AUs fade into the page


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


def pick_aus(df: pd.DataFrame, aus: Sequence[int] | None) -> list[str]:
    """AU labels (``AU06`` …) to plot: all intensity AUs of the table, or those asked for (in the
    order given). ValueError naming the AUs the table does not have."""
    have = list(table.au_intensity(df).columns)
    if not aus:
        return have
    wanted = [au_name(a) for a in dict.fromkeys(int(a) for a in aus)]
    missing = [w for w in wanted if w not in have]
    if missing:
        raise ValueError(f"the table has no {', '.join(missing)} intensity (it has: {', '.join(have) or 'none'})")
    return wanted


def parse_aus(text: str | None) -> list[int] | None:
    """``"6,12,25"`` (or ``"AU06 AU12"``) → ``[6, 12, 25]``; ValueError for anything else."""
    if text is None or not text.strip():
        return None
    out = []
    for part in text.replace(",", " ").split():
        digits = part.upper().removeprefix("AU")
        if not digits.isdigit() or not 0 < int(digits) < 100:
            raise ValueError(f"--aus: {part!r} is not an AU number (give e.g. --aus 6,12,25)")
        out.append(int(digits))
    return out


def smooth_frame(values: pd.DataFrame, t: np.ndarray, seconds: float | None) -> pd.DataFrame:
    """Centred rolling mean over ``seconds`` of video time (NaN-aware); unchanged when None or 0."""
    if not seconds:
        return values
    if not np.isfinite(seconds) or seconds < 0:
        raise ValueError(f"--smooth must be a number of seconds ≥ 0, not {seconds}")
    idx = pd.to_timedelta(np.asarray(t, np.float64), unit="s")
    rolled = values.set_axis(idx).sort_index().rolling(pd.Timedelta(seconds=seconds), center=True,
                                                        min_periods=1).mean()
    return rolled.set_axis(values.index).astype(np.float64)


def _timeline(frames: pd.DataFrame, f: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """``values`` (rows of face ``f``) on the input's full frame timeline: NaN where the face is absent."""
    v = values.set_axis(f["frame"].to_numpy()).groupby(level=0).mean()
    return v.reindex(frames.index)


def _edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around sample times (midpoints; the ends extended by half a step)."""
    if len(t) == 1:
        return np.array([t[0] - 0.5, t[0] + 0.5])
    mid = (t[1:] + t[:-1]) / 2
    return np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])


def _ylabel(ax, text: str) -> None:
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)


def _video_face(fig, spec, frames: pd.DataFrame, f: pd.DataFrame, names: list[str], style: str,
                smooth: float | None, title: str, emo_label: str, sharex) -> list:
    """Panels of one face of a video inside gridspec cell ``spec``; returns its axes."""
    t = frames["timestamp"].to_numpy(np.float64)
    aus, emo, _ = _groups(f)
    aus = smooth_frame(aus[names], f["timestamp"].to_numpy(), smooth)
    emo = smooth_frame(emo, f["timestamp"].to_numpy(), smooth)
    au_t, emo_t = _timeline(frames, f, aus), _timeline(frames, f, emo)
    lines = style == "lines" or (style == "auto" and len(names) <= LINES_MAX_AUS)
    n_au = len(names) if lines else 1
    heights = [1.0] * n_au + [2.2] if lines else [0.32 * len(names) + 0.4, 2.2]
    gs = spec.subgridspec(n_au + 1, 1, height_ratios=heights, hspace=0.08)
    axes = []
    if lines:
        colors = _colors(len(names))
        for k, name in enumerate(names):
            ax = fig.add_subplot(gs[k], sharex=sharex or (axes[0] if axes else None))
            y = au_t[name].to_numpy(np.float64)
            ax.fill_between(t, 0, y, color=colors[k], alpha=0.35, lw=0)
            ax.plot(t, y, color=colors[k], lw=1.4)
            ax.set_ylim(0, 5)
            ax.set_yticks([0, 5])
            ax.grid(axis="y", alpha=0.3)
            _ylabel(ax, au_label(name))
            axes.append(ax)
        axes[0].set_title(title, loc="left")
    else:
        ax = fig.add_subplot(gs[0], sharex=sharex)
        vals = au_t[names].to_numpy(np.float64).T
        mesh = ax.pcolormesh(_edges(t), np.arange(len(names) + 1), np.ma.masked_invalid(vals), cmap=AU_CMAP,
                             vmin=0, vmax=5, shading="flat")
        ax.set_yticks(np.arange(len(names)) + 0.5, [au_label(n) for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_facecolor("#eeeeee")  # frames without the face: light grey, not "intensity 0"
        fig.colorbar(mesh, ax=ax, label="AU intensity (0–5)", fraction=0.025, pad=0.01)
        ax.set_title(title, loc="left")
        axes.append(ax)
    ax = fig.add_subplot(gs[-1], sharex=axes[0])
    if emo_label == "emotion probability":
        vals = np.nan_to_num(emo_t.to_numpy(np.float64), nan=0.0).T
        ax.stackplot(t, vals, labels=list(emo_t.columns), colors=[EMOTION_COLORS.get(e, "#999") for e in emo_t.columns],
                     alpha=0.9, lw=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel("emotion (CNN)\nprobability, stacked", fontsize=9)
    else:
        for e in emo_t.columns:
            ax.plot(t, emo_t[e].to_numpy(np.float64), color=EMOTION_COLORS.get(e, "#999"), lw=1.5, label=e)
        ax.set_ylim(0, 105)
        ax.set_ylabel("% of emotion\nprototype AUs", fontsize=9)
    ax.legend(ncol=8, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False,
              handlelength=1.2, columnspacing=1.0)
    ax.margins(x=0)
    axes.append(ax)
    for a in axes[:-1]:
        a.tick_params(labelbottom=False)
    return axes


def figure(df: pd.DataFrame, input_name: str | None = None, face: int | None = None,
           aus: Sequence[int] | None = None, smooth: float | None = None, style: str = "auto"):
    """The matplotlib Figure for one input of an analysis table (see the module docstring).

    ``aus``: AU numbers to show (default all); ``smooth``: centred rolling mean over that many
    seconds (videos); ``style``: ``lines`` (small multiples), ``heatmap`` or ``auto``.
    """
    from matplotlib.figure import Figure

    if style not in STYLES:
        raise ValueError(f"--style must be one of {', '.join(STYLES)}, not {style!r}")
    sub = select(df, input_name, face)
    names = pick_aus(sub, aus)
    _, _, emo_label = _groups(sub)
    name = str(sub["input"].iloc[0])
    video = sub["frame"].nunique() > 1
    faces = sorted(sub["face"].unique())[:MAX_FACES if video else MAX_IMAGE_FACES]
    title = Path(name).name
    n_all = sub["face"].nunique()
    if n_all > len(faces):
        title += f" (faces {', '.join(map(str, faces))} of {n_all}; choose with --face)"
    if video:
        # the input's full timeline (failed frames included) so gaps show as gaps
        rows = df[df["input"].astype(str) == name]
        frames = rows.groupby("frame")["timestamp"].first().sort_index().to_frame()
        lines = style == "lines" or (style == "auto" and len(names) <= LINES_MAX_AUS)
        per_face = (0.95 * len(names) if lines else 0.32 * len(names) + 0.4) + 2.6
        fig = Figure(figsize=(12, per_face * len(faces) + 0.6), dpi=100, layout="constrained")
        outer = fig.add_gridspec(len(faces), 1)
        first = None
        axes: list = []
        for n, fid in enumerate(faces):
            f = sub[sub["face"] == fid].sort_values("timestamp")
            note = f" — smoothed over {smooth:g} s" if smooth else ""
            axes += _video_face(fig, outer[n], frames, f, names, style, smooth, f"{title} — face {fid}{note}",
                                emo_label, first)
            first = first or axes[0]
        for a in axes[:-1]:
            a.tick_params(labelbottom=False)
        axes[-1].set_xlabel("time (s)")
        return fig
    return _image_figure(sub, faces, names, title, emo_label)


def _image_figure(sub: pd.DataFrame, faces: list, names: list[str], title: str, emo_label: str):
    """One column per face: AU intensity bars (present AUs coloured) over emotion bars, shared axes."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    width = max(6.0, 3.4 * len(faces) + 2.2)
    fig = Figure(figsize=(width, 0.28 * len(names) + 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(faces), squeeze=False, sharey="row", sharex="row",
                        height_ratios=[0.28 * len(names) + 0.6, 2.4])
    y = np.arange(len(names))
    for n, fid in enumerate(faces):
        r = sub[sub["face"] == fid].iloc[[0]]
        aus, emo, _ = _groups(r)
        occ = table.au_occurrence(r).reindex(columns=names)
        present = [bool(v == 1) for v in occ.iloc[0].tolist()]
        a, b = axes[0, n], axes[1, n]
        a.barh(y, aus[names].iloc[0].to_numpy(np.float64), color=["#d55e00" if p else "#9e9e9e" for p in present])
        a.set_yticks(y, [au_label(x) for x in names], fontsize=8)
        a.set_xlim(0, 5)
        a.grid(axis="x", alpha=0.3)
        a.set_title(f"face {fid}", fontsize=11)
        a.set_xlabel("AU intensity (0–5)", fontsize=9)
        vals = emo.iloc[0].to_numpy(np.float64)
        b.barh(list(emo.columns), vals, color=[EMOTION_COLORS.get(e, "#999") for e in emo.columns])
        b.set_xlim(0, 1 if emo_label == "emotion probability" else 100)
        b.set_xlabel(emo_label, fontsize=9)
        b.grid(axis="x", alpha=0.3)
    axes[0, 0].invert_yaxis()  # shared by the row: AU01 on top, first emotion on top
    axes[1, 0].invert_yaxis()
    axes[0, -1].legend(handles=[Patch(color="#d55e00", label="present (occurrence model)"),
                                Patch(color="#9e9e9e", label="not present")], fontsize=8, loc="lower right")
    fig.suptitle(title, x=0.01, ha="left")
    return fig


def _colors(n: int) -> list:
    """``n`` distinct colours: tab10 up to 10, else evenly spaced hues (no near-duplicates)."""
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["turbo"]
    return [cmap(0.05 + 0.9 * i / max(n - 1, 1)) for i in range(n)]


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


def read_checked(source: str | Path) -> pd.DataFrame:
    """Read a table file and check it is ``aulib analyze`` output; any parser failure (garbage bytes,
    a foreign format) becomes one ValueError naming the file. Parsers raise many types (pandas,
    pyarrow, json, UnicodeDecodeError), hence the broad except around the call alone."""
    from aulib.io import check_regular_file
    from aulib.table import read_table, table_format

    path = check_regular_file(source, ValueError)
    fmt = table_format(path)
    try:
        df = read_table(path)
    except Exception as e:
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise ValueError(f"{path}: cannot read as a {fmt} table ({detail})") from None
    return check_table(df, str(path))


def plot_table(source: str | Path | pd.DataFrame, out: str | Path, input_name: str | None = None,
               face: int | None = None, aus: Sequence[int] | None = None, smooth: float | None = None,
               style: str = "auto") -> Path:
    """Read an analysis table (path or DataFrame) and save its plot to ``out`` (format by extension).

    Raises ValueError with a message naming the file for an unsupported ``out`` format, a missing,
    empty, unparsable or foreign table, an input/face/AU the table does not have, a bad style or
    smoothing window.
    """
    from matplotlib.figure import Figure

    out = Path(out)
    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in formats:
        raise ValueError(f"{out}: unknown image format (use .png, .jpg, .pdf or .svg)")
    name = "the table" if isinstance(source, pd.DataFrame) else str(source)
    df = check_table(source, name) if isinstance(source, pd.DataFrame) else read_checked(source)
    try:
        fig = figure(df, input_name, face, aus=aus, smooth=smooth, style=style)
    except (TypeError, KeyError) as e:
        raise ValueError(f"{name}: cannot plot this table ({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
