"""Build the canonical 68-point template used by alignment (``src/aulib/face/template68.json``).

Generalised Procrustes mean of dlib landmark fits on the CK+ neutral frames (upscaled 4x, dlib
detector boxes), then placed in a unit square: jaw width spans 0.1–0.9 and the brows-to-chin
extent is centred at 0.55 so the forehead above the brows stays inside the crop for masking.
Run: ``python scripts/make_template.py ../shared/data``.
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from aulib.face.align import umeyama
from aulib.face.detect import DlibHogDetector
from aulib.face.landmarks import LandmarkPredictor
from aulib.io import read_image

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
labels = pd.read_csv(data / "ckplus48/labels/images_au.csv")
neutral = labels[labels.role == "neutral_first_frame"].drop_duplicates("subject")
det, lmk = DlibHogDetector(upsample=0), LandmarkPredictor()
shapes = []
for rel in neutral.path:
    img = cv2.resize(read_image(data / "ckplus48" / rel), (192, 192), interpolation=cv2.INTER_CUBIC)
    d = det(img)
    if len(d) == 1:
        shapes.append(lmk(img, (d[0].x, d[0].y, d[0].width, d[0].height)))
print(f"{len(shapes)} neutral faces fitted of {len(neutral)}")
mean = shapes[0] - shapes[0].mean(0)
for _ in range(10):
    aligned = []
    for s in shapes:
        m = umeyama(s, mean)
        aligned.append(s @ m[:, :2].T + m[:, 2])
    new = np.mean(aligned, axis=0)
    new -= new.mean(0)
    new /= np.sqrt((new**2).sum(1).mean())
    mean = new
# Mirror-symmetrise so left/right AUs see the same geometry.
mirror = [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
          27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
          54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
flipped = mean[mirror] * [-1, 1]
mean = (mean + flipped) / 2
lo, hi = mean.min(0), mean.max(0)
scale = 0.8 / (hi[0] - lo[0])
t = (mean - (lo + hi) / 2) * scale + [0.5, 0.55]
Path("src/aulib/face/template68.json").write_text(json.dumps({
    "description": "Canonical 68-point face (iBUG order) in unit-square coordinates; multiply by the crop size.",
    "source": f"Procrustes mean of dlib fits on {len(shapes)} CK+ neutral frames, mirror-symmetrised",
    "points": np.round(t, 5).tolist(),
}, indent=1))
print("eye centres", t[36:42].mean(0), t[42:48].mean(0), "y range", t[:, 1].min(), t[:, 1].max())
