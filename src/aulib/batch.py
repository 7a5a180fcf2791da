"""Many inputs: folders, many videos, checkpointed output, ``--resume`` and Dask.

Design choices, and why:

* **Write as you go.** A combined CSV/JSON-lines table is appended one input at a time and the
  finished input is then recorded in a ``OUT.done`` log, so an interrupted or failing run keeps
  every finished input and ``--resume`` knows exactly which ones (rows of an input whose append
  was cut off are dropped on resume and redone). Parquet cannot be appended, so each finished
  input is a part file in ``OUT.parts/``, merged into ``OUT`` at the end. ``--per-input DIR``
  writes one file per input (written to a temporary name, then renamed: a file that exists is
  complete).
* **One failing input never stops the batch**: it gets a ``success=0`` row naming the error.
* **Dask**: one task per input on a ``LocalCluster`` (processes, one thread each, workers =
  cores) or on an existing scheduler. Each worker process builds its Analyzer once (cached in
  :data:`_WORKER_ANALYZERS`) and keeps its models loaded across tasks. Results are written in
  input order as soon as all earlier inputs are in, so the table is identical to a serial run.
* BLAS is limited to one thread while analysing: the AU models' matrix products are tiny and
  extra OpenBLAS threads only wait for CPU on a busy machine (the same setting Dask's workers
  use, which also keeps serial and Dask results bit-identical).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from aulib.io import VIDEO_EXTENSIONS, is_video
from aulib.output import read_table, table_format, write_table
from aulib.results import empty_row, to_frame


@dataclass(frozen=True)
class AnalyzerSpec:
    """How to build an :class:`~aulib.analyzer.Analyzer` (picklable, sent to Dask workers)."""

    detector: str = "retinaface"
    emotion_model: str = "cnn"
    cropped: bool = False

    def build(self) -> Any:
        from aulib.analyzer import Analyzer

        return Analyzer(detector=self.detector, emotion_model=self.emotion_model,  # type: ignore[arg-type]
                        cropped=self.cropped)


@dataclass
class BatchResult:
    """Rows analysed in this run, plus which inputs were skipped (``--resume``) or failed."""

    table: pd.DataFrame
    analysed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- one input
def overlay_path(overlay: Path | None, path: Path, single_video: bool) -> Path | None:
    """Where the annotated copy of ``path`` goes: ``overlay`` itself if it names a video file
    (only for a single video input), else ``overlay/<stem>_overlay.mp4|png``."""
    if overlay is None:
        return None
    if overlay.suffix.lower() in VIDEO_EXTENSIONS:
        return overlay if single_video and is_video(path) else None
    return overlay / f"{path.stem}_overlay{'.mp4' if is_video(path) else '.png'}"


def analyze_input(analyzer: Any, path: Path, video_options: dict | None = None,
                  overlay: Path | None = None) -> pd.DataFrame:
    """Table of one image or video; any failure becomes a ``success=0`` row, never an exception."""
    name = str(path)
    try:
        rows = analyzer.analyze_path(path, overlay=overlay, **(video_options or {}))
    except Exception as e:  # one broken input must not cost the others their results
        rows = [empty_row(name, f"{name}: analysis failed ({type(e).__name__}: {e})")]
    return to_frame(rows, analyzer.columns)


# ---------------------------------------------------------------------------------- sinks
def _key(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16]


class CombinedSink:
    """One table for all inputs, kept consistent on disk after every finished input."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.out = out
        self.fmt = table_format(out)
        self.log = out.with_name(out.name + ".done")
        self.parts = out.with_name(out.name + ".parts")
        self.done: set[str] = set()
        out.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "parquet":
            if resume:
                if out.exists():
                    self.done |= set(pd.read_parquet(out, columns=["input"])["input"])
                if self.parts.exists():
                    self.done |= set(self._read_log())
            else:
                shutil.rmtree(self.parts, ignore_errors=True)
                self.log.unlink(missing_ok=True)
            self.parts.mkdir(exist_ok=True)
            return
        if resume and out.exists():
            self.done = set(self._read_log()) if self.log.exists() else set(read_table(out)["input"])
            existing = read_table(out)
            keep = existing[existing["input"].isin(self.done)]
            if len(keep) != len(existing):  # an append that was cut off: drop it, redo that input
                self._rewrite(keep)
        else:
            out.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)

    def _read_log(self) -> list[str]:
        return [ln for ln in self.log.read_text(encoding="utf-8").splitlines() if ln] if self.log.exists() else []

    def _rewrite(self, df: pd.DataFrame) -> None:
        tmp = self.out.with_name(self.out.name + ".tmp")
        if self.fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True)
        os.replace(tmp, self.out)

    def write(self, name: str, df: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            part = self.parts / f"{_key(name)}.parquet"
            df.to_parquet(part.with_suffix(".tmp"), index=False)
            os.replace(part.with_suffix(".tmp"), part)
        else:
            new = not self.out.exists() or self.out.stat().st_size == 0
            text = df.to_csv(index=False, header=new) if self.fmt == "csv" else \
                df.to_json(orient="records", lines=True)
            if text and not text.endswith("\n"):
                text += "\n"
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
        self.done.add(name)

    def close(self, order: list[str]) -> None:
        """Parquet: merge the existing table and the parts, in input order; drop the checkpoints."""
        if self.fmt == "parquet":
            frames = []
            if self.out.exists():
                frames.append(pd.read_parquet(self.out))
            names = self._read_log()
            frames += [pd.read_parquet(self.parts / f"{_key(n)}.parquet") for n in names
                       if (self.parts / f"{_key(n)}.parquet").exists()]
            if frames:
                df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
                rank = {n: i for i, n in enumerate(order)}
                df = df.iloc[df["input"].map(lambda n: rank.get(n, -1)).argsort(kind="stable")]
                tmp = self.out.with_name(self.out.name + ".tmp.parquet")
                df.reset_index(drop=True).to_parquet(tmp, index=False)
                os.replace(tmp, self.out)
            shutil.rmtree(self.parts, ignore_errors=True)
        self.log.unlink(missing_ok=True)


class PerInputSink:
    """One file per input under ``root``, mirroring the inputs' folders below their common parent."""

    def __init__(self, root: Path, fmt: str, files: list[Path], resume: bool) -> None:
        self.root, self.ext = root, {"csv": ".csv", "parquet": ".parquet", "json": ".json"}[fmt]
        parents = [str(p.resolve().parent) for p in files]
        self.base = Path(os.path.commonpath(parents)) if parents else Path(".")
        self.resume = resume

    def target(self, path: Path) -> Path:
        rel = path.resolve().relative_to(self.base)
        return self.root / rel.with_name(rel.name + self.ext)

    def is_done(self, path: Path) -> bool:
        return self.resume and self.target(path).exists()

    def write(self, path: Path, df: pd.DataFrame) -> None:
        t = self.target(path)
        tmp = t.with_name(t.name + ".tmp" + self.ext)
        write_table(df, tmp)
        os.replace(tmp, t)


# ---------------------------------------------------------------------------------- running
_WORKER_ANALYZERS: dict[AnalyzerSpec, Any] = {}


def _worker_analyzer(spec: AnalyzerSpec) -> Any:
    """The Analyzer of this process for ``spec``, built on first use and then reused."""
    a = _WORKER_ANALYZERS.get(spec)
    if a is None:
        a = _WORKER_ANALYZERS[spec] = spec.build()
    return a


def _dask_task(path: str, spec: dict, video_options: dict, overlay: str | None) -> pd.DataFrame:
    """One input, on a Dask worker (module-level so workers can import it)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return analyze_input(_worker_analyzer(AnalyzerSpec(**spec)), Path(path), video_options,
                             Path(overlay) if overlay else None)


def _serial(files: list[Path], analyzer: Any, video_options: dict,
            overlays: list[Path | None]) -> Iterable[tuple[int, pd.DataFrame]]:
    for i, p in enumerate(files):
        yield i, analyze_input(analyzer, p, video_options, overlays[i])


def _with_dask(files: list[Path], spec: AnalyzerSpec, video_options: dict, overlays: list[Path | None],
               scheduler: str | None, workers: int | None) -> Iterable[tuple[int, pd.DataFrame]]:
    """Results in input order, each as soon as it and every earlier input are finished."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_dask_task, str(p), asdict(spec), video_options,
                                 str(overlays[i]) if overlays[i] else None, key=f"aulib-{i}-{_key(str(p))}",
                                 pure=False)
                   for i, p in enumerate(files)]
        index = {f.key: i for i, f in enumerate(futures)}
        ready: dict[int, pd.DataFrame] = {}
        nxt = 0
        for fut in as_completed(futures):
            i = index[fut.key]
            try:
                ready[i] = fut.result()
            except Exception as e:  # a worker died or the task raised: an error row, not a crash
                name = str(files[i])
                ready[i] = to_frame([empty_row(name, f"{name}: analysis failed on a Dask worker ({e})")],
                                    list(_columns(spec)))
            fut.release()
            while nxt in ready:
                yield nxt, ready.pop(nxt)
                nxt += 1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _columns(spec: AnalyzerSpec) -> list[str]:
    return list(_worker_analyzer(spec).columns)


