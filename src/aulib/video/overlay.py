"""Annotated copy of an analysed video (box, 68 points, face id, emotion, top AUs) as a video file."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from aulib.draw import draw_faces
from aulib.face.record import EMOTIONS, Face
from aulib.table import GAZE_COLUMNS, intensity_column, prob_column

# overlay frame times on the 90 kHz clock of MPEG: exact for 23.976–60 fps, and a 2000 fps high-speed clip keeps its
# timing (in milliseconds its frames were a tick apart at best: the overlay ran at half speed)
TIME_BASE = Fraction(1, 90000)


def drawable(face: Face) -> Face:
    """What the overlay keeps of a face until its row is final: where it is (box, 68 points, iris centres, id,
    success), no pixels, features or predictions (:func:`as_written` takes those from the row)."""
    iris = face.extra.get("iris")
    return Face(box=face.box, score=face.score, id=face.id, landmarks=face.landmarks, matrix=face.matrix,
                aus=face.aus, error=face.error, extra={} if iris is None else {"iris": iris})


def as_written(face: Face, row: dict) -> Face:
    """``face`` (from :func:`drawable`) with the values its table ``row`` holds: face id, AU intensities
    (``AUxx_r``), emotion probabilities (``p_*``) and gaze vectors.

    The overlay drew the records as the models left them, before the smoothing, the interpolation between
    network frames, the calibration and the occurrence/intensity rule that the table's rows go through: its top
    AUs differed from the table's ``AUxx_r`` by up to 1.24 on the Pexels clip (0.52 on average with
    ``--calibrate``), and named other AUs in a quarter of the frames."""
    def values(columns: list[str]) -> np.ndarray | None:
        v = np.array([row.get(c, np.nan) for c in columns], np.float64)
        return v if np.isfinite(v).any() else None

    out = Face(box=face.box, score=face.score, id=int(row.get("face_id", face.id)), landmarks=face.landmarks,
               matrix=face.matrix, aus=face.aus, error=face.error, extra=face.extra)
    if row.get("success"):
        out.au_intensity = values([intensity_column(a) for a in face.aus])
        out.emotion_probs = values([prob_column(e) for e in EMOTIONS])
        out.gaze = values(list(GAZE_COLUMNS))
    return out


class OverlayWriter:
    """Writes frames annotated by :func:`aulib.draw.draw_faces` (the same drawing as image overlays).

    H.264 (libx264) when FFmpeg has it, MPEG-4 part 2 otherwise; yuv420p needs even sizes, so an
    odd last row/column is dropped.
    """

    def __init__(self, path: str | Path, rate: Fraction) -> None:
        self.path = Path(path)
        self.rate = rate
        self._out: Any = None
        self._stream: Any = None
        self._t0: float | None = None  # the first written frame's time: the overlay starts at 0
        self._last_pts = -1
        self.error = ""  # why the overlay could not be written; the analysis goes on without it

    def _start(self, w: int, h: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.path), mode="w")
        self._opened = True  # the file is this run's from here: a write error removes it (_discard)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._out.add_stream(codec, rate=self.rate)
        # frames are placed at their own times (ms), so the overlay keeps the clip's timing even where the
        # clip has none declared (a browser WebM was written at 30 fps whatever its rate) or varies (VFR)
        self._stream.codec_context.time_base = TIME_BASE
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"preset": "veryfast", "crf": "23"}

    def write(self, image: np.ndarray, faces: Sequence[Face], time: float | None = None) -> None:
        """Add one annotated frame (at ``time`` seconds of the clip when given, else the next frame at
        :attr:`rate`); a failure (unwritable folder, unknown container) is kept in :attr:`error` and ends
        the overlay, never the analysis."""
        if self.error:
            return
        try:
            self._write(image, faces, time)
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
        self._discard()

    def _discard(self) -> None:
        """After a write error the file goes, as the warning says "overlay not written": a full disk left a 0-byte
        ``ov.mp4`` (a cut, unplayable one otherwise). An interrupted analysis keeps its playable part (close)."""
        if getattr(self, "_opened", False):
            with contextlib.suppress(OSError):
                Path(self.path).unlink(missing_ok=True)

    def _write(self, image: np.ndarray, faces: Sequence[Face], time: float | None = None) -> None:
        import av

        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        if self._out is None:
            if min(h, w) < 2:  # yuv420p wants even sizes: a 1-pixel row or column leaves nothing ("IndexError")
                raise ValueError(f"frames of {image.shape[1]}×{image.shape[0]} px are too small for an overlay video")
            self._start(w, h)
        img = draw_faces(image, faces, aus=True)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")
        if time is None or not np.isfinite(time):
            pts = self._last_pts + max(1, round(1 / (float(self.rate) * TIME_BASE)))
        else:
            self._t0 = time if self._t0 is None else self._t0
            pts = round((time - self._t0) / TIME_BASE)
        pts = max(pts, self._last_pts + 1)  # strictly increasing, whatever the clip's timestamps do
        frame.pts, frame.time_base, self._last_pts = pts, TIME_BASE, pts
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def close(self) -> None:
        """Flush and close the file (also after an error or an interrupted analysis: the frames written so
        far stay a playable video, and no file handle is left open)."""
        if self._out is None:
            return
        try:
            if not self.error:
                for packet in self._stream.encode():
                    self._out.mux(packet)
        except Exception as e:
            self.error = f"{self.path}: overlay not written ({type(e).__name__}: {e})"
        finally:
            try:
                self._out.close()
            except Exception as e:  # pragma: no cover - closing a broken container must not mask the analysis
                self.error = self.error or f"{self.path}: overlay not written ({type(e).__name__}: {e})"
            self._out = None
            if self.error:
                self._discard()
