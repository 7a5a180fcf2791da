"""Video analysis: every (or every N-th) frame, one row per face, stable face ids, real-time design.

Why it is built this way (measured on 640×360 video, 2 shared CPU cores, see ``aulib bench``):

* **Decoding** runs in a background thread (:mod:`aulib.video.reader`).
* **Faces** are detected every k frames and followed through their landmarks in between
  (:mod:`aulib.video.follow`), with stable ids (:mod:`aulib.video.track`).
* **Models** (CNN embedding + emotion, AU SVMs/SVRs) run on batches of :class:`~aulib.face.Face`
  records from several frames in a second thread: onnxruntime releases the GIL, so the CNN
  overlaps the next frames' landmarks and HOG. The models are those of the caller's
  :class:`~aulib.analyzer.Analyzer`, reached through the small :class:`FaceModels` interface.
* **Calibration** (``calibrate``, :mod:`aulib.video.calibrate`) follows OpenFace: features − the
  person's neutral estimate + the population mean. ``"video"`` (= ``True``) is the offline
  two-pass version: every face record (features, ≈30 kB, no pixels) is kept to the end, ≈1 GB per
  10 minutes of 30 fps video with one face; ``"running"`` is causal (constant memory, usable live).
  Both also read blinks against each person's own open-eye level (:mod:`aulib.face.blink`).

Rows leave as they are produced: :func:`iter_video_rows` yields them in chunks of about
:data:`CHUNK_ROWS` rows (frame order) as soon as the models have scored those frames, so the
batch runner appends them to the output while the video is still decoding and memory stays flat
on long videos. Only two-pass calibration holds its rows back to the end.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from aulib import background
from aulib.face.blink import BlinkRuns, RunningOpenLevels, personal_blinks
from aulib.face.detect import VIDEO_SCAN_SIDE, Detection
from aulib.face.pipeline import FacePipeline
from aulib.face.record import Face
from aulib.table import (
    ANGLE_COLUMNS,
    GAZE_VECTORS,
    CoherentRows,
    empty_row,
    face_rows,
    trace_columns,
    trace_scale,
)
from aulib.video.calibrate import NeutralCalibrator, calibration_mode
from aulib.video.follow import DEFAULT_DETECT_EVERY, FaceFollower, thumbnail
from aulib.video.keyframes import KEY_GAP_SIGMAS, Keyframes, plan
from aulib.video.overlay import OverlayWriter, as_written, drawable
from aulib.video.reader import FrameReader, VideoReadError, check_count, check_sampling
from aulib.video.smooth import DEFAULT_SIGMA_S, OneEuroSmoother, TraceSmoother, check_sigma

# Faces per batched model call: large enough to amortise onnxruntime call overhead, small enough
# to keep the model thread close behind the face thread.
BATCH_FACES = 16
# What the decode thread makes of a frame for the face stage (VideoAnalysis.prepare): its scene-cut thumbnail,
# and the interval's face scan (file frame, detections) where one is expected.
_Prepared = tuple[np.ndarray, "tuple[int, list[Detection]] | None"]
# Rows per chunk handed out by iter_video_rows: a few seconds of video per append/fsync.
CHUNK_ROWS = 256
# Frames per model batch at most, whatever their faces: a stretch without faces never filled a batch of
# BATCH_FACES faces, so its rows (and, for an overlay, its decoded images) were all held to the end of the video.
BATCH_FRAMES = 64

Calibration = Literal["video", "running"] | bool
# True/"offline": zero-phase Gaussian (files, the default); "causal": One Euro (live); False: raw per-frame values.
Smoothing = Literal["offline", "causal"] | bool


class FaceModels(Protocol):
    """What video analysis needs from an :class:`~aulib.analyzer.Analyzer`."""

    pipeline: FacePipeline
    aus: list[int]  # AU numbers of the intensity models (which columns smoothing steadies)
    # (K,) probability above which each AU is present (None: the occurrence bank is not calibrated)
    occurrence_thresholds: np.ndarray | None

    @property
    def au_feature_mean(self) -> np.ndarray:
        """(D,) population mean of the AU features (what calibration re-centres on)."""
        ...

    def run(self, faces: Sequence[Face], flip: bool | None = None,
            keyframes: Keyframes | None = None, fuse: bool | None = None) -> Sequence[Face]:
        """Fill features and predictions of a batch of described faces (``keyframes``: which take their
        network outputs from their neighbours, :mod:`aulib.video.keyframes`; ``fuse``: with a second opinion
        on the AUs where the models have one)."""
        ...

    def rescore(self, faces: Sequence[Face]) -> Sequence[Face]:
        """Recompute the AU predictions from ``Face.features`` (after calibration)."""
        ...


@dataclass
class _ToDraw:
    """A frame waiting for its final rows (after smoothing) before the overlay draws it."""

    index: int
    time: float
    image: np.ndarray | None
    faces: list[Face]  # :func:`~aulib.video.overlay.drawable` copies: where each face is, no values
    n_rows: int  # rows the frame has in the table: one per face, or the one "no face" row


@dataclass
class _FrameFaces:
    index: int
    time: float
    faces: list[Face]
    image: np.ndarray | None = None
    rows: list[dict] = field(default_factory=list)
    done: bool = False


class VideoAnalysis:
    """State of one video's analysis: face follower, model batches, calibration, rows.

    Feed frames with :meth:`add` (face stage, caller's thread); model work happens in
    :meth:`_models` (its own thread when ``threaded``); :meth:`ready` hands out the rows of the
    frames scored so far, :meth:`finish` the remaining ones, all in frame order. Usable for live
    streams too: ``add`` one frame at a time with ``calibrate="running"``.
    """

    def __init__(self, models: FaceModels, input_name: str, calibrate: Calibration = False,
                 detect_every: int = DEFAULT_DETECT_EVERY, overlay: OverlayWriter | None = None,
                 threaded: bool = True, batch_faces: int = BATCH_FACES, interpolate_gap: float = 0.0,
                 post: Callable[[list[dict], bool], list[dict]] | None = None,
                 reread: Callable[[], Iterator[tuple[int, float, np.ndarray]]] | None = None) -> None:
        """``interpolate_gap`` > 0: the networks run on faces of each track up to that many seconds apart, the faces
        between take their outputs (:mod:`aulib.video.keyframes`; for smoothed traces only). ``post(rows,
        final)``: what the rows go through, in frame order, before they are handed out (the smoothing; it may
        hold rows back until ``final``). It runs in the model thread, which has time to spare, while the
        face stage in the caller's thread is the pipeline's slowest.

        The ``overlay`` draws each frame with its final rows' values (those the table gets): a frame's image waits
        until ``post`` releases its rows. Images held: those of the frames queued for the models (up to 4 batches,
        the one being scored and the one filling, as before) and, after a batch, those of its last 3 · sigma of
        smoothing look-ahead (0.24 s by default: 6 frames at 25 fps, 4 MB at 640×360, 37 MB at 1080p). Two-pass
        calibration decides the rows only at :meth:`finish`, after the whole video: the overlay is drawn then, on
        the frames of ``reread()`` (index, time, RGB image: the video read again), none kept in memory."""
        self.models = models
        self.post = post
        self.interpolate_gap = float(interpolate_gap)
        self.name = input_name
        # HOG is computed in the model thread (_models): the face stage is the slower of the two
        self.follower = FaceFollower(models.pipeline, detect_every, scan_side=VIDEO_SCAN_SIDE, hog=False)
        mode = calibration_mode(calibrate)
        self.calibrator = NeutralCalibrator(models.au_feature_mean, mode) if mode else None
        # streaming calibration reads blinks against each person's open-eye level so far (aulib.face.blink)
        self.open_levels = RunningOpenLevels() if mode == "running" else None
        self.blink_runs = BlinkRuns()  # AU45_c as runs of frames with hysteresis (aulib.face.blink)
        self.overlay = overlay
        self.reread = reread
        self._to_draw: deque[_ToDraw] = deque()  # frames the overlay draws once their rows are final
        self._final: deque[dict] = deque()  # final rows of frames not drawn yet (the first of _to_draw)
        self.batch_faces = batch_faces
        self.frames: deque[_FrameFaces] = deque()  # frames whose rows were not handed out yet
        self._pending: list[_FrameFaces] = []
        self._scores: list[float] = []  # two-pass calibration: each kept face's expressiveness
        self.threaded = threaded
        self._q: queue.Queue | None = None
        self._err: BaseException | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._q = queue.Queue(maxsize=4)
            # stopped and joined at exit (aulib.background): Ctrl-C must not leave it inside onnxruntime
            self._thread = background.start(self._model_loop, f"models:{input_name}", stop=self.close)

    @property
    def n_detect(self) -> int:
        return self.follower.n_detect

    @property
    def n_redetect(self) -> int:
        return self.follower.n_redetect

    @property
    def _two_pass(self) -> bool:
        return self.calibrator is not None and self.calibrator.mode == "video"

    # ------------------------------------------------------------------ face stage
    def add(self, index: int, time: float, image: np.ndarray, prepared: _Prepared | None = None) -> None:
        """Find and describe the faces of one RGB frame, queue them for the models (``prepared``: what the
        reader's decode thread made of it, :meth:`prepare`)."""
        self._raise()
        thumb, scan = prepared if prepared is not None else (None, None)
        # two-pass calibration draws its overlay on the video read again (reread): no image is kept
        keep = self.overlay is not None and not self.overlay.error and not self._two_pass
        ff = _FrameFaces(index, time, self.follower(image, index, thumb, scan), image if keep else None)
        self.frames.append(ff)
        self._pending.append(ff)
        if sum(len(p.faces) for p in self._pending) >= self.batch_faces or len(self._pending) >= BATCH_FRAMES:
            self._flush()

    def prepare(self, image: np.ndarray, index: int) -> _Prepared:
        """For the reader's decode thread (``FrameReader(prepare=)``), ahead of :meth:`add`: the frame's
        scene-cut thumbnail and, where the interval's face scan is expected, that scan
        (:meth:`FaceFollower.prefetch`). The face stage in the caller's thread bounds the pipeline; the
        decode thread has time to spare."""
        return thumbnail(image), self.follower.prefetch(image, index)

    # ------------------------------------------------------------------ model stage
    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        if self._q is not None:
            while True:
                self._raise()
                try:
                    self._q.put(batch, timeout=0.2)
                    break
                except queue.Full:
                    continue
        else:
            self._models(batch)

    def _model_loop(self) -> None:
        """Score queued batches until the stop signal (``None``)."""
        assert self._q is not None
        while True:
            batch = self._q.get()
            if batch is None:
                return
            if self._err is not None:
                continue
            try:
                self._models(batch)
            except BaseException as e:  # re-raised in the caller's thread
                self._err = e

    def _raise(self) -> None:
        if self._err is not None:
            err, self._err = self._err, None
            raise err

    def _models(self, batch: list[_FrameFaces]) -> None:
        timed = [(f, ff.time) for ff in batch for f in ff.faces if f.success]
        ok = [f for f, _ in timed]
        cal = self.calibrator
        if ok:
            self.models.pipeline.add_hog(ok)
            keyframes = (plan(ok, [t for _, t in timed], self.interpolate_gap) if self.interpolate_gap > 0 else None)
            # unflipped (traces average over time; keep the frame rate), the AU heads voting (Analyzer.run)
            self.models.run(ok, flip=False, keyframes=keyframes, fuse=True)
            if cal is not None:
                # how expressive each face is before calibration: picks the frames that define "neutral"
                scores = np.array([f.au_intensity.sum() for f in ok])
                if cal.mode == "running":
                    X = cal.running(np.stack([f.features for f in ok]), [f.id for f in ok], scores,
                                    [t for _, t in timed])
                    for f, x in zip(ok, X):
                        f.features = x
                    self.models.rescore(ok)
                else:
                    self._scores.extend(scores.tolist())
        if self.open_levels is not None:
            for ff in batch:  # frame order: each frame's level comes from the frames before it and itself
                self.open_levels.update(ff.faces, ff.time)
        if not self._two_pass:  # (two-pass: after each person's own level is known, in finish)
            for ff in batch:
                self.blink_runs.update(ff.faces)
        drawing = self.overlay is not None and not self.overlay.error and not self._two_pass
        for ff in batch:
            if drawing:
                self._to_draw.append(_ToDraw(ff.index, ff.time, ff.image, [drawable(f) for f in ff.faces],
                                             max(1, len(ff.faces))))
            ff.image = None
            if self._two_pass:  # keep the records (features only) until every frame is in
                for f in ff.faces:
                    f.compact(keep_features=True)
            else:
                ff.rows = face_rows(ff.faces, self.name, ff.index, ff.time)
                ff.faces = []  # crops and HOG are ~100 kB per face: keep only the rows
        if self.post is not None and not self._two_pass:
            # the rows this batch releases (smoothing holds the newest back) go out with its last frame:
            # ready() hands out frames in order, and every row released before belongs to earlier frames
            released = self.post([r for ff in batch for r in ff.rows], False)
            for ff in batch:
                ff.rows = []
            batch[-1].rows = released
            self._draw(released)
        elif not self._two_pass:
            self._draw([r for ff in batch for r in ff.rows])
        for ff in batch:  # only now: ready(), in the caller's thread, hands out a done frame's rows
            ff.done = True

    def _draw(self, rows: list[dict]) -> None:
        """Draw the frames whose final ``rows`` (in frame order, as the table gets them) are all in, with those
        rows' values: before this the overlay drew the models' raw records, ahead of smoothing, interpolation,
        calibration and the occurrence rule. Runs before ready() can hand the rows out (nothing else reads
        them meanwhile), in the model thread, or at :meth:`finish`."""
        if self.overlay is None or self.overlay.error:
            self._to_draw.clear()  # the overlay failed: keep no images for it
            self._final.clear()
            return
        self._final.extend(rows)
        while self._to_draw and len(self._final) >= self._to_draw[0].n_rows:
            fr = self._to_draw.popleft()
            mine = [self._final.popleft() for _ in range(fr.n_rows)]
            if fr.image is not None:
                self.overlay.write(fr.image, [as_written(f, r) for f, r in zip(fr.faces, mine)], fr.time)

    def _draw_again(self, rows: list[dict]) -> None:
        """Two-pass calibration: draw every frame, on the video read again, with its final ``rows`` (all of the
        video's, frame order). Before, its overlay was drawn in the first pass, before calibration: the top AUs
        drawn differed from the table's by 0.52 on average on the Pexels clip."""
        assert self.overlay is not None
        final = deque(rows)
        todo = deque((fr, [final.popleft() for _ in range(fr.n_rows)]) for fr in self._to_draw)
        self._to_draw.clear()
        if not todo or self.overlay.error:
            return
        if self.reread is None:
            self.overlay.error = f"{self.overlay.path}: overlay not written (the video cannot be read a second time)"
            return
        missed = 0
        try:
            for index, time, image in self.reread():
                while todo and todo[0][0].index < index:  # a frame the first reading gave and this one not
                    todo.popleft()
                    missed += 1
                if not todo:
                    break
                if todo[0][0].index == index:
                    fr, mine = todo.popleft()
                    self.overlay.write(image, [as_written(f, r) for f, r in zip(fr.faces, mine)], time)
                if self.overlay.error:
                    return
        except Exception as e:  # the table is written all the same
            self.overlay.error = f"{self.overlay.path}: overlay not written ({type(e).__name__}: {e})"
            return
        if todo or missed:
            self.overlay.error = (f"{self.overlay.path}: overlay not written (the video read differently the second "
                                  f"time: {len(todo) + missed} frames missing)")

    def ready(self) -> list[dict]:
        """Rows of the leading frames the models have finished, in frame order, handed out once.

        Empty with two-pass calibration: its rows change at :meth:`finish`.
        """
        self._raise()
        if self._two_pass:
            return []
        out: list[dict] = []
        while self.frames and self.frames[0].done:
            out.extend(self.frames.popleft().rows)
        return out

    def finish(self) -> list[dict]:
        """Flush the last batch, wait for the models, apply two-pass calibration; the rows not
        handed out by :meth:`ready` yet (all rows if it was never called), in frame order."""
        self._flush()
        if self._thread is not None and self._q is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None
        self._raise()
        if self._two_pass:
            assert self.calibrator is not None
            ok = [f for ff in self.frames for f in ff.faces if f.success]
            if ok:
                times = np.array([ff.time for ff in self.frames for f in ff.faces if f.success], np.float64)
                X = self.calibrator.video_offsets(np.stack([f.features for f in ok]), np.array([f.id for f in ok]),
                                                  np.asarray(self._scores), times)
                for f, x in zip(ok, X):
                    f.features = x
                self.models.rescore(ok)
                # each person's own open-eye level, over the whole track; one too short to say what the
                # person's open eyes look like keeps the population's, as its AUs stay uncalibrated
                personal_blinks(ok, times, self.calibrator.min_track_s)
            for ff in self.frames:
                self.blink_runs.update(ff.faces)
            for ff in self.frames:
                if self.overlay is not None and not self.overlay.error:
                    self._to_draw.append(_ToDraw(ff.index, ff.time, None, [drawable(f) for f in ff.faces],
                                                 max(1, len(ff.faces))))
                ff.rows, ff.faces = face_rows(ff.faces, self.name, ff.index, ff.time), []
        rows = [r for ff in self.frames for r in ff.rows]
        self.frames.clear()
        if self._two_pass:  # every row now, then the overlay from them
            rows = self.post(rows, True) if self.post is not None else rows
            if self.overlay is not None:
                self._draw_again(rows)
        elif self.post is not None:  # the rows smoothing held back: the overlay's last frames
            tail = self.post([], True)
            self._draw(tail)
            rows += tail
        if self.overlay is not None:
            self.overlay.close()
        return rows

    def close(self) -> None:
        """Stop the model thread without results (after an error in the caller, or at exit)."""
        thread, q = self._thread, self._q
        if thread is not None and q is not None:
            while True:  # drop queued batches so the stop signal fits (we are the only producer)
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
            q.put(None)
            if thread is not threading.current_thread():
                thread.join()  # it ends after the batch in hand: no model run outlives the caller
            self._thread = None
        self._to_draw.clear()  # frames waiting for rows that will not come
        self._final.clear()
        if self.overlay is not None:  # the frames written so far stay a playable file; no handle is left open
            self.overlay.close()


def _smoothed(smoother: TraceSmoother | OneEuroSmoother | None, rows: list[dict], coherent: CoherentRows,
              final: bool = False) -> list[dict]:
    """Rows through the smoother (all remaining ones when ``final``); then each occurrence is decided
    from its smoothed probability and the intensities are made coherent with it again
    (:class:`aulib.table.CoherentRows`)."""
    if smoother is None:
        return rows
    out = smoother.push(rows) + (smoother.finish() if final else [])
    coherent(out)
    return out


def _frames_again(path: str | Path, every: int, fps: float | None, max_frames: int | None,
                  threaded: bool) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time, RGB image) of the same frames the analysis read, read again: two-pass calibration's overlay
    is drawn once the rows are final, at the end, and keeping every image of the video for it would be unbounded."""
    if hasattr(path, "seek"):  # a file object the first reading left at its end
        path.seek(0)
    reader = FrameReader(path, every, fps, max_frames, threaded=threaded)
    frames = iter(reader)
    try:
        for vf in frames:
            yield vf.index, vf.time, vf.image
    finally:
        frames.close()  # type: ignore[attr-defined]
        reader.close()


def analyze_video_rows(
    models: FaceModels, path: str | Path, every: int = 1, fps: float | None = None, calibrate: Calibration = False,
    overlay: str | Path | None = None, detect_every: int = DEFAULT_DETECT_EVERY,
    progress: Callable[[int, int], None] | None = None, max_frames: int | None = None,
    stats: dict | None = None, threaded: bool = True, smooth: Smoothing = True, smooth_sigma: float = DEFAULT_SIGMA_S,
    interpolate: bool = True,
) -> list[dict]:
    """Rows for every kept frame of a video: one per face, or one ``success=0`` row per faceless frame.

    ``every``/``fps`` subsample (``frame`` stays the index in the file, ``timestamp`` the
    container time in seconds); ``detect_every=1`` runs the detector on every frame (slowest, same
    faces as :meth:`Analyzer.analyze_frame`). ``overlay``: path of an annotated .mp4 to write.
    ``progress(done, total)`` is called per frame (``total`` = frames the container declares or implies,
    0 if unknown). ``stats`` (a dict) receives decode/detection counters for benchmarking.
    The overlay shows what the table says: each frame is drawn once its rows are final (smoothed, interpolated,
    calibrated); with ``calibrate=True``/``"video"`` at the end, on the video read a second time.
    A file that cannot be opened gives one error row; a stream that breaks off keeps the frames
    decoded so far and adds a ``success=0`` row whose ``error`` says what happened.
    ``smooth``: steady the AU intensity and head-pose traces of each face track along time
    (:mod:`aulib.video.smooth`): ``True``/``"offline"`` zero-phase Gaussian of ``smooth_sigma``
    seconds, ``"causal"`` One Euro (live), ``False`` raw per-frame values. ``interpolate`` (with offline
    smoothing only): the embedding CNN, the multitask AU heads and the iris network run on frames of each
    face up to :data:`KEY_GAP_SIGMAS` · ``smooth_sigma`` apart (every third frame at 24–30 fps), the frames
    between take the time-weighted mean of their outputs (:mod:`aulib.video.keyframes`); ``False`` runs them
    on every frame.
    All rows at once; :func:`iter_video_rows` hands them out in chunks as they are produced.
    """
    return [r for chunk in iter_video_rows(models, path, every, fps, calibrate, overlay, detect_every, progress,
                                           max_frames, stats, threaded, smooth=smooth, smooth_sigma=smooth_sigma,
                                           interpolate=interpolate)
            for r in chunk]


def check_video_options(every: object = 1, fps: object = None, calibrate: object = False,
                        detect_every: object = DEFAULT_DETECT_EVERY, progress: object = None,
                        max_frames: object = None, stats: object = None, threaded: object = True,
                        chunk_rows: object = CHUNK_ROWS, smooth: object = True, smooth_sigma: object = DEFAULT_SIGMA_S,
                        interpolate: object = True) -> None:
    """ValueError/TypeError naming the first video option of :func:`iter_video_rows` whose value it cannot take,
    without opening a file: a list of inputs is checked before any of them is analysed (``every=0`` was found at
    the first video, after the photos before it had been analysed, and their work was lost)."""
    from aulib.analyzer import _check_flag, check_smoothing

    check_sampling(every, fps, max_frames)
    calibration_mode(calibrate)
    check_count("detect_every", detect_every)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function (done, total) or None, not {type(progress).__name__}")
    if stats is not None and not isinstance(stats, dict):
        raise TypeError(f"stats must be a dict (it receives decode counters) or None, not {type(stats).__name__}")
    check_sigma(smooth_sigma, "smooth_sigma")  # also when smoothing is off
    check_smoothing(smooth)
    check_count("chunk_rows", chunk_rows)  # 0 or -5 gave empty tables, one per frame
    _check_flag("interpolate", interpolate)
    _check_flag("threaded", threaded)  # threaded="no" was read as True


def iter_video_rows(
    models: FaceModels, path: str | Path, every: int = 1, fps: float | None = None, calibrate: Calibration = False,
    overlay: str | Path | None = None, detect_every: int = DEFAULT_DETECT_EVERY,
    progress: Callable[[int, int], None] | None = None, max_frames: int | None = None,
    stats: dict | None = None, threaded: bool = True, chunk_rows: int = CHUNK_ROWS, smooth: Smoothing = True,
    smooth_sigma: float = DEFAULT_SIGMA_S, interpolate: bool = True,
) -> Iterator[list[dict]]:
    """The rows of :func:`analyze_video_rows`, in frame order, in lists of about ``chunk_rows``
    rows yielded as soon as the models have scored them: memory stays flat on long videos
    (except with two-pass calibration, whose rows all come at the end).

    ``stats`` also receives ``overlay_error`` (empty, or why the overlay could not be written:
    the analysis carries on without it) and ``note`` (empty, or what else the file holds that was not read: its
    other video streams). Smoothing holds back only ``3 · smooth_sigma`` seconds of rows.
    """
    name = str(path)
    check_video_options(every=every, fps=fps, calibrate=calibrate, detect_every=detect_every, progress=progress,
                        max_frames=max_frames, stats=stats, threaded=threaded, chunk_rows=chunk_rows, smooth=smooth,
                        smooth_sigma=smooth_sigma, interpolate=interpolate)
    # sparse network frames only where the offline smoothing averages neighbours anyway
    gap = KEY_GAP_SIGMAS * float(smooth_sigma) if interpolate and smooth in (True, "offline") else 0.0
    cols = trace_columns(models.aus)
    smoother: TraceSmoother | OneEuroSmoother | None = (
        OneEuroSmoother(cols, angles=ANGLE_COLUMNS, unit_vectors=GAZE_VECTORS) if smooth == "causal"
        else TraceSmoother(cols, smooth_sigma, [trace_scale(c) for c in cols], GAZE_VECTORS, ANGLE_COLUMNS)
        if smooth else None)
    coherent = CoherentRows(models.aus, models.occurrence_thresholds)
    try:
        reader = FrameReader(path, every, fps, max_frames, threaded=threaded)
    except VideoReadError as e:
        if stats is not None:
            stats.update(overlay_error="", error=str(e), note="")
        yield [empty_row(name, str(e))]
        return
    writer = OverlayWriter(overlay, reader.output_rate) if overlay is not None else None
    va = VideoAnalysis(models, name, calibrate, detect_every, writer, threaded=threaded, interpolate_gap=gap,
                       post=(lambda rows, final: _smoothed(smoother, rows, coherent, final)) if smoother else None,
                       reread=(lambda: _frames_again(path, every, fps, max_frames, threaded)) if writer else None)
    reader.prepare = va.prepare  # in the decode thread, which starts with the first frame asked for
    st0 = reader.stats
    total = -(-st0.expected // every) if st0.expected else 0
    if total and fps and st0.rate:  # --fps keeps at most fps frames per second
        total = min(total, math.ceil(st0.expected / st0.rate * fps))
    frames = iter(reader)
    pending: list[dict] = []
    # One BLAS thread: the AU models' products are tiny ((16, 7500) @ (7500, 17)), and a second
    # OpenBLAS thread on a busy machine made each call wait for a descheduled worker (85 ms
    # per call measured instead of 0.05 ms).
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for n, vf in enumerate(frames, 1):
                va.add(vf.index, vf.time, vf.image, vf.prepared)
                if progress is not None:
                    progress(n, total)
                pending.extend(va.ready())
                if len(pending) >= chunk_rows:
                    chunk, pending = pending, []
                    yield chunk
            pending.extend(va.finish())
    except BaseException:  # includes GeneratorExit: the caller stopped early
        va.close()
        raise
    finally:
        frames.close()  # type: ignore[attr-defined]
        reader.close()
    st = reader.stats
    if st.error:
        step = 1.0 / st.rate if st.rate else 0.0
        # after the file's last frame (lost ones counted: a damaged clip's row sorted before its frames)
        end = st.offset + (st.last_time + step if st.decoded else 0.0)
        pending.append(empty_row(name, st.error, st.decoded + st.lost, end))
    if stats is not None:
        stats.update(decoded=st.decoded, frames=st.selected, decode_s=st.seconds, detections=va.n_detect,
                     redetections=va.n_redetect, error=st.error, overlay_error=writer.error if writer else "",
                     note=st.note)
    if pending:
        yield pending
