"""An analysis script written for OpenFace's CSV runs unchanged on aulib's CSV.

The function below is the kind of pandas code OpenFace users write (strip the spaces OpenFace puts after
each comma in the header, keep confident successful frames, per-face summaries of AUs, head pose and
blinks). It is run on OpenFace's own reference output and on aulib's table of the same clip.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from aulib.table import write_table

from .conftest import sample
from .test_pose import REFERENCE, openface


def openface_style_analysis(csv_path) -> pd.DataFrame:
    """Per face: frames kept, mean smile intensity, % smiling, head yaw/pitch in degrees, blinks, gaze
    angles, head distance — exactly as one would write it for OpenFace's FeatureExtraction output."""
    df = pd.read_csv(csv_path)
    df.columns = df.columns.str.strip()
    df = df[(df["success"] == 1) & (df["confidence"] >= 0.8)]
    out = []
    for face_id, g in df.groupby("face_id"):
        blink = g["AU45_c"].astype(int).to_numpy()
        out.append({
            "face_id": int(face_id),
            "frames": len(g),
            "smile_mean": g["AU12_r"].mean(),
            "smiling_pct": 100 * g["AU12_c"].mean(),
            "cheek_mean": g["AU06_r"].mean(),
            "yaw_deg": np.degrees(g["pose_Ry"]).mean(),
            "pitch_deg": np.degrees(g["pose_Rx"]).mean(),
            "roll_deg": np.degrees(g["pose_Rz"]).mean(),
            "distance_mm": g["pose_Tz"].mean(),
            "gaze_x_deg": np.degrees(g["gaze_angle_x"]).mean(),
            "gaze_y_deg": np.degrees(g["gaze_angle_y"]).mean(),
            "eyes_apart_deg": np.degrees(np.arccos(np.clip(
                (g[["gaze_0_x", "gaze_0_y", "gaze_0_z"]].to_numpy()
                 * g[["gaze_1_x", "gaze_1_y", "gaze_1_z"]].to_numpy()).sum(axis=1), -1, 1))).mean(),
            "blinks": int((np.diff(np.r_[0, blink]) == 1).sum()),
            "duration_s": g["timestamp"].max() - g["timestamp"].min(),
            # OpenFace tutorials take the AU blocks as label slices
            "au_r_columns": ",".join(g.loc[:, "AU01_r":"AU45_r"].columns),
            "au_c_columns": ",".join(g.loc[:, "AU01_c":"AU45_c"].columns),
            "au_r_mean": g.loc[:, "AU01_r":"AU45_r"].mean().mean(),
        })
    return pd.DataFrame(out)


def test_openface_analysis_runs_unchanged_on_aulib_csv(analyzer, tmp_path):
    of = openface_style_analysis(REFERENCE / "single_face.csv") if (REFERENCE / "single_face.csv").exists() \
        else openface("single_face.csv")
    csv = write_table(analyzer.analyze(sample("single_face.mp4")), tmp_path / "aulib.csv")
    ours = openface_style_analysis(csv)
    assert list(ours.columns) == list(of.columns)
    assert len(ours) == 1 and ours["face_id"].tolist() == [0] and ours["frames"].iat[0] >= 70
    assert ours["blinks"].iat[0] == 1  # one blink by eye (frames 25–29)
    for col, tol in (("yaw_deg", 5.0), ("pitch_deg", 5.0), ("roll_deg", 5.0), ("gaze_x_deg", 5.0),
                     ("gaze_y_deg", 5.0)):
        assert abs(ours[col].iat[0] - of[col].iat[0]) < tol, (col, ours[col].iat[0], of[col].iat[0])
    assert abs(ours["duration_s"].iat[0] - of["duration_s"].iat[0]) < 0.1
    assert ours["smile_mean"].iat[0] > 0 and np.isfinite(ours["distance_mm"].iat[0])
    # the label slices hold AU columns only, blink last, as OpenFace's (they took in 43 columns: rule_*, the
    # text emotion, p_*, confidence, pose_T* …)
    for block in ("au_r_columns", "au_c_columns"):
        names = ours[block].iat[0].split(",")
        kind = block[3]
        assert all(re.fullmatch(rf"AU\d\d_{kind}", n) for n in names) and names[-1] == f"AU45_{kind}", names
    assert 0 <= ours["au_r_mean"].iat[0] <= 5
