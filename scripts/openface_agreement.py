"""Agreement of aulib's video channels with OpenFace 2 on a clip: the figures of the README's
"Measured against OpenFace 2" table, printed by one command.

    python scripts/openface_agreement.py ../shared/data/samples/WolfgangLanger_Pexels.mp4 \
        ../shared/peers/openface/reference/WolfgangLanger_Pexels.csv

Runs ``aulib.analyze`` on the clip twice (smoothed, as shipped, and raw) and compares, on the frames
both tools succeed on: head pose (mean |difference| per axis, degrees), gaze angles (over the frames
aulib gives a gaze, and over those both tools read as open, AU45_r < 1), the eyes' vergence (how far
the image-left eye is turned right of the other: positive = converging), AU trace jitter (median over
the shared AUs of mean |x[t+1] − x[t]| / std) and Pearson r of AU06/AU12/AU25 intensities.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

import aulib


def jitter(df: pd.DataFrame, cols: list[str]) -> float:
    return float(np.median([df[c].diff().abs().mean() / df[c].std() for c in cols if df[c].std() > 0]))


def vergence(df: pd.DataFrame) -> float:
    def h(e: int) -> pd.Series:
        return np.degrees(np.arctan2(df[f"gaze_{e}_x"], -df[f"gaze_{e}_z"]))
    return float((h(0) - h(1)).mean())


def main(clip: str, reference: str) -> None:
    ours = aulib.analyze(clip).set_index("frame")
    raw = aulib.analyze(clip, smooth=False).set_index("frame")
    ref = pd.read_csv(reference, skipinitialspace=True)
    ref.columns = ref.columns.str.strip()
    ref = ref.set_index(ref["frame"] - int(ref["frame"].min() == 1))  # OpenFace counts frames from 1
    both = ours.index[(ours["success"] == 1)].intersection(ref.index[ref["success"] == 1])
    a, r, w = ours.loc[both], ref.loc[both], raw.loc[both]
    print(f"{clip}: {len(both)} frames both tools succeed on")
    pose = [np.degrees((a[c] - r[c]).abs().mean()) for c in ("pose_Rx", "pose_Ry", "pose_Rz")]
    print("pose mean |diff| Rx / Ry / Rz: " + " / ".join(f"{v:.1f}°" for v in pose))
    seen = a["gaze_angle_x"].notna()
    open_ = seen & (a["AU45_r"] < 1) & (r["AU45_r"] < 1)
    for name, k in (("frames with an aulib gaze", seen), ("eyes open by both (AU45_r < 1)", open_)):
        d = [np.degrees((a[c] - r[c])[k].abs().mean()) for c in ("gaze_angle_x", "gaze_angle_y")]
        corr = np.corrcoef(a["gaze_angle_x"][k], r["gaze_angle_x"][k])[0, 1]
        print(f"gaze mean |diff| x / y, {name} ({int(k.sum())}): {d[0]:.1f}° / {d[1]:.1f}°, r(x) {corr:.2f}")
    print(f"vergence: aulib {vergence(a[seen]):.1f}°, OpenFace {vergence(r[seen]):.1f}°")
    aus = [c for c in a.columns if c.endswith("_r") and c != "AU45_r" and c in r.columns]
    print(f"AU jitter ({len(aus)} AUs): raw {jitter(w, aus):.3f}, smoothed {jitter(a, aus):.3f}, "
          f"OpenFace {jitter(r, aus):.3f}")
    gaze = ["gaze_angle_x", "gaze_angle_y"]
    print("gaze jitter x / y: raw " + "/".join(f"{jitter(w, [c]):.2f}" for c in gaze) + ", smoothed "
          + "/".join(f"{jitter(a, [c]):.2f}" for c in gaze) + ", OpenFace "
          + "/".join(f"{jitter(r, [c]):.2f}" for c in gaze))
    rs = [np.corrcoef(a[c], r[c])[0, 1] for c in ("AU06_r", "AU12_r", "AU25_r")]
    rr = [np.corrcoef(w[c], r[c])[0, 1] for c in ("AU06_r", "AU12_r", "AU25_r")]
    print("r AU06 / AU12 / AU25: raw " + "/".join(f"{v:.2f}" for v in rr) + ", smoothed "
          + "/".join(f"{v:.2f}" for v in rs))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
