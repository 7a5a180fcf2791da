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

import contextlib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from aulib import table
from aulib.au.facs import au_label
from aulib.face.record import EMOTIONS, au_name

MAX_FACES = 4  # video: panels stay readable; pick others with --face
MAX_IMAGE_FACES = 6  # image: one column per face
STYLES = ("auto", "lines", "heatmap")
# A video's timeline is drawn in at most this many columns (the figure is 1200 px wide): a longer one is averaged
# per column. Drawn sample by sample, a 58-hour table (1e6 frames, ≈ 850 per pixel) showed the few samples the
# renderer happened to hit: evenly spaced dark stripes, hourly "bursts" of AU12 the data did not have.
MAX_COLUMNS = 1200
LINES_MAX_AUS = 6  # auto style: small multiples up to this many AUs, a heatmap above

#: One fixed colour per emotion (colour-blind-friendly Okabe–Ito hues, neutral grey), shared by the
#: plots and the HTML report so an emotion looks the same everywhere.
EMOTION_COLORS: dict[str, str] = {
    "neutral": "#bbbbbb", "happiness": "#e69f00", "surprise": "#56b4e9", "sadness": "#0072b2",
    "anger": "#d55e00", "disgust": "#009e73", "fear": "#cc79a7", "contempt": "#8c6d31",
}
AU_CMAP = "magma_r"  # white at 0 (nothing), dark at 5: absent AUs fade into the page


BLINK = au_name(table.BLINK_AU)


def shown_name(text: object) -> str:
    """``text`` (an input's name, a note quoting it) with its control and bidirectional-text characters written
    ``\\uXXXX``, as tables store them since (:func:`aulib.table.printable`), for figure titles and the HTML report:
    a table written before, or a DataFrame, can hold them raw. An ESC or BEL in a name reached matplotlib, which
    printed "UserWarning: Glyph 27 missing from font(s)" with aulib's source path, and a newline split the title."""
    return table.printable(str(text))


@functools.lru_cache(maxsize=1)
def _font_chars() -> frozenset[int] | None:
    """The code points the figures' font has glyphs for (None when it cannot be read: nothing is escaped)."""
    try:
        from matplotlib import font_manager, rcParams
        from matplotlib.ft2font import FT2Font

        return frozenset(FT2Font(font_manager.findfont(font_manager.FontProperties(
            family=rcParams["font.family"]))).get_charmap())
    except Exception:  # a font matplotlib cannot open: it says so itself when drawing
        return None


def figure_text(text: object) -> str:
    """:func:`shown_name`, and each character the figures' font cannot draw written ``\\uXXXX`` (``\\UXXXXXXXX``
    beyond the BMP): a CJK name or an emoji printed "UserWarning: Glyph 38996 missing from font(s) DejaVu Sans"
    and came out as empty boxes. Only figures: the HTML page's own text keeps them (a browser has the fonts)."""
    shown = shown_name(text)
    chars = _font_chars()
    if chars is None or all(ord(c) in chars for c in shown if c != "\n"):
        return shown
    return "".join(c if c == "\n" or ord(c) in chars else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else
                                                           f"\\U{ord(c):08x}") for c in shown)


def inputs_note(df: pd.DataFrame, name: str, what: str) -> str | None:
    """What to say when the table holds several inputs and only ``name`` is shown (``what``: "this report covers",
    "this plot shows"), or None. The plot drew the first of several inputs without a word."""
    inputs = df["input"].nunique()
    if inputs <= 1:
        return None
    return f"The table holds {inputs} inputs; {what} {shown_name(name)} (choose another with --input)."


