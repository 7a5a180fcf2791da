"""Agreement of the ONNX landmark predictor with dlib's own, on real faces.

Fits every face twice — dlib (``LandmarkPredictor(backend="dlib")``) and the ONNX conversion — and
prints the fraction of identical integer points and the largest difference, per data set:

- sample photos and every 2nd frame of the sample videos, boxes from RetinaFace (as ``aulib
  analyze`` uses them);
- CK+48 and FER+ crops upscaled to 192 px like ``FacePipeline.cropped``, with the whole crop as box
  and with a box shifted/scaled at random (feature pixels outside the image, other leaves).

Run: ``python scripts/compare_landmarks.py [--crops N]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aulib.face.detect import RetinaFaceDetector  # noqa: E402
from aulib.face.landmarks import LandmarkPredictor  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
Box = tuple[float, float, float, float]


def sample_faces(step: int = 2) -> Iterator[tuple[np.ndarray, Box]]:
    """(gray image, RetinaFace landmark box) of every face in the sample photos and video frames."""
    det = RetinaFaceDetector()
    samples = DATA / "samples"
    for f in sorted(samples.iterdir()):
        if f.suffix.lower() in (".jpg", ".png"):
            frames = [cv2.imread(str(f), cv2.IMREAD_COLOR)]
        elif f.suffix.lower() in (".mp4", ".mov"):
            cap, frames = cv2.VideoCapture(str(f)), []
            while True:
                ok, fr = cap.read()
                if not ok:
                    break
                frames.append(fr)
            frames = frames[::step]
        else:
            continue
        for bgr in frames:
            if bgr is None:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            for d in det(rgb):
                yield gray, d.landmark_box()


def crop_faces(folder: Path, n: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, Box]]:
    """(192 px upscaled crop, box) for ``n`` crops: the whole image, then a jittered box."""
    files = sorted(p for p in folder.rglob("*.png"))
    if len(files) > n:
        files = [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]
    for f in files:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if g is None:
            continue
        s = 192.0 / min(g.shape)
        big = cv2.resize(g, (round(g.shape[1] * s), round(g.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
        h, w = big.shape
        yield big, (0.0, 0.0, float(w), float(h))
        side = w * rng.uniform(0.6, 1.3)
        yield big, (float(rng.uniform(-0.3, 0.5) * w), float(rng.uniform(-0.3, 0.5) * h), side, side)


def compare(faces: Iterator[tuple[np.ndarray, Box]], ref: LandmarkPredictor, onnx: LandmarkPredictor) -> str:
    same_pts = total_pts = same_faces = n = 0
    worst = 0.0
    for gray, box in faces:
        a, b = ref(gray, box), onnx(gray, box)
        eq = (a == b).all(axis=1)
        same_pts += int(eq.sum())
        total_pts += len(eq)
        same_faces += int(eq.all())
        worst = max(worst, float(np.abs(a - b).max()))
        n += 1
    if n == 0:
        return "no faces"
    return (f"{n} faces: identical points {same_pts}/{total_pts} ({same_pts / total_pts:.4%}), "
            f"identical faces {same_faces}/{n}, max difference {worst:g} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crops", type=int, default=1000, help="crops per data set (each fitted with 2 boxes)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ref, onnx = LandmarkPredictor(backend="dlib"), LandmarkPredictor(backend="onnx")
    print("samples (photos, every 2nd video frame):", compare(sample_faces(), ref, onnx))
    print("CK+48 crops:", compare(crop_faces(DATA / "ckplus48" / "images", args.crops, rng), ref, onnx))
    print("FER2013Valid crops:", compare(crop_faces(DATA / "ferplus" / "FER2013Valid", args.crops, rng), ref, onnx))
    print("FER2013Train crops:", compare(crop_faces(DATA / "ferplus" / "FER2013Train", args.crops, rng), ref, onnx))


if __name__ == "__main__":
    main()
