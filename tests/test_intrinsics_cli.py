"""``aulib analyze --intrinsics FX,FY,CX,CY``: real camera intrinsics reach head pose, and --resume checks them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aulib import table
from aulib.cli import app
from aulib.io import read_image

from .conftest import sample

runner = CliRunner()


def _pose(tmp_path, name: str, *extra: str):
    out = tmp_path / name
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(out), "--emotion-model", "none",
                              *extra])
    assert res.exit_code == 0, res.output
    return table.head_pose(table.read_table(out)).iloc[0]


def test_focal_length_scales_distance_not_rotation(tmp_path):
    h, w = read_image(sample("single_face.jpg")).shape[:2]
    f = 500 * w / 640  # OpenFace's default focal length for this image width
    default = _pose(tmp_path, "a.csv")
    same = _pose(tmp_path, "b.csv", "--intrinsics", f"{f},{f},{w / 2},{h / 2}")
    long_lens = _pose(tmp_path, "c.csv", "--intrinsics", f"{2 * f},{2 * f},{w / 2},{h / 2}")
    assert same.to_dict() == pytest.approx(default.to_dict(), abs=1e-6)
    # a pinhole camera with twice the focal length sees the same face at twice the distance
    assert long_lens["Tz"] == pytest.approx(2 * default["Tz"], rel=0.02)
    for r in ("Rx", "Ry", "Rz"):
        assert long_lens[r] == pytest.approx(default[r], abs=0.05)


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d", "0,500,320,240", "500,500,nan,240"])
def test_bad_intrinsics_are_one_line_and_exit_2(bad, tmp_path):
    res = runner.invoke(app, ["analyze", str(sample("single_face.jpg")), "-o", str(tmp_path / "x.csv"),
                              "--intrinsics", bad])
    assert res.exit_code == 2 and "--intrinsics must be four numbers" in res.output
    assert "Traceback" not in res.output


def test_resume_refuses_other_intrinsics(tmp_path):
    out = tmp_path / "t.csv"
    args = ["analyze", str(sample("single_face.jpg")), "-o", str(out), "--emotion-model", "none"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, [*args, "--resume", "--intrinsics", "900,900,286,281"])
    assert res.exit_code == 2 and "intrinsics" in res.output
