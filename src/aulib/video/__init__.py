"""Video analysis, one module per job.

``reader`` (decoding) → ``follow`` (faces per frame with stable ids, via ``track``) → ``run``
(batched models through the :class:`FaceModels` interface, rows streamed in chunks), with
``calibrate`` (per-person neutral) and ``overlay`` (annotated video) beside it.
"""

from aulib.video.calibrate import NeutralCalibrator
from aulib.video.follow import DEFAULT_DETECT_EVERY, FaceFollower
from aulib.video.overlay import OverlayWriter
from aulib.video.reader import FrameReader, VideoFrame, VideoReadError, upright
from aulib.video.run import FaceModels, VideoAnalysis, analyze_video_rows, iter_video_rows

__all__ = [
    "DEFAULT_DETECT_EVERY", "FaceFollower", "FaceModels", "FrameReader", "NeutralCalibrator", "OverlayWriter",
    "VideoAnalysis", "VideoFrame", "VideoReadError", "analyze_video_rows", "iter_video_rows", "upright",
]
