"""Video analysis: every (or every N-th) frame, one row per face, stable face ids, real-time design.

Why it is built this way (measured on 640×360 video, 2 shared CPU cores, see ``aulib bench``):

* **Decoding** (PyAV; ≈0.75 ms CPU per 640×360 frame including RGB conversion) runs in a
  background thread that hands RGB frames over a bounded queue; FFmpeg releases the GIL, so it
  overlaps the analysis. Slice threads only: frame threads cost more than they saved on two busy
  cores. Frames that ``--every``/``--fps`` drop are never converted to RGB.
* **Detection** (RetinaFace, ≈10–25 ms per frame) runs only every ``detect_every`` frames. In
  between each face is followed through its own landmarks (≈1 ms): the detector's box is stored
  in the face's aligned-crop coordinates and carried into the next frame by the previous frame's
  similarity transform (fitted on the rigid points: eye corners, nose). Rebuilding the box from
  the landmark hull instead (``box_from_landmarks``) collapsed when the chin touched the frame
  edge in WolfgangLanger_Pexels.mp4: the hull shrank 229 → 157 px over four frames (median
  landmark error 27 px) with a fit error that still looked fine. A fit that degrades
  (rigid-point error above :data:`REDETECT_FIT_ERROR`, or a failed fit) triggers detection on
  that same frame, so no frame is reported from a lost track.
  A scene cut (thumbnail difference, :data:`SCENE_CUT`) or a face leaving the frame also
  triggers detection: landmarks alone cannot tell a face from the background they are fitted to.
* **Models** (CNN embedding + emotion, AU SVMs/SVRs) are called on batches of faces from several
  frames in a second thread: onnxruntime releases the GIL, so the CNN overlaps the next frames'
  landmarks and HOG. Models are those of the caller's :class:`~aulib.analyzer.Analyzer`, loaded
  once.
* **HOG**: :class:`~aulib.face.hog.HogExtractor` normalises all blocks in one vectorised step
  (≈0.6 ms per face instead of scikit-image's ≈3.5 ms Python loop).

Per-person calibration (``calibrate``) follows OpenFace: features − the person's neutral estimate
(the median of that face's feature vectors over its least expressive frames, see
:class:`NeutralCalibrator`) + the population mean the AU models were trained around
(``bank.mean_``), so a person whose resting face happens to look like "brows lowered" to a
population model is not reported as frowning all video long. ``"video"`` (= ``True``) is the
offline two-pass version (estimate from the whole video, then every frame re-scored; keeps the
7,500 features per face-frame, ≈30 kB, plus that frame's row, ≈2 kB, until the end: ≈1 GB per
10 minutes of 30 fps video with one face); ``"running"`` is causal (estimate from the last 300
frames, constant memory, usable live).

Rows leave as they are produced: :func:`iter_video_rows` yields them in chunks of about
:data:`CHUNK_ROWS` rows (frame order) as soon as the models have scored those frames, so the
batch runner appends them to the output while the video is still decoding and memory stays flat
on long videos. Only two-pass calibration holds its rows back to the end (see above).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from aulib.face import Face
from aulib.results import empty_row, face_row
from aulib.track import FaceTracker, Track

# A tracked face whose landmark fit is worse than this (rigid-point RMS error in crop units; the
# pipeline rejects faces above 0.1, real frontal faces sit around 0.02–0.05) is re-detected.
REDETECT_FIT_ERROR = 0.07
DEFAULT_DETECT_EVERY = 10
# Scene cut: mean absolute difference of consecutive 32×18 thumbnails (0–255 scale) above which the
# detector runs now. dlib's predictor fits a plausible mean face into *any* box, with a low fit
# error, so without this a track survived a cut to a black frame or sky in face_noface.mov for the
# rest of the detection interval. Measured: within a shot ≤ 4.6 (WolfgangLanger_Pexels.mp4, a
# moving speaker), at the cuts of face_noface.mov 97–145.
SCENE_CUT = 20.0
# Faces per batched model call: large enough to amortise onnxruntime call overhead, small enough
# to keep the model thread close behind the face thread.
BATCH_FACES = 16
# Rows per chunk handed out by iter_video_rows: a few seconds of video per append/fsync.
CHUNK_ROWS = 256

Calibration = Literal["video", "running"] | bool


class VideoReadError(ValueError):
    """The file cannot be opened as a video at all; the message starts with the path."""


# ---------------------------------------------------------------------------------- HOG
# ---------------------------------------------------------------------------------- decoding
@dataclass
class VideoFrame:
    """One decoded frame: index in the file (0-based, every decoded frame counts), time in
    seconds from the stream start (container timestamps), RGB pixels."""

    index: int
    time: float
    image: np.ndarray


@dataclass
class DecodeStats:
    """What the reader saw; ``error`` is empty when the whole stream decoded cleanly."""

    decoded: int = 0
    selected: int = 0
    declared: int = 0
    rate: float = 0.0
    seconds: float = 0.0
    error: str = ""
    last_time: float = 0.0


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a frame's display rotation (degrees counter-clockwise, PyAV ``frame.rotation``).

    Phone videos are stored sideways with a display matrix; like EXIF orientation for photos
    (:func:`aulib.io.read_image`), it is applied so faces are upright for the detector and
    landmarks are reported in the orientation a player shows.
    """
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


