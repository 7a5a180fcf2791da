"""Face pipeline stages: detection, 68 landmarks, alignment, masking, HOG/geometry features."""

from aulib.face.align import AlignedFace, Aligner, FaceMasker, umeyama
from aulib.face.detect import Detection, DlibHogDetector, RetinaFaceDetector, make_detector
from aulib.face.hog import HogExtractor, geometry, mirror
from aulib.face.landmarks import LandmarkPredictor
from aulib.face.pipeline import FacePipeline
from aulib.face.record import EMOTIONS, Face, au_name

__all__ = [
    "EMOTIONS", "AlignedFace", "Aligner", "Detection", "DlibHogDetector", "Face", "FaceMasker", "FacePipeline",
    "HogExtractor", "LandmarkPredictor", "RetinaFaceDetector", "geometry", "make_detector", "mirror",
    "au_name", "umeyama",
]