def _stderr(message: str) -> None:
    """``message`` on stderr; a closed or full stderr loses it rather than failing a plot that was drawn."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(message, file=sys.stderr, flush=True)


def _intensity(df: pd.DataFrame) -> pd.DataFrame:
    """AU intensities (columns ``AU01`` …) plus blink (``AU45``, the 0–5 closure from ``AU45_r``) when the
    table has it: :func:`aulib.table.au_intensity` leaves blink out (it does not come from the AU models),
    so it is plotted only when asked for by ``--aus 45``, never by default."""
    inten = table.au_intensity(df)
    if table.intensity_column(table.BLINK_AU) in df.columns:
        inten = inten.assign(**{BLINK: df[table.intensity_column(table.BLINK_AU)]})
    return inten


def value_groups(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """AU intensities (columns ``AU01`` …, blink included when present) and emotion scores (columns =
    emotion names) with their label: CNN probabilities when the table has them, else the rule percentages."""
    emo = table.emotion_probs(df)
    if len(emo.columns) and emo.notna().any().any():
        return _intensity(df), emo, "emotion probability"
    return _intensity(df), table.rule_scores(df), "% of prototype AUs"


def spans_frames(rows: pd.DataFrame) -> bool:
    """Whether one input's rows (failed frames included) are a video: more than one frame. Decided on all
    rows, not only those with a face, so a video whose face shows in one frame is still drawn (and
    described, by the report) as a timeline."""
    return bool(rows["frame"].nunique() > 1)


def input_rows(df: pd.DataFrame, input_name: str | None = None) -> tuple[str, pd.DataFrame]:
    """The name and all rows of one input (default: the first in the table with an analysed face — a batch
    table often starts with an unreadable file or a faceless photo, and the default stopped there); ValueError
    naming the inputs the table has when it has no such input (rather than "no face", which would send the
    user looking for a detection problem)."""
    if df.empty:
        raise ValueError("the table has no rows")
    if input_name is None:
        found = df.loc[df["success"] == 1, "input"] if "success" in df.columns else df["input"]
        name = str((found if len(found) else df["input"]).iloc[0])
    else:
        name = input_name
    names = df["input"].astype(str)
    rows = df[names == name]
    if rows.empty and input_name is not None:
        # the file's own name: the table stores it as table text (a backslash doubled, an undecodable byte \xNN),
        # and `--input 'a\b.jpg'` was "not in the table" whose list showed that very name
        from aulib.table import table_text

        name = table_text(input_name)
        rows = df[names == name]
    if rows.empty:
        have = names.unique()
        more = f" and {len(have) - 5} more" if len(have) > 5 else ""
        raise ValueError(f"the table has no input '{input_name or name}' (it has: {', '.join(have[:5])}{more})")
    return name, rows


def select(df: pd.DataFrame, input_name: str | None = None, face: int | None = None) -> pd.DataFrame:
    """Successful rows of one input (default: the first in the table with an analysed face) and optionally one
    face."""
    name, rows = input_rows(df, input_name)
    sub = rows[rows["success"] == 1]
    ids = sorted(sub["face"].dropna().unique().tolist())
    if face is not None:
        sub = sub[sub["face"] == face]
    if sub.empty:
        which = f", face {face}" if face is not None else ""
        have = (f" (its faces: {', '.join(str(int(i)) for i in ids[:20])}{' …' if len(ids) > 20 else ''})"
                if face is not None and ids else "")
        raise ValueError(f"no successfully analysed face for input {name!r}{which}{have}")
    return sub


def pick_aus(df: pd.DataFrame, aus: Sequence[int] | None) -> list[str]:
    """AU labels (``AU06`` …) to plot: all intensity AUs of the table, or those asked for (in the
    order given). ValueError naming the AUs the table does not have."""
    have = list(table.au_intensity(df).columns)
    if not aus:
        return have
    if BLINK in _intensity(df).columns:
        have.append(BLINK)  # only on request: blink is eye closure, not an AU model's output
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
    if not out:  # "," or " , ": no AU named (it read as "all AUs")
        raise ValueError(f"--aus: {text!r} names no AU (give e.g. --aus 6,12,25, or leave --aus out for all)")
    return out


def smooth_frame(values: pd.DataFrame, t: np.ndarray, seconds: float | None) -> pd.DataFrame:
    """Centred rolling mean over ``seconds`` of video time (NaN-aware); unchanged when None or 0.

    ``values`` are the rows of ONE face (smoothing several faces together averages them into one trace:
    use :func:`smooth_faces`). Its rows may come in any order: they are sorted by time for the window
    and the result is put back row by row, aligned with ``values``. A window longer than twice the span
    of ``t`` already covers every row from every centre, so it is capped there (same result) rather than
    overflowing pandas' Timedelta; times are taken from the first one for the same reason.
    """
    if not seconds:
        return values
    if not np.isfinite(seconds) or seconds < 0:
        raise ValueError(f"--smooth must be a number of seconds ≥ 0, not {seconds}")
    t = np.asarray(t, np.float64)
    if len(t) != len(values):
        raise ValueError(f"smoothing: {len(values)} rows but {len(t)} timestamps")
    if not len(t):
        return values.astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError("cannot smooth over rows without a finite timestamp")
    rel = t - t.min()
    seconds = min(float(seconds), 2 * float(rel.max()) + 1.0)
    order = np.argsort(rel, kind="stable")
    ordered = values.iloc[order].astype(np.float64).set_axis(pd.to_timedelta(rel[order], unit="s"))
    rolled = ordered.rolling(pd.Timedelta(seconds=seconds), center=True, min_periods=1).mean().to_numpy()
    out = np.empty_like(rolled)
    out[order] = rolled
    return pd.DataFrame(out, index=values.index, columns=values.columns)


def smooth_faces(values: pd.DataFrame, rows: pd.DataFrame, seconds: float | None) -> pd.DataFrame:
    """:func:`smooth_frame` for each face of ``rows`` on its own (``values`` aligned with ``rows``), so that
    in a video with several people one face's expression never leaks into another's trace."""
    t = rows["timestamp"].to_numpy(np.float64)
    if not seconds or values.empty:
        return smooth_frame(values, t, seconds)
    codes, uniques = pd.factorize(rows["face"], use_na_sentinel=False)
    out = np.full(values.shape, np.nan)
    for k in range(len(uniques)):  # by position: the index of ``values`` need not be unique
        pos = np.flatnonzero(codes == k)
        out[pos] = smooth_frame(values.iloc[pos], t[pos], seconds).to_numpy(np.float64)
    return pd.DataFrame(out, index=values.index, columns=values.columns)


def _timeline(frames: pd.DataFrame, f: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """``values`` (rows of face ``f``) on the input's full frame timeline: NaN where the face is absent."""
    v = values.set_axis(f["frame"].to_numpy()).groupby(level=0).mean()
    return v.reindex(frames.index)


