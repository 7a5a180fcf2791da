"""An analysis script written for OpenFace's CSV runs unchanged on aulib's CSV.

The function below is the kind of pandas code OpenFace users write (strip the spaces OpenFace puts after
each comma in the header, keep confident successful frames, per-face summaries of AUs, head pose and
blinks). It is run on OpenFace's own reference output and on aulib's table of the same clip.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from aulib.table import openface_csv, write_table

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


def raw_openface_script(csv_path) -> dict:
    """OpenFace code as much of it is written: the spaced names OpenFace's ", " separators give (no strip),
    numpy on the whole file, and ``sep=", "``. It failed on aulib's own CSV (KeyError ' AU45_r', or, where
    guarded by ``' confidence' in df.columns``, AU45 silently read as zeros)."""
    df = pd.read_csv(csv_path)
    kept = df[(df[" success"] == 1) & (df[" confidence"] >= 0.8)]
    grid = np.loadtxt(csv_path, delimiter=",", skiprows=1)  # every field a number, as OpenFace's
    again = pd.read_csv(csv_path, sep=", ", engine="python")
    return {"frames": len(df), "kept": len(kept), "first_frame": int(df["frame"].iat[0]),
            "smile": kept[" AU12_r"].mean(), "blink_frames": int(kept[" AU45_c"].sum()),
            "yaw_deg": float(np.degrees(kept[" pose_Ry"]).mean()), "grid": grid.shape,
            "same_numbers": bool(np.allclose(again.to_numpy(float), grid))}


def test_to_openface_writes_openfaces_layout_for_scripts_that_index_spaced_names(analyzer, tmp_path):
    from typer.testing import CliRunner

    from aulib.cli import app

    clip = analyzer.analyze(sample("single_face.mp4"))
    photos = analyzer.analyze([sample("multi_face.jpg"), sample("free-mountain-vector-01.jpg")])
    write_table(clip, tmp_path / "clip.csv")
    write_table(pd.concat([clip, photos], ignore_index=True), tmp_path / "all.parquet")
    runner = CliRunner()
    res = runner.invoke(app, ["to-openface", str(tmp_path / "clip.csv"), "-o", str(tmp_path / "clip_of.csv")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "clip_of.csv").read_text()
    assert text.startswith("frame, face_id, timestamp, confidence, success, gaze_0_x, gaze_0_y, gaze_0_z, ")
    assert "\n1, 0, 0.000, " in text  # frames from 1 and OpenFace's decimals
    got = raw_openface_script(tmp_path / "clip_of.csv")
    ok = clip[(clip["success"] == 1) & (clip["confidence"] >= 0.8)]
    assert got["frames"] == len(clip) and got["first_frame"] == 1 and got["kept"] == len(ok) > 60
    assert abs(got["smile"] - ok["AU12_r"].mean()) < 0.01 and got["blink_frames"] == ok["AU45_c"].sum() > 0
    assert abs(got["yaw_deg"] - np.degrees(ok["pose_Ry"]).mean()) < 0.1 and got["same_numbers"]
    assert got["grid"][1] == 5 + 8 + 6 + 136 + 2 * 18  # ids, gaze, pose, landmarks, 18 AUs twice
    # several inputs: one file each in a folder, as FeatureExtraction writes; a frame without a face all 0
    res = runner.invoke(app, ["to-openface", str(tmp_path / "all.parquet"), "-o", str(tmp_path / "of")])
    assert res.exit_code != 0 and "give -o a folder" in " ".join(res.output.split()), res.output
    res = runner.invoke(app, ["to-openface", str(tmp_path / "all.parquet"), "-o", str(tmp_path / "of") + "/"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "of").rglob("*.csv")) == [
        "free-mountain-vector-01.csv", "multi_face.csv", "single_face.csv"]
    group = pd.read_csv(next((tmp_path / "of").rglob("multi_face.csv")))
    assert group[" face_id"].tolist() == [0, 1, 2, 3, 4] and (group[" success"] == 1).all()
    empty = pd.read_csv(next((tmp_path / "of").rglob("free-mountain-vector-01.csv")))
    assert len(empty) == 1 and empty.drop(columns=["frame", " timestamp"]).eq(0).all(axis=None)
    assert empty["frame"].tolist() == [1]
    # refused in one line: OpenFace's own table, the table itself as the output, a name that is not .csv
    foreign = tmp_path / "openface.csv"
    foreign.write_text("frame, face_id, timestamp, confidence, success, AU12_r\n1, 0, 0.000, 0.98, 1, 1.20\n")
    for args, said in (([str(foreign), "-o", str(tmp_path / "x.csv")], "not a table written by aulib analyze"),
                       ([str(tmp_path / "clip.csv"), "-o", str(tmp_path / "clip.csv")], "is the table being read"),
                       ([str(tmp_path / "clip.csv"), "-o", str(tmp_path / "x.txt")], "name it .csv")):
        res = runner.invoke(app, ["to-openface", *args])
        assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output
    # a folder output beside the table: the file named after the input would be the table itself
    res = tmp_path / "res"
    res.mkdir()
    write_table(clip, res / "single_face.csv")
    before = (res / "single_face.csv").read_bytes()
    out = runner.invoke(app, ["to-openface", str(res / "single_face.csv"), "-o", str(res) + "/"])
    assert out.exit_code == 2 and "is the table being read" in out.output, out.output
    assert (res / "single_face.csv").read_bytes() == before
    empty = tmp_path / "empty.csv"
    write_table(clip.iloc[:0], empty)
    out = runner.invoke(app, ["to-openface", str(empty), "-o", str(tmp_path / "e.csv")])
    assert out.exit_code == 2 and "holds no rows" in out.output and not (tmp_path / "e.csv").exists(), out.output
    with pytest.raises(ValueError, match="holds 3 inputs"):  # the Python API: one input's rows, as OpenFace writes
        openface_csv(pd.concat([clip, photos]))


def test_to_openface_reads_a_partitioned_output(tmp_path):
    from typer.testing import CliRunner

    from aulib.cli import app

    runner = CliRunner()
    part = str(tmp_path / "part") + "/"
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", part, "--emotion-model", "none"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["to-openface", part, "-o", str(tmp_path / "photo.csv")])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "photo.csv")
    assert len(df) == 1 and df["frame"].tolist() == [1] and df[" success"].tolist() == [1]
