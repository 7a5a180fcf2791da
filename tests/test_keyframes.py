"""Networks on sparse frames of smoothed video (aulib.video.keyframes): which faces run the embedding CNN,
the AU heads and the iris network, what the faces between get, and that the traces stay those of every frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aulib.face.record import Face
from aulib.table import to_frame
from aulib.video import analyze_video_rows
from aulib.video.keyframes import plan

from .conftest import sample


def faces(ids: list[int], ok: list[bool] | None = None) -> list[Face]:
    """Face records of the track ``ids``; ``ok[i]`` False: a failed fit (``success`` False)."""
    return [Face(box=np.zeros(4), score=1.0, id=i, matrix=np.eye(2, 3),
                 error="" if ok is None or ok[k] else "landmark fit failed") for k, i in enumerate(ids)]


def test_plan_spaces_network_faces_by_max_gap_and_keeps_the_ends():
    fs = faces([0] * 6)
    # 25 fps, max_gap 0.08 s: every other face; positions 1 and 3 come from their neighbours, 0, 2, 4 and the
    # last (5) run the networks
    kf = plan(fs, [i / 25 for i in range(6)], max_gap=0.08)
    assert [kf.neighbours(f) is not None for f in fs] == [False, True, False, True, False, False]
    a, b, w = kf.neighbours(fs[1])
    assert a is fs[0] and b is fs[2] and w == pytest.approx(0.5)
    # the video pipeline's 0.128 s: every third face (0.12 s apart), then the last
    kf = plan(fs, [i / 25 for i in range(6)], max_gap=0.128)
    assert [kf.neighbours(f) is not None for f in fs] == [False, True, True, False, True, False]
    assert [(kf.neighbours(fs[i])[:2], kf.neighbours(fs[i])[2]) for i in (1, 2)] == [
        ((fs[0], fs[3]), pytest.approx(1 / 3)), ((fs[0], fs[3]), pytest.approx(2 / 3))]
    assert kf.neighbours(fs[4])[:2] == (fs[3], fs[5])
    # exactly max_gap apart counts as within it (frame times are float sums)
    assert len(plan(fs, [i * 0.04 for i in range(6)], max_gap=0.16)) == 3  # 1–3 between 0 and 4; 4 and 5 run
    # two faces per frame: each track on its own, in its own order
    fs = faces([0, 1] * 5)
    kf = plan(fs, [i // 2 / 25 for i in range(10)], max_gap=0.08)
    assert [kf.neighbours(f)[0] is fs[i - 2] for i, f in enumerate(fs) if kf.neighbours(f)] == [True] * 4
    assert sum(kf.neighbours(f) is not None for f in fs) == 4  # positions 1 and 3 of both tracks


def test_plan_runs_faces_whose_neighbours_are_far_apart_or_failed():
    fs = faces([0] * 5)
    assert len(plan(fs, [0.0, 0.2, 0.4, 0.6, 0.8], max_gap=0.16)) == 0  # sparse sampling: 0.4 s apart
    w = plan(fs, [0.0, 0.02, 0.08, 0.1, 0.2], max_gap=0.08).neighbours(fs[1])[2]
    assert w == pytest.approx(0.25)  # uneven frame times weigh the nearer neighbour more
    fs = faces([0] * 5, ok=[True, False, True, True, True])  # a failed fit is not a neighbour
    kf = plan(fs, [i / 25 for i in range(5)], max_gap=0.12)
    a, b, w = kf.neighbours(fs[2])
    assert kf.neighbours(fs[1]) is None and (a, b) == (fs[0], fs[3]) and w == pytest.approx(2 / 3)
    # a stage that sees only part of the batch runs a face whose neighbour it does not have
    assert kf.within([fs[2], fs[3]]) == [None, None]


class Counting:
    """Counts the faces (or eye crops) a network is asked to run."""

    def __init__(self, fn):
        self.fn, self.n = fn, 0

    def __call__(self, x, *a, **k):
        self.n += len(x)
        return self.fn(x, *a, **k)


def test_sparse_network_frames_keep_the_traces(analyzer, monkeypatch):
    """On WolfgangLanger_Pexels.mp4 (23.98 fps): about 40 % of the network runs, traces as with every frame
    (the figures of aulib.video.keyframes)."""
    path = sample("WolfgangLanger_Pexels.mp4")
    cnn = Counting(analyzer.features.embedder.predict_with_embedding)
    iris = Counting(analyzer.gaze.iris.__call__)
    monkeypatch.setattr(analyzer.features.embedder, "predict_with_embedding", cnn)
    monkeypatch.setattr(type(analyzer.gaze.iris), "__call__", lambda self, x: iris(x))
    full = to_frame(analyze_video_rows(analyzer, path, interpolate=False), analyzer.columns)
    n_cnn, n_iris = cnn.n, iris.n
    cnn.n = iris.n = 0
    half = to_frame(analyze_video_rows(analyzer, path), analyzer.columns)
    assert n_cnn == 472 and 0.35 < cnn.n / n_cnn < 0.45  # every third face, plus each batch's last
    assert 0.3 < iris.n / n_iris < 0.55  # and eyes whose neighbour's eye was shut run themselves
    au = [c for c in full.columns if c.startswith("AU") and c.endswith("_r") and c != "AU45_r"]
    assert np.abs(full[au] - half[au]).to_numpy().mean() < 0.02
    occ = [c for c in full.columns if c.startswith("AU") and c.endswith("_c")]
    assert (full[occ] == half[occ]).to_numpy().mean() > 0.99
    # landmarks, pose and blinks are each frame's own; gaze within a degree on average
    own = [c for c in full.columns if c.startswith(("x_", "y_", "pose_", "AU45"))]
    assert full[own].equals(half[own])
    gaze = np.degrees((full["gaze_angle_x"] - half["gaze_angle_x"]).abs())
    assert full["gaze_angle_x"].isna().equals(half["gaze_angle_x"].isna()) and gaze.mean() < 1.0
    # raw traces (and so the live page's causal path) run every network on every frame
    cnn.n = 0
    raw = to_frame(analyze_video_rows(analyzer, path, smooth=False, max_frames=60), analyzer.columns)
    assert cnn.n == 60 and raw[au].equals(
        to_frame(analyze_video_rows(analyzer, path, smooth=False, interpolate=False, max_frames=60),
                 analyzer.columns)[au])
    with pytest.raises(TypeError, match="interpolate"):
        analyze_video_rows(analyzer, path, interpolate="no")


def test_multitask_emotion_model_reads_the_same_sparse_frames(analyzer, monkeypatch):
    """``--emotion-model multitask`` ran its network on every frame of smoothed video while the AU heads of the
    other models took every third: its AU columns differed by up to 0.067 on single_face.mp4. Now it runs on the
    planned frames, and the AU columns are those of the model that runs the heads apart."""
    from aulib.analyzer import Analyzer

    path = sample("single_face.mp4")
    mt = Analyzer(emotion_model="multitask")
    net = Counting(mt.cnn.predict)
    monkeypatch.setattr(mt.cnn, "predict", net)
    df = to_frame(analyze_video_rows(mt, path), mt.columns)
    ref = to_frame(analyze_video_rows(analyzer, path), analyzer.columns)
    ok = int((df.success == 1).sum())
    assert ok > 30 and 0.3 < net.n / ok < 0.5
    au = [c for c in ref.columns if c.startswith("AU") and c.endswith(("_r", "_c", "_p"))]
    assert len(au) > 40 and np.allclose(df[au].to_numpy(float), ref[au].to_numpy(float), atol=1e-6, equal_nan=True)
    # the emotion probabilities between take their neighbours' (each row still sums to 1)
    p = df[[c for c in df.columns if c.startswith("p_")]].to_numpy(float)[df.success == 1]
    assert np.allclose(p.sum(axis=1), 1, atol=1e-4)


def test_every_nth_frame_is_too_sparse_to_interpolate(analyzer, monkeypatch):
    cnn = Counting(analyzer.features.embedder.predict_with_embedding)
    monkeypatch.setattr(analyzer.features.embedder, "predict_with_embedding", cnn)
    df = to_frame(analyze_video_rows(analyzer, sample("single_face.mp4"), every=5), analyzer.columns)
    assert cnn.n == (df.success == 1).sum() > 10  # frames 0.2 s apart: each runs the networks


def test_cli_records_interpolation_and_refuses_to_mix_it_on_resume(tmp_path):
    from typer.testing import CliRunner

    from aulib.cli import app

    clip = sample("single_face.mp4")
    out = tmp_path / "t.csv"
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", str(clip), "-o", str(out), "--max-frames", "8"])
    assert res.exit_code == 0, res.output
    meta = tmp_path / "t.csv.meta.json"
    options = json.loads(meta.read_text())["options"]
    assert options["interpolate"] is True and options["network_gap_s"] == 0.128
    # a table whose networks ran on alternate frames (before network_gap_s) is not continued with every third
    m = json.loads(meta.read_text())
    del m["options"]["network_gap_s"]
    meta.write_text(json.dumps(m))
    res = runner.invoke(app, ["analyze", str(clip), "-o", str(out), "--max-frames", "8", "--resume"])
    assert res.exit_code != 0 and "network_gap_s 'alternate frames' → 0.128" in res.output
    m["options"]["network_gap_s"] = 0.128
    meta.write_text(json.dumps(m))
    res = runner.invoke(app, ["analyze", str(clip), "-o", str(out), "--max-frames", "8", "--resume",
                              "--no-interpolate"])
    # the spacing of the networks' frames is not named beside it: a run without interpolation spaces none
    assert res.exit_code != 0 and "interpolate True → False" in res.output and "network_gap_s" not in res.output
    # a table from before the option ran the networks on every frame
    m = json.loads(meta.read_text())
    del m["options"]["interpolate"], m["options"]["network_gap_s"]
    meta.write_text(json.dumps(m))
    res = runner.invoke(app, ["analyze", str(clip), "-o", str(out), "--max-frames", "8", "--resume"])
    assert res.exit_code != 0 and "interpolate False → True" in res.output
    res = runner.invoke(app, ["analyze", str(clip), "-o", str(out), "--max-frames", "8", "--resume",
                              "--no-interpolate"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["analyze", str(clip), "-o", str(tmp_path / "raw.csv"), "--max-frames", "8",
                              "--no-smooth", "--interpolate"])
    assert res.exit_code == 0 and "--interpolate acts with --smooth only" in res.output


def test_run_metadata_records_the_smoothing_width_an_api_caller_chose():
    """network_gap_s follows the σ the video options give (it is KEY_GAP_SIGMAS σ), and a σ other than the
    default is recorded, so --resume does not continue a table smoothed differently."""
    from aulib.batch import AnalyzerSpec, run_differences, run_options

    spec = AnalyzerSpec()
    default = run_options(spec, {})
    wide = run_options(spec, {"smooth_sigma": 0.2})
    assert default["network_gap_s"] == 0.128 and "smooth_sigma" not in default
    assert wide["network_gap_s"] == 0.32 and wide["smooth_sigma"] == 0.2
    assert run_differences({"options": default, "columns": []}, {"options": wide, "columns": []}) == [
        "network_gap_s 0.128 → 0.32", "smooth_sigma 0.08 → 0.2"]
    assert run_differences({"options": default, "columns": []}, {"options": run_options(spec, {}), "columns": []}) == []
    raw = run_options(spec, {"smooth": False})
    assert "network_gap_s" not in raw
    assert run_differences({"options": default, "columns": []}, {"options": raw, "columns": []}) == [
        "smooth True → False", "interpolate True → False"]


def test_resume_of_videos_alone_is_not_refused_over_an_option_that_acts_on_images(tmp_path):
    """--no-tta with videos alone is said to be inert (video frames run one network), and the run's metadata
    records the default, so --resume of the same videos continues; with a photo among the inputs it acts and
    is refused."""
    from typer.testing import CliRunner

    from aulib.cli import app

    runner = CliRunner()
    clip, photo = str(sample("single_face.mp4")), str(sample("single_face.jpg"))
    out = tmp_path / "v.csv"
    assert runner.invoke(app, ["analyze", clip, "-o", str(out), "--max-frames", "4"]).exit_code == 0
    before = out.read_bytes()
    res = runner.invoke(app, ["analyze", clip, "-o", str(out), "--max-frames", "4", "--no-tta", "--resume"])
    assert res.exit_code == 0 and "acts on images only" in res.output and out.read_bytes() == before, res.output
    both = tmp_path / "b.csv"
    assert runner.invoke(app, ["analyze", clip, photo, "-o", str(both), "--max-frames", "4"]).exit_code == 0
    res = runner.invoke(app, ["analyze", clip, photo, "-o", str(both), "--max-frames", "4", "--no-tta", "--resume"])
    assert res.exit_code != 0 and "tta True → False" in res.output
