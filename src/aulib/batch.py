"""Many inputs: folders, many videos, checkpointed output, ``--resume`` and Dask.

Design choices, and why:

* **Write as you go.** Rows are appended as they are produced: an image at once, a video in
  chunks of a few hundred rows while it is still being decoded, so memory stays flat on long
  videos (:func:`aulib.video.iter_video_rows`). CSV/JSON-lines tables are appended in place;
  Parquet goes to ``OUT.parts/<key>.parquet`` (one :class:`pyarrow.parquet.ParquetWriter` per
  input, a row group per chunk), merged into ``OUT`` in input order at the end. ``--per-input
  DIR`` writes one file per input (to a hidden temporary name, renamed when the input is
  complete: a file that exists is complete).
* **What is done.** When an input is complete its name and the table's byte length are added
  to ``OUT.done`` (JSON lines). ``--resume`` cuts the table back to the last recorded length, so
  a torn last append of any shape (half a line, a cut inside a quoted multi-line field, a video
  interrupted after some chunks) is dropped and that input redone; a Parquet part is only
  counted when it was renamed into place, logged, and its footer reads. The log is removed when
  the run completes; a complete table is read back to see which inputs it holds.
* **Failed inputs are retried.** ``--resume`` redoes an input whose rows are all read or
  analysis failures (``success=0`` with an ``error`` that starts with the input's name; "no face
  detected" is a result, not a failure) and drops its old rows.
* **Same run, same table.** ``OUT.meta.json`` (``DIR/.aulib-run.meta`` for ``--per-input``)
  records the columns and options (AU set, emotion model, detector, ``--cropped``, video
  options) of the run; ``--resume`` with different ones raises a one-line ValueError instead of
  appending rows that do not fit.
* **One writer per output.** ``OUT.lock`` (``DIR/.aulib.lock``) is locked with ``fcntl.flock``
  (exclusive, non-blocking) for the whole run: a second process on the same output fails at once
  with a clear message instead of interleaving or deleting rows. The lock file is removed at the
  end of the run; a process that locked it just as it was removed finds the path no longer names
  its file and counts the lock as held (:func:`output_lock`). A killed run's lock ends with its
  process (its file stays, harmless). Not available on Windows (no ``fcntl``): no lock there.
* **Inputs given twice** (the same path twice, or a file and its folder) are analysed once, at
  their first position, and reported in :attr:`BatchResult.duplicates`.
* **File names**: any bytes Linux allows. The table stores them through
  :func:`aulib.table.table_text` (undecodable bytes as ``\\xNN``, backslashes doubled), the
  same in every format, the logs and the metadata; overlays get such names too, since OpenCV and
  FFmpeg take only UTF-8 paths.
* **One failing input never stops the batch**: it gets a ``success=0`` row naming the error.
  An overlay that cannot be written is reported (:attr:`BatchResult.warnings`); the rows stay.
* **Dask**: one task per input on a ``LocalCluster`` (processes, one thread each, workers =
  cores) or on an existing scheduler. Each worker process builds its Analyzer once (cached in
  :data:`_WORKER_ANALYZERS`) and keeps its models loaded across tasks. Results are written in
  input order as soon as all earlier inputs are in, so the table is identical to a serial run
  (a task returns its whole input: with Dask one video's rows are in memory at once).
* **Object storage** (:mod:`aulib.storage`, fsspec): inputs may be URLs (``s3://bucket/prefix/``,
  ``gs://``, ``https://``, ``file://``), listed, read and streamed where they are; their names in
  the table are the URLs with any credentials replaced by ``***``.
* **Partitioned output** for large runs (``-o s3://bucket/out/``, ``-o DIR/`` or ``--partitioned``;
  any URL output is one): one Parquet file per input, ``part-<hash of the input name>.parquet``,
  written by whoever analyses the input (a Dask worker writes straight to the store; the driver
  never holds rows), and ``_aulib_manifest.json`` beside them, written by the driver only: run
  options and columns, and per input its part, rows, frames, faces, status (done/failed), error,
  attempts, seconds and worker. The manifest is rewritten at most every few seconds and at the
  end (a store has no append). ``--resume`` trusts an input only when the manifest says done and
  its part is listed; anything else is redone, overwriting its part (names are deterministic), so
  a run killed between a part's upload and the next manifest write costs only that redo. A task
  that raises (a lost store connection, a part that cannot be written) is resubmitted up to
  ``retries`` times; a worker process that dies is first handled by the scheduler, which reruns
  its task on another worker (``distributed.scheduler.allowed-failures``); an input that still
  fails gets a part holding its ``success=0`` error row, written by the driver, and status
  ``failed`` — never dropped. Local partitioned folders are locked like other outputs; object
  stores have no locks: do not point two runs at one prefix. Names starting with ``_`` keep the
  manifest out of ``pyarrow.dataset`` / ``pandas.read_parquet(prefix)``.
* BLAS is limited to one thread while analysing: the AU models' matrix products are tiny and
  extra OpenBLAS threads only wait for CPU on a busy machine (the same setting Dask's workers
  use, which also keeps serial and Dask results bit-identical).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from threadpoolctl import threadpool_limits

from aulib.io import VIDEO_EXTENSIONS, expand_inputs, is_video
from aulib.storage import Source, is_url, naming_path, object_path, redact
from aulib.table import (
    Rows,
    TableAppender,
    counted,
    empty_row,
    names_file,
    read_table,
    table_columns,
    table_format,
    table_text,
)

if TYPE_CHECKING:
    import pandas as pd

    from aulib.analyzer import Analyzer


@dataclass(frozen=True)
class AnalyzerSpec:
    """How to build an :class:`~aulib.analyzer.Analyzer` (picklable, sent to Dask workers)."""

    detector: str = "retinaface"
    emotion_model: str = "cnn"
    cropped: bool = False
    intrinsics: tuple[float, float, float, float] | None = None  # camera fx, fy, cx, cy (pixels); None: OpenFace's
    gaze: bool = True
    tta: bool = True  # images: emotion averaged with the mirror image

    @classmethod
    def of(cls, analyzer: Analyzer) -> AnalyzerSpec:
        """The spec that builds ``analyzer`` again (what it pickles as), without its video smoothing default."""
        settings = dict(analyzer.__reduce__()[1][1])
        settings.pop("smooth", None)
        return cls(**settings)

    def build(self) -> Analyzer:
        from aulib.analyzer import Analyzer

        return Analyzer(detector=self.detector, emotion_model=self.emotion_model,  # type: ignore[arg-type]
                        cropped=self.cropped, intrinsics=self.intrinsics, gaze=self.gaze,
                        tta=self.tta)


@dataclass
class BatchResult:
    """What a run did. ``table``: this run's rows as a DataFrame (empty when ``keep_table=False``;
    built on first access, so a run that only writes files never imports pandas); ``rows``:
    how many rows were written; ``failed``: inputs whose rows are all read/analysis failures;
    ``duplicates``: inputs given more than once (analysed once); ``warnings``: e.g. overlays that
    could not be written. Names are in table text (:func:`aulib.table.table_text`)."""

    result: Rows | pd.DataFrame
    analysed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    workers: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: inputs done / failed / skipped, frames, faces found (one per face per frame: "169 frames, 72
        faces" read as 72 people for one person seen in 72 frames), wall time, frames per second per worker (its
        frames over the seconds its tasks took) and overall."""
        done = len(self.analysed) - len(self.failed)
        line = (f"inputs: {done} done, {len(self.failed)} failed, {len(self.skipped)} skipped; "
                f"{counted(self.frames, 'frame')}, {counted(self.faces, 'face')} found (a face in a frame counts "
                f"once), {counted(self.rows, 'row')} in {self.seconds:.1f} s")
        if self.seconds > 0 and self.frames:
            line += f" ({self.frames / self.seconds:.1f} frames/s overall)"
        if self.workers:
            per = [f"{w} {v['frames'] / v['seconds']:.1f}" for w, v in sorted(self.workers.items()) if v["seconds"] > 0]
            line += "; frames/s per worker: " + ", ".join(per)
        return line

    @property
    def table(self) -> pd.DataFrame:
        if isinstance(self.result, Rows):
            self.result = self.result.frame()
        return self.result


@dataclass
class Tally:
    """What the rows of one input hold, chunk by chunk: for the run summary and the manifest.

    A *failure* row is a ``success=0`` row whose error starts with the input's name (it could not
    be read or analysed), unlike "no face detected"; ``broke``: the analysis raised part-way."""

    rows: int = 0
    faces: int = 0
    frames: set[int] = field(default_factory=set)
    all_failed: bool = True
    broke: bool = False
    error: str = ""
    first: tuple[int, float] | None = None  # (frame, timestamp) of the first and last frame counted
    last: tuple[int, float] | None = None

    def add(self, chunk: Rows) -> None:
        for r in chunk.rows:
            self.add_row(r)

    def add_row(self, r: dict) -> None:
        self.rows += 1
        err = str(r.get("error") or "")
        if not r.get("success") and err.startswith(str(r.get("input") or "") + ":"):
            self.broke = self.broke or ": analysis failed" in err or INTERRUPTED in err
            self.error = self.error or table_text(err)
        else:
            self.all_failed = False
            frame = int(r.get("frame") or 0)
            self.frames.add(frame)
            self.faces += r.get("success") == 1
            ts = r.get("timestamp")
            if isinstance(ts, (int, float)) and math.isfinite(ts):
                if self.first is None or frame < self.first[0]:
                    self.first = (frame, float(ts))
                if self.last is None or frame > self.last[0]:
                    self.last = (frame, float(ts))

    def time_after(self) -> float:
        """The time of the frame after the last one counted (its time plus the mean frame step so far): where a
        row marking the input cut short belongs; 0.0 with no timed row."""
        if self.last is None or self.first is None:
            return 0.0
        (f0, t0), (f1, t1) = self.first, self.last
        return t1 + ((t1 - t0) / (f1 - f0) if f1 > f0 else 0.0)


INTERRUPTED = ": analysis interrupted"


def interrupted_row(name: str, t: Tally, written: bool = False) -> dict:
    """The last row of an input whose analysis was stopped (Ctrl-C) after some of its rows were written: a CSV or
    JSON table kept 266 of a clip's 472 frames, all ``success=1``, and nothing (pandas, ``aulib plot``,
    ``aulib report``: "266 frames analysed, 11.1 s") told it from the whole clip. ``--resume`` cuts the table
    back to its last complete input (``OUT.done``), so this row and those before it go and the input is redone.
    ``written``: rows of the input reached the table before they were counted (the signal came inside a write).
    The row takes the frame after the last one analysed (and its time), as a truncated video's last row does:
    with the last frame's own number it repeated that frame's ``(input, frame, face)`` key."""
    last = max(t.frames) if t.frames else 0
    if not t.rows and not written:
        return empty_row(name, f"{name}{INTERRUPTED} before any of its rows were written: the same command with "
                               "--resume analyses it", frame=last)
    after = f"after {t.rows} row(s), frames up to {last}" if t.rows else "after some of its rows"
    return empty_row(name, f"{name}{INTERRUPTED} {after}: the rows before this one are part of this input only; the "
                           "same command with --resume finishes it", frame=last + 1 if t.frames else last,
                     timestamp=t.time_after())


# ---------------------------------------------------------------------------------- output names
def output_paths(files: list[Path], root: Path, name: Callable[[str], str], text_names: bool = False) -> list[Path]:
    """One distinct path under ``root`` per input: the inputs' folders below their common parent
    are mirrored and ``name(file name)`` gives the file name.

    Two inputs that would still share a path (``a.jpg`` and ``a.png`` → ``a_overlay.png``, or one
    input's path being a folder on another's) both get a short hash of their full path before the
    extension, so no output overwrites another. ``text_names``: file and folder names in the
    table-text form (:func:`aulib.table.table_text`), for writers (OpenCV, FFmpeg) that only take
    valid UTF-8 paths. Folders are compared lexically (``os.path.abspath``): two symlinks to one
    file are two inputs with two outputs. A name longer than :data:`MAX_NAME_BYTES` is shortened
    (with the hash) so it and its temporary name fit the file system.
    """
    if not files:
        return []
    absolute = [str(naming_path(str(p))) if is_url(p) else os.path.abspath(p) for p in files]
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
    for i, p in enumerate(out):
        if len(os.fsencode(p.name)) > MAX_NAME_BYTES:
            out[i] = p.with_name(_shortened(p.name, absolute[i]))
    return out


