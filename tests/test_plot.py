"""``aulib plot``: real, non-blank pictures for video tables (small multiples / heatmap + stacked emotions) and
image tables (one panel per face), AU selection, smoothing and FACS names on the axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from aulib.cli import app
from aulib.face.record import EMOTIONS
from aulib.plot import figure, parse_aus, plot_table, smooth_frame
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
    write_table(synthetic(10), table)
    for args, msg in ((["--aus", "7"], "no AU07 intensity"), (["--aus", "six"], "not an AU number"),
                      (["--style", "pie"], "--style must be"), (["--smooth", "-1"], "--smooth"),
                      (["--face", "5"], "face 5 (its faces: 0)")):  # the ids it has (it named none)
        res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png"), *args])
        assert res.exit_code == 2 and msg in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_plot_of_a_real_analysis(tmp_path, analyzer):
    df = analyzer.analyze(sample("single_face.mp4"), every=12)
    assert_real_png(plot_table(df, tmp_path / "real.png"))


def _labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()] + [ax.get_ylabel()]


def test_au_selection_small_multiples_with_facs_names(tmp_path):
    fig = figure(synthetic(90), aus=[12, 6], smooth=0.3)
    axes = fig.get_axes()
    assert len(axes) == 3  # AU12, AU06 (in the order asked), then the emotions
    assert axes[0].get_ylabel() == "AU12 lip corner puller" and axes[1].get_ylabel() == "AU06 cheek raiser"
    assert all(a.get_ylim() == (0, 5) for a in axes[:2])  # one scale for every AU panel
    assert len(axes[2].collections) == len(EMOTIONS)  # CNN probabilities as stacked areas, one per emotion
    top = axes[2].collections[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0, abs=1e-6)  # the stack reaches 1: probabilities sum to 1
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[2])
    res = runner.invoke(app, ["plot", str(write_table(synthetic(90), tmp_path / "t.csv")), "-o",
                              str(tmp_path / "sel.png"), "--aus", "6,12", "--smooth", "0.5"])
    assert res.exit_code == 0, res.output
    assert_real_png(tmp_path / "sel.png", (1000, 400))


def test_heatmap_has_aus_by_time_with_gaps_blank():
    df = synthetic(40)
    df.loc[df["frame"].between(10, 14), "success"] = 0  # five frames without the face
    fig = figure(df, style="heatmap")
    heat = fig.get_axes()[0]
    mesh = heat.collections[0]
    values = mesh.get_array()
    assert values.shape == (len(AUS), 40)  # AUs × every frame of the input
    assert values.mask[:, 10:15].all() and not values.mask[:, :10].any()  # no face: blank, not "0"
    assert "AU25 lips part" in _labels(heat)


def test_smoothing_is_centred_and_by_time():
    t = np.arange(0, 4, 1 / 30)
    step = pd.DataFrame({"x": (t >= 2).astype(float)})
    sm = smooth_frame(step, t, 0.5)["x"].to_numpy()
    crossing = t[np.argmax(sm >= 0.5)]
    assert abs(crossing - 2.0) < 0.05  # centred: no lag
    assert 0 < sm[np.searchsorted(t, 1.9)] < 0.5 and sm[0] == 0 and sm[-1] == 1
    # every other frame dropped: same window in seconds, same result where both have samples
    half = smooth_frame(step.iloc[::2].reset_index(drop=True), t[::2], 0.5)["x"].to_numpy()
    assert np.abs(half - sm[::2]).max() < 0.1
    noisy = pd.DataFrame({"x": np.random.default_rng(0).normal(size=len(t))})
    assert np.diff(smooth_frame(noisy, t, 0.5)["x"]).std() < 0.3 * np.diff(noisy["x"]).std()
    assert parse_aus("AU06, 12 25") == [6, 12, 25] and parse_aus(None) is None
    for names_none in (",", " , ,"):  # read as "all AUs"
        with pytest.raises(ValueError, match="names no AU"):
            parse_aus(names_none)


def test_image_one_panel_per_face_shared_axes():
    fig = figure(synthetic(1, faces=3, name="group.jpg"))
    axes = fig.get_axes()
    assert len(axes) == 6  # AU row and emotion row, one column per face
    au_axes = axes[:3]  # row-major: the AU row first
    assert [a.get_title() for a in au_axes] == ["face 0", "face 1", "face 2"]
    assert all(a.get_xlim() == (0, 5) for a in au_axes)
    assert au_axes[0].get_shared_y_axes().joined(au_axes[0], au_axes[2])
    assert "AU12 lip corner puller" in _labels(au_axes[0])


def test_plot_of_a_table_with_several_inputs_says_which_it_draws(tmp_path):
    """The plot drew the first of several inputs without a word (the report said "The table holds 4 inputs")."""
    table = write_table(pd.concat([synthetic(20, name="a.mp4"), synthetic(20, name="b.mp4")]), tmp_path / "t.csv")
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "The table holds 2 inputs; this plot shows a.mp4 (choose another with --input)" in res.stderr, res.stderr
    res = runner.invoke(app, ["plot", str(table), "-o", str(tmp_path / "p.png"), "--input", "b.mp4"])
    assert res.exit_code == 0 and "inputs" not in res.stderr, res.stderr


def test_plot_escapes_control_characters_in_the_title(tmp_path):
    """An ESC or BEL in an input's name made matplotlib print "UserWarning: Glyph 27 missing from font(s)" with
    aulib's source path, and a newline split the title; so did a CJK character (the title showed empty
    boxes)."""
    import warnings

    for name in ("ansi\x1b[31mRED\x07.mp4", "group\x1b\n.jpg", "\u9854\x1b.mp4"):
        video = name.endswith(".mp4")  # the name set after synthetic(), which escapes it as tables do
        df = synthetic(20 if video else 1, faces=1 if video else 2).assign(input=name)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            fig = figure(df)
            plot_table(df, tmp_path / "p.png")
        assert not [str(w.message) for w in seen if "Glyph" in str(w.message)]
        titles = [a.get_title(loc="left") for a in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
        title = next(t for t in titles if t)
        assert "\\u001b" in title and "\x1b" not in title and "\n" not in title.split(" — ")[0], title
        # and characters the figure's font has no glyph for (CJK, emoji: "Glyph 38996 missing from font(s)")
        assert "\u9854" not in title and ("\\u9854" in title) == name.startswith("\u9854"), title


def test_a_long_recording_is_averaged_per_column_not_sampled():
    """A 58-hour table drawn sample by sample showed the few samples the renderer hit: evenly spaced stripes,
    "bursts" of AU12 the data did not have. A timeline longer than MAX_COLUMNS is drawn as that many columns,
    each the mean of its span of time (a span without the face stays blank), and the axis says so."""
    from aulib.plot import MAX_COLUMNS

    n = 6 * MAX_COLUMNS
    df = synthetic(n)
    df["AU12_r"] = np.where(df["frame"] % 2 == 0, 0.0, 5.0)  # flickers every frame: 2.5 on average everywhere
    df.loc[df["frame"].between(n // 2 - 6, n // 2 + 25), "success"] = 0  # 32 frames without the face
    fig = figure(df, style="heatmap")
    heat = fig.get_axes()[0]
    values = heat.collections[0].get_array()
    assert values.shape == (len(AUS), MAX_COLUMNS)
    row = values[AUS.index(12)]
    assert row.mask.sum() in (4, 5, 6)  # the spans (of 6 frames) wholly without the face: blank
    assert np.allclose(row.compressed(), 2.5, atol=0.5)  # every drawn column: the mean, never 0 or 5 alone
    assert "each the mean of" in fig.get_axes()[-1].get_xlabel()
    lines = figure(df, aus=[12], style="lines").get_axes()[0]
    assert len(lines.get_lines()[0].get_xdata()) == MAX_COLUMNS