def run_batch(
    files: list[Path], spec: AnalyzerSpec | None = None, out: Path | None = None, per_input: Path | None = None,
    per_input_format: str = "csv", resume: bool = False, dask: bool = False, scheduler: str | None = None,
    workers: int | None = None, overlay: Path | None = None, video_options: dict | None = None,
    progress: Callable[[Path], None] | None = None, analyzer: Any = None,
) -> BatchResult:
    """Analyse ``files`` (already expanded), writing each finished input to the sinks.

    ``out``: one combined table (.csv/.parquet/.json); ``per_input``: a folder with one table per
    input in ``per_input_format``; ``resume``: skip inputs the previous run finished. ``dask`` /
    ``scheduler``: one Dask task per input. ``analyzer``: reuse an already built one (serial only).
    Returns this run's rows (in input order) and which inputs were analysed or skipped.
    """
    spec = spec or AnalyzerSpec()
    video_options = dict(video_options or {})
    if dask or scheduler:  # a callback cannot travel to a worker process
        video_options.pop("progress", None)
    combined = CombinedSink(out, resume) if out is not None else None
    per = PerInputSink(per_input, per_input_format, files, resume) if per_input is not None else None
    todo, skipped = [], []
    for p in files:
        done = (combined is None or str(p) in combined.done) and (per is None or per.is_done(p))
        if resume and (combined is not None or per is not None) and done:
            skipped.append(str(p))
        else:
            todo.append(p)
    n_videos = sum(1 for p in files if is_video(p))
    overlays = [overlay_path(overlay, p, n_videos == 1) for p in todo]
    if dask or scheduler:
        stream = _with_dask(todo, spec, video_options, overlays, scheduler, workers)
    else:
        stream = _serial(todo, analyzer if analyzer is not None else _worker_analyzer(spec), video_options, overlays)
    tables: list[pd.DataFrame] = []
    with threadpool_limits(limits=1, user_api="blas"):
        for i, df in stream:
            p = todo[i]
            if combined is not None and str(p) not in combined.done:
                combined.write(str(p), df)
            if per is not None:
                per.write(p, df)
            tables.append(df)
            if progress is not None:
                progress(p)
    if combined is not None:
        combined.close([str(p) for p in files])
    table = pd.concat(tables, ignore_index=True) if tables else to_frame([], _columns(spec)
                                                                          if analyzer is None else analyzer.columns)
    return BatchResult(table, [str(p) for p in todo], skipped)
