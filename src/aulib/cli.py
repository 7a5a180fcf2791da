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
) -> None:
    """AU occurrence, AU intensity, emotion-rule percentages and CNN emotion for every face."""
    from aulib.analyzer import Analyzer
    from aulib.output import report, write_table
    from aulib.results import to_frame

    files = _inputs(paths, out)
    analyzer = Analyzer(detector=detector, emotion_model=emotion_model, cropped=cropped)  # type: ignore[arg-type]
    rows: list[dict] = []
    with _progress(len(files)) as prog:
        task = prog.add_task("analyze", total=len(files))
        for _, r in analyzer.iter_rows(files, progress=lambda _: prog.advance(task)):
            rows.extend(r)
    df = to_frame(rows, analyzer.columns)
    if out is not None:
        write_table(df, out)
        err.print(f"wrote {len(df)} rows for {len(files)} inputs to {out}")
    else:
        typer.echo(report(df))
    if _nothing_readable(df):
        raise typer.Exit(2)


@app.command()
def demo() -> None:
    """Analyse the face photo shipped inside the package and print the per-face report."""
    from aulib.analyzer import Analyzer
    from aulib.output import report

    sample = Path(__file__).resolve().parent / "data" / "sample_face.jpg"
    typer.echo(report(Analyzer().analyze(sample)))


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