# Output names are file system names (255 bytes at most on every common one) and get a temporary
# prefix/suffix while written: a longer one (an input named with 251 bytes, + ".csv") is shortened.
MAX_NAME_BYTES = 200


def _shortened(name: str, key: str) -> str:
    """``name`` cut to :data:`MAX_NAME_BYTES` bytes, keeping what aulib added at its end (``.jpg.csv``,
    ``_overlay.jpg``: from the first ``.`` or ``_`` of its last 24 characters) and adding a short hash of
    ``key`` (the input's full path), so two long names stay two files."""
    digest = hashlib.sha1(os.fsencode(key)).hexdigest()[:8]
    cut = next((j for j in range(max(0, len(name) - 24), len(name)) if name[j] in "._"), len(name))
    suffix = name[cut:]
    room = MAX_NAME_BYTES - len(os.fsencode(suffix)) - len(digest) - 1
    head = os.fsencode(name[: len(name) - len(suffix)])[:room].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"


# ---------------------------------------------------------------------------------- one input
def overlay_path(overlay: Path | None, path: Path, single_video: bool) -> Path | None:
    """Where the annotated copy of a lone input goes (see :func:`overlay_paths` for a batch)."""
    return overlay_paths(overlay, [path])[0] if single_video or not is_video(path) or overlay is None \
        or overlay.suffix.lower() not in VIDEO_EXTENSIONS else None


def overlay_paths(overlay: Path | None, files: list[Path]) -> list[Path | None]:
    """Annotated copies: ``overlay`` itself if it names a video file and the only input is a video,
    else ``overlay/<input's folder below the inputs' common parent>/<stem>_overlay.mp4|jpg|png``
    (distinct for every input, see :func:`output_paths`)."""
    if overlay is None:
        return [None] * len(files)
    kind, fits = overlay_file(overlay, files)
    if kind is not None:
        return [overlay] if fits else [None] * len(files)
    return list(output_paths(files, overlay, lambda n: f"{Path(n).stem}_overlay{_overlay_suffix(n)}",
                             text_names=True))


OVERLAY_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Video containers FFmpeg (PyAV's) writes the overlay's H.264 into, by name (checked: .webm, .ogv, .qt, .y4m, .ivf,
# .m2v, .dv, .hevc and the camcorders' .mod/.tod cannot be written): the command line refuses other media names
OVERLAY_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".f4v", ".3gp",
                          ".3g2", ".asf", ".wmv", ".mpg", ".mpeg", ".vob", ".mxf", ".h264", ".264")


def overlay_file(overlay: Path, files: list[Source]) -> tuple[str | None, bool]:
    """(kind, fits): whether ``overlay`` names one file — ``"video"`` (an .mp4 path) or ``"image"`` (a
    .png/.jpg path; it became a folder of that name) — rather than a folder (None), and whether this
    run's inputs are the single input of that kind such a file is for."""
    ext = overlay.suffix.lower()
    kind = "video" if ext in VIDEO_EXTENSIONS else "image" if ext in OVERLAY_IMAGE_SUFFIXES else None
    return kind, kind is not None and len(files) == 1 and is_video(files[0]) == (kind == "video")


def overlay_misfit(overlay: Path, kind: str, refused: bool = False) -> str:
    """What is said of an overlay file given to a run it does not fit: a warning (no overlays are written), or, for
    the command line, which refuses it before any work (``refused``)."""
    return (f"{table_text(str(overlay))}: an {'image ' if kind == 'image' else ''}overlay file is only for a single "
            f"{kind} input (name a .mp4, .mov, .mkv or .avi for one video, a .png or .jpg for one image); give a "
            f"folder for several inputs{'' if refused else ' (no overlays written)'}")


def _overlay_suffix(name: str) -> str:
    """``.mp4`` for videos, ``.jpg`` for JPEG photos (a PNG of a 12 MP photo is ~10× its size), else ``.png``."""
    if is_video(name):
        return ".mp4"
    return ".jpg" if Path(name).suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif") else ".png"


def failed_inputs(df: pd.DataFrame) -> set[str]:
    """Inputs of a table read back (names in table text) all of whose rows are failures, or whose
    analysis broke off (worth a retry): :class:`Tally`'s rule, input by input."""
    if not len(df):
        return set()
    per: dict[str, Tally] = {}
    for r in Rows.from_frame(df[["input", "success", "error"]]).rows:
        per.setdefault(str(r.get("input") or ""), Tally()).add_row(r)
    return {table_text(name) for name, t in per.items() if t.all_failed or t.broke}


def changed_inputs(names: Iterable[str], since_ns: int) -> set[str]:
    """Local inputs of a table (names in table text) whose file was modified after ``since_ns`` (the table's
    own last write): ``--resume`` kept their old rows — a clip still being copied when it was analysed
    (rows up to where the copy had reached, "video truncated"), a photo replaced by another — without a word."""
    return {name for name in names if not is_url(name) and _changed_since(name, since_ns)}


def _changed_since(path: Source, since_ns: int) -> bool:
    """Whether local file ``path`` was written or replaced after ``since_ns``: its modification time, or its
    inode's change time — a photo replaced by ``cp -p``, ``mv``, ``rsync -a`` or ``tar x`` keeps an older
    modification time, and ``--resume`` kept the old photo's rows. (A file that is only read keeps both.)"""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # gone or renamed: its rows stay, as before
        return False
    return max(st.st_mtime_ns, st.st_ctime_ns) > since_ns


def input_name(path: Source) -> str:
    """How an input is named in tables, logs and manifests: table text of its path, or of its URL
    with any credentials replaced by ``***``."""
    return table_text(redact(str(path)) if is_url(path) else str(path))


def _source(s: str) -> Source:
    """An input as sent to a worker (a string) back to a URL or a local Path."""
    return s if is_url(s) else Path(s)


def _named(chunk: Rows, path: Source) -> Rows:
    """Rows of a URL input named without credentials (``input`` and every ``error`` message)."""
    if not is_url(path):
        return chunk
    return _renamed(chunk, str(path), redact(str(path)), secret=True)


def _renamed(chunk: Rows, raw: str, name: str, secret: bool = False) -> Rows:
    """``chunk`` with the input read as ``raw`` named ``name`` (in ``input`` and in error messages);
    ``secret``: ``raw`` is a URL whose credentials must go from the messages too."""
    if raw == name or not len(chunk):
        return chunk
    rows = []
    for r in chunk.rows:
        r = dict(r)
        if r.get("input") == raw:
            r["input"] = name
        if r.get("error"):
            r["error"] = str(r["error"]).replace(raw, name)
            if secret:
                r["error"] = redact(r["error"], raw)
        rows.append(r)
    return Rows(rows, chunk.columns)


def _failed_row(path: Source, e: BaseException, columns: list[str], where: str = "",
                what: str = "analysis failed") -> Rows:
    name = redact(str(path)) if is_url(path) else str(path)
    msg = redact(str(e), str(path)) if is_url(path) else str(e)
    return Rows([empty_row(name, f"{name}: {what}{where} ({type(e).__name__}: {msg})")], columns)


def _tables(analyzer: Analyzer, path: Source, video_options: dict, overlay: Path | None,
            warn: Callable[[str], None]) -> Iterator[Rows]:
    """Tables of one input as they come (a video in chunks); overlay trouble and an image's frames left
    unanalysed go to ``warn``."""
    from aulib.analyzer import MultiFrameImageWarning  # imported already: ``analyzer`` is one
    if overlay is not None:
        from aulib.analyzer import check_overlay

        try:
            check_overlay(path, overlay)
            overlay.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(overlay.parent, os.W_OK):
                raise PermissionError("folder not writable")
        except ValueError as e:  # a name no overlay can have: the rows are still wanted
            warn(table_text(str(e)))
            overlay = None
        except OSError as e:
            warn(f"{table_text(str(overlay))}: overlay not written ({e})")
            overlay = None
    if is_video(path):
        stats: dict = {}
        yield from analyzer.iter_rows(path, overlay=overlay, stats=stats, **video_options)
        for said in ("note", "overlay_error"):  # (the file's other video streams; the overlay's trouble)
            if stats.get(said):
                warn(table_text(stats[said]))
        return
    with warnings.catch_warnings(record=True) as said_by_analyzer:
        warnings.simplefilter("always", MultiFrameImageWarning)
        try:
            parts = list(analyzer.iter_rows(path, overlay=overlay))
        except Exception as e:
            if overlay is None:
                raise
            said = table_text(str(e))  # the analyzer's own message may already name the overlay
            warn(said if said.startswith(table_text(str(overlay))) else
                 f"{table_text(str(overlay))}: overlay not written ({type(e).__name__}: {said})")
            parts = list(analyzer.iter_rows(path))
    for w in said_by_analyzer:  # only the first frame of an animation or a multi-page file was analysed
        if issubclass(w.category, MultiFrameImageWarning):
            warn(table_text(str(w.message)))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    yield from parts


def iter_input(analyzer: Analyzer, path: Source, video_options: dict | None = None, overlay: Path | None = None,
               warn: Callable[[str], None] | None = None) -> Iterator[Rows]:
    """Rows of one image or video (local path or URL), chunk by chunk; a failure becomes a last
    ``success=0`` row (``... analysis failed ...``), never an exception (KeyboardInterrupt still
    stops). A URL's rows name it without credentials."""
    for df in _iter_input(analyzer, path, video_options, overlay, warn):
        yield _named(df, path)


def _iter_input(analyzer: Analyzer, path: Source, video_options: dict | None = None, overlay: Path | None = None,
                warn: Callable[[str], None] | None = None) -> Iterator[Rows]:
    it = _tables(analyzer, path, dict(video_options or {}), overlay, warn or (lambda _: None))
    while True:
        try:
            df = next(it)
        except StopIteration:
            return
        except Exception as e:  # one broken input must not cost the others their results
            yield _failed_row(path, e, analyzer.columns)
            return
        yield df


def analyze_input(analyzer: Analyzer, path: Source, video_options: dict | None = None,
                  overlay: Path | None = None) -> pd.DataFrame:
    """Table of one image or video; any failure becomes a ``success=0`` row, never an exception."""
    return Rows.concat(list(iter_input(analyzer, path, video_options, overlay)), analyzer.columns).frame()


# ---------------------------------------------------------------------------------- run metadata
def run_options(spec: AnalyzerSpec, video_options: dict) -> dict:
    """The options that decide a table's columns and values (what ``--resume`` must match)."""
    from aulib.video.calibrate import calibration_mode
    from aulib.video.keyframes import KEY_GAP_SIGMAS
    from aulib.video.smooth import DEFAULT_SIGMA_S

    sigma = float(video_options.get("smooth_sigma", DEFAULT_SIGMA_S))
    return {"detector": spec.detector, "emotion_model": spec.emotion_model, "cropped": bool(spec.cropped),
            "every": video_options.get("every", 1), "fps": video_options.get("fps"),
            "detect_every": video_options.get("detect_every", 10), "max_frames": video_options.get("max_frames"),
            "calibrate": calibration_mode(video_options.get("calibrate", False)) or False,
            # video traces smoothed or raw: a resumed table must not mix the two
            "smooth": video_options.get("smooth", True),
            # networks on sparse frames of smoothed traces (aulib.video.keyframes); tables made before
            # this option ran them on every frame (run_differences reads a missing entry as False)
            "interpolate": (interpolate := bool(video_options.get("interpolate", True))
                            and video_options.get("smooth", True) in (True, "offline")),
            # how far apart those frames may be (s); tables made before it ran them on alternate frames
            **({"network_gap_s": round(KEY_GAP_SIGMAS * sigma, 4)} if interpolate else {}),
            # the smoothing width, recorded when not the default (tables before it used the default)
            **({"smooth_sigma": sigma} if sigma != DEFAULT_SIGMA_S else {}),
            "intrinsics": list(spec.intrinsics) if spec.intrinsics is not None else None,
            # only when off: tables written with gaze (the default) keep the metadata they always had
            **({} if spec.gaze else {"gaze": False}), **({} if spec.tta else {"tta": False})}


def run_differences(old: dict, new: dict) -> list[str]:
    """How the run metadata ``new`` differs from ``old`` (options, then columns): what ``--resume``
    refuses. An option only one of the two records differs too."""
    o1, o2 = old.get("options", {}), new["options"]
    keys = list(o2) + [k for k in o1 if k not in o2]
    # recorded only when off: missing means on (it read "gaze None → False"); interpolate is recorded always,
    # and a table from before it existed ran the networks on every frame
    from aulib.video.smooth import DEFAULT_SIGMA_S

    on = {"gaze": True, "tta": True, "interpolate": False, "network_gap_s": "alternate frames",
          "smooth_sigma": DEFAULT_SIGMA_S}
    # how far apart the networks' frames are means something only where both runs spaced them: a run without
    # interpolation was refused as "network_gap_s 0.128 → 'alternate frames'" beside the interpolate line
    spaced = all(o.get("interpolate", on["interpolate"]) for o in (o1, o2))
    diffs = [f"{k} {a!r} → {b!r}" for k in keys
             if (k != "network_gap_s" or spaced) and (a := o1.get(k, on.get(k))) != (b := o2.get(k, on.get(k)))]
    if old.get("columns") != new["columns"]:
        diffs.append("columns differ")
    return diffs


def _check_meta(meta_path: Path, where: Path, meta: dict, resume: bool,
                existing_columns: list[str] | None) -> Callable[[], None]:
    """Refuse to resume a table made with other columns/options; returns what records this run's, called once
    the run starts (after the Dask connection: a scheduler that could not be reached had already replaced the
    table's metadata, so the next ``--resume`` compared its options with the failed run's and mixed two runs'
    rows in one table)."""
    if resume:
        old = None
        if not meta_path.exists() and _holds_results(where):
            # its options cannot be compared: resuming could mix two runs' settings in one table
            raise ValueError(f"{table_text(str(where))}: no run metadata ({meta_path.name}) beside it, so --resume "
                             "cannot check that the run that wrote it used these options (restore the file, or "
                             "run without --resume to redo every input)")
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = "unreadable"
            # valid JSON that is not this shape ([], 5, {"options": null}) is as unreadable as garbage
            if not (isinstance(old, dict) and isinstance(old.get("options", {}), dict)
                    and isinstance(old.get("columns", []), list)):
                raise ValueError(f"{table_text(str(meta_path))}: unreadable run metadata; cannot --resume "
                                 f"{table_text(str(where))} safely (remove it, or write a new output)") from None
        diffs = run_differences(old, meta) if old is not None else []
        was = old.get("cwd") if isinstance(old, dict) else None
        if isinstance(was, str) and was != meta.get("cwd") and _holds_results(where):
            raise ValueError(f"{table_text(str(where))}: --resume from another folder than the run that wrote it "
                             f"({table_text(was)}), whose inputs are named relative to that folder: run the same "
                             "command from there")
        if existing_columns is not None and existing_columns != meta["columns"] and "columns differ" not in diffs:
            # the table itself, whatever its metadata says: a cut header, or another program's table
            diffs.append("the table's columns differ")
        if diffs:
            raise ValueError(f"{table_text(str(where))}: --resume with other options than the run that wrote it "
                             f"({'; '.join(diffs)}): use the same options or a new output")
    return functools.partial(_write_meta, meta_path, meta)


def _write_meta(meta_path: Path, meta: dict) -> None:
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, meta_path)
    except OSError as e:  # a full disk fails at close: "[Errno 28]" without a name, and a .tmp left behind
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(meta_path)) from None


