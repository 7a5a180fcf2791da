"""``aulib plot``: a real, non-blank PNG for video tables (time series) and image tables (bars)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from aulib.cli import app
from aulib.face.record import EMOTIONS
from aulib.plot import plot_table
from aulib.table import columns, to_frame, write_table

from .conftest import sample

runner = CliRunner()
AUS = [1, 2, 4, 6, 12, 25]


def synthetic(frames: int, faces: int = 1, name: str = "clip.mp4") -> pd.DataFrame:
    """A table shaped like ``aulib analyze`` output with smooth random AU/emotion curves."""
    rng = np.random.default_rng(0)
    rows = []
    for f in range(frames):
        for k in range(faces):
            r = {"input": name, "frame": f, "timestamp": f / 30, "face": k, "success": 1, "error": "",
                 "face_x": 100.0 * k, "face_y": 10.0, "face_width": 90.0, "face_height": 90.0, "face_score": 0.99}
            for a in AUS:
                r[f"AU{a:02d}_r"] = float(2.5 + 2 * np.sin(f / 5 + a + k))
                r[f"AU{a:02d}_c"] = int(r[f"AU{a:02d}_r"] > 2.5)
            p = rng.dirichlet(np.ones(len(EMOTIONS)))
            r.update({f"p_{e}": float(v) for e, v in zip(EMOTIONS, p)})
            r["emotion"] = EMOTIONS[int(np.argmax(p))]
            rows.append(r)
    return to_frame(rows, columns(AUS))


def assert_real_png(path, min_size=(600, 300)):
    img = Image.open(path)
    img.verify()
    img = Image.open(path).convert("RGB")
    a = np.asarray(img, dtype=np.float32)
    assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1]
    assert a.std() > 10  # not blank
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # lines, text, colours


def test_video_table_time_series(tmp_path):
    df = synthetic(60, faces=2)
    out = plot_table(df, tmp_path / "video.png")
    assert_real_png(out, (1000, 1200))  # two faces × two panels


def test_image_table_bars_and_cli(tmp_path):
    table = tmp_path / "img.csv"
    write_table(synthetic(1, faces=3, name="group.jpg"), table)
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "img.png")])
    assert res.exit_code == 0, res.output
    assert_real_png(tmp_path / "img.png")


def test_cli_errors_are_clean(tmp_path):
    table = tmp_path / "none.csv"
    write_table(to_frame([{"input": "x.jpg", "success": 0, "error": "no face detected"}], columns(AUS)), table)
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "no successfully analysed face" in res.output
    res = runner.invoke(app, ["plot", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "p.png")])
    assert res.exit_code == 2


def test_plot_of_a_real_analysis(tmp_path, analyzer):
    df = analyzer.analyze(sample("single_face.mp4"), every=12)
    assert_real_png(plot_table(df, tmp_path / "real.png"))
