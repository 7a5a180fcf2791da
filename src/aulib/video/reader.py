"""Video decoding: selected RGB frames of a file, in a background thread, with honest error reports.

Decoding (PyAV; ≈0.75 ms CPU per 640×360 frame including RGB conversion) runs in a background
thread that hands RGB frames over a bounded queue; FFmpeg releases the GIL, so it overlaps the
analysis. Slice threads only: frame threads cost more than they saved on two busy cores. Frames
that ``every``/``fps`` drop are never converted to RGB.

Sources: a local path (opened by FFmpeg itself, as before), a URL fsspec understands (``s3://…``,
``https://…``) or an open binary file object. A URL is streamed: PyAV reads through the fsspec
file object, which fetches byte ranges as FFmpeg asks (an MP4 whose index sits at the end costs
one extra ranged read, not a download). Only a stream that cannot seek at all is first copied to
a bounded temporary file (:func:`aulib.storage.temp_copy`), removed when the reader closes.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import numbers
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from aulib import background
from aulib.io import check_regular_file
from aulib.storage import Source, is_seekable, is_url, open_input, redact, temp_copy

# Corrupt packets in a row after which the rest of a file is taken for garbage (a real video's damaged
# spot spans a few packets; a file that is noise from some point on fails every one of thousands).
MAX_BAD_PACKETS = 100
# Frames a damaged stream's decoder may hand over out of presentation order, put back in order (it
# delays each frame by this many: nothing for a clip of a few frames, 4 frames' memory otherwise).
REORDER_FRAMES = 4
# Frames stamped with the time just given (a muxer that stamped a clip's first frames alike) wait for the clock's
# next time and are spaced evenly up to it. They are held decoded, so at most this many, and at most this much
# memory (4 frames of an 8K clip). A clip whose clock is still where it started past them is timed by frame number.
REPEAT_FRAMES = 32
REPEAT_BYTES = 256 * 2**20


def _one_thread_reformat() -> bool:
    """Whether this PyAV's ``VideoFrame.reformat`` takes ``threads`` (PyAV 14 and later)."""
    import inspect

    from av.video.frame import VideoFrame

    try:
        return "threads" in inspect.signature(VideoFrame.reformat).parameters
    except (TypeError, ValueError):  # a compiled method without a signature: read its docstring
        return "threads" in (VideoFrame.reformat.__doc__ or "")


_ONE_THREAD: bool | None = None


def rgb(frame: Any) -> np.ndarray:
    """A decoded frame as an (H, W, 3) uint8 RGB array.

    swscale is asked for its area filter: for a conversion that keeps the size it gives the very pixels of
    PyAV's default (bicubic) — checked on yuv420p, yuv444p, yuvj420p/422p, 10-bit yuv420p, gray, gray16 and
    bgr0 streams (``tests/test_video.py``) — in half the time. It is also asked for one thread: PyAV 18
    leaves swscale's thread count to FFmpeg, which slices a 640×360 frame over every core and spends more
    on waking and joining them than on the conversion (2.0 ms → 0.29 ms per frame wall, 1.2 → 0.2 ms CPU,
    on a 2-core machine; the same pixels). Point sampling is as fast but rounds 10-bit video differently.
    """
    global _ONE_THREAD
    if _ONE_THREAD is None:
        _ONE_THREAD = _one_thread_reformat()
    fmt = "rgba" if _has_alpha(frame) else "rgb24"
    if _ONE_THREAD:
        a = frame.reformat(format=fmt, interpolation="AREA", threads=1).to_ndarray()
    else:
        a = frame.to_ndarray(format=fmt, interpolation="AREA")
    if fmt == "rgba":
        # composited on white, as an image with alpha is (aulib.io): the transparent parts of a PNG-in-MOV or
        # ProRes 4444 clip showed whatever colour they stored, often black
        from aulib.io import composite_on_white

        return composite_on_white(a[:, :, :3], a[:, :, 3])
    return a


_ALPHA_FORMATS: dict[str, bool] = {}


def _has_alpha(frame: Any) -> bool:
    """Whether the frame's pixel format carries an alpha plane (yuva420p, rgba, ya8, gbrap …); asked once per
    format (a frame's format object is made anew on each access)."""
    fmt = frame.format
    name = fmt.name
    known = _ALPHA_FORMATS.get(name)
    if known is None:
        try:
            known = any(c.is_alpha for c in fmt.components)
        except AttributeError:  # a PyAV without component flags: read opaque, as before
            known = False
        _ALPHA_FORMATS[name] = known
    return known