def _binned(t: np.ndarray, *tables: pd.DataFrame) -> tuple[np.ndarray, list[pd.DataFrame]]:
    """``t`` and ``tables`` (rows aligned with ``t``, sorted by time) as they are when the timeline fits in
    :data:`MAX_COLUMNS`; otherwise averaged over that many equal spans of time (NaN-aware: a span where the face
    is absent stays absent), each at its span's centre."""
    if len(t) <= MAX_COLUMNS:
        return t, list(tables)
    edges = np.linspace(t[0], t[-1], MAX_COLUMNS + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, MAX_COLUMNS - 1)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, [tb.groupby(which).mean().reindex(range(MAX_COLUMNS)).set_axis(range(MAX_COLUMNS))
                     for tb in tables]


def column_span(t: np.ndarray) -> float | None:
    """Seconds of video each drawn column averages (:func:`_binned`), or None when every sample is drawn."""
    return None if len(t) <= MAX_COLUMNS else float(t[-1] - t[0]) / MAX_COLUMNS


def _edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around sample times (midpoints; the ends extended by half a step)."""
    if len(t) == 1:
        return np.array([t[0] - 0.5, t[0] + 0.5])
    mid = (t[1:] + t[:-1]) / 2
    return np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])


def _ylabel(ax, text: str) -> None:
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)


def _layout(names: list[str], style: str, has_emo: bool) -> tuple[bool, list[float]]:
    """Whether AUs are drawn as small multiples, and the height ratios of one face's panels: one per AU
    (or one heatmap), then the emotions. A table without AUxx_r columns (only occurrences) or without
    emotion columns (an OpenFace CSV) gets only the panels it has data for."""
    lines = style == "lines" or (style == "auto" and len(names) <= LINES_MAX_AUS)
    if not names:
        heights = []
    elif lines:
        heights = [1.0] * len(names)
    else:
        heights = [0.32 * len(names) + 0.4]
    return lines, heights + ([2.2] if has_emo else [])


def _video_face(fig, spec, frames: pd.DataFrame, f: pd.DataFrame, names: list[str], style: str,
                smooth: float | None, title: str, emo_label: str, sharex) -> list:
    """Panels of one face of a video inside gridspec cell ``spec``; returns its axes."""
    t = frames["timestamp"].to_numpy(np.float64)
    aus, emo, _ = value_groups(f)
    aus = smooth_frame(aus[names], f["timestamp"].to_numpy(), smooth)
    emo = smooth_frame(emo, f["timestamp"].to_numpy(), smooth)
    t, (au_t, emo_t) = _binned(t, _timeline(frames, f, aus), _timeline(frames, f, emo))
    lines, heights = _layout(names, style, bool(len(emo.columns)))
    gs = spec.subgridspec(len(heights), 1, height_ratios=heights, hspace=0.08)
    axes: list = []
    if names and lines:
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
    elif names:
        ax = fig.add_subplot(gs[0], sharex=sharex)
        vals = au_t[names].to_numpy(np.float64).T
        mesh = ax.pcolormesh(_edges(t), np.arange(len(names) + 1), np.ma.masked_invalid(vals), cmap=AU_CMAP,
                             vmin=0, vmax=5, shading="flat")
        ax.set_yticks(np.arange(len(names)) + 0.5, [au_label(n) for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_facecolor("#eeeeee")  # frames without the face: light grey, not "intensity 0"
        fig.colorbar(mesh, ax=ax, label="AU intensity (0–5)", fraction=0.025, pad=0.01)
        axes.append(ax)
    if len(emo.columns):
        ax = fig.add_subplot(gs[-1], sharex=axes[0] if axes else sharex)
        if emo_label == "emotion probability":
            vals = np.nan_to_num(emo_t.to_numpy(np.float64), nan=0.0).T
            ax.stackplot(t, vals, labels=list(emo_t.columns),
                         colors=[EMOTION_COLORS.get(e, "#999") for e in emo_t.columns], alpha=0.9, lw=0)
            ax.set_ylim(0, 1)
            ax.set_ylabel("emotion (CNN)\nprobability, stacked", fontsize=9)
        else:
            for e in emo_t.columns:
                ax.plot(t, emo_t[e].to_numpy(np.float64), color=EMOTION_COLORS.get(e, "#999"), lw=1.5, label=e)
            ax.set_ylim(0, 105)
            ax.set_ylabel("% of emotion\nprototype AUs", fontsize=9)
        if ax.get_legend_handles_labels()[0]:  # else matplotlib warns "No artists with labels"
            ax.legend(ncol=8, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False,
                      handlelength=1.2, columnspacing=1.0)
        axes.append(ax)
    axes[0].set_title(title, loc="left", pad=22 if not names else 6)  # clear of the legend
    axes[-1].margins(x=0)
    for a in axes[:-1]:
        a.tick_params(labelbottom=False)
    return axes


def clean(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``df`` ready to draw, and notes on what was changed for that.

    - Rows of a video input whose timestamp is not a finite number are left out (a note says how many):
      they cannot be placed on the time axis, and one NaN breaks the heatmap's cell edges and the
      rolling window. Single-frame inputs (images) do not need a time and keep them.
    - An empty ``face`` cell becomes 0 in rows without a face (as aulib writes them) and, when every frame
      has at most one face, in rows with one (one person: face 0); with several faces in a frame the
      faces cannot be told apart, which is a ValueError rather than a guess.
    - A face row that repeats an earlier row's input, frame and face is left out (a note says how many).
    """
    notes: list[str] = []
    t = pd.to_numeric(df["timestamp"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(t)
    if bad.any():
        multi = df.groupby(df["input"].astype(str))["frame"].transform("nunique").to_numpy() > 1
        drop = bad & multi
        if drop.any():
            df = df[~drop]
            notes.append(f"{int(drop.sum())} row(s) without a valid timestamp left out (they cannot be placed "
                         "on the time axis).")
    if df["face"].isna().any():
        empty = df["face"].isna()
        ok = df["success"] == 1
        faced = df[ok]
        several = bool((faced.groupby([faced["input"].astype(str), faced["frame"]]).size() > 1).any())
        if (empty & ok).any() and several:
            raise ValueError("the face column is empty in rows with a face, and some frames have several "
                             "faces: cannot tell them apart")
        df = df.assign(face=df["face"].fillna(0))
        if (empty & ok).any():
            notes.append(f"face id missing in {int((empty & ok).sum())} row(s) with a face: read as face 0 "
                         "(one face per frame).")
    if not pd.api.types.is_integer_dtype(df["face"]) and df["face"].notna().all():
        face = df["face"].to_numpy(np.float64)
        if np.all(face == np.round(face)):
            df = df.assign(face=face.astype(np.int64))
    # A face's row repeated (two runs appended into one table): both copies were averaged and counted ("72 frames
    # analysed", AU12 mean 1.19 for 2.38). The first is kept, and the note says how many were left out.
    again = (df["success"] == 1) & df.assign(_input=df["input"].astype(str)).duplicated(["_input", "frame", "face"])
    if again.any():
        df = df[~again]
        notes.append(f"{int(again.sum())} row(s) repeating the input, frame and face of an earlier row left out "
                     "(two runs appended into one table?): the first of each is shown.")
    notes += out_of_range(df)
    return df, notes


# The ranges aulib writes: intensities 0–5, occurrence 0/1, probabilities and confidence 0–1. Only aulib's own p_*
# columns (the emotion names) are probabilities: OpenFace's shape parameters p_scale, p_rx … p_33 were reported as
# "values outside their column's range … aulib writes 0–1".
_RANGES = ((re.compile(r"AU\d+_r$"), 0.0, 5.0, "0–5"), (re.compile(r"AU\d+_c$"), 0.0, 1.0, "0 or 1"),
           (re.compile(rf"(AU\d+_p|p_(?:{'|'.join(EMOTIONS)})|confidence)$"), 0.0, 1.0, "0–1"))


def out_of_range(df: pd.DataFrame) -> list[str]:
    """A note naming the columns whose values lie outside what aulib writes (a hand-edited table, another
    program's): "AU12 mean 6.28, peak 99.00" was reported on the 0–5 scale, and the plot clipped it to 5 without
    a word. The values are shown as they are."""
    bad = []
    for c in df.columns:
        for pattern, lo, hi, what in _RANGES:
            if pattern.match(str(c)):
                v = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
                outside = np.isfinite(v) & ((v < lo) | (v > hi) | ((what == "0 or 1") & (v != np.round(v))))
                if outside.any():
                    bad.append(f"{c} ({int(outside.sum())} value(s), e.g. {v[outside][0]:g}; aulib writes {what})")
                break
    if not bad:
        return []
    return [f"values outside their column's range — the table was edited or is not aulib's: {', '.join(bad[:4])}"
            + (f" and {len(bad) - 4} more column(s)" if len(bad) > 4 else "") + "."]


def figure(df: pd.DataFrame, input_name: str | None = None, face: int | None = None,
           aus: Sequence[int] | None = None, smooth: float | None = None, style: str = "auto",
           log: Callable[[str], None] | None = None):
    """The matplotlib Figure for one input of an analysis table (see the module docstring).

    ``aus``: AU numbers to show (default all); ``smooth``: centred rolling mean over that many
    seconds (videos); ``style``: ``lines`` (small multiples), ``heatmap`` or ``auto``; ``log``: told which input
    is drawn when the table holds several and none was chosen (:func:`inputs_note`).
    """
    from matplotlib.figure import Figure

    if style not in STYLES:
        raise ValueError(f"--style must be one of {', '.join(STYLES)}, not {style!r}")
    df, notes = clean(df)
    sub = select(df, input_name, face)
    names = pick_aus(sub, aus)
    _, emo, emo_label = value_groups(sub)
    name = str(sub["input"].iloc[0])
    rows = df[df["input"].astype(str) == name]  # the input's full timeline (failed frames included)
    video = spans_frames(rows)
    faces = sorted(sub["face"].unique())[:MAX_FACES if video else MAX_IMAGE_FACES]
    several = inputs_note(df, name, "this plot shows") if input_name is None else None
    if log and several:
        log(f"warning: {several}")
    title = figure_text(Path(name).name)
    n_all = sub["face"].nunique()
    if n_all > len(faces):
        title += f" (faces {', '.join(map(str, faces))} of {n_all}; choose with --face)"
    if not names:
        notes.insert(0, "no AU intensities (AUxx_r) in the table.")
    tail = "".join(f"\n{figure_text(n)}" for n in notes)  # under the title: what is not shown, and why
    if video:
        frames = rows.groupby("frame")["timestamp"].first().sort_index().to_frame()  # gaps show as gaps
        lines, _ = _layout(names, style, bool(len(emo.columns)))
        au_height = (0.95 * len(names) if lines else 0.32 * len(names) + 0.4) if names else 0.0
        per_face = au_height + (2.6 if len(emo.columns) else 0.6)
        fig = Figure(figsize=(12, per_face * len(faces) + 0.6), dpi=100, layout="constrained")
        outer = fig.add_gridspec(len(faces), 1)
        first = None
        axes: list = []
        for n, fid in enumerate(faces):
            f = sub[sub["face"] == fid].sort_values("timestamp")
            note = f" — smoothed over {smooth:g} s" if smooth else ""
            axes += _video_face(fig, outer[n], frames, f, names, style, smooth, f"{title} — face {fid}{note}{tail}",
                                emo_label, first)
            first = first or axes[0]
        for a in axes[:-1]:
            a.tick_params(labelbottom=False)
        span = column_span(frames["timestamp"].to_numpy(np.float64))
        axes[-1].set_xlabel("time (s)" + (f" — {MAX_COLUMNS} columns, each the mean of {span:.3g} s" if span else ""))
        return fig
    return _image_figure(sub, faces, names, title + tail, emo_label)


def _image_figure(sub: pd.DataFrame, faces: list, names: list[str], title: str, emo_label: str):
    """One column per face: AU intensity bars (present AUs coloured) over emotion bars, shared axes; a row
    is left out when the table has nothing for it (no AUxx_r, or no emotion columns)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    _, emo_all, _ = value_groups(sub)
    has_aus, has_emo = bool(names), bool(len(emo_all.columns))
    heights = ([0.28 * len(names) + 0.6] if has_aus else []) + ([2.4] if has_emo else [])
    width = max(6.0, 3.4 * len(faces) + 2.2)
    fig = Figure(figsize=(width, sum(heights) + 1.2), dpi=100, layout="constrained")
    axes = fig.subplots(len(heights), len(faces), squeeze=False, sharey="row", sharex="row", height_ratios=heights)
    y = np.arange(len(names))
    for n, fid in enumerate(faces):
        r = sub[sub["face"] == fid].iloc[[0]]
        aus, emo, _ = value_groups(r)
        top = axes[0, n]
        top.set_title(f"face {fid}", fontsize=11)
        if has_aus:
            occ = table.au_occurrence(r)
            if table.occurrence_column(table.BLINK_AU) in r.columns:
                occ = occ.assign(**{BLINK: r[table.occurrence_column(table.BLINK_AU)]})
            # an AU with an intensity column and no occurrence one (removed, or a user's AU28_r): drawn as not
            # present — pd.NA there raised "boolean value of NA is ambiguous" and the figure was refused
            present = [not pd.isna(v) and v == 1 for v in occ.reindex(columns=names).iloc[0].tolist()]
            a = axes[0, n]
            a.barh(y, aus[names].iloc[0].to_numpy(np.float64), color=["#d55e00" if p else "#9e9e9e" for p in present])
            a.set_yticks(y, [au_label(x) for x in names], fontsize=8)
            a.set_xlim(0, 5)
            a.grid(axis="x", alpha=0.3)
            a.set_xlabel("AU intensity (0–5)", fontsize=9)
        if has_emo:
            b = axes[-1, n]
            vals = emo.iloc[0].to_numpy(np.float64)
            b.barh(list(emo.columns), vals, color=[EMOTION_COLORS.get(e, "#999") for e in emo.columns])
            b.set_xlim(0, 1 if emo_label == "emotion probability" else 100)
            b.set_xlabel(emo_label, fontsize=9)
            b.grid(axis="x", alpha=0.3)
    for row in range(len(heights)):
        axes[row, 0].invert_yaxis()  # shared by the row: AU01 on top, first emotion on top
    if has_aus:
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
TIMELINE = ["frame", "timestamp", "success"]  # what a per-frame table must have; input/face/error can default


def _defaults(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Fill the identity columns a per-frame table may lack: OpenFace's FeatureExtraction CSV (whose columns
    aulib's follow) has ``frame, timestamp, success`` but no ``input`` (one file per input: its name),
    no ``face`` (its ``face_id`` when there, else 0: one face) and no ``error``; a table whose ``error``
    column was dropped means no errors. Only tables with the per-frame columns get defaults, so a foreign
    table is still refused by name."""
    if not all(c in df.columns for c in TIMELINE):
        return df
    add: dict[str, object] = {}
    if "input" not in df.columns:
        add["input"] = Path(name).name
    if "face" not in df.columns:
        add["face"] = df["face_id"] if "face_id" in df.columns else 0
    if "error" not in df.columns:
        add["error"] = ""
    elif not pd.api.types.is_string_dtype(df["error"]) or df["error"].isna().any():
        add["error"] = df["error"].fillna("").astype(str)  # a DataFrame given directly: NaN means no error
    if not add:
        return df
    df = df.copy()  # one block: adding columns to a fragmented frame makes pandas warn
    for column, value in add.items():
        df[column] = value
    return df


def check_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Raise ValueError (naming the table) unless ``df`` looks like ``aulib analyze`` output:
    the row-identity columns and at least one AU intensity, emotion probability or rule column.
    Returns the table with the identity columns a per-frame table may lack filled in (:func:`_defaults`)."""
    df = _defaults(df, name)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        cols = [str(c) if len(str(c)) <= 40 else f"{str(c)[:40]}…" for c in df.columns]
        shown = ", ".join(cols[:6]) + (" …" if len(cols) > 6 else "")
        # one column holding the whole header: another separator (a spreadsheet's ';' or a tab-separated file)
        sep = next((c for c in (";", "\t", "|") if len(df.columns) == 1 and c in str(df.columns[0])), None)
        hint = f"; its fields are separated by {sep!r}: aulib tables are comma-separated" if sep else ""
        raise ValueError(f"{name}: not a table written by aulib analyze (no {', '.join(missing)} column; "
                         f"it has: {shown or 'no columns'}{hint})")
    aus, emo, _ = value_groups(df)
    if not len(aus.columns) and not len(emo.columns):
        raise ValueError(f"{name}: has no AUxx_r, p_* or rule_* columns to plot or report (a table from aulib faces?)")
    for label, col in [(c, df[c]) for c in ("success", "face", "frame", "timestamp")] + \
            [(f"{c} intensity", aus[c]) for c in aus.columns] + [(f"{c} score", emo[c]) for c in emo.columns]:
        if not pd.api.types.is_numeric_dtype(col) and not col.isna().all():
            raise ValueError(f"{name}: column {label!r} is not numeric — not a table written by aulib analyze")
    for col, top in (("frame", MAX_FRAME), ("timestamp", MAX_SECONDS)):
        # one damaged row (frame 1e15 at 1e12 s) squeezed a plot's time axis into two bars and failed the report
        # in pandas' words: no video runs for 115 days
        v = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(((v < 0) | (v > top) | np.isinf(v)).to_numpy())
        if len(bad):
            raise ValueError(f"{name}: row {int(bad[0]) + 1} has {col} {v.iat[bad[0]]:g}, which no video has (0 to "
                             f"{top:g}): a damaged table")
    return df


MAX_FRAME, MAX_SECONDS = 1e10, 1e7  # a table's bounds on frame numbers and seconds (≈ 115 days of video)


def unfinished_run(table: str | Path) -> str | None:
    """What to say of a table whose run has not finished — its progress log ``OUT.done`` is still beside it
    (removed when a run completes): stopped or killed, its last input may be cut off — or of a CSV table cut in
    its last row (:func:`aulib.table.cut_last_row`), or None."""
    if os.path.isfile(f"{table}.done"):
        return (f"{table}: the run that wrote it has not finished ({Path(table).name}.done is beside it): its last "
                "input may be cut off and others missing; the same aulib analyze command with --resume finishes it")
    from aulib.table import cut_last_row

    return cut_last_row(table) if str(table).lower().endswith(".csv") else None


def refuse_overwriting(out: str | Path, table: str | Path | None, df: pd.DataFrame,
                       video: str | Path | None = None) -> None:
    """ValueError when ``out`` names the table itself, the ``video`` or a (local) input of the table: ``aulib plot
    t.csv -o photo.jpg`` replaced the analysed photo by the figure without a word (``analyze`` refuses this)."""
    if not os.path.exists(out):
        return
    inputs = df["input"].dropna().astype(str).unique() if "input" in df.columns else []
    for what, other in [("table", table), ("video", video), *(("input", n) for n in inputs[:10000])]:
        try:
            same = other is not None and os.path.samefile(out, other)
        except (OSError, ValueError):
            same = False
        if same:
            raise ValueError(f"{out}: is the {what} {other}; give the output another name")


_LANDMARK = re.compile(r"[xy]_\d+$")


def _read_shown(path: str) -> pd.DataFrame:
    """A table without its 136 landmark columns, which neither the plot nor the report shows: a 1-million-row
    table (2 GB of CSV) took 5.4 GB of memory with them."""
    from aulib.table import read_table, table_columns

    try:
        columns = [str(c).strip() for c in table_columns(path)]
    except Exception:  # unreadable: read_table says why, in the caller's words
        return read_table(path)
    return read_table(path, columns=[c for c in columns if not _LANDMARK.match(c)])


def read_checked(source: str | Path) -> pd.DataFrame:
    """Read a table file (:func:`read_source`, without its landmark columns) and check it is ``aulib analyze``
    output."""
    df, name = read_source(source)
    return check_table(df, name)


def read_source(source: str | Path, landmarks: bool = False) -> tuple[pd.DataFrame, str]:
    """A table file, or a partitioned output folder, as one DataFrame and the name its messages use; any parser
    failure (garbage bytes, a foreign format) becomes one ValueError naming the file. Parsers raise many types
    (pandas, pyarrow, json, UnicodeDecodeError), hence the broad except around the call alone. ``landmarks``:
    keep the 136 landmark columns (the plot and the report leave them out)."""
    from aulib.io import check_regular_file
    from aulib.table import read_table, table_format

    if os.path.isdir(source):  # analyze -o folder/ (partitioned): its parts in input order, as one table
        from aulib.batch import MANIFEST, read_partitioned

        if not os.path.isfile(os.path.join(source, MANIFEST)):
            raise ValueError(f"{source}: a folder, not a table (a partitioned aulib output has {MANIFEST})")
        name, what, read = str(source), "the partitioned table", read_partitioned
    else:
        path = check_regular_file(source, ValueError)
        try:
            fmt = table_format(path)
        except ValueError:  # it said "unknown output format" of the table being read
            raise ValueError(f"{path}: not a table aulib reads (a .csv, .parquet or .json file written by "
                             "aulib analyze)") from None
        name, what, read = str(path), f"a {fmt} table", read_table if landmarks else _read_shown
    try:
        df = read(name)
    except Exception as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        if len(detail) > 300:  # cut at a word, and say so (it ended "…run again with --resume to r)")
            detail = detail[:300].rsplit(" ", 1)[0] + " …"
        if what == "a json table":
            detail += "; aulib's JSON tables are JSON Lines, one object per line"
        raise ValueError(f"{name}: cannot read as {what} ({detail})") from None
    return df, name


def plot_table(source: str | Path | pd.DataFrame, out: str | Path, input_name: str | None = None,
               face: int | None = None, aus: Sequence[int] | None = None, smooth: float | None = None,
               style: str = "auto", log: Callable[[str], None] | None = None) -> Path:
    """Read an analysis table (path or DataFrame) and save its plot to ``out`` (format by extension). A table with
    several inputs, none chosen: ``log`` (default: stderr) is told which one is drawn and how to choose another.

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
    refuse_overwriting(out, None if isinstance(source, pd.DataFrame) else source, df)
    try:
        fig = figure(df, input_name, face, aus=aus, smooth=smooth, style=style, log=log or _stderr)
    except (TypeError, KeyError) as e:
        raise ValueError(f"{name}: cannot plot this table ({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    ps_log = logging.getLogger("matplotlib.backends.backend_ps")
    quiet = _DropTransparencyNote()
    ps_log.addFilter(quiet)
    try:
        fig.savefig(out)
    finally:
        ps_log.removeFilter(quiet)
    return out


class _DropTransparencyNote(logging.Filter):
    """PostScript (.eps/.ps) has no transparency, so matplotlib logs that the semi-transparent areas come out
    opaque: expected for these formats and nothing the user can act on, so it is not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not support transparency" not in record.getMessage()