def _holds_results(where: Path) -> bool:
    """A table with content, or a folder holding any (non-hidden) file below it."""
    try:
        if where.is_file():
            return where.stat().st_size > 0
        return where.is_dir() and any(f.is_file() and not f.name.startswith(".") for f in where.rglob("*"))
    except OSError:
        return False


@contextlib.contextmanager
def output_lock(lock_path: Path, what: Path) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on ``lock_path`` for the block: ValueError if held.

    The lock file is removed when the block ends (users found ``out.csv.lock`` beside every table and
    asked what it was). Removing it opens a race, closed the usual way: a process that opened the file
    just before it was removed can lock the removed file, so after locking, the path must still name the
    locked file, else the lock counts as held by another process."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    held = ValueError(f"{table_text(str(what))}: another aulib process is writing this output (lock "
                      f"{table_text(str(lock_path))} held); wait for it or choose another output")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # the file we locked was removed by a run just ending: lock the new one
        try:
            f = open(lock_path, "a")
        except OSError as e:  # named for the output asked for, not for the lock beside it ("out.csv.lock: …")
            raise OSError(e.errno, f"cannot write this output there ({e.strerror or e})", str(what)) from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise held from None
        mine = os.fstat(f.fileno())
        try:
            now = os.stat(lock_path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
    else:
        raise held
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def _lock_held(lock_path: Path) -> bool:
    """Whether another process holds :func:`output_lock` on ``lock_path`` (tested without creating the file)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        f = open(lock_path, "rb")
    except OSError:  # no such lock: nobody writes there
        return False
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def refuse_nested_writers(outputs: Iterable[Path], own: set[Path]) -> None:
    """ValueError when another aulib process writes a folder above one of this run's ``outputs`` (``--per-input``
    or a partitioned folder: its ``.aulib.lock``), or writes the output file itself (``-o``: ``FILE.lock``);
    ``own``: this run's locks. Each run locks only its own folder or file, so a run into ``res/sub`` while another
    wrote ``--per-input res`` (or ``-o res/sub/clip.mp4.csv``) went ahead: both said they wrote their rows, and
    one table replaced the other's."""
    seen: set[Path] = set()
    for out in outputs:
        out = Path(os.path.abspath(out))
        for lock in [out.with_name(out.name + ".lock"), *(d / ".aulib.lock" for d in out.parents)]:
            if lock in seen or lock in own:
                continue
            seen.add(lock)
            if _lock_held(lock):
                whose = lock.parent if lock.name == ".aulib.lock" else out
                raise ValueError(f"{table_text(str(out))}: another aulib process is writing "
                                 f"{table_text(str(whose))} (lock {table_text(str(lock))} held), where this output "
                                 "goes; wait for it or choose another output")


# ---------------------------------------------------------------------------------- sinks
def _key(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _read_log(log: Path) -> list[dict]:
    """Entries of a done-log; a torn or garbled line ends it (what follows is not trusted)."""
    out: list[dict] = []
    if not log.exists():
        return out
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                break
            if not isinstance(e, dict) or not line.endswith("\n"):
                break
            out.append(e)
    return out


class CombinedSink:
    """One table for all inputs, kept consistent on disk after every finished input.

    Names are table text. Use: :meth:`start`, :meth:`append` per chunk, :meth:`commit`; then
    :meth:`close` once with all inputs in order.
    """

    def __init__(self, out: Path, resume: bool) -> None:
        self.out = out
        self.fmt = table_format(out)
        self.log = out.with_name(out.name + ".done")
        self.parts = out.with_name(out.name + ".parts")
        self.done: set[str] = set()
        self.changed: set[str] = set()  # inputs whose file changed after their rows were written: redone
        self._w: TableAppender | None = None
        self._part: Path | None = None
        self._reorder = False
        self._committed = 0  # the text table's length at its last complete input (rollback)
        out.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "parquet":
            self._init_parquet(resume)
        else:
            self._init_text(resume)

    # ---------------------------------------------------------------- setup
    def _init_text(self, resume: bool) -> None:
        if not resume or not self.out.exists():
            self.out.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)
        else:
            entries = _read_log(self.log)
            if self.log.exists():  # an unfinished run: cut the table back to its last complete input
                size = self.out.stat().st_size
                # every log aulib writes starts with the table's size before the run ("base"): without it the
                # log cannot say which rows are complete, and cutting the table by it would destroy rows
                if not entries or not isinstance(entries[0].get("base"), int) or not 0 <= entries[0]["base"] <= size:
                    raise ValueError(f"{table_text(str(self.log))}: not a progress log aulib wrote (or damaged); "
                                     f"cannot --resume {table_text(str(self.out))} safely (remove the log to keep the "
                                     "table as it is)")
                keep = entries[0]["base"]
                for e in entries:
                    end = e.get("end")
                    if isinstance(end, int) and keep <= end <= size:
                        keep = end
                    elif "base" not in e:
                        break
                if keep < size:
                    os.truncate(self.out, keep)
            if self.out.stat().st_size:
                if not _ends_whole(self.out):  # a row cut off, and no log to cut back to the last complete input
                    raise ValueError(f"{table_text(str(self.out))}: its last row is cut off; cannot --resume it "
                                     "safely (repair or move it, or write a new output)")
                try:
                    t = read_table(self.out, columns=["input", "success", "error"] if self.fmt == "csv" else None)
                except Exception as e:
                    raise _not_a_table(self.out, e) from None
                self.changed = changed_inputs(set(t["input"]), self.out.stat().st_mtime_ns)
                failed = failed_inputs(t) | self.changed
                self.done = set(t["input"]) - failed
                if failed:  # drop their rows, they are redone (at the end: close() restores the order)
                    self._reorder = True
                    full = read_table(self.out)
                    tmp = self.out.with_name(self.out.name + ".tmp")
                    with TableAppender(tmp, self.fmt) as w:
                        w.append(full[~full["input"].isin(failed)])
                    os.replace(tmp, self.out)
        self._committed = self.out.stat().st_size if self.out.exists() else 0
        self._new_log({"base": self._committed})

    def _new_log(self, first: dict) -> None:
        with open(self.log, "w", encoding="utf-8") as f:
            f.write(json.dumps(first) + "\n")

    def _init_parquet(self, resume: bool) -> None:
        if resume:
            if self.out.exists():
                try:
                    t = read_table(self.out, columns=["input", "success", "error"])
                except Exception as e:
                    raise _not_a_table(self.out, e) from None
                self.changed = changed_inputs(set(t["input"]), self.out.stat().st_mtime_ns)
                self.done |= set(t["input"]) - failed_inputs(t) - self.changed
            good = []
            for e in _read_log(self.log):
                name = e.get("input")
                part = self.parts / f"{_key(name)}.parquet" if isinstance(name, str) else None
                if part is None or not part.exists():
                    continue
                try:
                    t = read_table(part, columns=["input", "success", "error"])
                except Exception:  # a truncated or corrupt part: redo that input
                    part.unlink(missing_ok=True)
                    continue
                changed = changed_inputs([name], part.stat().st_mtime_ns)
                self.changed |= changed
                if failed_inputs(t) or changed:
                    part.unlink(missing_ok=True)
                    self.done.discard(name)
                else:
                    self.done.add(name)
                    good.append(e)
            if self.parts.exists():
                for stale in self.parts.glob("*.tmp"):
                    stale.unlink(missing_ok=True)
            self.parts.mkdir(exist_ok=True)
            with open(self.log, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(e) + "\n" for e in good)
        else:  # a new table replaces the old one, as for CSV/JSON (its rows were merged into the new table)
            self.out.unlink(missing_ok=True)
            shutil.rmtree(self.parts, ignore_errors=True)
            self.log.unlink(missing_ok=True)
            self.parts.mkdir()

    # ---------------------------------------------------------------- writing
    def start(self, name: str) -> None:
        if self.fmt == "parquet":
            self._part = self.parts / f"{_key(name)}.parquet"
            self._w = TableAppender(self._part.with_suffix(".tmp"), "parquet")
        elif self._w is None:
            self._w = TableAppender(self.out, self.fmt, mode="a")

    def append(self, df: Rows | pd.DataFrame) -> None:
        assert self._w is not None
        self._w.append(df)

    def rollback(self) -> None:
        """The input in hand could not be written (a full disk): the table is cut back to its last complete input
        (a CSV was left ending mid-row, read as a damaged table by anyone but ``--resume``), a Parquet part in
        progress removed. Best effort: the write error is what the caller reports."""
        _close_quietly(self._w)
        self._w = None
        with contextlib.suppress(OSError):
            if self.fmt == "parquet":
                if self._part is not None:
                    self._part.with_suffix(".tmp").unlink(missing_ok=True)
            elif self.out.exists():
                os.truncate(self.out, self._committed)

    @property
    def writing(self) -> bool:
        """Whether a table (CSV/JSON) or the input's part (Parquet) is open for rows."""
        return self._w is not None

    def partial(self) -> bool:
        """Whether rows of the input in hand are in the (text) table already."""
        with contextlib.suppress(OSError):
            return self.fmt != "parquet" and self._w is not None and self._w.size() > self._committed
        return False

    def flush(self) -> None:
        """What was appended, on disk (CSV/JSON; a Parquet part counts only once committed)."""
        if self._w is not None and self.fmt != "parquet":
            self._w.size()

    def commit(self, name: str) -> None:
        """The input is complete: make its rows count (rename the part / record the length)."""
        assert self._w is not None
        entry: dict = {"input": name}
        if self.fmt == "parquet":
            assert self._part is not None
            self._w.close()
            os.replace(self._part.with_suffix(".tmp"), self._part)
            self._w = None
        else:
            entry["end"] = self._committed = self._w.size()
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.done.add(name)

    def interrupted(self, order: list[str]) -> None:
        """The run was stopped inside an input whose rows so far (and the row saying so) were appended: a Parquet
        table is written from the finished parts, that input's part and an earlier table, and the checkpoints stay
        for ``--resume``, which redoes that input (its last row marks it cut short) and skips the finished ones.
        CSV/JSON tables are complete on disk already."""
        if self.fmt != "parquet" or self._w is None or self._part is None:
            return
        self._w.close()
        self._w = None
        os.replace(self._part.with_suffix(".tmp"), self._part)  # not in the log: not taken as finished
        self._merge(order)

    def close(self, order: list[str]) -> None:
        """Finish: Parquet parts (and an earlier table) merged in input order; checkpoints removed."""
        if self._w is not None:
            self._w.close()
            self._w = None
        if self.fmt == "parquet":
            self._merge(order)
            shutil.rmtree(self.parts, ignore_errors=True)
        elif self._reorder:  # retried inputs were appended at the end: back to input order
            df = read_table(self.out)
            rank = {n: i for i, n in enumerate(order)}
            df = df.iloc[df["input"].map(lambda n: rank.get(n, -1)).argsort(kind="stable")]
            tmp = self.out.with_name(self.out.name + ".tmp")
            with TableAppender(tmp, self.fmt) as w:
                w.append(df.reset_index(drop=True))
            os.replace(tmp, self.out)
        self.log.unlink(missing_ok=True)

    def _merge(self, order: list[str]) -> None:
        """Stream the parts (row group by row group) and the earlier table into one Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        old = None
        if self.out.exists():
            with open(self.out, "rb") as f:  # Python files throughout: pyarrow takes only UTF-8 paths
                old = pq.read_table(f)
        groups: dict[str, list[int]] = {}
        if old is not None:
            for i, n in enumerate(old.column("input").to_pylist()):
                groups.setdefault(n, []).append(i)
        parts = {n: self.parts / f"{_key(n)}.parquet" for n in order}
        parts = {n: p for n, p in parts.items() if p.exists()}
        if not parts:
            return  # nothing new: the table is already complete
        wanted = set(order)
        pieces: list[Callable[[], Iterable[pa.Table]]] = []
        ahead = [i for n, idx in groups.items() if n not in wanted for i in idx]  # inputs of an earlier run only
        if ahead and old is not None:
            pieces.append(lambda: [old.take(sorted(ahead))])
        for n in order:
            if n in parts:
                pieces.append(lambda p=parts[n]: _row_groups(p))
            elif n in groups and old is not None:
                pieces.append(lambda idx=groups[n]: [old.take(idx)])
        tmp = self.out.with_name(self.out.name + ".tmp")
        writer = None
        fh = open(tmp, "wb")
        try:
            for piece in pieces:
                for t in piece():
                    if writer is None:
                        writer = pq.ParquetWriter(fh, t.schema)
                    elif not t.schema.equals(writer.schema, check_metadata=False):
                        t = t.cast(writer.schema)
                    writer.write_table(t)
        finally:
            if writer is not None:
                writer.close()
            fh.close()
        os.replace(tmp, self.out)


def _close_quietly(w: TableAppender | None) -> None:
    """Close a table writer on a failure path (a full disk): the write error in hand is what the caller reports."""
    with contextlib.suppress(OSError):
        if w is not None:
            w.close()


def _row_groups(path: Path) -> Iterator[Any]:
    """The row groups of a Parquet file, one at a time (flat memory while merging)."""
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        for k in range(pf.num_row_groups):
            yield pf.read_row_group(k)


def _ends_whole(path: Path) -> bool:
    """A text table whose last row is complete: it ends with a newline (aulib ends every row with one)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return False


