"""Video analysis, one module per job.

``reader`` (decoding) → ``follow`` (faces per frame with stable ids, via ``track``) → ``run``
(batched models through the :class:`FaceModels` interface, rows streamed in chunks), with
``calibrate`` (per-person neutral) and ``overlay`` (annotated video) beside it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# where each public name lives: imported on first use (PEP 562), so a module of the package that a photo run
# needs (keyframes' and smooth's constants, for the run metadata) does not import the decoder and the tracker
# (21 ms of a photo's whole process)
_WHERE = {
    "NeutralCalibrator": "calibrate", "DEFAULT_DETECT_EVERY": "follow", "FaceFollower": "follow",
    "OverlayWriter": "overlay", "FrameReader": "reader", "VideoFrame": "reader", "VideoReadError": "reader",
    "upright": "reader", "FaceModels": "run", "VideoAnalysis": "run", "analyze_video_rows": "run",
    "iter_video_rows": "run",
}

_MODULES = {"calibrate", "follow", "keyframes", "overlay", "reader", "run", "smooth", "track"}

if TYPE_CHECKING:
    from aulib.video.calibrate import NeutralCalibrator
    from aulib.video.follow import DEFAULT_DETECT_EVERY, FaceFollower
    from aulib.video.overlay import OverlayWriter
    from aulib.video.reader import FrameReader, VideoFrame, VideoReadError, upright
    from aulib.video.run import FaceModels, VideoAnalysis, analyze_video_rows, iter_video_rows

__all__ = [
    "DEFAULT_DETECT_EVERY", "FaceFollower", "FaceModels", "FrameReader", "NeutralCalibrator", "OverlayWriter",
    "VideoAnalysis", "VideoFrame", "VideoReadError", "analyze_video_rows", "iter_video_rows", "upright",
]


def __getattr__(name: str) -> object:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"aulib.video.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    if name in _MODULES:  # ``import aulib.video`` then ``aulib.video.reader.…``, as when the package imported them all
        return importlib.import_module(f"aulib.video.{name}")
    raise AttributeError(f"module 'aulib.video' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, *_MODULES})