class FrameReader:
    """Selected RGB frames of a video, decoded in a background thread.

    ``every``: keep every N-th decoded frame; ``fps``: keep at most F frames per second of video
    (the first frame of each 1/F-second slot, by timestamp); ``max_frames``: stop after that many
    kept frames. Decoding errors never raise: frames decoded before the error are yielded and the
    problem is reported in ``stats.error`` (also when the file simply ends early: a truncated
    download decodes without an error but ends before the duration the container declares).
    """

    def __init__(self, path: str | Path, every: int = 1, fps: float | None = None,
                 max_frames: int | None = None, threaded: bool = True, queue_size: int = 8) -> None:
        if every < 1:
            raise ValueError("every must be ≥ 1")
        if fps is not None and fps <= 0:
            raise ValueError("fps must be > 0")
        self.path = Path(path)
        self.every, self.fps, self.max_frames = every, fps, max_frames
        self.threaded = threaded
        self.stats = DecodeStats()
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._open()

    def _open(self) -> None:
        import av

        p = self.path
        if not p.exists():
            raise VideoReadError(f"{p}: no such file")
        if p.stat().st_size == 0:
            raise VideoReadError(f"{p}: empty file (0 bytes)")
        try:
            self._container = av.open(str(p))
        except Exception as e:  # PyAV raises FFmpegError subclasses and OSError
            raise VideoReadError(f"{p}: cannot open as video — truncated, corrupt or not a video ({e})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoReadError(f"{p}: no video stream")
        s = self._container.streams.video[0]
        s.thread_type = "SLICE"  # frame threads cost more than they save on 2 busy cores (measured)
        self._stream = s
        self.stats.declared = int(s.frames or 0)
        self.stats.rate = float(s.average_rate or s.guessed_rate or 0.0)
        self._tb = float(s.time_base) if s.time_base else 0.0
        self._start = int(s.start_time) if s.start_time is not None else None
        self._duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0

    @property
    def output_rate(self) -> Fraction:
        """Frame rate of the kept frames (for writing an overlay video)."""
        base = Fraction(self._stream.average_rate or self._stream.guessed_rate or 30).limit_denominator(100000)
        rate = base / self.every
        if self.fps is not None:
            rate = min(rate, Fraction(self.fps).limit_denominator(1000))
        return rate

    def _time(self, frame: Any, index: int) -> float:
        if frame.pts is not None and self._tb:
            start = self._start if self._start is not None else 0
            return (frame.pts - start) * self._tb
        return index / self.stats.rate if self.stats.rate else float(index)

    def _frames(self) -> Iterator[VideoFrame]:
        """Decode and select (runs in the decode thread when threaded)."""
        st = self.stats
        slot = -1
        it = self._container.decode(self._stream)
        t0 = time.perf_counter()
        try:
            for frame in it:
                index = st.decoded
                st.decoded += 1
                t = self._time(frame, index)
                st.last_time = t
                keep = index % self.every == 0
                if keep and self.fps is not None:
                    s = int(np.floor(t * self.fps + 1e-6))
                    keep = s > slot
                    if keep:
                        slot = s
                if keep:
                    img = upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
                    st.selected += 1
                    st.seconds += time.perf_counter() - t0
                    yield VideoFrame(index, t, img)
                    t0 = time.perf_counter()
                    if self.max_frames is not None and st.selected >= self.max_frames:
                        return
                if self._stop.is_set():
                    return
        except Exception as e:  # corrupt packets surface as av.error.InvalidDataError etc.
            st.error = (f"{self.path}: video truncated or corrupt after frame {st.decoded - 1} "
                        f"({type(e).__name__}: {e})")
        else:
            step = 1.0 / st.rate if st.rate else 0.0
            if st.decoded == 0:
                st.error = f"{self.path}: no decodable video frames"
            elif (st.declared and st.decoded < st.declared and self._duration
                  and self._duration - st.last_time > 3 * step):
                st.error = (f"{self.path}: video truncated: decoded {st.decoded} of {st.declared} frames "
                            f"(stream ends at {st.last_time:.2f} s of {self._duration:.2f} s)")
        finally:
            st.seconds += time.perf_counter() - t0

    def _produce(self) -> None:
        try:
            for vf in self._frames():
                while not self._stop.is_set():
                    try:
                        self._q.put(vf, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
        except BaseException as e:  # pragma: no cover - defensive: never leave the consumer hanging
            self.stats.error = self.stats.error or f"{self.path}: decoder failed ({e})"
        finally:
            self._q.put(None)

    def __iter__(self) -> Iterator[VideoFrame]:
        if not self.threaded:
            try:
                yield from self._frames()
            finally:
                self.close()
            return
        th = threading.Thread(target=self._produce, name=f"decode:{self.path.name}", daemon=True)
        th.start()
        try:
            while True:
                vf = self._q.get()
                if vf is None:
                    break
                yield vf
        finally:
            self._stop.set()
            while th.is_alive():  # drain so a blocked producer can finish
                try:
                    self._q.get(timeout=0.05)
                except queue.Empty:
                    pass
            th.join()
            self.close()

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:  # pragma: no cover - closing a broken container must not mask results
            pass


# ---------------------------------------------------------------------------------- calibration
class NeutralCalibrator:
    """Per-person feature normalisation: ``X − neutral(face id) + population mean``.

    The neutral estimate is the element-wise median of that face's feature vectors over its
    *least expressive* frames: the ``rest_fraction`` of frames with the lowest uncalibrated AU
    intensity sum (``scores``). OpenFace takes the median over all frames, which assumes people
    are at rest most of the time; in the samples they are not (single_face.mp4 smiles for 75 % of
    the clip), and subtracting a smile turns the resting frames into "anti-smiles" (AU09/AU05 up).
    ``rest_fraction=1`` gives the plain OpenFace median.

    ``mode="video"``: :meth:`video_offsets` on all vectors at once (two-pass). ``mode="running"``:
    :meth:`running` keeps the last ``window`` vectors of each face, refreshes the estimate every
    ``refresh`` frames and leaves the first ``min_samples`` frames uncalibrated.
    """

    def __init__(self, mean: np.ndarray, mode: Literal["video", "running"] = "video", window: int = 300,
                 refresh: int = 10, min_samples: int = 10, rest_fraction: float = 0.3) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.mode = mode
        self.window, self.refresh, self.min_samples = window, refresh, min_samples
        self.rest_fraction = rest_fraction
        self._buf: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}
        self._n: dict[int, int] = {}
        self._neutral: dict[int, np.ndarray] = {}

    def neutral(self, X: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Median of the rows of ``X`` whose ``scores`` are in the lowest ``rest_fraction``."""
        if scores is None or self.rest_fraction >= 1 or len(X) < 3:
            return np.median(X, axis=0)
        k = max(min(len(X), self.min_samples // 2 or 1), int(np.ceil(self.rest_fraction * len(X))))
        idx = np.argsort(scores, kind="stable")[:k]
        return np.median(X[idx], axis=0)

    def running(self, X: np.ndarray, ids: list[int], scores: np.ndarray | None = None) -> np.ndarray:
        """Calibrate rows of ``X`` (one per face, ids given) with the estimate from past frames."""
        out = X.copy()
        sc = np.zeros(len(X), np.float32) if scores is None else np.asarray(scores, np.float32)
        for j, tid in enumerate(ids):
            buf = self._buf.get(tid)
            if buf is None:
                buf = self._buf[tid] = np.empty((self.window, X.shape[1]), np.float32)
                self._scores[tid] = np.empty(self.window, np.float32)
                self._n[tid] = 0
            n = self._n[tid]
            buf[n % self.window] = X[j]
            self._scores[tid][n % self.window] = sc[j]
            n = self._n[tid] = n + 1
            if n >= self.min_samples:
                if tid not in self._neutral or n % self.refresh == 0:
                    m = min(n, self.window)
                    self._neutral[tid] = self.neutral(buf[:m], None if scores is None else self._scores[tid][:m])
                out[j] = X[j] - self._neutral[tid] + self.mean
        return out

    def video_offsets(self, X: np.ndarray, ids: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Two-pass: ``X`` calibrated with each face's neutral estimate over the whole video."""
        out = np.empty_like(X)
        for tid in np.unique(ids):
            m = ids == tid
            out[m] = X[m] - self.neutral(X[m], None if scores is None else scores[m]) + self.mean
        return out


# ---------------------------------------------------------------------------------- overlay
class OverlayWriter:
    """Annotated copy of the analysed frames (box, 68 points, face id, emotion, top AUs) as video.

    H.264 (libx264) when FFmpeg has it, MPEG-4 part 2 otherwise; yuv420p needs even sizes, so an
    odd last row/column is dropped.
    """

    def __init__(self, path: str | Path, rate: Fraction) -> None:
        self.path = Path(path)
        self.rate = rate
        self._out: Any = None
        self._stream: Any = None
        self.error = ""  # why the overlay could not be written; the analysis goes on without it

    def _start(self, w: int, h: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._out.add_stream(codec, rate=self.rate)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"preset": "veryfast", "crf": "23"}

    def write(self, image: np.ndarray, faces: list[Face], ids: list[int], preds: list[dict]) -> None:
        """Add one annotated frame; a failure (unwritable folder, unknown container) is kept in
        :attr:`error` and ends the overlay, never the analysis."""
        if self.error:
            return
        try:
            self._write(image, faces, ids, preds)
        except Exception as e:  # the table matters more than its illustration
            self.error = f"{self.path}: overlay not written ({type(e).__name__}: {e})"
            self._abandon()

    def _abandon(self) -> None:
        try:
            if self._out is not None:
                self._out.close()
        except Exception:  # pragma: no cover - closing a half-open container
            pass
        self._out = None

    def _write(self, image: np.ndarray, faces: list[Face], ids: list[int], preds: list[dict]) -> None:
        import av

        from aulib.faces_table import draw_faces

        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        if self._out is None:
            self._start(w, h)
        labels = []
        for tid, p in zip(ids, preds):
            emo = p.get("emotion")
            labels.append(f"#{tid}" + (f" {emo}" if isinstance(emo, str) else ""))
        img = draw_faces(image, faces, labels)
        scale = max(1.0, max(image.shape[:2]) / 800)
        for f, p in zip(faces, preds):
            top = sorted(((v, k[:-2]) for k, v in p.items() if k.endswith("_r") and np.isfinite(v)), reverse=True)[:3]
            if not top:
                continue
            x, y, bw, bh = (int(round(v)) for v in f.box)
            text = " ".join(f"{k} {v:.1f}" for v, k in top)
            cv2.putText(img, text, (x, min(image.shape[0] - 4, y + bh + int(16 * scale))),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (255, 255, 0), max(1, int(scale)))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def close(self) -> None:
        if self._out is not None and not self.error:
            try:
                for packet in self._stream.encode():
                    self._out.mux(packet)
                self._out.close()
            except Exception as e:
                self.error = f"{self.path}: overlay not written ({type(e).__name__}: {e})"
            self._out = None


# ---------------------------------------------------------------------------------- analysis
def _scale(m: np.ndarray) -> float:
    """Crop pixels per image pixel of a 2×3 similarity transform."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def _to_crop(m: np.ndarray, box: Any) -> tuple[float, float, float, float]:
    """(x, y, w, h) image box → (centre x, centre y, w, h) in the aligned crop's coordinates."""
    x, y, bw, bh = (float(v) for v in box)
    cx, cy = m @ np.array([x + bw / 2, y + bh / 2, 1.0])
    s = _scale(m)
    return float(cx), float(cy), bw * s, bh * s


def _from_crop(m: np.ndarray, anchor: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Inverse of :func:`_to_crop` under another frame's transform: the axis-aligned image box."""
    a = m[:, :2]
    cx, cy = np.linalg.solve(a, np.array(anchor[:2]) - m[:, 2])
    s = _scale(m)
    bw, bh = anchor[2] / s, anchor[3] / s
    return float(cx - bw / 2), float(cy - bh / 2), bw, bh


@dataclass
class _FrameFaces:
    index: int
    time: float
    faces: list[Face]
    ids: list[int]
    image: np.ndarray | None = None
    rows: list[dict] = field(default_factory=list)
    done: bool = False  # set by the model stage once ``rows`` are final


class VideoAnalysis:
    """State of one video's analysis: tracker, detection cadence, model batches, calibration.

    Feed frames with :meth:`add` (face stage, caller's thread); model work happens in
    :meth:`_models` (its own thread when ``threaded``); :meth:`ready` hands out the rows of the
    frames scored so far, :meth:`finish` the remaining ones, all in frame order. Usable for live
    streams too: ``add`` one frame at a time with ``calibrate="running"``.
    """

    def __init__(self, analyzer: Any, input_name: str, calibrate: Calibration = False,
                 detect_every: int = DEFAULT_DETECT_EVERY, overlay: OverlayWriter | None = None,
                 threaded: bool = True, batch_faces: int = BATCH_FACES) -> None:
        self.a = analyzer
        self.pipeline = analyzer.pipeline
        self.name = input_name
        self.detect_every = max(1, int(detect_every))
        mode = "video" if calibrate is True else calibrate
        if mode not in (False, None, "video", "running"):
            raise ValueError(f"calibrate must be False, True, 'video' or 'running', not {calibrate!r}")
        self.calibrator = NeutralCalibrator(analyzer.occurrence.mean_, mode) if mode else None
        self.overlay = overlay
        self.tracker = FaceTracker(max_missed=max(60, 3 * self.detect_every))
        self.batch_faces = batch_faces
        self.frames: deque[_FrameFaces] = deque()  # frames whose rows were not handed out yet
        self._pending: list[_FrameFaces] = []
        self._since_detect = self.detect_every
        self._need_detect = True
        self._prev = -1
        self._thumb: np.ndarray | None = None
        self.n_detect = 0
        self.n_redetect = 0
        # two-pass calibration keeps the feature matrices and the rows they belong to
        self._X: list[np.ndarray] = []
        self._emo: list[np.ndarray] = []
        self._mt: list[np.ndarray] = []
        self._ids: list[int] = []
        self._scores: list[np.ndarray] = []
        self._rowrefs: list[dict] = []
        self.threaded = threaded
        self._q: queue.Queue | None = None
        self._err: BaseException | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._q = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._model_loop, name=f"models:{input_name}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ face stage
    def _detect(self, image: np.ndarray, index: int) -> tuple[list[Face], list[int]]:
        self.n_detect += 1
        self._since_detect = 0
        dets = self.pipeline.detect(image)
        boxes = [d.landmark_box() for d in dets]
        faces = [self.pipeline.from_box(image, b, d.score, display_box=d.as_array()) for b, d in zip(boxes, dets)]
        ids = self.tracker.assign([d.as_array() for d in dets], index)
        for f, tid, box in zip(faces, ids, boxes):
            t = self.tracker.update(tid, f.box, f.landmarks if f.success else None, f.score, index)
            t.extra.clear()
            if f.success:
                # Both boxes in the face's own (aligned crop) coordinates: they then move and scale
                # with the rigid landmarks (eyes, nose) in later frames, see _follow.
                m = f.extra["matrix"]
                t.extra.update(fit=_to_crop(m, box), shown=_to_crop(m, f.box), matrix=m)
        self._need_detect = any(not f.success for f in faces)
        return faces, ids

    def _follow(self, image: np.ndarray, index: int, tracks: list[Track]) -> tuple[list[Face], list[int]] | None:
        """Fit each tracked face in the box its previous frame predicts, or None (→ detect)."""
        faces = []
        h, w = image.shape[:2]
        for t in tracks:
            m = t.extra["matrix"]
            box = _from_crop(m, t.extra["fit"])
            shown = np.asarray(_from_crop(m, t.extra["shown"]), np.float32)
            if not (0 <= box[0] + box[2] / 2 < w and 0 <= box[1] + box[3] / 2 < h):  # leaving the frame
                return None
            f = self.pipeline.from_box(image, box, t.score, display_box=shown)
            if not f.success or f.fit_error > REDETECT_FIT_ERROR:
                return None
            faces.append(f)
        for f, t in zip(faces, tracks):
            self.tracker.update(t.id, f.box, f.landmarks, t.score, index)
            t.extra["matrix"] = f.extra["matrix"]
        return faces, [t.id for t in tracks]

    def add(self, vf: VideoFrame) -> None:
        """Find and describe the faces of one frame, queue them for the models."""
        self._raise()
        result = None
        tracks = self.tracker.active(self._prev)
        thumb = cv2.resize(vf.image, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)
        cut = self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) > SCENE_CUT
        self._thumb = thumb
        if not self._need_detect and not cut and tracks and self._since_detect < self.detect_every:
            result = self._follow(vf.image, vf.index, tracks)
            if result is None:
                self.n_redetect += 1
        if result is None:
            result = self._detect(vf.image, vf.index)
        self._since_detect += 1
        self._prev = vf.index
        faces, ids = result
        order = np.argsort(ids, kind="stable")
        ff = _FrameFaces(vf.index, vf.time, [faces[i] for i in order], [ids[i] for i in order],
                         vf.image if self.overlay is not None else None)
        self.frames.append(ff)
        self._pending.append(ff)
        if sum(len(p.faces) for p in self._pending) >= self.batch_faces:
            self._flush()

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
        ok = [(ff, k) for ff in batch for k, f in enumerate(ff.faces) if f.success]
        preds: dict[tuple[int, int], dict] = {}
        if ok:
            X, emo, mt = self.a.features([ff.faces[k] for ff, k in ok])
            ids = [ff.ids[k] for ff, k in ok]
            cal = self.calibrator
            # how expressive each face is before calibration: picks the frames that define "neutral"
            scores = self.a.intensity.predict(X).sum(axis=1) if cal is not None else None
            if cal is not None and cal.mode == "video":
                self._X.append(X)
                self._emo.append(emo)
                self._scores.append(scores)
                if mt is not None:
                    self._mt.append(mt)
                self._ids.extend(ids)
            if cal is None or cal.mode == "video":
                need = cal is None or self.overlay is not None
                rows = self.a.predict_from_features(X, emo, mt) if need else [{} for _ in ok]
            else:
                rows = self.a.predict_from_features(cal.running(X, ids, scores), emo, mt)
            for (ff, k), r in zip(ok, rows):
                preds[(ff.index, k)] = r
        for ff in batch:
            if not ff.faces:
                ff.rows = [empty_row(self.name, "no face detected", ff.index, ff.time)]
            else:
                ff.rows = [face_row(self.name, ff.index, ff.time, tid, f, preds.get((ff.index, k), {}))
                           for k, (f, tid) in enumerate(zip(ff.faces, ff.ids))]
            if self.calibrator is not None and self.calibrator.mode == "video":
                self._rowrefs.extend(r for r, f in zip(ff.rows, ff.faces) if f.success)
            if self.overlay is not None and ff.image is not None:
                self.overlay.write(ff.image, ff.faces, ff.ids, [preds.get((ff.index, k), {})
                                                                 for k in range(len(ff.faces))])
            ff.image, ff.faces = None, []  # crops and HOG are ~100 kB per face: keep only the rows
            ff.done = True

    def ready(self) -> list[dict]:
        """Rows of the leading frames the models have finished, in frame order, handed out once.

        Empty with two-pass calibration: its rows change at :meth:`finish`.
        """
        self._raise()
        if self.calibrator is not None and self.calibrator.mode == "video":
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
        if self.overlay is not None:
            self.overlay.close()
        if self.calibrator is not None and self.calibrator.mode == "video" and self._X:
            X = self.calibrator.video_offsets(np.concatenate(self._X), np.asarray(self._ids),
                                              np.concatenate(self._scores))
            emo = np.concatenate(self._emo)
            mt = np.concatenate(self._mt) if self._mt else None
            for row, pred in zip(self._rowrefs, self.a.predict_from_features(X, emo, mt)):
                row.update(pred)
        rows = [r for ff in self.frames for r in ff.rows]
        self.frames.clear()
        return rows

    def close(self) -> None:
        """Stop the model thread without results (after an error in the caller)."""
        if self._thread is not None and self._q is not None:
            while True:  # drop queued batches so the stop signal fits (we are the only producer)
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break
            self._q.put(None)
            self._thread = None


def analyze_video_rows(
    analyzer: Any, path: str | Path, every: int = 1, fps: float | None = None, calibrate: Calibration = False,
    overlay: str | Path | None = None, detect_every: int = DEFAULT_DETECT_EVERY,
    progress: Callable[[int, int], None] | None = None, max_frames: int | None = None,
    stats: dict | None = None, threaded: bool = True,
) -> list[dict]:
    """Rows for every kept frame of a video: one per face, or one ``success=0`` row per faceless frame.

    ``every``/``fps`` subsample (``frame`` stays the index in the file, ``timestamp`` the
    container time in seconds); ``detect_every=1`` runs the detector on every frame (slowest, same
    faces as :meth:`Analyzer.analyze_frame`). ``overlay``: path of an annotated .mp4 to write.
    ``progress(done, total)`` is called per frame (``total`` = frames the container declares,
    0 if unknown). ``stats`` (a dict) receives decode/detection counters for benchmarking.
    With ``calibrate=True``/``"video"`` the overlay shows uncalibrated predictions (it is written
    during the first pass); ``"running"`` overlays what the table says.
    A file that cannot be opened gives one error row; a stream that breaks off keeps the frames
    decoded so far and adds a ``success=0`` row whose ``error`` says what happened.
    All rows at once; :func:`iter_video_rows` hands them out in chunks as they are produced.
    """
    return [r for chunk in iter_video_rows(analyzer, path, every, fps, calibrate, overlay, detect_every, progress,
                                           max_frames, stats, threaded) for r in chunk]


def iter_video_rows(
    analyzer: Any, path: str | Path, every: int = 1, fps: float | None = None, calibrate: Calibration = False,
    overlay: str | Path | None = None, detect_every: int = DEFAULT_DETECT_EVERY,
    progress: Callable[[int, int], None] | None = None, max_frames: int | None = None,
    stats: dict | None = None, threaded: bool = True, chunk_rows: int = CHUNK_ROWS,
) -> Iterator[list[dict]]:
    """The rows of :func:`analyze_video_rows`, in frame order, in lists of about ``chunk_rows``
    rows yielded as soon as the models have scored them: memory stays flat on long videos
    (except with two-pass calibration, whose rows all come at the end).

    ``stats`` also receives ``overlay_error`` (empty, or why the overlay could not be written:
    the analysis carries on without it).
    """
    name = str(path)
    try:
        reader = FrameReader(path, every, fps, max_frames, threaded=threaded)
    except VideoReadError as e:
        if stats is not None:
            stats.update(overlay_error="", error=str(e))
        yield [empty_row(name, str(e))]
        return
    writer = OverlayWriter(overlay, reader.output_rate) if overlay is not None else None
    va = VideoAnalysis(analyzer, name, calibrate, detect_every, writer, threaded=threaded)
    total = -(-reader.stats.declared // every) if reader.stats.declared else 0
    frames = iter(reader)
    pending: list[dict] = []
    # One BLAS thread: the AU models' products are tiny ((16, 7500) @ (7500, 17)), and a second
    # OpenBLAS thread on a busy machine made each call wait for a descheduled worker (85 ms
    # per call measured instead of 0.05 ms).
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for n, vf in enumerate(frames, 1):
                va.add(vf)
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
        pending.append(empty_row(name, st.error, st.decoded, st.last_time + step if st.decoded else 0.0))
    if stats is not None:
        stats.update(decoded=st.decoded, frames=st.selected, decode_s=st.seconds, detections=va.n_detect,
                     redetections=va.n_redetect, error=st.error, overlay_error=writer.error if writer else "")
    if pending:
        yield pending
