"""``aulib report``: one self-contained HTML page summarising an analysis table for a researcher.

What it holds, for one input of the table (default: the first):

- frames analysed and frames with a face, face tracks, duration;
- per AU (with its FACS name): mean intensity, share of frames where the occurrence model says
  present, peak intensity and when;
- the emotion timeline (AU heatmap over time + CNN probabilities as stacked areas, from
  :mod:`aulib.plot`), the share of frames per CNN emotion, and how often each emotion prototype
  fully matches (:mod:`aulib.au.facs`);
- top moments: the strongest frame of each emotion the CNN saw clearly, and of the most active
  AU, each with its top AUs and, when the video is given, a thumbnail of the face;
- run settings (the table's ``OUT.meta.json`` sidecar written by the batch runner, when present)
  and the installed model files with their sha256 prefixes.

Self-contained on purpose: figures are base64 PNG ``data:`` URIs and the CSS is inline, so the
file can be mailed, archived or opened offline and shows exactly what it showed when written; it
references no external URL. Every piece of text from the table (file names, errors) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aulib import table
from aulib.au.facs import au_label, facs_name, prototype_matches
from aulib.face.record import EMOTIONS, au_name

THUMB_HEIGHT = 150
MAX_MOMENTS = 6
MIN_GAP_S = 1.0  # two top moments closer than this are one moment


@dataclass
class Moment:
    """One notable frame: why it is notable, where it is, and what the face shows there."""

    why: str
    frame: int
    timestamp: float
    face: int
    box: tuple[float, float, float, float]
    emotion: str
    top_aus: list[tuple[str, float]]
    thumbnail: str = ""  # data: URI of a JPEG, or ""


def _png(fig) -> str:
    """A matplotlib Figure as a base64 PNG ``data:`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _jpeg(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _e(x: object) -> str:
    """``x`` as HTML text: escaped, and its control characters written ``\\uXXXX`` (:func:`aulib.plot.shown_name`),
    as the figures show them."""
    from aulib.plot import shown_name

    return html.escape(shown_name(x), quote=True)


def row_unit(ok: pd.DataFrame) -> str:
    """What one face row is, for the labels of shares over rows: a frame when there is one face, else a
    face in a frame ("face-frames") or, in a single image, a face. With two people, "% frames present"
    would be read as a share of frames, which it is not: each frame counts once per face."""
    if ok["face"].nunique() <= 1:
        return "frames"
    return "face-frames" if ok["frame"].nunique() > 1 else "faces"


def au_summary(ok: pd.DataFrame, video: bool | None = None) -> pd.DataFrame:
    """Per AU over the face rows ``ok``: FACS name, mean intensity, % of rows present (the label says
    what a row is: :func:`row_unit`), peak intensity and where it is.

    Every AU with an intensity or an occurrence column is listed: OpenFace writes AU28 as ``AU28_c`` alone, and it
    was left out without a word (its intensity cells read "–"). The peak is the earliest row among equal maxima
    (rows sorted by time, then face): an intensity of 5 reached in many frames was placed at whichever came first
    in the file, so shuffled rows moved it. Its place is a time (``peak at (s)``) for a ``video`` (default: more
    than one frame in ``ok``) and the face (``face at peak``) when there are several faces: "0.00 s" said nothing
    of a photo, and a time alone did not say whose peak it was."""
    unit = row_unit(ok)
    video = bool(ok["frame"].nunique() > 1) if video is None else video
    several = ok["face"].nunique() > 1
    ok = ok.sort_values(["timestamp", "face"], kind="stable")
    inten, occ = table.au_intensity(ok), table.au_occurrence(ok)
    faces = ok["face"].to_numpy()
    rows = []
    for name in [au_name(a) for a in table.aus(ok)]:
        if name not in inten.columns and name not in occ.columns:
            continue
        v = inten[name].to_numpy(np.float64) if name in inten.columns else np.full(len(ok), np.nan)
        finite = np.isfinite(v)
        peak = int(np.nanargmax(v)) if finite.any() else None  # the first of equal maxima
        present = occ[name].astype("float64").to_numpy() if name in occ.columns else np.full(len(ok), np.nan)
        row = {
            "AU": name, "name": facs_name(name),
            "mean intensity": float(np.nanmean(v)) if finite.any() else float("nan"),
            f"% {unit} present": 100 * float(np.nanmean(present)) if np.isfinite(present).any() else float("nan"),
            "peak intensity": float(v[peak]) if peak is not None else float("nan"),
        }
        if video:
            row["peak at (s)"] = float(ok["timestamp"].iat[peak]) if peak is not None else float("nan")
        if several:
            row["face at peak"] = float(faces[peak]) if peak is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def emotion_summary(ok: pd.DataFrame) -> pd.DataFrame:
    """Per emotion: % of face rows the CNN labels with it, its mean probability, and % of rows whose
    AUs fully match its FACS prototype (a row is what :func:`row_unit` says).

    Each figure comes from its own columns and is "–" (NaN) only when they are absent: without ``emotion`` the
    label shares read 0 for every emotion, without ``AUxx_c`` no prototype ever matched (0 everywhere), and
    without the ``p_*`` columns the labels that were there were not counted and the neutral row was dropped."""
    unit = row_unit(ok)
    occ = table.au_occurrence(ok)
    numbers = [a for a in table.aus(ok) if au_name(a) in occ.columns]  # AUs whose presence the table gives
    on = occ.astype("float64").fillna(0).to_numpy() == 1
    cols = [list(occ.columns).index(au_name(a)) for a in numbers]
    col_of = dict(zip(numbers, cols))
    # rows where every modelled AU of a prototype is present (its "full" match), counted per column at once: row
    # by row, a 1e6-row table took 50 s here
    full = {m.emotion: int(on[:, [col_of[a] for a in m.modelled]].all(axis=1).sum())
            for m in prototype_matches(numbers, ())}  # prototypes with an AU to look at
    modelled = set(full)
    probs = table.emotion_probs(ok)
    labelled = table.has_emotion(ok) and bool(ok["emotion"].notna().any())
    labels = ok["emotion"] if labelled else None
    emotions = list(EMOTIONS) if len(probs.columns) or labelled else list(table.RULE_EMOTIONS)
    n = max(len(ok), 1)
    return pd.DataFrame([{
        "emotion": e,
        f"% {unit} (CNN label)": 100 * float((labels == e).sum()) / n if labels is not None else float("nan"),
        "mean probability": float(probs[e].mean()) if e in probs.columns else float("nan"),
        f"% {unit} prototype fully matched": 100 * full.get(e, 0) / n if e in modelled else float("nan"),
    } for e in emotions])


def _peak_row(ok: pd.DataFrame, raw: np.ndarray, smoothed: np.ndarray, seconds: float | None) -> int | None:
    """The row of ``ok`` (sorted by time) to show as the peak of a trace: the highest raw value of the face within
    the smoothing window around the smoothed trace's maximum (ties: the higher smoothed value, then the earliest),
    or None when the trace does not vary (no peak). The smoothed maximum's own row was shown before: on a 0.1 s clip
    the 0.5 s window covered every row, the smoothed trace was flat, and "peak of AU04" was the clip's minimum."""
    finite = np.isfinite(raw)
    if not finite.any() or (len(raw) > 1 and np.nanmax(raw) == np.nanmin(raw)):
        return None
    if not seconds or not np.isfinite(smoothed).any():
        return int(np.nanargmax(raw))
    t = ok["timestamp"].to_numpy(np.float64)
    face = ok["face"].to_numpy()
    c = int(np.nanargmax(smoothed))
    near = np.flatnonzero((face == face[c]) & (np.abs(t - t[c]) <= seconds / 2) & finite)
    if not len(near):
        return None
    sm = np.nan_to_num(smoothed[near], nan=-np.inf)
    return int(near[np.lexsort((near, -sm, -raw[near]))[0]])


def top_moments(ok: pd.DataFrame, smooth: float | None = 0.5, limit: int = MAX_MOMENTS) -> list[Moment]:
    """Frames worth looking at: the peak of each emotion the CNN saw clearly (smoothed probability ≥ 0.5,
    neutral excluded), then the peak of the most active AU; no two within :data:`MIN_GAP_S`.

    Each face is smoothed on its own (:func:`aulib.plot.smooth_faces`): averaged together, two people's
    traces would make peaks neither of them had, and hide the ones they had. The smoothed trace says whether and
    where an emotion was strong; the frame shown is a real peak of the raw values (:func:`_peak_row`), and the text
    quotes the frame's own value and the smoothed one, each named: "strongest happiness (50% CNN probability)"
    stood over a frame whose CNN said 98 %, the 50 % being the mean over the window."""
    from aulib.plot import smooth_faces

    if ok.empty:
        return []
    ok = ok.sort_values(["timestamp", "face"], kind="stable").reset_index(drop=True)
    t = ok["timestamp"].to_numpy(np.float64)
    seconds = smooth if ok["frame"].nunique() > 1 else None
    over = f", {{:.0%}} averaged over {seconds:g} s" if seconds else ""
    candidates: list[tuple[str, int]] = []
    probs = table.emotion_probs(ok)
    if len(probs.columns) and probs.notna().any().any():
        sm = smooth_faces(probs, ok, seconds)
        peaks = [(float(sm[e].max()), e) for e in sm.columns if e != "neutral" and sm[e].notna().any()]
        for p, e in sorted(peaks, reverse=True):
            raw = probs[e].to_numpy(np.float64)
            i = _peak_row(ok, raw, sm[e].to_numpy(np.float64), seconds) if p >= 0.5 else None
            if i is not None:
                candidates.append((f"strongest {e} (CNN probability {raw[i]:.0%} in this frame{over.format(p)})", i))
    inten = table.au_intensity(ok)
    if len(inten.columns) and inten.notna().any().any():
        best = inten.mean().idxmax()
        raw = inten[best].to_numpy(np.float64)
        sm = smooth_faces(inten[[best]], ok, seconds)[best].to_numpy(np.float64)
        i = _peak_row(ok, raw, sm, seconds)
        if i is not None:
            note = f", {np.nanmax(sm):.2f} averaged over {seconds:g} s" if seconds else ""
            candidates.append((f"peak of {au_label(best)} (the most active AU; intensity {raw[i]:.2f} in this frame"
                               f"{note})", i))
    out: list[Moment] = []
    for why, i in candidates:
        if len(out) >= limit or any(abs(m.timestamp - t[i]) < MIN_GAP_S for m in out):
            continue
        row = ok.iloc[[i]]
        values = table.au_intensity(row).iloc[0]
        top = sorted(((k, float(v)) for k, v in values.items() if np.isfinite(v)), key=lambda kv: -kv[1])[:3]
        emotion = ""
        if len(probs.columns) and probs.iloc[i].notna().any():
            e = str(probs.iloc[i].idxmax())
            emotion = f"{e} {float(probs.iloc[i][e]):.0%}"
        x, y, w, h = table.boxes(row)[0]
        out.append(Moment(why, int(row["frame"].iat[0]), float(t[i]), int(row["face"].iat[0]),
                          (float(x), float(y), float(w), float(h)), emotion, top))
    return out


def add_thumbnails(moments: Sequence[Moment], video: str | Path) -> str:
    """Fill each moment's thumbnail with its face cropped from ``video`` (frame index = the table's
    ``frame``); returns a note when the video is truncated or corrupt before some of them, or when some
    thumbnails were left out because no face is where the table has one ("" otherwise).

    A video with the same name is not necessarily the one analysed, and the wrong faces would look just
    as plausible, so the table is checked against what the video shows before anything is embedded.
    ValueError naming the file when it cannot be opened as a video, when it cleanly ends before frames the
    table has, when its frames are not at the table's times (another frame rate or cut), or when the table's
    face boxes lie outside its frames (another frame size). A frame in which the face detector finds no
    face at the table's box gives no thumbnail (and the note says so) rather than an error: a detector
    can miss a face the tracker followed.
    """
    from aulib.io import check_regular_file
    from aulib.video.reader import FrameReader

    path = check_regular_file(video, ValueError)
    wanted = {m.frame for m in moments}
    if not wanted:
        return ""
    frames: dict[int, tuple[float, np.ndarray]] = {}
    reader = FrameReader(path)
    for vf in reader:
        if vf.index in wanted:
            frames[vf.index] = (vf.time, vf.image)
        if vf.index >= max(wanted):
            break
    missing = sorted(wanted - set(frames))
    if not reader.stats.decoded:  # nothing to take thumbnails from: not a video (a text file FFmpeg probes as one)
        raise ValueError(reader.stats.error or f"{path}: no decodable video frames")
    if missing and not reader.stats.error:
        raise ValueError(f"{path}: has no frame {', '.join(map(str, missing))} (it has {reader.stats.decoded} "
                         "frames): not the video this table was made from")
    _check_fit(moments, frames, reader.stats.rate, path)
    unmatched = _unmatched(moments, frames)
    import cv2

    for m in moments:
        if m.frame not in frames or m.frame in unmatched:
            continue
        img = frames[m.frame][1]
        x, y, w, h = m.box
        if not all(np.isfinite([x, y, w, h])):
            continue
        pad = 0.35 * max(w, h)
        x0, y0 = max(int(x - pad), 0), max(int(y - pad), 0)
        x1, y1 = min(int(x + w + pad), img.shape[1]), min(int(y + h + pad), img.shape[0])
        if x1 <= x0 or y1 <= y0:
            continue
        crop = np.ascontiguousarray(img[y0:y1, x0:x1])
        scale = THUMB_HEIGHT / crop.shape[0]
        crop = cv2.resize(crop, (max(1, int(round(crop.shape[1] * scale))), THUMB_HEIGHT),
                          interpolation=cv2.INTER_AREA)
        m.thumbnail = _jpeg(crop)
    notes = []
    if reader.stats.error and missing:
        notes.append(f"{reader.stats.error}")
    if unmatched:
        notes.append(f"{path}: no face found where the table has one in frame {', '.join(map(str, sorted(unmatched)))}"
                     ": thumbnail left out (is it the video this table was made from?)")
    return " ".join(notes)


def _check_fit(moments: Sequence[Moment], frames: dict[int, tuple[float, np.ndarray]], rate: float,
               path: Path) -> None:
    """ValueError unless each moment's frame is at the table's time (within half a frame) and its face box
    lies mostly (≥ half of it) inside the video's frame: a clip with another frame rate or frame size has
    the same frame numbers but not the same pictures."""
    tol = max(0.5 / rate, 0.002) if rate else 0.02
    for m in moments:
        if m.frame not in frames or not all(np.isfinite(m.box)):  # no box, no thumbnail to check (OpenFace
            continue                                               # tables count frames from 1: one off)
        time, img = frames[m.frame]
        if np.isfinite(m.timestamp) and abs(time - m.timestamp) > tol:
            raise ValueError(f"{path}: frame {m.frame} is at {time:.3f} s in the video but at {m.timestamp:.3f} s "
                             "in the table: not the video this table was made from")
        x, y, w, h = m.box
        if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
            continue
        height, width = img.shape[:2]
        inside = max(0.0, min(x + w, width) - max(x, 0.0)) * max(0.0, min(y + h, height) - max(y, 0.0))
        if inside < 0.5 * w * h:
            raise ValueError(f"{path}: the table's face box in frame {m.frame} (x {x:.0f}, y {y:.0f}, {w:.0f}×{h:.0f}"
                             f" px) lies outside the video's {width}×{height} frames: not the video this table "
                             "was made from")


def _unmatched(moments: Sequence[Moment], frames: dict[int, tuple[float, np.ndarray]]) -> set[int]:
    """Frames of ``moments`` in which the face detector finds no face overlapping the table's box (IoU < 0.3):
    same frame rate and size, other pictures. The detector runs with a lower score threshold than analysis
    (0.5), so a face analysed there is found again; ~20 ms per frame."""
    from aulib.face.detect import RetinaFaceDetector, iou

    todo = [m for m in moments if m.frame in frames and all(np.isfinite(m.box)) and m.box[2] > 0 and m.box[3] > 0]
    if not todo:
        return set()
    detector = RetinaFaceDetector(score_threshold=0.5)
    found: dict[int, list[np.ndarray]] = {}
    out = set()
    for m in todo:
        if m.frame not in found:
            found[m.frame] = [d.as_array().astype(np.float64) for d in detector(frames[m.frame][1])]
        box = np.asarray(m.box, np.float64)
        if not any(iou(d, box) >= 0.3 for d in found[m.frame]):
            out.add(m.frame)
    return out


def run_metadata(table_path: str | Path | None) -> dict:
    """The run's metadata (``options``, ``columns``) of a table the batch runner wrote, or ``{}``: the sidecar
    ``OUT.meta.json`` of a table file, the manifest of a partitioned folder, or the ``.aulib-run.meta`` of the
    ``--per-input`` folder a table lies in (up the folders it mirrors). The last two read "no run metadata"."""
    from aulib.batch import MANIFEST, PER_INPUT_META

    if table_path is None:
        return {}
    path = Path(table_path)
    if path.is_dir():
        candidates = [path / MANIFEST]
    else:
        candidates = [path.with_name(path.name + ".meta.json")]
        candidates += [folder / PER_INPUT_META for folder in path.resolve().parents]
    for meta in candidates:
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("options"), dict):
            return data
    return {}


def model_versions() -> list[tuple[str, str, str]]:
    """``(file, sha256 prefix, what it is)`` for every model in the installed manifest."""
    from aulib.models import read_manifest

    out = []
    for name, entry in read_manifest().get("models", {}).items():
        what = entry.get("dataset") or entry.get("source") or ""
        out.append((name, str(entry.get("sha256", ""))[:12], str(what)))
    return out


def _table_html(df: pd.DataFrame, formats: dict[str, str], bars: dict[str, float] | None = None) -> str:
    """An HTML table; ``formats`` per column; ``bars``: columns drawn with a proportional CSS bar."""
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            if isinstance(v, float) and not np.isfinite(v):
                text, num = "–", None
            elif c in formats and isinstance(v, (int, float, np.floating)):
                text, num = format(v, formats[c]), float(v)
            else:
                text, num = str(v), None
            if bars and c in bars and num is not None:
                width = max(0.0, min(100.0, 100 * num / bars[c]))
                cells.append(f'<td class="num"><span class="bar" style="width:{width:.0f}%"></span>{_e(text)}</td>')
            else:
                cells.append(f'<td{" class=num" if num is not None else ""}>{_e(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.muted{color:#666;font-size:.9rem}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{background:#f5f5f7;border-radius:8px;padding:.7rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}th,td{padding:.25rem .6rem;text-align:left;
border-bottom:1px solid #eee}th{background:#fafafa}td.num{text-align:right;position:relative;min-width:5rem}
.bar{position:absolute;left:0;top:15%;height:70%;background:#e69f0033;border-radius:2px;z-index:-1}
td.num{z-index:0}img.fig{max-width:100%;height:auto;border:1px solid #eee}
.moments{display:flex;flex-wrap:wrap;gap:1rem}.moment{background:#f5f5f7;border-radius:8px;padding:.6rem;
width:15rem;font-size:.85rem}.moment img{display:block;max-width:100%;height:150px;object-fit:contain;
margin-bottom:.4rem;background:#000}.warn{background:#fff4e5;border-left:4px solid #e69f00;padding:.5rem 1rem}
code{background:#f2f2f2;padding:0 .25rem;border-radius:3px}
"""


def _input_of(df: pd.DataFrame, video: str | Path) -> str | None:
    """The table's input that is ``video`` (the same file, else the one input of that file name), or None: a table
    of photos and a clip, reported with ``--video clip.mp4``, was refused ("--video is for a video's table;
    photos/BW.jpg is one image"), the first input being the default."""
    if "input" not in df.columns:
        return None
    names = [str(n) for n in pd.unique(df["input"].dropna())]
    same = [n for n in names if table.names_file(n, video)]
    if len(same) == 1:
        return same[0]
    named = [n for n in names if Path(table.text_path(n)).name == Path(video).name]
    return named[0] if len(named) == 1 else None


def render(df: pd.DataFrame, input_name: str | None = None, face: int | None = None, video: str | Path | None = None,
           table_path: str | Path | None = None, smooth: float | None = 0.5) -> str:
    """The report page (HTML text) for one input of an analysis table (see the module docstring). An input without
    a face in any frame gets a page saying so (0 of N frames): it failed with "no successfully analysed face",
    which is the finding itself, not an error."""
    import aulib
    from aulib.plot import (
        clean,
        figure,
        input_rows,
        inputs_note,
        select,
        spans_frames,
        unfinished_run,
        value_groups,
    )

    if df.empty:
        raise ValueError("the table has no rows")
    df, cleaned = clean(df)
    if input_name is None and video is not None:
        input_name = _input_of(df, video)
    name, rows = input_rows(df, input_name)
    no_face = face is None and not (rows["success"] == 1).any()
    ok = rows.iloc[0:0] if no_face else select(df, name, face)
    is_video = spans_frames(rows)  # as plot.figure decides it, so the caption describes the figure shown
    errors = rows["error"].fillna("").astype(str) if "error" in rows.columns else pd.Series("", index=rows.index)
    # a failure row (the input, or the rest of a clip, could not be read: its error names the input, as the run's
    # summary counts it, aulib.batch.Tally) is no frame: "1 frames analysed" for an empty file
    failure = (rows["success"] == 0) & errors.str.startswith(name + ":")
    frames = rows.loc[~failure, "frame"].nunique()
    with_face = ok["frame"].nunique()
    duration = float(rows["timestamp"].max() - rows["timestamp"].min()) if is_video else 0.0
    notes = [] if table_path is None else [n for n in [unfinished_run(table_path)] if n]
    notes += [n for n in [inputs_note(df, name, "this report covers")] if n]
    if no_face and not frames:
        notes.append(f"{name} could not be read: nothing to measure.")
    elif no_face:
        notes.append(f"No face in any of the {frames} frames of {name} (0 of {frames}): nothing to measure."
                     if frames > 1 else f"No face in {name}: nothing to measure.")
    notes += cleaned
    problems = errors[(rows["success"] == 0) & (errors != "") & ~errors.str.contains("no face", case=False)]
    notes += [f"Problem in the input: {e}" for e in problems.unique()[:3]]

    moments = top_moments(ok, smooth)
    if video is not None:
        from aulib.io import is_video as is_video_file

        # a photo given as the video, or a video for a photo's table: another person's face under the caption
        if not is_video_file(str(video)):
            raise ValueError(f"{video}: --video takes the analysed video, and this is not a video file")
        if not is_video:
            raise ValueError(f"{video}: --video is for a video's table; {name} is one image (its table has one "
                             "frame)")
        if Path(video).name != Path(name).name:
            notes.append(f"Thumbnails from {video}, whose name differs from the table's input {name}.")
        note = add_thumbnails(moments, video)
        if note:
            notes.append(note)

    timeline = "" if no_face else _png(figure(df, name, face, smooth=smooth if is_video else None, style="heatmap"))
    aus = au_summary(ok, is_video)
    emo = emotion_summary(ok)
    meta = run_metadata(table_path)
    version = getattr(aulib, "__version__", "")

    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>aulib report — {_e(Path(name).name)}"
             "</title><meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>aulib report — {_e(Path(name).name)}</h1>",
             f"<p class=muted>Input <code>{_e(name)}</code>"
             + (f" · table <code>{_e(table_path)}</code>" if table_path else "")
             + f" · written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}"
             + (f" by aulib {_e(version)}" if version else "") + "</p>"]
    parts += [f"<p class=warn>{_e(n)}</p>" for n in notes]
    cards = [("frames analysed", f"{frames}"),
             ("frames with a face", f"{with_face} ({100 * with_face / max(frames, 1):.0f} %)"),
             ("face tracks" if is_video else "faces", f"{ok['face'].nunique()}")]
    if is_video:
        cards.append(("duration", f"{duration:.1f} s"))
    if face is not None:
        cards.append(("face shown", f"{face}"))
    parts.append("<div class=cards>" + "".join(f"<div class=card><b>{_e(v)}</b>{_e(k)}</div>" for k, v in cards)
                 + "</div>")

    parts.append("<h2>Emotion timeline</h2>" if is_video else "<h2>Faces</h2>")
    inten, emo_cols, emo_label = value_groups(ok)
    shown = [("AU intensity over time (heatmap, light = absent, grey = no face)" if len(inten.columns) else "")]
    if len(emo_cols.columns):  # say what the figure's lower panel is: CNN probabilities or rule percentages
        shown.append("the CNN emotion probabilities stacked (they sum to 1)" if emo_label == "emotion probability"
                     else "the % of each emotion prototype's AUs present")
    what = (" and ".join(x for x in shown if x) + (f", smoothed over {smooth:g} s (centred rolling mean)"
                                                   if smooth else "")
            if is_video else "AU intensities (present AUs coloured) and emotion scores per face")
    if no_face:
        parts.append("<p class=muted>No face to draw.</p>")
    else:
        parts.append(f"<p class=muted>{_e(what)}.</p><img class=fig alt='emotion timeline' src='{timeline}'>")

    unit = row_unit(ok)
    per = {"frames": "frames", "faces": "faces",
           "face-frames": "face-frames (each frame counts once per face with a face there)"}[unit]
    where = ("its time (the earliest of equal maxima)" + (" and face" if "face at peak" in aus.columns else "")
             if is_video else "the face with it")
    only_c = [] if no_face else [au_name(a) for a in table.aus(ok) if table.intensity_column(a) not in ok.columns]
    parts.append("<h2>Action Units</h2><p class=muted>Over the rows with a face: mean intensity AUxx_r (0–5), "
                 f"share of {_e(per)} where the AU is present (AUxx_c), and the peak intensity with {_e(where)}."
                 + (f" {_e(', '.join(only_c))}: no intensity column in the table (occurrence only), hence –."
                    if only_c else "") + "</p>")
    present = f"% {unit} present"
    if no_face:
        parts.append("<p class=muted>No face: no AU was measured.</p>")
    else:
        parts.append(_table_html(aus, {"mean intensity": ".2f", present: ".0f", "peak intensity": ".2f",
                                       "peak at (s)": ".2f", "face at peak": ".0f"},
                                 bars={"mean intensity": 5.0, present: 100.0}))

    parts.append(f"<h2>Emotions</h2><p class=muted>CNN: share of {_e(unit)} with that label and mean probability. "
                 f"FACS prototypes (EMFACS, Friesen &amp; Ekman 1983): share of {_e(unit)} where <em>every</em> "
                 "modelled AU of the emotion's prototype is present; partial overlaps are not counted, since single "
                 "AUs are shared by several prototypes.</p>")
    label, matched = f"% {unit} (CNN label)", f"% {unit} prototype fully matched"
    if no_face:
        parts.append("<p class=muted>No face: no emotion was measured.</p>")
    else:
        parts.append(_table_html(emo, {label: ".0f", "mean probability": ".2f", matched: ".0f"},
                                 bars={label: 100.0, matched: 100.0}))

    parts.append("<h2>Top moments</h2>")
    if no_face:
        parts.append("<p class=muted>None: no face.</p>")
    elif not moments:
        parts.append("<p class=muted>None: no emotion's CNN probability reached 50 %"
                     + (f" (averaged over {smooth:g} s)" if smooth and is_video else "")
                     + " and no AU intensity has a peak (none measured, or the same in every row).</p>")
    elif video is None and is_video:
        parts.append("<p class=muted>Give the video (<code>--video clip.mp4</code>) for thumbnails.</p>")
    cards_html = []
    for m in moments:
        img = f"<img alt='frame {m.frame}' src='{m.thumbnail}'>" if m.thumbnail else ""
        aus_txt = ", ".join(f"{au_label(k)} {v:.1f}" for k, v in m.top_aus)
        cards_html.append(f"<div class=moment>{img}<b>{_e(m.why)}</b><br>"
                          + (f"{m.timestamp:.2f} s · frame {m.frame} · " if is_video else "")
                          + f"face {m.face}" + (f" · CNN: {_e(m.emotion)}" if m.emotion else "")
                          + f"<br>top AUs: {_e(aus_txt)}</div>")
    parts.append("<div class=moments>" + "".join(cards_html) + "</div>")

    parts.append("<h2>Run settings and models</h2>")
    if meta.get("options"):
        opts = pd.DataFrame([{"setting": k, "value": "–" if v is None else v} for k, v in meta["options"].items()])
        parts.append("<p class=muted>From the run's metadata (written by <code>aulib analyze</code>).</p>"
                     + _table_html(opts, {}))
    else:
        parts.append("<p class=muted>No run metadata next to the table (it is written as "
                     "<code>OUT.meta.json</code> by <code>aulib analyze -o OUT</code>).</p>")
    models = pd.DataFrame(model_versions(), columns=["model file", "sha256 (first 12)", "trained on / source"])
    parts.append("<p class=muted>Model files installed with this aulib (checksums verified at load).</p>"
                 + _table_html(models, {}))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(source: str | Path | pd.DataFrame, out: str | Path, input_name: str | None = None,
                 face: int | None = None, video: str | Path | None = None, smooth: float | None = 0.5) -> Path:
    """Read a table (path or DataFrame), write its HTML report to ``out``; ValueError naming the file
    for a foreign/broken table, an input/face it lacks, or an unreadable video."""
    from aulib.plot import check_table, read_checked, refuse_overwriting

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{out}: the report is an HTML page (name it .html)")
    if isinstance(source, pd.DataFrame):
        df, table_path, name = check_table(source, "the table"), None, "the table"
    else:
        df, table_path, name = read_checked(source), source, str(source)
    refuse_overwriting(out, table_path, df, video)
    try:
        text = render(df, input_name, face, video=video, table_path=table_path, smooth=smooth)
    except (TypeError, KeyError) as e:
        raise ValueError(f"{name}: cannot report this table ({type(e).__name__}: {e})") from None
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(str(video)) or msg.startswith(name) else f"{name}: {msg}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