TABLE_SUFFIX = {"csv": ".csv", "parquet": ".parquet", "json": ".json"}


def _first_input(path: Path, fmt: str) -> str | None:
    """The ``input`` of a table file's first row (table text), or None (no rows, not a table aulib wrote)."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            col = pq.read_table(path, columns=["input"]).column("input")
            return str(col[0]) if len(col) else None
        if fmt == "json":
            with open(path, encoding="utf-8") as f:
                row = json.loads(f.readline() or "null")
            return str(row["input"]) if isinstance(row, dict) and "input" in row else None
        import pandas as pd

        df = pd.read_csv(path, usecols=["input"], nrows=1, dtype=str, keep_default_na=False)
        return str(df["input"].iloc[0]) if len(df) else None
    except Exception:  # a foreign or damaged file: is_done and the writer deal with it as before
        return None


def per_input_paths(files: list[Source], root: Path, fmt: str) -> list[Path]:
    """Where ``--per-input root`` writes each input's table (``<name>.<fmt>``, see :func:`output_paths`)."""
    return output_paths(files, root, lambda n: n + TABLE_SUFFIX[fmt])


class PerInputSink:
    """One file per input under ``root``, mirroring the inputs' folders below their common parent
    (distinct even for inputs with the same name, see :func:`output_paths`)."""

    def __init__(self, root: Path, fmt: str, files: list[Path], resume: bool,
                 targets: list[Path] | None = None) -> None:
        self.root, self.fmt = root, fmt
        self.ext = TABLE_SUFFIX[fmt]
        self.resume = resume
        targets = targets if targets is not None else per_input_paths(files, root, fmt)
        self._targets = dict(zip((str(p) for p in files), targets))
        self._w: TableAppender | None = None
        self._tmp: Path | None = None

    def target(self, path: Path) -> Path:
        t = self._targets.get(str(path))
        return t if t is not None else per_input_paths([path], self.root, self.fmt)[0]

    def check_targets(self, files: list[Path]) -> None:
        """ValueError, before any work, when an input's table file holds another input's rows: tables are named
        after their inputs below the inputs' common folder, so ``day1/photo.jpg`` and, in a later run,
        ``day2/photo.jpg`` share ``photo.jpg.csv`` — ``--resume`` took day2 as done (its 5 faces never analysed)
        and a run without it replaced day1's table."""
        for p in files:
            t = self.target(p)
            held = _first_input(t, self.fmt) if t.is_file() else None
            if held is not None and held != input_name(p) and not names_file(held, p):
                raise ValueError(f"{table_text(str(t))}: holds the table of {held}, not of {input_name(p)} "
                                 "(--per-input names each table after its input below the inputs' common folder): "
                                 "give another --per-input folder, or analyse both in one run")

    def is_done(self, path: Path, columns: list[str] | None = None) -> bool:
        """Resuming and the input's file exists, fits ``columns``, is not all failures and was written after the
        input last changed (a replaced photo kept its old table)."""
        t = self.target(path)
        if not (self.resume and t.exists()):
            return False
        if not is_url(path) and _changed_since(path, t.stat().st_mtime_ns):
            return False
        if self.fmt != "parquet" and not _ends_whole(t):  # a row cut off (the table parses all the same)
            return False
        try:
            df = read_table(t)
        except Exception:
            return False
        if columns is not None and list(df.columns) != columns:
            raise ValueError(f"{table_text(str(t))}: --resume with other options than the run that wrote it "
                             "(columns differ): use the same options or a new --per-input folder")
        return not failed_inputs(df)

    def start(self, path: Path) -> None:
        t = self.target(path)
        t.parent.mkdir(parents=True, exist_ok=True)
        # hidden, and without a table extension: never another input's target
        self._tmp = t.with_name(f".{t.name}.aulib-part")
        self._w = TableAppender(self._tmp, self.fmt)

    def append(self, df: Rows | pd.DataFrame) -> None:
        assert self._w is not None
        self._w.append(df)

    @property
    def writing(self) -> bool:
        """Whether the input in hand's hidden part file is open for rows."""
        return self._w is not None

    def writes(self, filename: str, path: Path) -> bool:
        """Whether ``filename`` (of an OSError) is a file this sink writes for the input ``path`` in hand: its
        hidden part file or its table."""
        return filename in (str(self._tmp), str(self.target(path)))

    def rollback(self) -> None:
        """The input in hand could not be written: its hidden part file goes (best effort)."""
        _close_quietly(self._w)
        self._w = None
        with contextlib.suppress(OSError):
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
        self._tmp = None

    def commit(self, path: Path) -> None:
        assert self._w is not None and self._tmp is not None
        self._w.close()
        os.replace(self._tmp, self.target(path))
        self._w = self._tmp = None

    def write(self, path: Path, df: Rows | pd.DataFrame) -> None:
        """The whole table of one input at once."""
        self.start(path)
        self.append(df)
        self.commit(path)


# ---------------------------------------------------------------------------------- partitioned output
MANIFEST = "_aulib_manifest.json"
PER_INPUT_META = ".aulib-run.meta"  # a --per-input folder's run metadata
MANIFEST_EVERY_S = 5.0  # the manifest is rewritten at most this often (a store rewrites the whole object)
WORKER_WAIT_S = 60.0  # how long a --scheduler run waits for a first worker before giving up


def is_partitioned(out: Path | str | None, partitioned: bool = False) -> bool:
    """True when ``out`` is a partitioned Parquet output: ``partitioned`` asked for, a URL, or a
    name ending with ``/``."""
    return out is not None and (partitioned or is_url(out) or str(out).endswith(("/", os.sep)))


def part_name(name: str) -> str:
    """File name of an input's part (from its table name: stable across runs and machines)."""
    return f"part-{_key(name)}.parquet"


PART_NAME = re.compile(r"part-[0-9a-f]{16}\.parquet")  # what part_name() gives, and nothing else
PART_TEMP = re.compile(r"\.part-[0-9a-f]{16}\.parquet\.\d+\.tmp")  # a part being written (write_part)