def _video_duration(container: Any, stream: Any) -> float:
    """Seconds the container declares for the video stream (0.0 when it declares none): the stream's
    own duration (MP4, MOV), else Matroska/WebM's per-track ``DURATION`` tag, else the container's
    duration when the file holds no other stream (it could be an audio track's, which may run longer)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION", "")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        pass
    if len(container.streams) == 1 and container.duration:
        return container.duration / 1e6  # AV_TIME_BASE units
    return 0.0


# Frame rates above this are a muxer's time base, not a rate (a Matroska file written without timing
# declared 24000 fps for 23.976 fps video); the decoder's guess is taken instead.
MAX_RATE = 2000


# FFmpeg demuxers of bare elementary streams: no timestamps, a default rate of 25 fps (their -framerate option).
RAW_STREAM_FORMATS = frozenset({"h264", "hevc", "vvc", "m4v", "mpegvideo", "cavsvideo", "obu", "dirac", "mjpeg"})


def _frame_rate(stream: Any) -> Fraction | None:
    """The stream's frames per second: its average rate, or FFmpeg's guess when that is missing or
    implausible (:data:`MAX_RATE`); None when neither is known. A rate that is just the time base's
    resolution (1000 for Matroska's 1 ms ticks: a browser's MediaRecorder WebM declares no rate) is no
    rate, whether guessed or declared: such a clip was read as 1000 fps (a 1 s clip's overlay lasted 0.03 s,
    its frame numbers were milliseconds), and a whole variable-rate clip copied into Matroska with a 1 ms
    default duration was reported truncated, "frames 72–3339 of about 3340 not read". A bare elementary
    stream (``.h264``, ``.hevc``, ``.m4v``…) has no container timestamps and FFmpeg's demuxer declares 25 fps
    for it whatever it holds: the rate the stream itself declares (its codec's timing information) comes
    first there — a 30 fps ``.h264`` read 20 % too long."""
    tick = 1 / stream.time_base if stream.time_base else None
    candidates = [stream.average_rate, stream.guessed_rate]
    try:
        if stream.container.format.name in RAW_STREAM_FORMATS:
            candidates.insert(0, stream.codec_context.framerate)
    except AttributeError:  # a stream PyAV does not tie to its container
        pass
    for rate in candidates:
        if rate and 0 < rate <= MAX_RATE and not (tick is not None and rate == tick and rate >= 1000):
            return Fraction(rate)
    return None


class VideoReadError(ValueError):
    """The file cannot be opened as a video at all; the message starts with the path."""



@dataclass
class VideoFrame:
    """One decoded frame: index in the file (0-based, every decoded frame counts), time in
    seconds on the file's clock (container timestamps, see :attr:`DecodeStats.offset`), RGB pixels."""

    index: int
    time: float
    image: np.ndarray
    prepared: Any = None  # what the reader's ``prepare`` made of the image, in the decode thread


@dataclass
class DecodeStats:
    """What the reader saw; ``error`` is empty when the whole stream decoded cleanly."""

    decoded: int = 0
    selected: int = 0
    declared: int = 0
    # frames to expect: ``declared``, or duration × rate for containers that declare no count
    # (Matroska/WebM); only for progress bars, never for truncation checks
    expected: int = 0
    rate: float = 0.0
    seconds: float = 0.0
    error: str = ""
    last_time: float = 0.0
    lost: int = 0  # frames lost in corrupt packets: the file's frames are ``decoded + lost``
    # what a user should know that is no damage: the file's other video streams, left unread
    note: str = ""
    # seconds from the file's start to the video stream's (its audio starts first): added to every frame's time
    offset: float = 0.0


def _is_cover(stream: Any) -> bool:
    """An attached picture (an audio file's cover art, a thumbnail) rather than a moving picture."""
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


RATE_FRAMES = 8  # frames whose times estimate the rate of a clip that declares none


def _file_version(path: object) -> tuple[int, int, int, int] | None:
    """Size, modification and change times and inode of a local file (None for a URL, a file object, or a file
    that cannot be stat'ed): what changes when it is written to or replaced."""
    if not isinstance(path, Path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _rate_from(times: list[float], t: float, first: int = RATE_FRAMES) -> float:
    """Frames per second estimated from the first ``first`` frame times (``t`` appended to ``times``): the
    median step, robust to a recorder's jittered timestamps; 0.0 until there are enough."""
    times.append(t)
    if len(times) < first:
        return 0.0
    steps = np.diff(np.asarray(times))
    step = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.0
    return 1.0 / step if step > 0 and 1.0 / step <= MAX_RATE else 0.0


def main_video_stream(container: Any) -> Any:
    """The container's main picture: the largest moving video stream (the first of equals) — not a
    thumbnail track listed first (its rows were all "no face"), nor an audio file's cover art (read as a
    one-frame "truncated" video). A string saying why there is none otherwise."""
    moving = [v for v in container.streams.video if not _is_cover(v)]
    if not moving:
        return "no video stream" + (" (only a cover picture)" if container.streams.video else "")
    # a stream FFmpeg has no decoder for has no codec context: it failed as "analysis failed (AttributeError: …)",
    # even in a file whose other video stream decodes
    decodable = [v for v in moving if v.codec_context is not None]
    if not decodable:
        return ("its video is in a format FFmpeg cannot decode (no decoder for its codec): convert it, e.g. "
                "ffmpeg -i IN -c:v libx264 OUT.mp4")
    moving = decodable
    import av

    # a one-frame still track is not the clip when there is a moving one (a still thumbnail listed first gave
    # one row for a 72-frame clip, without a word)
    moving = [v for v in moving if int(v.frames or 0) != 1] or moving
    # The streams flagged "default" first (a multi-angle file's main view, not a larger depth or IR track) — but
    # not a small one: FFmpeg's MP4 writer flags the first track of each kind, so a thumbnail track listed first
    # was analysed instead of the clip (face boxes in thumbnail pixels, the blink moved)
    largest = max(_pixels(v) for v in moving)
    default = [v for v in moving if v.disposition & av.stream.Disposition.default and 4 * _pixels(v) >= largest]
    return max(default if 0 < len(default) < len(moving) else moving, key=_pixels)


def _pixels(stream: Any) -> int:
    return int(stream.codec_context.width or 0) * int(stream.codec_context.height or 0)


def _sample_aspect(stream: Any) -> Fraction | None:
    """The stream's pixel aspect (width / height of one stored pixel) when it is not square and plausible;
    None for square, undeclared (0) or nonsense values."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and 0.2 < sar < 5 and sar != 1 else None


def display_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """The size a player shows a ``width`` × ``height`` frame of pixel aspect ``sar`` at: widened (sar > 1)
    or heightened (sar < 1), so no stored pixel is dropped."""
    if sar is None:
        return width, height
    return (max(1, round(width * sar)), height) if sar > 1 else (width, max(1, round(height / sar)))


def square_pixels(image: np.ndarray, sar: Fraction) -> np.ndarray:
    """A frame of non-square pixels (sample aspect ratio ``sar``) resampled to square ones
    (:func:`display_size`)."""
    import cv2

    return cv2.resize(image, display_size(image.shape[1], image.shape[0], sar), interpolation=cv2.INTER_LINEAR)


def upright(image: np.ndarray, rotation: float, matrix: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Apply a frame's display rotation (degrees counter-clockwise, PyAV ``frame.rotation``), or its display
    ``matrix`` (:func:`display_matrix`) when it has one, which also says whether the picture is mirrored.

    Phone videos are stored sideways with a display matrix; like EXIF orientation for photos
    (:func:`aulib.io.read_image`), it is applied so faces are upright for the detector and
    landmarks are reported in the orientation a player shows. A matrix that mirrors the picture (a
    front camera's "mirror" setting, an editor's flip) is applied as FFmpeg's player applies it: PyAV's
    ``rotation`` alone calls a horizontal flip a 180° turn, so such a face was analysed upside down, at
    confidence 0.98 with its head roll at 177°.
    """
    if matrix is not None:
        a, b, c, d = matrix  # displayed x' = a·x + c·y, y' = b·x + d·y (FFmpeg's row-vector convention)
        out = image
        if a == 0 and d == 0:  # a quarter turn: the axes swap (x' follows the source's y, sign c; y' its x, sign b)
            out = np.swapaxes(out, 0, 1)
            if b < 0:
                out = out[::-1]
            if c < 0:
                out = out[:, ::-1]
        else:
            if a < 0:
                out = out[:, ::-1]
            if d < 0:
                out = out[::-1]
        return np.ascontiguousarray(out) if out is not image else image
    if not (isinstance(rotation, numbers.Real) and math.isfinite(rotation) and abs(rotation) <= 360):
        return image  # no angle (a degenerate matrix's NaN, which PyAV gives as -2147483648): shown as stored
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def display_matrix(frame: Any) -> tuple[int, int, int, int] | None:
    """The 2×2 part ``(a, b, c, d)`` of a decoded frame's display matrix (FFmpeg's DISPLAYMATRIX side data,
    16.16 fixed point) when it is a quarter turn and/or a mirror, each entry −1, 0 or 1; None when the
    frame has none or it turns by another angle (then ``frame.rotation`` is rounded to quarter turns)."""
    try:
        for sd in frame.side_data:
            if str(getattr(sd, "type", "")).endswith("DISPLAYMATRIX"):
                m = np.frombuffer(bytes(sd)[:36], np.int32).astype(np.float64) / 65536.0
                a, b, c, d = m[0], m[1], m[3], m[4]
                q = np.round([a, b, c, d])
                scale = max(abs(a), abs(b), abs(c), abs(d))
                if scale == 0:  # an all-zero matrix turns nothing (FFmpeg's player shows the frame as stored);
                    # PyAV's rotation read it as -2147483648°, a quarter turn: the face was analysed sideways
                    return 1, 0, 0, 1
                if np.allclose([a, b, c, d], q * scale, atol=1e-3 * scale) and \
                        int(np.count_nonzero(q)) == 2 and (q[0] == 0) == (q[3] == 0):
                    return int(q[0]), int(q[1]), int(q[2]), int(q[3])
                return None
    except (AttributeError, TypeError, ValueError):  # PyAV without side data access, or a short matrix
        return None
    return None


def check_count(name: str, value: object, note: str = "") -> None:
    """Raise ValueError unless ``value`` is a whole number ≥ 1 (``True`` and 2.5 are not): the video
    options the API takes as frame counts or steps, checked as the CLI's option types check them."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1{note}, not {value!r}")


# Largest frame rate ``fps`` may ask for: far above any camera's (high-speed ones reach 10⁴–10⁶ frames a second).
MAX_FPS = 1e6


def check_sampling(every: object, fps: object, max_frames: object) -> None:
    """ValueError naming the first of :class:`FrameReader`'s frame choices it cannot take: the API gets what the
    CLI's option types refuse (a fractional step, NaN, a frame budget of 0)."""
    check_count("every", every)
    if fps is not None and not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, not {fps!r}")
    if fps is not None and fps > MAX_FPS:  # 1.7e308 overflowed in the slot arithmetic: a failure row per video
        raise ValueError(f"fps must be at most {MAX_FPS:g}, not {fps!r} (a rate above the video's own keeps every "
                         "frame: leave fps out for that)")
    if max_frames is not None:
        check_count("max_frames", max_frames, " (or None for all)")


class FrameReader:
    """Selected RGB frames of a video, decoded in a background thread.

    ``every``: keep every N-th decoded frame; ``fps``: keep at most F frames per second of video
    (the first frame of each 1/F-second slot, by timestamp); ``max_frames``: stop after that many
    kept frames. Decoding errors never raise: frames decoded before the error are yielded and the
    problem is reported in ``stats.error`` (also when the file simply ends early: a truncated
    download decodes without an error but ends before the duration the container declares).
    """

    def __init__(self, path: Source | Any, every: int = 1, fps: float | None = None,
                 max_frames: int | None = None, threaded: bool = True, queue_size: int = 8,
                 prepare: Callable[[np.ndarray, int], Any] | None = None) -> None:
        """``prepare(image, index)``: work on each kept frame done in the decode thread (``VideoFrame.prepared``;
        the video analysis makes its scene-cut thumbnail and the interval's face scan there, off the busier
        face stage)."""
        self.prepare = prepare
        check_sampling(every, fps, max_frames)
        self.source = path
        # ``path``: how the video is named in messages and rows (a URL without its credentials)
        if is_url(path):
            self.path: Path | str = redact(str(path))
        elif hasattr(path, "read"):
            self.path = redact(str(getattr(path, "name", None) or "<file object>"))
        else:
            self.path = Path(path)
        self._files = contextlib.ExitStack()  # the fsspec file / temporary copy, closed with the reader
        self.every, self.fps, self.max_frames = every, fps, max_frames
        self.threaded = threaded
        self.stats = DecodeStats()
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._version = _file_version(self.path)
        try:
            self._open()
        except BaseException:
            self._files.close()
            raise

    def _target(self) -> Any:
        """What ``av.open`` gets: a local path string, or a seekable binary file object."""
        src, name = self.source, str(self.path)
        if is_url(src):
            try:
                f: Any = self._files.enter_context(open_input(str(src), VideoReadError))
            except VideoReadError:
                raise
            except Exception as e:
                raise VideoReadError(f"{name}: cannot open ({type(e).__name__}: {redact(str(e), str(src))})") from None
        elif hasattr(src, "read"):
            f = src
        else:
            # regular, non-empty, readable: a FIFO named .mp4 would block FFmpeg's open forever
            return str(check_regular_file(src, VideoReadError))
        if is_seekable(f):
            return f
        try:  # MP4/MOV need random access to their index: a bounded local copy, removed on close
            return str(self._files.enter_context(temp_copy(f, name)))
        except OSError as e:
            raise VideoReadError(f"{name}: {redact(str(e), str(src)).removeprefix(name + ': ')}") from None

    def _open(self) -> None:
        import av

        target = self._target()
        self._target_obj = target  # its size once decoding ends: was the file cut (or cut while being read)?
        p = self.path
        try:
            self._container = av.open(target)
        except Exception as e:  # PyAV raises FFmpegError subclasses and OSError
            # FFmpeg's words only: PyAV's "[Errno 1094995529] …: '<the path again>'" added nothing
            why = self._message(e)
            raise VideoReadError(f"{p}: cannot open as video — truncated, corrupt or not a video ({why})") from None
        s = main_video_stream(self._container)
        if isinstance(s, str):
            self._container.close()
            raise VideoReadError(f"{p}: {s}")
        # (not a cover picture, nor a one-frame still such as a thumbnail track)
        others = [v for v in self._container.streams.video
                  if v is not s and not _is_cover(v) and int(v.frames or 0) != 1]
        if others:  # a two-camera or stereo file was analysed on one view without a word
            rest = ", ".join(str(v.index) for v in others)
            self.stats.note = (f"{p}: {1 + len(others)} video streams; stream {s.index} ({s.codec_context.width}×"
                               f"{s.codec_context.height}) was analysed, not stream{'s' * (len(others) > 1)} {rest} "
                               f"(to analyse one, extract it first, e.g. ffmpeg -i IN -map 0:{others[0].index} -c "
                               "copy OUT.mkv)")
        from aulib.io import MAX_PIXELS

        # Anamorphic video (pixels not square: DV, broadcast, some phones) is stretched to its display
        # aspect, as a player shows it: analysed as stored, faces were squeezed (AU12 off by 1.5 on average)
        self._sar = _sample_aspect(s)
        self._turn: tuple[object, tuple[int, int, int, int] | None] | None = None  # see _orientation
        width, height = display_size(int(s.codec_context.width or 0), int(s.codec_context.height or 0), self._sar)
        self._repeat_cap = max(REORDER_FRAMES, min(REPEAT_FRAMES, REPEAT_BYTES // max(1, 3 * width * height // 2)))
        if width * height > MAX_PIXELS:  # like an image: 8 queued frames of 270 MP would hold 6 GB
            self._container.close()
            raise VideoReadError(f"{p}: frames too large ({width}×{height} = {width * height / 1e6:.0f} MP; aulib "
                                 f"reads at most {MAX_PIXELS / 1e6:.0f} MP per frame, as per image — downscale it "
                                 "first)")
        s.thread_type = "SLICE"  # frame threads cost more than they save on 2 busy cores (measured)
        self._stream = s
        # a bare elementary stream (.h264…) has no timestamps: frames lost in damage leave no gap to count
        self._untimed = self._container.format.name in RAW_STREAM_FORMATS
        # AVI stores no presentation times (its "pts" are decode-order numbers, out of order with B-frames)
        # and is constant-rate: a frame's time is its number / rate
        # (only with B-frames: a capture AVI's dropped frames are gaps in its numbers, kept by its times)
        self._counted = "avi" in (self._container.format.name or "").split(",") and \
            bool(getattr(s.codec_context, "has_b_frames", False))
        self.stats.declared = int(s.frames or 0)
        self._rate = _frame_rate(s)
        self.stats.rate = float(self._rate or 0.0)
        self._tb = float(s.time_base) if s.time_base else 0.0
        # frames closer together than the clock's tick (a 2000 fps high-speed clip in Matroska's 1 ms ticks: times
        # 0, 1, 1, 2, 2 … ms) cannot be told apart by their times: timed by their number, as AVI's are (half the
        # frames were skipped as "out of time order" and the rest numbered by time, frame 30 of a 30-frame file)
        self._counted = self._counted or bool(self._rate and self._tb and self._rate * self._tb > 1)
        self._start = int(s.start_time) if s.start_time is not None else None
        self._start_s = (self._start or 0) * self._tb
        # Frames are timed on the file's clock, as a player shows them and as speech and annotations made in a player
        # are timed: a video stream that starts after the file does (its audio first — a phone's or a screen
        # recorder's file, a clip cut from a longer one) has its first frame at that offset. It was timed from the
        # video's own start, so every timestamp of a file whose video starts 1 s after its audio was 1 s early. 0 when
        # the video starts the file (OpenFace's frame/fps then); frame numbers are the stream's own either way.
        start = self._container.start_time  # AV_TIME_BASE (µs): the earliest stream's start
        if start is not None and s.start_time is not None:
            self.stats.offset = max(0.0, self._start_s - start / 1e6)
        self._timeline_offset = 0  # pts added to a joined recording's later clips (_in_time_order)
        self._duration = _video_duration(self._container, s)
        seconds = self._duration or (self._container.duration or 0) / 1e6  # container's: AV_TIME_BASE units
        self.stats.expected = self.stats.declared or max(0, round(seconds * self.stats.rate))

    @property
    def output_rate(self) -> Fraction:
        """Frame rate of the kept frames (for writing an overlay video)."""
        base = Fraction(self._rate or 30).limit_denominator(100000)
        rate = base / self.every
        if self.fps is not None:
            rate = min(rate, Fraction(self.fps).limit_denominator(1000))
        return rate

    def _seconds(self, pts: int) -> float:
        """A timestamp of the stream in seconds from its start."""
        return (pts - (self._start or 0)) * self._tb

    def _time(self, frame: Any, index: int) -> float:
        if self._counted and self.stats.rate:
            return index / self.stats.rate
        if frame.pts is not None and self._tb:
            return self._seconds(frame.pts + self._timeline_offset)
        return index / self.stats.rate if self.stats.rate else float(index)

    def _decoded(self) -> Iterator[Any]:
        """Every decodable frame, packet by packet: a corrupt packet in the middle of a file costs the
        frames it held, not the rest of the video (``container.decode`` stopped at the first one). The
        skipped packets are counted in ``self._bad_packets`` (the first one's error kept in
        ``self._bad_error``); a run of :data:`MAX_BAD_PACKETS` in a row ends decoding with that error (a file
        that is garbage from there on)."""
        self._bad_packets = self._trailing_bad = 0
        self._bad_error: BaseException | None = None
        # the container's own evidence of where the file ended: packets demuxed (MP4/MOV list every sample in
        # their index, AVI declares its frame count: a cut file yields fewer), the last one's end in the file
        # and whether FFmpeg flagged it corrupt (a sample cut in the middle)
        # and the latest time a packet reached (frames' clock): a complete file whose last packets are damaged
        # reaches its end, though no frame decodes there
        self._packets = 0
        self._last_end: int | None = None
        self._last_corrupt = False
        self._packet_time = 0.0
        run = 0
        for packet in self._container.demux(self._stream):  # ends with an empty packet that flushes the decoder
            if packet.size or packet.dts is not None:
                self._packets += 1
                pos = packet.pos
                self._last_end = pos + packet.size if pos is not None and pos >= 0 else None
                self._last_corrupt = bool(packet.is_corrupt)
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None and self._tb:
                    # where the packet ends: a whole Matroska clip whose last frame is held 2 s (a freeze-frame
                    # ending) reached only its last frame's start, 2 s before the declared duration: "truncated"
                    ts += max(0, packet.duration or 0)
                    self._packet_time = max(self._packet_time, self._seconds(ts))
            try:
                frames = packet.decode()
            except Exception as e:  # av.error.InvalidDataError and other FFmpeg errors of one packet
                self._bad_packets += 1
                self._bad_error = self._bad_error or e
                run += 1
                if run >= MAX_BAD_PACKETS:
                    raise
                continue
            if packet.size:  # not the empty packet that flushes the decoder at the end
                run = 0
            yield from frames
        self._trailing_bad = run  # corrupt packets after the last good one: frames no later packet brought back

    def _in_time_order(self, frames: Iterator[Any]) -> Iterator[Any]:
        """``frames`` in presentation order. A decoder hands frames over in that order; in a damaged stream
        (bits flipped in a reference frame) it may not: timestamps went 3.04, 3.29, 3.25, 3.33, 3.21 s and the
        table's times ran backwards under contiguous frame numbers. Frames are put back in order within a
        window of :data:`REORDER_FRAMES`; one still too late, and one repeating a time given before the last,
        is skipped and counted (``self._disordered``), which also marks the stream damaged: the following
        frames are numbered by their times, so the frames missing there are named. Frames stamped with the
        very time just given (a muxer's clock that stamped two frames alike) are kept, spaced evenly up to the
        next time (up to :data:`REPEAT_FRAMES` of them; past that, a clock that has not moved since the first
        frame is frozen and the clip is timed by frame number).

        A clock that jumps back further than the window (joined recordings: a camcorder's transport stream
        restarts its clock at each clip) is a new timeline, not disorder: the frames held go first, then
        the new ones, as they come, timed on from the end of the previous one (``self._timeline_offset``,
        added to their timestamps): the table's times went back to 0 at each join, and the smoothing, which
        works on time, averaged each clip's last seconds with the first clip's (frames 197–199 of three
        joined 100-frame clips came out with the values of frames 97–99), and ``--fps`` skipped every frame
        of a later clip until its clock passed the earlier one's. Files timed by frame number (AVI) and
        frames without a timestamp pass as they come."""
        self._disordered = 0
        if self._counted or not self._tb:
            yield from frames
            return
        held: list[tuple[int, int, Any]] = []
        last: int | None = None  # the time of the last frame given
        top: int | None = None  # the latest time seen
        step: int | None = None  # the smallest step forward seen: a frame's duration
        repeats: list[Any] = []  # frames stamped with the time just given, waiting for the next time

        def spread(until: int) -> Iterator[Any]:
            """The frames that repeated the last time, spaced evenly up to ``until`` (a muxer's clock that
            stamped two frames alike: they were skipped as "out of time order", the clip called damaged,
            while "no frame lost"); skipped as before when the clock leaves no tick between."""
            k = len(repeats)
            if until - last > k:
                for j, frame in enumerate(repeats, 1):
                    frame.pts = last + round(j * (until - last) / (k + 1))
                    yield frame
            else:
                self._disordered += k
            repeats.clear()

        def frozen() -> Iterator[Any]:
            """A frozen clock (every frame so far stamped alike): from now on frames are timed by their number, as
            AVI's are; the ones waiting go first, in the order they came."""
            self._counted = True
            yield from repeats
            repeats.clear()
            held.sort(key=lambda h: h[1])
            yield from (h[2] for h in held)
            held.clear()

        def give(item: tuple[int, int, Any]) -> Iterator[Any]:
            nonlocal last
            if last is not None and item[0] == last and len(repeats) < self._repeat_cap:
                repeats.append(item[2])
                return
            if last is not None and item[0] <= last:
                self._disordered += 1
                return
            if repeats:
                yield from spread(item[0])
            last = item[0]
            yield item[2]

        for n, frame in enumerate(frames):
            pts = frame.pts
            if pts is None or self._counted:
                yield frame
                continue
            if step is None and last == pts and len(repeats) >= self._repeat_cap and all(h[0] == pts for h in held):
                # a frozen clock (every frame so far stamped alike, as a badly muxed stream has it): its times say
                # nothing, so the frames are timed by their number, as AVI's are; all but the first were skipped
                # as "out of time order" (one row for a whole clip). Not decided on fewer frames: a clip whose
                # first 5 frames shared a time was timed by number throughout, 26 % off its clock by frame 29
                yield from frozen()
                yield frame
                continue
            if top is not None and pts > top:
                step = pts - top if step is None else min(step, pts - top)
            if top is not None and step and top - pts > REORDER_FRAMES * step:  # a new timeline
                while held:
                    yield from give(heapq.heappop(held))
                self._timeline_offset += top + step - pts  # its first frame one frame after the last one's
                last, top = None, pts
            top = pts if top is None else max(top, pts)
            heapq.heappush(held, (pts, n, frame))
            if len(held) > REORDER_FRAMES:
                yield from give(heapq.heappop(held))
        if step is None and (repeats or len(held) > 1) and all(h[0] == top for h in held) and last in (None, top):
            yield from frozen()  # a short clip whose clock never moved
            return
        while held:
            yield from give(heapq.heappop(held))
        if repeats and last is not None:  # the last frames repeated the last time: one frame's duration after it
            yield from spread(last + (step or 0))

    def _frames(self) -> Iterator[VideoFrame]:
        """Decode and select (runs in the decode thread when threaded)."""
        st = self.stats
        slot = -1
        # --fps slots are entered up to half a source frame early: a frame's time is rounded to its clock's tick
        # (Matroska/WebM: 1 ms, so 30 fps frames fall at 0.033, 0.067 s) or its rate is not quite the one asked
        # (29.97 fps given for 30000/1001): read to the microsecond, every third frame of a 30 fps WebM fell in
        # its predecessor's slot (--fps 30 kept 40 of 60 frames, --fps 15 took gaps of 2, 3, 1 frames)
        tolerance = 0.5 * min(1.0, self.fps / float(self._rate)) if self.fps is not None and self._rate else 1e-6
        lost = 0  # frames lost in corrupt packets so far
        gaps: list[tuple[int, int]] = []  # their frame numbers (first, last)
        times: list[float] = []  # the first frames' times, while the rate is unknown
        self._concealed: list[int] = []  # frames the decoder flagged corrupt (their numbers; analysed as they are)
        self._leading = 0  # frames before the first one that decoded (a stream starting mid-GOP)
        on_grid = True  # every step between frames so far a whole number of the clip's usual step (not variable-rate)
        steps: list[float] = []  # the first steps between frames, for the usual one (their median)
        usual = 0.0
        attributed = 0  # corrupt packets and out-of-order frames already placed as lost frames (variable rate)
        skips: list[tuple[float, float, int]] = []  # unflagged jumps of a constant-rate clip: (from, to s, frames)
        it = self._in_time_order(self._decoded())
        t0 = time.perf_counter()
        capped = False  # stopped at --max-frames: the rest of the file was not read, which is no truncation
        try:
            for frame in it:
                index = st.decoded + lost
                if st.decoded == 0 and self._start is None and frame.pts is not None:
                    # a raw elementary stream declares no start (FFmpeg's MPEG-2 video reader stamps its first
                    # frame one frame late): its first frame starts it. Timed from 0, it was "the 1 frame(s) before
                    # the stream's first decodable keyframe … lost: 0", every frame numbered one too high
                    self._start = int(frame.pts)
                    self._start_s = self._start * self._tb
                st.decoded += 1
                t = self._time(frame, index)
                if not st.rate and frame.pts is not None and len(times) < RATE_FRAMES:
                    st.rate = _rate_from(times, t)  # no declared rate (browser WebM): from the first frames
                if st.decoded == 1 and not self._counted and self._rate and frame.pts is not None:
                    # a stream whose first frames do not decode (a transport stream cut mid-GOP: the frames up to
                    # its first keyframe need one before the cut): the first frame decoded is numbered by its time,
                    # as frames after damage are, and the ones before it are named lost. It was frame 0 at
                    # 0.133 s, four frames off its own time, and the run said nothing was missing
                    lead = round(t * float(self._rate))
                    if lead > 0:
                        self._leading = lead
                        gaps.append((0, lead - 1))
                        lost += lead
                        index += lead
                corrupt = bool(getattr(frame, "is_corrupt", False))  # decoded with errors FFmpeg concealed
                damaged = bool(self._bad_packets or self._disordered or self._concealed or corrupt)
                if on_grid and st.decoded > 1 and t > st.last_time:
                    if len(steps) < 32:
                        steps.append(t - st.last_time)
                        usual = float(np.median(steps))
                    if len(steps) >= 3:
                        ratio = (t - st.last_time) / usual
                        on_grid = abs(ratio - round(ratio)) <= 0.25
                if not damaged and on_grid and len(steps) >= 3 and t - st.last_time > 1.5 * usual:
                    # the clock jumped with no packet flagged: a capture that dropped frames, or damage FFmpeg's
                    # demuxer resynchronised over without a word (Matroska: 3 kB of garbage mid-file). Numbered on
                    # (a capture's drops are not this file's frames); said if the stream then stops early
                    if len(skips) <= 3:  # the message names three ("…" for more): a capture's drops are many
                        skips.append((st.last_time, t, round((t - st.last_time) / usual) - 1))
                if damaged and frame.pts is not None and st.rate:
                    # frames lost in skipped packets: the next frames keep their own numbers (by their time),
                    # so ``frame`` still matches the file (and another tool's rows) after the damage. With an
                    # estimated rate, from the jump since the last frame only (its small error would add up). A
                    # variable-rate clip's times say nothing of its numbers (a screen recording's pause read as
                    # 127 frames lost where one packet was): a jump holds at most the packets and frames skipped
                    # and not yet placed
                    jump = max(0, round((t - st.last_time) * st.rate) - 1) if st.decoded > 1 else 0
                    if self._rate and not on_grid:
                        gap = min(jump, self._bad_packets + self._disordered - attributed)
                        attributed += max(0, gap)
                    else:
                        gap = round(t * st.rate) - index if self._rate else jump
                    if gap > 0:
                        gaps.append((index, index + gap - 1))
                        lost += gap
                        index += gap
                if corrupt:  # named by its number in the file, after the frames lost before it
                    self._concealed.append(index)
                st.last_time = t
                keep = index % self.every == 0
                if keep and self.fps is not None:
                    s = int(np.floor(t * self.fps + tolerance))
                    keep = s > slot
                    if keep:
                        slot = s
                if keep:
                    img = rgb(frame)
                    if self._sar is not None:
                        img = square_pixels(img, self._sar)
                    img = upright(img, *self._orientation(frame))
                    st.selected += 1
                    st.seconds += time.perf_counter() - t0
                    yield VideoFrame(index, t + st.offset, img, self._prepared(img, index))
                    t0 = time.perf_counter()
                    if self.max_frames is not None and st.selected >= self.max_frames:
                        capped = True  # damage before this point is still said (it went unreported)
                        break
                if self._stop.is_set():
                    return
        except Exception as e:  # the demuxer itself failed, or MAX_BAD_PACKETS corrupt packets in a row
            read = st.decoded + lost
            unread = self._unread(read) if st.decoded and self._ends_early(read, failed=True) else ""
            st.error = (f"{self.path}: video truncated or corrupt after frame {st.decoded - 1}"
                        f"{': ' + unread if unread else ''} ({type(e).__name__}: {self._message(e)})")
        else:
            read = st.decoded + lost  # the number of the first frame not read
            truncated = st.decoded > 0 and not capped and self._ends_early(read)
            if self._trailing_bad and st.decoded and not truncated and not capped:
                # the end of a whole stream was damaged: one frame per packet (in a cut file the packets the
                # cut went through are part of what was not read)
                gaps.append((read, read + self._trailing_bad - 1))
                lost += self._trailing_bad
            if st.decoded == 0:
                st.error = f"{self.path}: no decodable video frames"
            elif truncated:
                of = f"{st.decoded} of {st.declared} frames" if st.declared else f"{st.decoded} frames"
                seconds = max(self._duration, st.declared / st.rate) if st.declared and st.rate else self._duration
                left = self._left_unread()
                if left:  # the file goes on: it was not cut, it could not be read past there
                    st.error = (f"{self.path}: video damaged: the stream cannot be read past {st.last_time:.2f} s of "
                                f"{seconds:.2f} s ({left} of the file after it): {self._unread(read)} (decoded {of})")
                else:
                    st.error = (f"{self.path}: video truncated: file ends early: {self._unread(read)} (decoded {of}; "
                                f"stream ends at {st.last_time:.2f} s of {seconds:.2f} s)")
                if skips and left:  # (in a cut file, the frames the cut GOP's last ones refer to are gone too)
                    st.error += "; before that the stream skips " + ", ".join(
                        f"{a:.2f} → {b:.2f} s ({n} frame(s)' time)" for a, b, n in skips[:3]) + \
                        (" …" if len(skips) > 3 else "")
                if self._bad_packets > self._trailing_bad or gaps:  # damage before the cut too
                    # (a frame lost there to the cut packet itself is named too: a cut MP4 with B-frames decoded
                    # frames 0–20, 22 and said only "frames 23–44 not read")
                    st.error += f"; before that, {self._damage(self._bad_packets - self._trailing_bad, gaps, lost)}"
            elif self._bad_error is not None or self._disordered or self._concealed or self._leading:
                st.error = f"{self.path}: video damaged: {self._damage(self._bad_packets, gaps, lost)}"
        finally:
            st.seconds += time.perf_counter() - t0
            st.lost = lost
            if self._version is not None and _file_version(self.path) != self._version:
                # written over while it was read (a copy still arriving, a recorder, an edit in place): random bytes
                # written into a clip being read gave frames numbered up to 616 of 472 and times past its end
                changed = ("the file changed while it was read (still being written, or replaced in place): rows "
                           "after the change may not match the clip; analyse it again once it is complete")
                st.error = f"{st.error}; {changed}" if st.error else f"{self.path}: {changed}"

    def _orientation(self, frame: Any) -> tuple[float, tuple[int, int, int, int] | None]:
        """The frame's rotation and display matrix (:func:`upright`'s arguments). The matrix is read from the
        frame's side data only when the rotation PyAV reports changes (a stream's matrix is the same on every
        frame): reading ``frame.side_data`` ties the frame and PyAV's side-data container into a reference
        cycle, which only Python's cycle collector frees — and a video loop makes too few Python objects for it
        to run often. Every decoded frame's pixels were kept: a 30 s 4K clip held 3 GB."""
        rotation = getattr(frame, "rotation", 0) or 0
        if self._turn is None or not (rotation == self._turn[0] or (rotation != rotation and
                                                                    self._turn[0] != self._turn[0])):
            self._turn = (rotation, display_matrix(frame))
        return rotation, self._turn[1]

    def _prepared(self, image: np.ndarray, index: int) -> Any:
        """``prepare(image, index)``, or None when it fails: the work is only done ahead (the consumer does it
        itself without it, and then says what went wrong in its own words). Inside the decode loop, its
        exception was reported as the video being "truncated or corrupt"."""
        if self.prepare is None:
            return None
        try:
            return self.prepare(image, index)
        except Exception:
            return None

    def _damage(self, packets: int, gaps: list[tuple[int, int]], lost: int) -> str:
        """Corrupt packets and out-of-order frames skipped, the frames they cost (``gaps``: their numbers, first
        and last), and the frames decoded with concealed errors."""
        e = self._bad_error
        where = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in gaps[:5])
        what = f"{lost} frame(s) lost: {where}{' …' if len(gaps) > 5 else ''}" if gaps else "no frame lost"
        if self._untimed and not gaps:  # "no frame lost" was said of a raw .h264 that lost 4 of its 30 frames
            kind = self._container.format.long_name or self._container.format.name
            what = (f"how many frames were lost cannot be told ({kind} has no timestamps: the frames after the "
                    "damage may be numbered and timed early)")
        why = f" ({type(e).__name__}: {self._message(e)})" if e is not None else ""
        skipped = [f"{packets} corrupt packet(s)"] if packets else []
        if self._disordered:
            skipped.append(f"{self._disordered} frame(s) decoded out of time order")
        if self._leading:
            skipped.append(f"the {self._leading} frame(s) before the stream's first decodable keyframe (a stream cut "
                           "mid-GOP)")
        told = f"{' and '.join(skipped)} skipped, " if skipped else ""
        concealed = ""
        if self._concealed:
            shown = ", ".join(map(str, self._concealed[:5])) + (" …" if len(self._concealed) > 5 else "")
            concealed = (f"; {len(self._concealed)} frame(s) decoded with errors FFmpeg concealed, analysed as "
                         f"they are (their results may be off): {shown}")
        return f"{told}{what}{why}{concealed}; every other frame was analysed"

    def _reached(self) -> float:
        """The latest time the stream reached: its last frame's, or a later packet's that did not decode."""
        return max(self.stats.last_time, self._packet_time)

    def _behind(self) -> float:
        """Seconds of the duration the container declares that come after the stream's end (:meth:`_reached`;
        0.0 when it declares none). Matroska's durations may be end times of streams that start later than 0
        (``last_time`` is from the stream's start): for a container that declares no frame count, the smaller
        reading."""
        if not self._duration:
            return 0.0
        behind = self._duration - self._reached()
        if not self.stats.declared:
            behind = min(behind, self._duration - (self._reached() + self._start_s))
        return behind

    def _ends_early(self, read: int, failed: bool = False) -> bool:
        """Whether the file ends before the frames its container declares: one rule for every container.

        ``read``: frames accounted for (decoded and lost); ``failed``: the demuxer stopped with an error.
        Tolerance: 3 frames (of the rate, or of the clip's mean step when its frames came further apart) + 0.05 s,
        in seconds and in frames (a variable-rate or edit-list file's decoded
        count and last time differ a little from what it declares: no_face.mp4 decodes 95 of its 98 samples).

        * A declared frame count (MP4/MOV: the sample table; AVI: the header) is short only when the demuxer
          too delivered fewer packets than it lists (an edit list hides frames, not packets), and when a second
          sign agrees: the stream also ends before the declared duration, or the container itself shows the
          file ended inside the stream (the demuxer failed, the last packets were cut — flagged corrupt or
          undecodable — or the last packet ends where the file ends). A cut MP4's partial last sample used
          to be reported as one lost frame, hiding hundreds never read.
        * Only a duration (Matroska/WebM's DURATION tag, MPEG-TS …): the stream ends before it.

        The stream's end is where its packets reach, not its frames: a whole file whose last packets are
        damaged (no keyframe after them) reaches its end and is reported damaged, its frames there lost.
        """
        st = self.stats
        # a frame's step: the rate's, or the clip's own mean step where its frames came further apart than the
        # rate says (a variable-rate clip whose container declares the rate of its shortest step)
        step = max(1.0 / st.rate if st.rate else 0.0, st.last_time / (st.decoded - 1) if st.decoded > 1 else 0.0)
        tol = 3.0 * step + 0.05
        short_time = self._behind() > tol
        if not st.declared:
            return short_time
        short_count = st.declared - max(read, self._packets) > max(3.0, tol * st.rate)
        return short_count and (short_time or failed or self._at_file_end())

    def _left_unread(self) -> str:
        """How much of the file lies after the last packet read ("28 kB"), when that is more than a container's
        closing index could hold (over 5 % of the file and 4 kB): the demuxer stopped inside the file, so the file
        is damaged there, not cut short. "" when the file ends there or its size is unknown."""
        size = self._source_size()
        if size is None or self._last_end is None or self._trailing_bad or self._last_corrupt:
            return ""
        left = size - self._last_end
        return f"{left / 1000:.0f} kB" if left > max(4096, 0.05 * size) else ""

    def _at_file_end(self) -> bool:
        """The container's own sign that the file ends inside the stream: its last packets were cut (FFmpeg
        flags a partial sample corrupt; it may not decode) or the last packet ends where the file now ends
        (also a file cut while it was read)."""
        if self._trailing_bad or self._last_corrupt:
            return True
        size = self._source_size()
        return size is not None and self._last_end is not None and self._last_end >= size

    def _source_size(self) -> int | None:
        """The size of what FFmpeg reads, now (None when unknown: a stream without a size)."""
        t = self._target_obj
        try:
            if isinstance(t, str):
                return os.stat(t).st_size
            size = getattr(t, "size", None)  # fsspec files
            if isinstance(size, numbers.Integral) and not isinstance(size, bool):
                return int(size)
            return os.fstat(t.fileno()).st_size
        except Exception:  # no size to compare with: that evidence is missing, not a failure
            return None

    def _unread(self, read: int) -> str:
        """The frames of a file that ends early that were not read: ``read`` onwards, up to the declared count
        (or, with only a duration, about as many as it spans at the frame rate)."""
        st = self.stats
        if st.declared:
            total, about = st.declared, ""
        elif st.rate and self._duration:
            total, about = max(read + 1, round((self._reached() + self._behind()) * st.rate)), "about "
        else:
            return f"frames from {read} on not read"
        if total <= read:
            return f"frames from {read} on not read"
        frames = f"frame {read}" if total - read == 1 else f"frames {read}–{total - 1}"
        return f"{frames} of {about}{total} not read"

    def _message(self, e: BaseException) -> str:
        """FFmpeg's words for an error, without PyAV's "[Errno 1094995529]" and without credentials."""
        return redact(str(getattr(e, "strerror", None) or e), str(self.source))

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
            while True:  # the end marker; once stopped, nobody may be left to read it
                try:
                    self._q.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        break

    def __iter__(self) -> Iterator[VideoFrame]:
        if not self.threaded:
            try:
                yield from self._frames()
            finally:
                self.close()
            return
        # stopped and joined at exit (aulib.background), not killed inside the decoder
        th = background.start(self._produce, f"decode:{Path(str(self.path)).name}", stop=self._stop.set)
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
        with contextlib.suppress(Exception):
            self._files.close()
