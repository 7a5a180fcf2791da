"""Measure :data:`aulib.face.gaze.CORNER_SHIFT`: where dlib's eye corners lie relative to the iris network's.

The gaze stage measures the iris against the corners the iris network's eyelid head finds (the same network,
so they mirror with the eye's pixels), shifted onto the 68-point canthi OpenFace's eyeball model is defined on.
This prints that shift: dlib's (outer, inner) corner minus the network's, in the network's 64 px crop
(the image-left eye as is, the other mirrored, so the outer corner is on the crop's left for both), averaged
over every face of the sample photos and every 8th frame of the sample videos::

    python scripts/eye_corner_offset.py [../shared/data/samples]

Measured 2026-12-03 (168 eyes: 3 photos, 3 videos): outer (−2.70, 0.40), inner (−0.32, 0.31) px (medians
−2.72, 0.53 / −0.36, 0.31; standard deviation ≈ 1.4 px in x, 0.9 px in y).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PHOTOS = ("single_face.jpg", "multi_face.jpg", "BWPictureHuman.jpg")
VIDEOS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov")


def main(folder: Path) -> None:
    import av

    import aulib
    from aulib.face.gaze import CORNER_SHIFT, IrisModel, landmark_corners
    from aulib.io import read_image

    images = [read_image(folder / name) for name in PHOTOS]
    for name in VIDEOS:
        with av.open(str(folder / name)) as c:
            images += [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % 8 == 0]
    analyzer, iris = aulib.Analyzer(emotion_model="none"), IrisModel()
    diffs = []
    for image in images:
        for face in analyzer.get(image):
            if not face.success or face.eyes is None or face.eye_matrices is None or face.landmarks is None:
                continue
            net = iris(face.eyes)[:, 5:] - CORNER_SHIFT  # the network's own corners
            diffs.extend(landmark_corners(face) - net)
    d = np.array(diffs)
    print(f"{len(d)} eyes; dlib − network, crop pixels (x towards the inner corner, y down):")
    for k, corner in enumerate(("outer", "inner")):
        print(f"  {corner}: mean ({d[:, k, 0].mean():+.2f}, {d[:, k, 1].mean():+.2f}), "
              f"median ({np.median(d[:, k, 0]):+.2f}, {np.median(d[:, k, 1]):+.2f}), "
              f"sd ({d[:, k, 0].std():.2f}, {d[:, k, 1].std():.2f})")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