def _local_root(root: str) -> Path | None:
    """The local folder of a partitioned output, or None for an object store."""
    if not is_url(root):
        return Path(root)
    if root.startswith("file://"):
        # the path as fsspec reads it (aulib.storage.object_path): '#' and '?' belong to the folder's name. Cut at
        # them ("run #1/" became "run "), two runs' outputs shared one folder and the second deleted the first's
        return Path(object_path(root))
    return None


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def _worker_id() -> str:
    """This process as a worker: its Dask address, else host and pid."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def write_part(root: str, name: str, chunks: Iterable[Rows]) -> dict:
    """Write one input's rows (chunk by chunk, flat memory) as its part under ``root`` and return
    its manifest entry (rows, frames, faces, status, error, seconds, worker).

    The part appears whole or not at all: a local folder gets a hidden temporary file renamed into
    place; an object store gets one upload of a finished local temporary file. OSError when it
    cannot be written (the caller retries)."""
    from aulib import storage

    t0 = time.perf_counter()
    part = part_name(name)
    local = _local_root(root)
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
        tmp = local / f".{part}.{os.getpid()}.tmp"
    else:
        fd, t = tempfile.mkstemp(prefix="aulib-part-", suffix=".parquet")
        os.close(fd)
        tmp = Path(t)
    t = Tally()
    try:
        with TableAppender(tmp, "parquet") as w:
            for chunk in chunks:
                w.append(chunk)
                t.add(chunk)
        if t.rows == 0:
            raise OSError(f"{name}: no rows produced")
        size = tmp.stat().st_size
        from aulib.models import sha256_of

        digest = sha256_of(tmp)  # --resume checks it: a part damaged in place keeps its size
        if local is not None:
            os.replace(tmp, local / part)
        else:
            storage.put_file(tmp, _join(root, part))
    finally:
        tmp.unlink(missing_ok=True)
    return {"input": name, "part": part, "bytes": size, "sha256": digest, "rows": t.rows, "frames": len(t.frames),
            "faces": t.faces, "status": "failed" if (t.all_failed or t.broke) else "done", "error": t.error,
            "seconds": round(time.perf_counter() - t0, 3), "worker": _worker_id()}


def _for_worker(path: Source) -> tuple[str, str]:
    """An input as a Dask worker reads it and as the user gave it. A local path goes absolute: the
    workers of a ``--scheduler`` cluster do not share the driver's working folder (a relative input was
    "no such file" on every worker, and relative parts were written into the worker's folder); the
    table names it as the user did, as a serial run does."""
    return str(_absolute(path)), str(path)


def _absolute(where: Source | None) -> str | None:
    """A location as a worker must see it: a local path absolute, a URL as it is."""
    if where is None:
        return None
    return str(where) if is_url(where) else os.path.abspath(where)


def _part_task(source: str, spec: dict, root: str, video_options: dict, overlay: str | None,
               given: str | None = None) -> dict:
    """One input on a Dask worker, written straight to the output: its manifest entry (and warnings)."""
    path, given = _source(source), given or source
    warnings: list[str] = []
    with threadpool_limits(limits=1, user_api="blas"):
        chunks = iter_input(_worker_analyzer(AnalyzerSpec(**spec)), path, video_options,
                            Path(overlay) if overlay else None, warnings.append)
        entry = write_part(root, input_name(_source(given)), (_renamed(c, source, given) for c in chunks))
    entry["warnings"] = warnings
    return entry


class PartitionedOutput:
    """The driver's side of a partitioned output: the manifest (what is done), nothing else.

    ``root``: local folder or URL prefix (no trailing slash). ``meta``: columns and options of this
    run (``--resume`` with other ones is refused, as for the other outputs).
    """

    def __init__(self, root: str, meta: dict, resume: bool) -> None:
        self.root = root.rstrip("/") or root
        self.local = _local_root(self.root)
        self.meta = meta
        self.entries: dict[str, dict] = {}
        self._saved = 0.0
        self._order: list[str] = []
        old = self._load(strict=resume)  # a new run replaces a damaged manifest; --resume cannot trust it
        present = self._listing()
        self._paths: dict[str, dict] = {}  # absolute path of a local input → its entry
        if resume and old is not None:
            diffs = run_differences(old, meta)
            if diffs:
                raise ValueError(f"{redact(self.root)}: --resume with other options than the run that wrote it "
                                 f"({'; '.join(diffs)}): use the same options or a new output")
            for e in old["inputs"]:
                # done only with its part there and whole: a part of another size than written was cut or replaced,
                # and a local part whose content changed at the same size (damaged in place) was trusted, the run
                # said it was complete, and reading the table failed with a Parquet error naming no file
                if (e.get("part") in present and e.get("bytes", present[e["part"]]) == present[e["part"]]
                        and self._intact(e)):
                    self.entries[e["input"]] = e
                    if isinstance(e.get("path"), str):
                        self._paths[e["path"]] = e
        elif not resume and MANIFEST in present:
            # a new run on an aulib output: every part file aulib wrote here goes, also those a killed run wrote
            # after its last manifest (they would have joined the new table in pd.read_parquet(prefix)); a
            # folder without a manifest is not known to be aulib's, and --resume deletes nothing
            self._remove_parts([n for n in present if PART_NAME.fullmatch(n)])
        if self.local is not None and MANIFEST in present:
            # a part a killed run (kill -9, a machine that went down) was writing: the output is locked to this
            # run and its writers have not started, so every such file in an aulib output is left over (a 220 kB
            # one stayed through --resume and new runs alike, growing with the video)
            for stale in self.local.iterdir():
                if PART_TEMP.fullmatch(stale.name):
                    stale.unlink(missing_ok=True)
        self.save(force=True)

    def _intact(self, entry: dict) -> bool:
        """A local part's content is what was written (its sha256; entries written before it was recorded, and
        object-store parts, are judged by their size alone)."""
        if self.local is None or not isinstance(entry.get("sha256"), str):
            return True
        from aulib.models import sha256_of

        try:
            return sha256_of(self.local / entry["part"]) == entry["sha256"]
        except OSError:
            return False

    def _listing(self) -> dict[str, int]:
        """Files directly in the output and their sizes."""
        from aulib import storage

        if self.local is not None:
            if not self.local.is_dir():
                return {}
            return {p.name: p.stat().st_size for p in self.local.iterdir() if p.is_file()}
        return storage.listing(self.root)

    def _load(self, strict: bool = True) -> dict | None:
        """The manifest (None when there is none). One that cannot be read or is not shaped as aulib
        writes it raises ValueError when ``strict`` (a --resume would trust it), else counts as none."""
        from aulib import storage

        where = _join(self.root, MANIFEST)
        try:
            if self.local is not None:
                data = (self.local / MANIFEST).read_bytes() if (self.local / MANIFEST).exists() else None
            else:
                data = storage.read_bytes(where)
            if data is None:
                return None
            m = json.loads(data)
            ok = isinstance(m, dict) and isinstance(m.get("inputs"), list) and isinstance(m.get("options"), dict) \
                and all(isinstance(e, dict) and isinstance(e.get("input"), str) for e in m["inputs"])
            if not ok:
                raise ValueError("not shaped as aulib writes it")
            return m
        except ValueError:
            if not strict:
                return None
            raise ValueError(f"{redact(where)}: not a manifest aulib wrote, or damaged; cannot --resume safely "
                             "(write a new output, or run without --resume to replace it)") from None

    def is_done(self, name: str, path: Source | None = None) -> bool:
        """Whether input ``name`` (read from ``path``) is done. A local input also matches an entry of the same
        file named another way (``in/a.jpg`` then ``/data/in/a.jpg``): --resume redid it and the table held
        both."""
        e = self.entries.get(name)
        if e is None and path is not None and not is_url(path):
            e = self._paths.get(os.path.abspath(path))
        if e is None or e.get("status") != "done":
            return False
        # a photo replaced since (its part kept the old photo's rows)
        read = e.get("read_ns")
        return not (isinstance(read, int) and path is not None and not is_url(path) and _changed_since(path, read))

    def record(self, entry: dict, order: list[str]) -> None:
        """An input is finished (done or failed): remember it; the manifest follows within seconds.
        ``attempts`` add up over the runs that tried an input."""
        entry = {k: v for k, v in entry.items() if k != "warnings"}
        other = self._paths.get(entry["path"]) if isinstance(entry.get("path"), str) else None
        if other is not None and other["input"] != entry["input"]:
            self._forget(other)  # the same file, named another way before: one entry (and part) per file
        prev = self.entries.get(entry["input"])
        if prev is not None and prev.get("status") != "done":
            entry["attempts"] = int(entry.get("attempts", 1)) + int(prev.get("attempts", 0))
        self.entries[entry["input"]] = entry
        if isinstance(entry.get("path"), str):
            self._paths[entry["path"]] = entry
        self._order = order
        self.save()

    def _forget(self, entry: dict) -> None:
        """Drop an entry and its part file."""
        self.entries.pop(entry["input"], None)
        if self._paths.get(entry.get("path")) is entry:
            del self._paths[entry["path"]]
        part = entry.get("part")
        if isinstance(part, str) and PART_NAME.fullmatch(part):
            self._remove_parts([part])

    def _remove_parts(self, parts: list[str]) -> None:
        """Delete part files (by name) from the output folder or prefix; missing ones are ignored."""
        from aulib import storage

        if self.local is not None:
            for n in parts:
                (self.local / n).unlink(missing_ok=True)
        elif parts:
            storage.remove([_join(self.root, n) for n in parts])

    def save(self, force: bool = False) -> None:
        """Rewrite the manifest (inputs of this run in input order, then older ones) if ``force`` or
        :data:`MANIFEST_EVERY_S` have passed."""
        from aulib import storage

        now = time.monotonic()
        if not force and now - self._saved < MANIFEST_EVERY_S:
            return
        rank = {n: i for i, n in enumerate(self._order)}
        inputs = sorted(self.entries.values(), key=lambda e: rank.get(e["input"], -1))
        head = json.dumps(self.meta)[:-1]  # one line of run metadata, then one line per input
        body = ",\n".join(json.dumps(e) for e in inputs)
        data = f'{head}, "inputs": [\n{body}\n]}}\n'.encode()
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
            tmp = self.local / f".{MANIFEST}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.local / MANIFEST)
        else:
            storage.write_bytes(_join(self.root, MANIFEST), data)
        self._saved = now

    def read(self, names: Iterable[str]) -> pd.DataFrame:
        """The rows of ``names`` (in that order) read back from their parts."""
        from aulib import storage

        tables = []
        for n in names:
            e = self.entries.get(n)
            if e is None:
                continue
            if not isinstance(e.get("part"), str):  # its part could not be written: the manifest says why
                columns = self.meta.get("columns") if isinstance(self.meta, dict) else None
                tables.append(Rows([empty_row(n, str(e.get("error") or f"{n}: not written"))],
                                   list(columns or ["input", "frame", "timestamp", "face", "face_id", "success",
                                                    "error"])).frame())
                continue
            try:
                if self.local is not None:
                    tables.append(read_table(self.local / e["part"]))
                    continue
                with tempfile.TemporaryDirectory() as d:
                    fs, path = storage.filesystem(_join(self.root, e["part"]))
                    fs.get_file(path, os.path.join(d, "p.parquet"))
                    tables.append(read_table(Path(d) / "p.parquet"))
            except (OSError, ValueError) as err:  # pyarrow's words ("Couldn't deserialize thrift") named no file
                raise ValueError(f"{redact(_join(self.root, e['part']))} (the part of {n}): not a readable Parquet "
                                 f"file ({' '.join(str(err).split())[:160]}); run again with --resume to redo that "
                                 "input") from None
        import pandas as pd

        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def read_partitioned(root: str | Path) -> pd.DataFrame:
    """The whole table of a partitioned output, inputs in the order of its manifest."""
    out = PartitionedOutput.__new__(PartitionedOutput)
    out.root, out.local = str(root).rstrip("/"), _local_root(str(root).rstrip("/"))
    m = out._load()
    if m is None:
        raise ValueError(f"{redact(str(root))}: no {MANIFEST} (not a partitioned aulib output)")
    out.meta, out.entries = m, {e["input"]: e for e in m["inputs"]}
    return out.read(list(out.entries))


def read_manifest(root: str | Path) -> dict:
    """The manifest of a partitioned output (``inputs``: one entry per input)."""
    out = PartitionedOutput.__new__(PartitionedOutput)
    out.root, out.local = str(root).rstrip("/"), _local_root(str(root).rstrip("/"))
    m = out._load()
    if m is None:
        raise ValueError(f"{redact(str(root))}: no {MANIFEST} (not a partitioned aulib output)")
    return m


def _error_entry(root: str, path: Source, e: BaseException, columns: list[str], attempts: int,
                 what: str = "analysis failed") -> dict:
    """An input that failed every attempt: a part with its error row, written by the driver. When even
    that cannot be written, the manifest alone holds the error (:meth:`PartitionedOutput.read` gives
    its row)."""
    df = _failed_row(path, e, columns, f" after {attempts} attempts", what)
    name = input_name(path)
    try:
        entry = write_part(root, name, [df])
    except OSError:  # the store itself refuses: the manifest still says why
        entry = {"input": name, "part": None, "rows": 0, "frames": 0, "faces": 0, "status": "failed",
                 "seconds": 0.0, "worker": _worker_id(), "error": table_text(df.rows[0]["error"])}
    entry["worker"] = ""
    return entry


# write errors of the output itself, not of one input's part: every later input would fail the same way
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _stop_on_output_failure(e: BaseException, root: str) -> None:
    """Raise an OSError naming the output when writing a part failed because of the output's storage (a full disk,
    a quota, a read-only mount): each input was analysed three times, its part failing each time, and the run
    ended with "no input could be read", the disk named nowhere but inside the manifest."""
    if isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS:
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), redact(root)) from None


def _parts_serial(files: list[Source], analyzer: Analyzer, root: str, video_options: dict,
                  overlays: list[Path | None], retries: int, columns: list[str],
                  warn: Callable[[str], None]) -> Iterator[tuple[int, dict]]:
    for i, p in enumerate(files):
        for attempt in range(1, retries + 2):
            try:
                entry = write_part(root, input_name(p), iter_input(analyzer, p, video_options, overlays[i], warn))
                break
            except OSError as e:  # iter_input turns analysis failures into rows: this is the part's write
                _stop_on_output_failure(e, root)
                if attempt > retries:
                    entry = _error_entry(root, p, e, columns, attempt, "its part could not be written")
                    break
        entry["attempts"] = attempt
        yield i, entry


def _parts_dask(files: list[Source], spec: AnalyzerSpec, root: str, video_options: dict,
                overlays: list[Path | None], conn: tuple[Any, Any], retries: int,
                columns: list[str], warn: Callable[[str], None]) -> Iterator[tuple[int, dict]]:
    """Entries as tasks finish (any order). A task that raises is resubmitted up to ``retries``
    times; a worker that died is rerun by the scheduler, and only a task that killed
    ``allowed-failures`` workers (a poisonous input) comes back as KilledWorker, not resubmitted.
    ``conn``: the caller's :func:`_dask_connect` (:func:`_cluster_then`), closed here."""
    import dask.config
    from distributed import as_completed

    client, cluster = conn
    killed_limit = int(dask.config.get("distributed.scheduler.allowed-failures", 3)) + 1

    where = _absolute(root)

    def submit(i: int, attempt: int) -> Any:
        source, name = _for_worker(files[i])
        return client.submit(_part_task, source, asdict(spec), where, video_options, _absolute(overlays[i]), name,
                             key=f"aulib-part-{i}-{attempt}-{_key(str(files[i]))}", pure=False)

    try:
        futures = {}
        for i in range(len(files)):
            f = submit(i, 1)
            futures[f.key] = (f, i, 1)
        ac = as_completed([f for f, _, _ in futures.values()])
        for fut in _until_scheduler_lost(client, ac):
            _, i, attempt = futures.pop(fut.key)
            try:
                entry = fut.result()
            except Exception as e:  # the task raised, or killed its workers, or the scheduler lost it
                _stop_on_output_failure(e, root)
                _stop_on_lost_scheduler(client, e)
                killed = type(e).__name__ == "KilledWorker"
                if attempt <= retries and not killed:
                    nf = submit(i, attempt + 1)
                    futures[nf.key] = (nf, i, attempt + 1)
                    ac.add(nf)
                    continue
                entry = _error_entry(root, files[i], e, columns, killed_limit if killed else attempt)
                attempt = killed_limit if killed else attempt
            finally:
                fut.release()
            for w in entry.pop("warnings", []):
                warn(w)
            entry["attempts"] = attempt
            yield i, entry
    finally:
        _dask_close(client, cluster)


