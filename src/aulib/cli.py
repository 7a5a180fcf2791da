"""The ``aulib`` command line (typer). Front ends only talk to ``Analyzer`` and the stage classes."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Offline facial Action Unit and emotion recognition.")
train_app = typer.Typer(no_args_is_help=True, help="Train aulib's models from ../shared/data.")
app.add_typer(train_app, name="train")
err = Console(stderr=True)

DATA = typer.Option(Path("../shared/data"), "--data", help="Folder holding ckplus48/ and ferplus/.")


def _progress(total: int) -> Progress:
    """A progress bar on stderr, shown only for more than one input."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, disable=total <= 1 or not err.is_terminal and total <= 1, transient=False)


def _nothing_readable(df) -> bool:
    """True when every input failed to be read (not merely had no face): exit code 2 then."""
    unread = (df["success"] == 0) & df.apply(lambda r: r["error"].startswith(r["input"]), axis=1)
    return bool(len(df)) and bool(unread.all())


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {msg}")
    raise typer.Exit(code)


def _inputs(paths: list[Path], out: Path | None) -> list[Path]:
    """Check the output format before any work, then expand folders; usage errors exit 2."""
    from aulib.io import expand_inputs
    from aulib.output import table_format

    if out is not None:
        try:
            table_format(out)
        except ValueError as e:
            _fail(str(e))
    files = expand_inputs(paths)
    if not files:
        _fail("no input files found")
    return files