# ---------------------------------------------------------------------------------- running
_WORKER_ANALYZERS: dict[AnalyzerSpec, Analyzer] = {}


def _worker_analyzer(spec: AnalyzerSpec) -> Analyzer:
    """The Analyzer of this process for ``spec``, built on first use and then reused."""
    a = _WORKER_ANALYZERS.get(spec)
    if a is None:
        a = _WORKER_ANALYZERS[spec] = spec.build()
    return a


def _dask_task(path: str, spec: dict, video_options: dict, overlay: str | None,
               given: str | None = None) -> tuple[Rows, list[str]]:
    """One input, on a Dask worker (module-level so workers can import it): rows and warnings."""
    warnings: list[str] = []
    analyzer = _worker_analyzer(AnalyzerSpec(**spec))
    with threadpool_limits(limits=1, user_api="blas"):
        parts = list(iter_input(analyzer, _source(path), video_options, Path(overlay) if overlay else None,
                                warnings.append))
    return _renamed(Rows.concat(parts, analyzer.columns), path, given or path), warnings


def _serial(files: list[Path], analyzer: Analyzer, video_options: dict, overlays: list[Path | None],
            warn: Callable[[str], None]) -> Iterable[tuple[int, Iterable[Rows]]]:
    for i, p in enumerate(files):
        yield i, iter_input(analyzer, p, video_options, overlays[i], warn)


def _check_scheduler(scheduler: str) -> None:
    """OSError naming ``--scheduler`` for an address Dask cannot use ("localhost" was "missing port number in
    address 'localhost'", an http:// URL "unknown address scheme 'http'", without the option's name) or a TCP
    one where nothing listens (refused at once, where Dask kept trying for 30 s)."""
    import socket

    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import backends

    def refuse(why: str) -> OSError:
        return OSError(f"{redact(scheduler)}: not a Dask scheduler address for --scheduler ({why}); give "
                       "tcp://HOST:PORT, as 'dask scheduler' prints it")

    try:
        scheme, where = parse_address(scheduler)
        if scheme not in backends:
            raise ValueError(f"unknown scheme {scheme}://")
        host, port = parse_host_port(where) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as e:
        raise refuse(str(e)) from None
    if host is None:
        return  # another transport (inproc, ucx, ws): Dask connects and says
    unreachable = f"{redact(scheduler)}: cannot reach the Dask scheduler given by --scheduler"
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        raise OSError(f"{unreachable} (nothing listens on that port); is it running, and is the address "
                      "right?") from None
    except socket.gaierror as e:
        raise OSError(f"{unreachable} (unknown host {host}: {e.strerror or e})") from None
    except OSError:
        pass  # a firewall's silence, a slow network: Dask's own attempt (and its timeout) says


# A local cluster's workers per core at most: more only contend for the cores and for memory (each process holds
# the models, ≈ 0.4 GB); --workers 10**20 started processes until the machine's memory ran out.
MAX_WORKERS_PER_CORE = 8
# Open files a local cluster needs: the driver's own, and each worker process's pipes and sockets (measured: two
# workers failed under `ulimit -n 32`, and under 12 Dask's event loop logged "Too many open files" forever).
CLUSTER_FILES, WORKER_FILES = 64, 16


def _local_workers(workers: int | None, n_inputs: int | None) -> int:
    """The local cluster's size: ``workers`` (default: cores), no more than there are inputs (the rest would only
    start and wait); OSError for more than :data:`MAX_WORKERS_PER_CORE` per core, and for an open-file limit too low
    for them (the soft limit is raised to what is needed where the hard one allows)."""
    cores = os.cpu_count() or 1
    if workers is not None and workers > MAX_WORKERS_PER_CORE * cores:
        raise OSError(f"--workers {workers}: a local Dask cluster of more than {MAX_WORKERS_PER_CORE} worker processes "
                      f"per core ({MAX_WORKERS_PER_CORE * cores} on this machine's {cores}) only makes them contend "
                      "for the cores and the memory (each holds the models, ≈ 0.4 GB)")
    n = workers or cores
    if n_inputs is not None:
        n = max(1, min(n, n_inputs))
    try:
        import resource
    except ImportError:  # Windows: no such limit to check
        return n
    need = CLUSTER_FILES + WORKER_FILES * n
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard == resource.RLIM_INFINITY or hard >= need:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
                return n
        raise OSError(f"the open-file limit (ulimit -n {soft}) is too low for a local Dask cluster of {n} worker(s), "
                      f"which needs about {need}: raise it (ulimit -n {need}) or give fewer --workers")
    return n


def _dask_connect(scheduler: str | None, workers: int | None, n_inputs: int | None = None) -> tuple[Any, Any]:
    """A client of ``scheduler`` (tcp://HOST:PORT), or of a new local cluster of ``workers`` processes
    (default: cores; no more than ``n_inputs``, :func:`_local_workers`), one thread each; returns
    ``(client, cluster or None)`` for :func:`_dask_close`."""
    from distributed import Client, LocalCluster

    if scheduler:
        _check_scheduler(scheduler)
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as e:  # Dask's own words named no option ("Timed out trying to connect …")
            raise OSError(f"{redact(scheduler)}: cannot reach the Dask scheduler given by --scheduler "
                          f"({' '.join(redact(str(e)).split())[:200]}); is it running, and is the address "
                          "right?") from None
        except MemoryError:  # the service there is not Dask: its reply read as a message length of exabytes
            raise OSError(f"{redact(scheduler)}: not a Dask scheduler (what answers there does not speak Dask's "
                          "protocol; an SSH or web server?); is the address right?") from None
        if not client.scheduler_info().get("workers"):  # a scheduler with no worker would wait forever, silently
            from aulib.env import number

            wait = number("AULIB_DASK_WORKER_WAIT", WORKER_WAIT_S, maximum=1e6)
            try:
                client.wait_for_workers(1, timeout=wait)
            except TimeoutError:
                client.close()
                raise OSError(f"{redact(scheduler)}: no Dask worker joined this scheduler within {wait:.0f} s "
                              f"(start one: dask worker {redact(scheduler)})") from None
        return client, None
    # The worker processes start with SIGINT ignored: Ctrl-C in the terminal reaches the whole process group,
    # and each worker printed its KeyboardInterrupt/CancelledError tracebacks while the driver (which gets it
    # too) stops them itself, cleanly.
    import signal

    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    # and log errors only: a stopped run's cancelled tasks are not the user's concern
    env = os.environ.get("DASK_LOGGING__DISTRIBUTED")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    n = _local_workers(workers, n_inputs)
    try:
        with warnings.catch_warnings():  # "Port 8787 is already in use": no dashboard is asked for
            warnings.simplefilter("ignore", UserWarning)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
    except (RuntimeError, OSError, TimeoutError) as e:  # "Nanny failed to start", told as "a bug in aulib"
        raise OSError(f"could not start a local Dask cluster of {n} worker process(es) "
                      f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    finally:
        if main:
            signal.signal(signal.SIGINT, before)
        if env is None:
            os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)
    return Client(cluster), cluster


T = TypeVar("T")


def _cluster_then(dask: bool, scheduler: str | None, workers: int | None,
                  make_sinks: Callable[[], T], n_inputs: int | None = None) -> tuple[tuple[Any, Any] | None, T]:
    """The Dask connection (None without Dask), made before ``make_sinks()``, which resets the output: a
    scheduler that cannot be reached (a mistyped port) or has no worker fails the run while the previous
    table or parts are still there (they were deleted first, and the run then failed). The connection is
    closed when the sinks cannot be made."""
    conn = _dask_connect(scheduler, workers, n_inputs) if dask else None
    try:
        return conn, make_sinks()
    except BaseException:
        if conn is not None:
            _dask_close(*conn)
        raise


def _dask_close(client: Any, cluster: Any) -> None:
    """Close the client (and the local cluster) without the scheduler's shutdown chatter ("worker process
    still alive after 4 s, killing", comm errors) reaching the user's terminal."""
    import logging

    quiet = [logging.getLogger(n) for n in ("distributed", "distributed.nanny", "distributed.core",
                                            "distributed.worker", "distributed.scheduler")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        client.close()
        if cluster is not None:
            cluster.close()
    finally:
        for q, lv in zip(quiet, levels):
            q.setLevel(lv)


def _with_dask(files: list[Path], spec: AnalyzerSpec, video_options: dict, overlays: list[Path | None],
               conn: tuple[Any, Any], columns: list[str],
               warn: Callable[[str], None]) -> Iterable[tuple[int, Iterable[Rows]]]:
    """Results in input order, each as soon as it and every earlier input are finished (``conn``: the
    caller's :func:`_dask_connect` (:func:`_cluster_then`), closed here)."""
    from distributed import as_completed

    client, cluster = conn
    try:
        sent = [_for_worker(p) for p in files]
        futures = [client.submit(_dask_task, source, asdict(spec), video_options, _absolute(overlays[i]), given,
                                 key=f"aulib-{i}-{_key(str(p))}", pure=False)
                   for i, (p, (source, given)) in enumerate(zip(files, sent))]
        index = {f.key: i for i, f in enumerate(futures)}
        ready: dict[int, Rows] = {}
        nxt = 0
        for fut in _until_scheduler_lost(client, as_completed(futures)):
            i = index[fut.key]
            try:
                ready[i], warned = fut.result()
                for w in warned:
                    warn(w)
            except Exception as e:  # a worker died or the task raised: an error row, not a crash
                _stop_on_lost_scheduler(client, e)
                ready[i] = _failed_row(files[i], e, columns, " on a Dask worker")
            fut.release()
            while nxt in ready:
                yield nxt, [ready.pop(nxt)]
                nxt += 1
    finally:
        _dask_close(client, cluster)


def _lost_scheduler(client: Any, e: BaseException) -> OSError | None:
    """The error to stop a run with when ``e`` means the Dask scheduler itself is gone (killed, its machine
    rebooted, the network cut), else None. Dask gives up after trying to reconnect for a while and then fails
    every call with "Client is closed"; that reached the user as "unexpected ClosedClientError … a bug in aulib",
    and every input still running would have been recorded as failed by its own fault."""
    from distributed.client import ClosedClientError
    from distributed.comm.core import CommClosedError

    if not isinstance(e, (ClosedClientError, CommClosedError)) and getattr(client, "status", "running") == "running":
        return None
    where = getattr(getattr(client, "scheduler", None), "address", None) or "its address"
    return OSError(f"lost the Dask scheduler ({where}): the inputs finished before are in the output; start the "
                   "scheduler and its workers again and run the same command with --resume to analyse the rest")


def _stop_on_lost_scheduler(client: Any, e: BaseException) -> None:
    """Raise :func:`_lost_scheduler`'s error when ``e`` (a task's failure) came from losing the scheduler."""
    lost = _lost_scheduler(client, e)
    if lost is not None:
        raise lost from None


def _until_scheduler_lost(client: Any, finished: Iterable[T]) -> Iterator[T]:
    """``finished`` (Dask's ``as_completed``), ending the run with :func:`_lost_scheduler`'s error when the
    scheduler is lost while it waits. Meanwhile the Dask client's log records keep to one line: losing the
    scheduler printed a 35-line traceback of connection errors before aulib's own message."""
    import logging

    log = logging.getLogger("distributed.client")
    log.addFilter(_one_line_record)
    try:
        it = iter(finished)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as e:
                _stop_on_lost_scheduler(client, e)
                raise
            yield item
    finally:
        log.removeFilter(_one_line_record)


def _one_line_record(record: Any) -> bool:
    """A log record without its traceback: the exception's own words in its message instead."""
    if record.exc_info and record.exc_info[1] is not None:
        e = record.exc_info[1]
        words = " ".join(str(e).split())
        record.msg = " — ".join(m for m in (str(record.msg).strip(), f"{type(e).__name__}: {words}") if m)
        record.args, record.exc_info, record.exc_text = None, None, None
    return True


def _columns(spec: AnalyzerSpec) -> list[str]:
    return list(_worker_analyzer(spec).columns)


def file_identity(p: Source) -> object:
    """What names one input: a local file by its device and inode (``a.jpg``, ``./a.jpg``, a link to it), a URL or
    a file that cannot be stat'ed by its text (absolute path)."""
    if is_url(p):
        return str(p)
    with contextlib.suppress(OSError, ValueError):
        st = os.stat(p)
        return (st.st_dev, st.st_ino)
    return os.path.abspath(p)


def dedupe(files: list[Source]) -> tuple[list[Source], list[str]]:
    """Inputs in order without repeats (the same file, however named; the same URL: :func:`file_identity`), and the
    repeats. Names compared as text after ``abspath`` took ``L/../x.jpg`` (``L`` a link to ``A/B``: the file
    ``A/x.jpg``) for ``x.jpg`` and dropped its five faces."""
    seen: set[object] = set()
    keep, dups = [], []
    for p in files:
        k = file_identity(p)
        if k in seen:
            dups.append(input_name(p))
        else:
            seen.add(k)
            keep.append(p)
    return keep, dups


def _not_a_table(out: Path, e: Exception) -> ValueError:
    """What ``--resume`` says of an output it cannot read as a table: one line naming the file."""
    return ValueError(f"{table_text(str(out))}: not a table aulib wrote ({type(e).__name__}: {e}); cannot --resume "
                      "it (move it away, or write a new output)")


def _resolved(p: Source) -> Path | None:
    """A local path with its links and ``..`` resolved (how two outputs, or an output and an input, are found to be
    one file); None for a URL or a path that cannot be resolved (a link loop)."""
    if not isinstance(p, (str, os.PathLike)) or is_url(str(p)):
        return None
    try:
        return Path(p).resolve()
    except (OSError, RuntimeError):
        return None


def refuse_overwriting_inputs(targets: list[Path | None], files: list[Source], kind: str = "overlay") -> None:
    """ValueError (one line) when a file this run would write (``targets[i]``, the ``kind`` of ``files[i]``:
    "overlay", "table" for ``--per-input``, "output table" for ``-o``) is one of its inputs:
    ``--overlay clip.mp4`` on clip.mp4 replaced the video by its 3-frame overlay, a second run with the
    overlays in the input folder wrote ``v_overlay.mp4`` over an input before reading it, and
    ``-o in.csv`` with an input in.csv deleted that input before reading it."""
    wanted = [(t, f) for t, f in zip(targets, files) if t is not None]
    if not wanted:
        return
    local = {r: f for f in files if (r := _resolved(f)) is not None}
    for t, source in wanted:
        hit = local.get(_resolved(t))
        if hit is not None:
            whose = "the output table" if kind == "output table" else f"the {kind} of {table_text(str(source))}"
            raise ValueError(f"{table_text(str(t))}: {whose} would overwrite the input {table_text(str(hit))}; "
                             f"write {'it' if kind == 'output table' else kind + 's'} to another folder or name")


def refuse_colliding_outputs(files: list[Source], out: Path | str | None, per_input: Path | None, per_input_format: str,
                             overlay: Path | None, partitioned: bool = False,
                             per_input_targets: list[Path] | None = None) -> None:
    """ValueError (one line) when two outputs of one run are the same file: ``-o`` one of the ``--per-input``
    tables (the combined table was replaced by one input's, while the run said "wrote 6 rows … to pi/a.jpg.csv"),
    or ``--overlay`` the ``-o`` table (a folder made where the table was to go, the run failed after the analysis,
    and the next run too). Local paths only; compared resolved."""
    table = _resolved(out) if out is not None and not is_partitioned(out, partitioned) else None
    if table is None:
        return
    if overlay is not None and _resolved(overlay) == table:
        raise ValueError(f"{table_text(str(overlay))}: --overlay and -o name the same path: give the overlays a "
                         "folder of their own")
    if per_input is not None:
        for f, t in zip(files, per_input_targets or per_input_paths(files, per_input, per_input_format)):
            if _resolved(t) == table:
                raise ValueError(f"{table_text(str(out))}: -o is also the --per-input table of "
                                 f"{table_text(str(f))}: give -o another name or folder")


def _todo_overlays(overlay: Path | None, files: list[Source], todo: list[Source], warnings: list[str]) -> list:
    """Overlay targets of the inputs still to do (names chosen over all ``files``, so a resumed run
    writes the same files); an overlay *file* given for several inputs is refused with a warning."""
    kind, fits = overlay_file(overlay, files) if overlay is not None else (None, False)
    if kind is not None and not fits:
        warnings.append(overlay_misfit(overlay, kind))  # type: ignore[arg-type]
    if overlay is not None and len(todo) < len(files):  # said, not silently missing
        n = len(files) - len(todo)
        warnings.append(f"--overlay: the {n} input{'s' if n > 1 else ''} --resume skipped get no overlay (run "
                        "without --resume, or on those inputs alone, to draw them)")
    all_overlays = overlay_paths(overlay, files)
    at = {str(p): i for i, p in enumerate(files)}
    return [all_overlays[at[str(p)]] for p in todo]


def _listed(files: object) -> list[Source]:
    """``run_batch``'s inputs as a list, its local folders expanded: one path given as a string was read
    character by character (22 rows "w: no such file"…), a folder gave one row "is a directory"."""
    if isinstance(files, (str, bytes, os.PathLike)):
        files = [files]
    if not isinstance(files, Iterable) or isinstance(files, Mapping):
        raise TypeError(f"files must be a list of paths, not {type(files).__name__}")
    out: list[Source] = []
    for f in files:
        f = os.fsdecode(f) if isinstance(f, bytes) else f
        local = isinstance(f, (str, os.PathLike)) and not is_url(f) and os.path.isdir(f)
        out.extend(expand_inputs([f]) if local else [f])
    return out


def run_batch(
    files: list[Source], spec: AnalyzerSpec | None = None, out: Path | str | None = None,
    per_input: Path | None = None, per_input_format: str = "csv", resume: bool = False, dask: bool = False,
    scheduler: str | None = None, workers: int | None = None, overlay: Path | None = None,
    video_options: dict | None = None, progress: Callable[[Source], None] | None = None,
    analyzer: Analyzer | None = None, keep_table: bool = True, partitioned: bool = False, retries: int = 2,
) -> BatchResult:
    """Analyse ``files`` (already expanded), writing rows to the sinks as they are produced.

    ``out``: one combined table (.csv/.parquet/.json); ``per_input``: a folder with one table per
    input in ``per_input_format``; ``resume``: skip inputs the previous run finished (and redo
    failed ones); it must have used the same options, else ValueError. ``dask`` / ``scheduler``:
    one Dask task per input. ``analyzer``: reuse an already built one (Dask workers build theirs from its
    settings, :meth:`AnalyzerSpec.of`).
    ``keep_table=False``: do not collect the rows in memory (long videos written to a file).
    ``partitioned`` (implied by a URL ``out`` or one ending with ``/``): one Parquet part per
    input under ``out`` plus a manifest (see the module docstring); ``retries``: resubmissions of
    an input whose task raised. Inputs may be URLs (``str``). Raises ValueError (one line) when
    the output is locked by another process or ``--resume`` does not match; any problem with one
    input is a ``success=0`` row instead.
    """
    files = _listed(files)
    video_options = dict(video_options or {})
    if analyzer is not None:
        # the workers of a Dask run build their own analyzer: from this one's settings (they built the default
        # one, so gaze=False or tta=False were ignored there while the columns followed this one), and the run's
        # metadata records those too
        given, spec = spec, AnalyzerSpec.of(analyzer)
        if given is not None and given != spec:
            raise ValueError(f"run_batch: spec {given} and analyzer (built as {spec}) disagree: give one of them")
        video_options.setdefault("smooth", analyzer.smooth)
    spec = spec or AnalyzerSpec()
    if dask or scheduler:  # a callback cannot travel to a worker process
        video_options.pop("progress", None)
    files, duplicates = dedupe(list(files))
    if out is not None and not is_url(str(out)) and Path(out).is_symlink():
        # the table goes where the link points: the atomic rename replaced the link by a file and left its target
        # holding the old table
        out = Path(os.path.realpath(out))
    # before any output is opened: a refused run must not have removed the last table
    targets = per_input_paths(files, per_input, per_input_format) if per_input is not None else None
    refuse_colliding_outputs(files, out, per_input, per_input_format, overlay, partitioned, targets)
    if overlay is not None:
        refuse_overwriting_inputs(overlay_paths(overlay, files), files)
    if out is not None and not is_partitioned(out, partitioned):
        refuse_overwriting_inputs([Path(out)] * len(files), files, "output table")
    if targets is not None:
        refuse_overwriting_inputs(targets, files, "table")  # type: ignore[arg-type]
    columns = list(analyzer.columns) if analyzer is not None else _columns(spec)
    # the folder the inputs' names are relative to: --resume from another one took every input for a new one
    # (days/day1/photo.jpg then day1/photo.jpg: each photo twice in the table)
    # tta acts on images only: a run of videos alone records the default, so --no-tta (said to be inert there)
    # does not stop a --resume of the same videos' table
    acting = spec if any(not is_video(f) for f in files) else dataclasses.replace(spec, tta=True)
    meta = {"aulib_run": 1, "columns": columns, "options": run_options(acting, video_options)}
    if any(not is_url(f) and not os.path.isabs(f) for f in files):
        meta["cwd"] = os.getcwd()
    if is_partitioned(out, partitioned):
        root = partitioned_root(out, per_input)
        if (dask or scheduler) and root.startswith("memory://"):  # the workers' memory is not this process's:
            # the run said "wrote N rows" and nothing survived it (the API raised FileNotFoundError)
            raise ValueError(f"{root}/: a memory:// output lives in this process, and Dask's workers are other "
                             "processes: give a folder, a file:// or an object-store URL, or run without --dask")
        with contextlib.ExitStack() as stack:
            local = _local_root(root)
            if local is not None:
                local.mkdir(parents=True, exist_ok=True)
                stack.enter_context(output_lock(local / ".aulib.lock", local))
                refuse_nested_writers([local], {Path(os.path.abspath(local / ".aulib.lock"))})
            return _run_partitioned(files, spec, root, resume, dask, scheduler, workers, overlay, video_options,
                                    progress, analyzer, keep_table, columns, duplicates, meta, retries)
    out = Path(out) if out is not None else None
    records: list[Callable[[], None]] = []
    with contextlib.ExitStack() as stack:
        if out is not None:
            table_format(out)
            if out.is_dir():  # refused before anything is written beside it (a .meta.json was left there)
                raise IsADirectoryError(f"{table_text(str(out))}: is a folder, not a table file: give a file name "
                                        "(or --per-input for one table per input in a folder)")
            if out.exists() and not out.is_file():  # the table is written aside and renamed over it: a named pipe
                # was replaced by a regular file and its reader waited forever
                kind = "named pipe (FIFO)" if out.is_fifo() else "socket" if out.is_socket() else "device"
                raise OSError(errno.EINVAL, f"a {kind}, not a regular file: the table is written whole and renamed "
                                            "into place, so give a file name (and read the file when the run ends)",
                              table_text(str(out)))
            out.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(output_lock(out.with_name(out.name + ".lock"), out))
            existing = None
            if resume and out.exists() and out.stat().st_size:
                try:
                    existing = table_columns(out)
                except Exception as e:  # binary garbage, a foreign file: say so, never a parser's words alone
                    raise _not_a_table(out, e) from None
            records.append(_check_meta(out.with_name(out.name + ".meta.json"), out, meta, resume, existing))
        if per_input is not None:
            if per_input.exists() and not per_input.is_dir():  # mkdir's own words were "…: File exists"
                raise NotADirectoryError(f"{table_text(str(per_input))}: is a file, not a folder: --per-input "
                                         "writes one table per input into a folder")
            per_input.mkdir(parents=True, exist_ok=True)
            stack.enter_context(output_lock(per_input / ".aulib.lock", per_input))
            # the tables' format too: --resume in another one redid every input and left both kinds there
            per_meta = {**meta, "options": {**meta["options"], "format": per_input_format}}
            records.append(_check_meta(per_input / PER_INPUT_META, per_input, per_meta, resume, None))
        own = {Path(os.path.abspath(p)) for p in ([out.with_name(out.name + ".lock")] if out is not None else [])
               + ([per_input / ".aulib.lock"] if per_input is not None else [])}
        refuse_nested_writers(([out] if out is not None else []) + (targets or []), own)  # type: ignore[operator]
        per = PerInputSink(per_input, per_input_format, files, resume, targets) if per_input is not None else None
        return _run(files, spec, out, per, resume, dask, scheduler, workers, overlay,
                    video_options, progress, analyzer, keep_table, columns, duplicates, records)


def _run(files: list[Path], spec: AnalyzerSpec, out: Path | None, per: PerInputSink | None, resume: bool,
         dask: bool, scheduler: str | None, workers: int | None, overlay: Path | None,
         video_options: dict, progress: Callable[[Path], None] | None, analyzer: Analyzer | None, keep_table: bool,
         columns: list[str], duplicates: list[str], records: list[Callable[[], None]]) -> BatchResult:
    def sinks() -> CombinedSink | None:
        for record in records:  # the run's metadata, once it is sure to start
            record()
        return CombinedSink(out, resume) if out is not None else None

    if per is not None:  # before any work, and before the run's metadata is written
        per.check_targets(files)
    conn, combined = _cluster_then(dask or bool(scheduler), scheduler, workers, sinks, len(files))
    todo, skipped = [], []
    # the finished inputs of the table, also as files: "in/a.jpg" then "/data/in/a.jpg" is one input (it was
    # analysed again and the table held it twice)
    done_files = {os.path.abspath(n) for n in combined.done if not is_url(n)} if combined is not None else set()

    def in_table(p: Source, name: str) -> bool:
        return combined is not None and (name in combined.done or (not is_url(p) and os.path.abspath(p) in done_files))

    for p in files:
        name = input_name(p)
        done = (combined is None or in_table(p, name)) and (per is None or per.is_done(p, columns))
        if resume and (combined is not None or per is not None) and done:
            skipped.append(name)
        else:
            todo.append(p)
    warnings: list[str] = []
    if resume and combined is not None and combined.changed:
        shown = ", ".join(sorted(combined.changed)[:3]) + (" …" if len(combined.changed) > 3 else "")
        warnings.append(f"--resume: {len(combined.changed)} input(s) changed since their rows were written, "
                        f"analysed again: {shown}")
    overlays = _todo_overlays(overlay, files, todo, warnings)
    if conn is not None:
        stream = _with_dask(todo, spec, video_options, overlays, conn, columns, warnings.append)
    else:
        stream = _serial(todo, analyzer if analyzer is not None else _worker_analyzer(spec), video_options,
                         overlays, warnings.append)
    tables: list[Rows] = []
    failed: list[str] = []
    n_rows = n_frames = n_faces = 0
    t0 = time.perf_counter()

    def cut_short(p: Source, name: str, write_combined: bool, t: Tally) -> None:
        """The row saying ``p`` was cut short, in the tables its rows go to (see the caller's KeyboardInterrupt)."""
        cut = Rows([interrupted_row(name, t, write_combined and combined.partial())], columns)
        if write_combined and combined.writing:
            combined.append(cut)
            # on disk now: the program leaves without closing files (os._exit), and the row sat in the
            # file's buffer (a Ctrl-C after 7 s left 266 rows of 472 and no such row)
            combined.flush()
            # a Parquet table is written whole at the end: a run stopped by a job scheduler's time limit left
            # no table at all, only hidden parts; it is written now, this input ending with the row
            combined.interrupted([input_name(f) for f in files])
        if per is not None and per.writing:  # its table, ending with the row, under its name (it stayed hidden)
            per.append(cut)
            per.commit(p)

    def begin(p: Source) -> tuple[str, bool]:
        """Start ``p``'s rows in its tables: its name, and whether the combined table takes them."""
        name = input_name(p)
        write_combined = combined is not None and not in_table(p, name)
        if write_combined:
            combined.start(name)
        if per is not None:
            per.start(p)
        return name, write_combined

    results = iter(stream)
    waiting = 0  # the input whose rows come next (Dask gives them in input order, each when it is finished)
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            try:
                i, chunks = next(results)
            except StopIteration:
                break
            except KeyboardInterrupt:
                # stopped while the Dask workers ran: the input the table waits for is the one in hand, as in a
                # serial run (the table ended with the finished inputs and no word of the ones cut short)
                if waiting < len(todo):
                    cut_short(todo[waiting], *begin(todo[waiting]), Tally())
                raise
            waiting = i + 1
            p = todo[i]
            name, write_combined = begin(p)
            t = Tally()
            try:
                for chunk in chunks:
                    if write_combined:
                        combined.append(chunk)
                    if per is not None:
                        per.append(chunk)
                    t.add(chunk)
                    if keep_table:
                        tables.append(chunk)
                if write_combined:  # a Parquet part's footer is written here: a full disk fails it too
                    combined.commit(name)
                if per is not None:
                    per.commit(p)
            except OSError as e:  # a full disk, a lost mount: no half-written input left in the tables
                # named by the output the user gave, not the hidden file being written ("full.parquet.parts/
                # a03f….tmp: No space left on device", "pi/.clip.mp4.csv.aulib-part: …")
                in_per = per is not None and per.writes(str(e.filename or ""), p)
                if write_combined:
                    combined.rollback()
                if per is not None:
                    per.rollback()
                if write_combined and not in_per:
                    target = combined.out
                else:
                    target = per.target(p) if per is not None else None
                if target is None or not e.strerror:
                    raise
                raise OSError(e.errno, e.strerror, table_text(str(target))) from None
            except KeyboardInterrupt:
                # rows of part of a video: say so in the table itself — also when the signal came while a chunk was
                # being written, before it was counted (SIGTERM just after the first 266 rows reached the disk), and
                # before any of its rows came (a smoothed video's first rows come seconds in: a Ctrl-C then left the
                # table without the input, or no table at all, and pandas read one input fewer without a word)
                cut_short(p, name, write_combined, t)
                raise
            if t.all_failed:
                failed.append(name)
            elif t.error:  # analysed, but part of it was lost (a damaged or truncated video, a file that changed
                # while it was read): said only in the table's last row, the run said "1 done, 0 failed" and nothing
                # else; an animation's first-frame note says it alike
                warnings.append(t.error)
            n_rows, n_frames, n_faces = n_rows + t.rows, n_frames + len(t.frames), n_faces + t.faces
            if progress is not None:
                progress(p)
    if combined is not None:
        try:
            combined.close([input_name(p) for p in files])
        except OSError as e:  # merging the Parquet parts: named by the table, not "t.parquet.tmp"
            if not e.strerror:
                raise
            raise OSError(e.errno, e.strerror, table_text(str(combined.out))) from None
    return BatchResult(Rows.concat(tables, columns), [input_name(p) for p in todo], skipped, failed, duplicates,
                       warnings, n_rows, n_frames, n_faces, time.perf_counter() - t0)


def partitioned_root(out: Path | str | None, per_input: Path | None) -> str:
    """The folder / prefix of a partitioned output (ValueError for a table name of another format)."""
    s = str(out)
    base = s.rstrip("/")
    # a name ending with / is a folder whatever its dots ("run.v2/", "2024.05.01/" were refused); otherwise
    # only a table format's name is: a partitioned output cannot be one .csv/.json table
    ext = "" if s.endswith("/") else Path(base.split("://", 1)[-1]).suffix.lower()
    if ext in (".csv", ".json", ".jsonl", ".tsv"):
        raise ValueError(f"{redact(s)}: a partitioned output is a folder of Parquet files: give a folder or prefix "
                         "(ending with /) or a .parquet name, not a .csv/.json table (object-store outputs are "
                         "always partitioned)")
    if per_input is not None:
        raise ValueError("--per-input is not needed with a partitioned output (it already has one file per input)")
    return base


def _run_partitioned(files: list[Source], spec: AnalyzerSpec, root: str, resume: bool, dask: bool,
                     scheduler: str | None, workers: int | None, overlay: Path | None, video_options: dict,
                     progress: Callable[[Source], None] | None, analyzer: Analyzer | None, keep_table: bool,
                     columns: list[str], duplicates: list[str], meta: dict, retries: int) -> BatchResult:
    t0 = time.perf_counter()
    started_ns = time.time_ns()  # inputs changed after this are redone by the next --resume
    conn, sink = _cluster_then(dask or bool(scheduler), scheduler, workers,
                               lambda: PartitionedOutput(root, meta, resume), len(files))
    names = [input_name(p) for p in files]
    done = [resume and sink.is_done(n, p) for p, n in zip(files, names)]
    todo = [p for p, d in zip(files, done) if not d]
    skipped = [n for n, d in zip(names, done) if d]
    warnings: list[str] = []
    overlays = _todo_overlays(overlay, files, todo, warnings)
    if conn is not None:
        stream = _parts_dask(todo, spec, root, video_options, overlays, conn, retries, columns, warnings.append)
    else:
        stream = _parts_serial(todo, analyzer if analyzer is not None else _worker_analyzer(spec), root,
                               video_options, overlays, retries, columns, warnings.append)
    res = BatchResult(Rows([], columns), [input_name(p) for p in todo], skipped, duplicates=duplicates,
                      warnings=warnings)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for i, entry in stream:
                if not is_url(todo[i]):  # the file as well as its name: --resume finds it however it is named
                    entry["path"] = os.path.abspath(todo[i])
                    entry["read_ns"] = started_ns  # a file changed after it is analysed again (is_done)
                sink.record(entry, names)
                res.rows += int(entry.get("rows", 0))
                res.frames += int(entry.get("frames", 0))
                res.faces += int(entry.get("faces", 0))
                if entry.get("status") != "done":
                    res.failed.append(entry["input"])
                elif entry.get("error"):  # analysed, but part of it was lost (see _run)
                    warnings.append(str(entry["error"]))
                w = entry.get("worker")
                if w:
                    acc = res.workers.setdefault(w, {"inputs": 0, "frames": 0, "seconds": 0.0})
                    acc["inputs"] += 1
                    acc["frames"] += int(entry.get("frames", 0))
                    acc["seconds"] += float(entry.get("seconds", 0.0))
                if progress is not None:
                    progress(todo[i])
    finally:
        sink.save(force=True)  # also when interrupted: what finished is kept for --resume
    order = {n: k for k, n in enumerate(names)}
    res.failed.sort(key=lambda n: order.get(n, -1))
    if keep_table:
        table = sink.read(res.analysed)
        res.result = table if len(table) else Rows([], columns)
    res.seconds = time.perf_counter() - t0
    return res