@app.command()
def faces(
    paths: list[Path] = typer.Argument(..., help="Images or folders (recursive)."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write the table (.csv, .parquet, .json)."),
    overlay: Path | None = typer.Option(None, "--overlay", help="Folder for annotated copies of each image."),
    cropped: bool = typer.Option(False, "--cropped", help="Each image is one already-cropped face."),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface or dlib."),
) -> None:
    """Detect faces and 68 landmarks: one row per face (DESIGN.md face columns)."""
    from aulib.faces_table import faces_table
    from aulib.output import write_table

    files = _inputs(paths, out)
    with _progress(len(files)) as prog:
        task = prog.add_task("faces", total=len(files))
        df = faces_table(files, cropped=cropped, detector=detector, overlay=overlay,
                         on_done=lambda _: prog.advance(task))
    if out is not None:
        write_table(df, out)
        err.print(f"wrote {len(df)} rows to {out}")
    else:
        cols = ["input", "face", "success", "face_x", "face_y", "face_width", "face_height", "face_score", "error"]
        typer.echo(df[cols].to_string(index=False))
    if _nothing_readable(df):
        raise typer.Exit(2)


@app.command()
def analyze(
    paths: list[Path] = typer.Argument(..., help="Images, folders (recursive, sorted) or videos, mixed."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write the full table (.csv, .parquet, .json)."),
    cropped: bool = typer.Option(False, "--cropped", help="Each image is one already-cropped face (48×48 crops)."),
    emotion_model: str = typer.Option("cnn", "--emotion-model", help="cnn, multitask or none."),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface or dlib."),
    overlay: Path | None = typer.Option(None, "--overlay", help="Annotated copies: a folder (<stem>_overlay.mp4 "
                                        "or .png per input) or, for a single video, an .mp4 path."),
    every: int = typer.Option(1, "--every", min=1, help="Video: analyse every N-th frame."),
    fps: float | None = typer.Option(None, "--fps", min=0.01, help="Video: at most F frames per second of video."),
    detect_every: int = typer.Option(10, "--detect-every", min=1,
                                     help="Video: run the face detector every K frames, track in between."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Video: per-person calibration (features minus the "
                                   "face's neutral estimate, its least expressive frames, plus the population mean)."),
    calibrate_mode: str = typer.Option("video", "--calibrate-mode",
                                       help="video (two-pass median) or running (causal, for live use)."),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Video: stop after N analysed frames."),
    per_input: Path | None = typer.Option(None, "--per-input", help="Folder for one table per input."),
    fmt: str | None = typer.Option(None, "--format", help="Format of --per-input tables: csv, parquet or json "
                                   "(default: that of -o, else csv)."),
    resume: bool = typer.Option(False, "--resume", help="Skip inputs a previous run already wrote to -o/--per-input."),
    dask: bool = typer.Option(False, "--dask", help="One Dask task per input on a local cluster (worker processes)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler tcp://HOST:PORT (implies --dask)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Local Dask cluster workers (default: cores)."),
) -> None:
    """AU occurrence, AU intensity, emotion-rule percentages and CNN emotion for every face (every frame of a video)."""
    from aulib.batch import AnalyzerSpec, run_batch
    from aulib.output import report, table_format

    files = _inputs(paths, out)
    if calibrate_mode not in ("video", "running"):
        _fail(f"--calibrate-mode must be video or running, not {calibrate_mode!r}")
    if fmt is None:
        fmt = table_format(out) if out is not None else "csv"
    elif fmt not in ("csv", "parquet", "json"):
        _fail(f"--format must be csv, parquet or json, not {fmt!r}")
    if resume and out is None and per_input is None:
        _fail("--resume needs -o or --per-input (where the finished inputs are)")
    spec = AnalyzerSpec(detector=detector, emotion_model=emotion_model, cropped=cropped)
    analyzer = None
    if not (dask or scheduler):
        try:
            analyzer = spec.build()
        except ValueError as e:
            _fail(str(e))
    video_options = {"every": every, "fps": fps, "detect_every": detect_every, "max_frames": max_frames,
                     "calibrate": calibrate_mode if calibrate else False}
    from aulib.io import is_video

    one_video = len(files) == 1 and is_video(files[0]) and not (dask or scheduler)
    with _progress(2 if one_video else len(files)) as prog:
        task = prog.add_task("analyze", total=len(files))
        if one_video:  # a long video gets a frame counter instead of a 0/1 bar
            video_options["progress"] = lambda done, total: prog.update(task, completed=done, total=total or None)
        try:
            res = run_batch(files, spec, out=out, per_input=per_input, per_input_format=fmt, resume=resume,
                            dask=dask, scheduler=scheduler, workers=workers, overlay=overlay,
                            video_options=video_options, analyzer=analyzer,
                            progress=None if one_video else lambda _: prog.advance(task))
        except OSError as e:  # unreachable scheduler, unwritable output folder
            _fail(str(e))
    df = res.table
    if res.skipped:
        err.print(f"--resume: skipped {len(res.skipped)} inputs already done")
    if out is not None or per_input is not None:
        where = " and ".join(str(x) for x in (out, per_input) if x is not None)
        err.print(f"wrote {len(df)} rows for {len(res.analysed)} inputs to {where}")
    else:
        typer.echo(report(df))
    if len(df) and _nothing_readable(df):
        raise typer.Exit(2)


@app.command()
def bench(
    video: Path = typer.Argument(..., help="Video file to time."),
    frames: int | None = typer.Option(None, "--frames", min=1, help="Only the first N frames."),
    detect_every: int = typer.Option(10, "--detect-every", min=1, help="Detector every K frames."),
    emotion_model: str = typer.Option("cnn", "--emotion-model", help="cnn, multitask or none."),
    detector: str = typer.Option("retinaface", "--detector", help="retinaface or dlib."),
) -> None:
    """Frames per second of the full video pipeline and ms per stage (last line: ``N fps``)."""
    from aulib.bench import bench as run_bench

    if not video.is_file():
        _fail(f"{video}: no such file")
    run_bench(video, frames=frames, detect_every=detect_every, emotion_model=emotion_model, detector=detector,
              log=typer.echo)


@app.command()
def plot(
    table: Path = typer.Argument(..., help="A table written by aulib analyze (.csv, .parquet, .json)."),
    out: Path = typer.Option(..., "-o", "--out", help="Image to write (.png, .jpg, .pdf, .svg)."),
    input_name: str | None = typer.Option(None, "--input", help="Which input of the table (default: the first)."),
    face: int | None = typer.Option(None, "--face", help="Which face id (default: all faces)."),
) -> None:
    """AU intensities and emotion probabilities over time (video) or per face (image)."""
    from aulib.plot import plot_table

    try:
        plot_table(table, out, input_name=input_name, face=face)
    except (ValueError, FileNotFoundError, OSError) as e:
        _fail(str(e))
    err.print(f"wrote {out}")


@app.command()
def demo() -> None:
    """Analyse the face photo shipped inside the package and print the per-face report."""
    from aulib.analyzer import Analyzer
    from aulib.output import report

    sample = Path(__file__).resolve().parent / "data" / "sample_face.jpg"
    typer.echo(report(Analyzer().analyze(sample)))


@app.command("app")
def app_cmd(
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    host: bool = typer.Option(False, "--host", help="Listen on all interfaces (default: localhost only)."),
    max_upload_mb: int = typer.Option(500, "--max-upload-mb", help="Largest upload accepted, in MB."),
) -> None:
    """Start the web app (Streamlit): live webcam, image and video pages (needs the 'app' extra)."""
    import importlib.util
    import os

    from aulib.app import streamlit_command

    missing = [m for m in ("streamlit", "streamlit_webrtc", "aiortc") if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"{', '.join(missing)} not installed: pip install 'aulib[app]'")
    cmd = streamlit_command(port=port, host="0.0.0.0" if host else "localhost", max_upload_mb=max_upload_mb)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)  # streamlit takes over this process: Ctrl-C and signals reach it directly


evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluation reports (printed and written to reports/).")
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("faces")
def evaluate_faces_cmd(data: Path = DATA) -> None:
    """Detector comparison on the samples, ms per stage, CK+ cropped-mode fit rate → reports/faces.md."""
    from aulib.evaluate_faces import evaluate_faces

    evaluate_faces(data, log=typer.echo)


@train_app.command("svm")
def train_svm_cmd(data: Path = DATA, out: Path = typer.Option(Path("src/aulib/models"), "--out"),
                  cache: Path = typer.Option(Path("cache"), "--cache")) -> None:
    """AU occurrence: one class-balanced linear SVM per AU, nested subject-grouped CV."""
    from aulib.models import register
    from aulib.train.au import train_svm, write_report

    rep = train_svm(data, out, cache_dir=cache, log=err.print)
    md = write_report(rep, None)
    _register_au(out / "au_svm.npz", rep, "aulib train svm", register)
    err.print("retrain the intensity SVRs too (aulib train svr): both must use the same CNN embedding")
    err.print(f"report: {md}")


@train_app.command("svr")
def train_svr_cmd(data: Path = DATA, out: Path = typer.Option(Path("src/aulib/models"), "--out"),
                  cache: Path = typer.Option(Path("cache"), "--cache")) -> None:
    """AU intensity (0–5): one linear ε-SVR per AU, subject-grouped CV."""
    from aulib.models import register
    from aulib.train.au import train_svr, write_report

    rep = train_svr(data, out, cache_dir=cache, log=err.print)
    md = write_report(None, rep)
    _register_au(out / "au_svr.npz", rep, "aulib train svr", register)
    err.print(f"report: {md}")


@train_app.command("cnn")
def train_cnn_cmd(
    data: Path = DATA, out: Path = typer.Option(Path("runs/emotion"), "--out"),
    epochs: int = typer.Option(12, "--epochs"), batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"), seed: int = typer.Option(0, "--seed"),
    cache: Path = typer.Option(Path("cache/cnn"), "--cache"), resume: bool = typer.Option(True, "--resume/--restart"),
    install: bool = typer.Option(True, "--install/--no-install", help="Ship the best ONNX in aulib/models."),
) -> None:
    """Fine-tune ImageNet EfficientNet-Lite0 for 8-class FER+ emotion (needs the `train` extra)."""
    from aulib.cnn.train import train_emotion

    path = train_emotion(data, out, epochs, batch_size=batch_size, lr=lr, seed=seed, resume=resume,
                         cache_dir=cache, install=install)
    typer.echo(path)


@train_app.command("multitask")
def train_multitask_cmd(
    data: Path = DATA, out: Path = typer.Option(Path("runs/multitask"), "--out"),
    epochs: int = typer.Option(3, "--epochs"), init_from: Path | None = typer.Option(
        Path("runs/emotion"), "--init-from", help="Emotion run folder or best.pt to start from."),
    lr: float = typer.Option(3e-4, "--lr"), seed: int = typer.Option(0, "--seed"),
    cache: Path = typer.Option(Path("cache/cnn"), "--cache"), resume: bool = typer.Option(True, "--resume/--restart"),
    install: bool = typer.Option(True, "--install/--no-install", help="Ship the best ONNX in aulib/models."),
) -> None:
    """Fine-tune the 15-head network: emotion + 14 binary AU heads (FER+ and CK+ train subjects)."""
    from aulib.cnn.train import train_multitask

    path = train_multitask(data, out, epochs, init_from=init_from, lr=lr, seed=seed, resume=resume,
                           cache_dir=cache, install=install)
    typer.echo(path)


@evaluate_app.command("cnn")
def evaluate_cnn_cmd(data: Path = DATA, cache: Path = typer.Option(Path("cache/cnn"), "--cache"),
                     bench: bool = typer.Option(True, "--bench/--no-bench")) -> None:
    """FER2013Valid accuracy, per-class recall, confusion matrix, multitask AU F1 → reports/cnn.md."""
    from aulib.cnn.evaluate import evaluate_emotion

    evaluate_emotion(data, cache_dir=cache, bench=bench)
    typer.echo(Path("reports/cnn.md").read_text())


def _register_au(path: Path, rep: dict, command: str, register) -> None:
    figures = {k: v for k, v in rep.items() if k.startswith("mean_")}
    figures["per_au"] = rep["per_au"]
    if path.resolve().parent == Path(__file__).resolve().parent / "models":
        register(path, {
            "dataset": "CK+ (ckplus48: peak, peak-1, peak-2 and neutral first frames), subject-grouped CV",
            "licence": "CK+ is licensed for non-commercial research only; so are these weights.",
            "command": f"{command} --data ../shared/data", "subjects": rep["subjects"],
            "feature_version": rep["feature_version"], "aus": [r["au"] for r in rep["per_au"]],
            "figures": figures,
        })


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
