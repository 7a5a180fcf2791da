"""``aulib bench VIDEO``: frames per second of the full video pipeline and milliseconds per stage.

Two passes over the same frames, because one measurement cannot give both numbers honestly:

1. **Stage profile** — single-threaded (no decode or model thread), every stage wrapped in a
   timer: decode (+ RGB conversion), detect, landmarks, align+mask, HOG, CNN (embedding +
   emotion, and the multitask AU heads that vote on video frames; onnxruntime), AU models
   (SVM + SVR), head pose (PnP), gaze (iris network + eyeball model). "other" is what is left
   (tracking, blink, rules, rows).
   With threads the stages would overlap and a timer would also count time spent waiting for
   the GIL, so this pass is sequential.
2. **End to end** — the real configuration (decode thread, face stage, batched model thread),
   wall clock only. Its result is the last line, ``123.4 fps``.

The machine's load average is printed too: on a shared machine fps is not a property of the code
alone. With ``openface`` (the path of an OpenFace 2 ``FeatureExtraction`` binary, or
``$AULIB_OPENFACE``) both tools are also timed as whole processes on the same clip, in turn
(aulib, OpenFace, aulib, …), and the median of the per-pair time ratios is printed: a ratio made at
the same time on the same machine holds when absolute speeds drift 2× between machines.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aulib.analyzer import Analyzer

STAGES = ["decode", "detect", "landmarks", "align+mask", "HOG", "CNN", "AU models", "head pose", "gaze", "other"]


class _Timed:
    """Callable proxy adding its run time to ``acc[key]`` (attribute access passes through)."""

    def __init__(self, fn: Callable, acc: dict[str, float], key: str, calls: dict[str, int]) -> None:
        self._fn, self._acc, self._key, self._calls = fn, acc, key, calls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._fn(*args, **kwargs)
        finally:
            self._acc[self._key] += time.perf_counter() - t
            self._calls[self._key] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)

    def with_max_side(self, max_side: int) -> _Timed:
        """The detector's downscaled copy for video scans (aulib.face.detect.scanning), timed alike;
        a detector without one (dlib's) stays itself."""
        resize = getattr(self._fn, "with_max_side", None)
        return self if resize is None else _Timed(resize(max_side), self._acc, self._key, self._calls)


def _instrument(analyzer: Analyzer, acc: dict[str, float], calls: dict[str, int]) -> Callable[[], None]:
    """Wrap the analyzer's stage objects in timers; returns a function that restores them."""
    p = analyzer.pipeline
    saved: list[tuple[Any, str, Any, bool]] = []

    def wrap(obj: Any, attr: str, key: str) -> None:
        if obj is None:
            return
        own = attr in vars(obj)
        saved.append((obj, attr, vars(obj).get(attr), own))
        setattr(obj, attr, _Timed(getattr(obj, attr), acc, key, calls))

    wrap(p, "detector", "detect")
    wrap(p, "landmarker", "landmarks")
    wrap(p, "aligner", "align+mask")
    wrap(p, "masker", "align+mask")
    wrap(p, "hog", "HOG")
    heads = analyzer._au_heads.model if analyzer._au_heads is not None else None  # loads it: video frames use it
    for net in {id(m): m for m in (analyzer.features.embedder, analyzer.cnn, heads) if m is not None}.values():
        wrap(net, "_run", "CNN")
    wrap(analyzer.occurrence, "decision_function", "AU models")
    wrap(analyzer.intensity, "predict", "AU models")
    wrap(analyzer.pose, "run", "head pose")
    wrap(analyzer.gaze, "run", "gaze")

    def restore() -> None:
        for obj, attr, old, own in reversed(saved):
            if own:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)

    return restore


def check_video(video: str | Path) -> Path:
    """Raise :class:`~aulib.video.VideoReadError` (naming the file) unless ``video`` is a regular file
    that FFmpeg opens as a video stream and decodes at least one frame of — before any model loads.

    A still image is refused too: FFmpeg opens a JPEG as a one-frame "video", and a frame rate
    measured on it would mean nothing.
    """
    import av

    from aulib.io import check_regular_file
    from aulib.video import VideoReadError
    from aulib.video.reader import main_video_stream

    p = check_regular_file(video, VideoReadError)
    try:
        with av.open(str(p)) as c:
            s = main_video_stream(c)
            if isinstance(s, str):
                raise VideoReadError(f"{p}: {s}" + (" (an audio or data file?)" if s.startswith("no video") else ""))
            fmt = c.format.name
            if fmt in ("image2", "gif", "webp_pipe") or fmt.endswith("_pipe"):
                raise VideoReadError(f"{p}: a still image ({fmt}), not a video; time it with aulib analyze")
            for _ in c.decode(s):
                return p
    except VideoReadError:
        raise
    except Exception as e:  # PyAV raises FFmpegError subclasses, OSError and ValueError
        # FFmpeg's words, without PyAV's "[Errno 1094995529]" and the path again
        why = getattr(e, "strerror", None) or e
        raise VideoReadError(f"{p}: cannot read as video — truncated, corrupt or not a video ({why})") from None
    raise VideoReadError(f"{p}: no frame could be decoded")


def bench(video: str | Path, frames: int | None = None, detect_every: int = 10, emotion_model: str = "cnn",
          detector: str = "retinaface", log: Callable[[str], None] = print, gaze: bool = True) -> dict:
    """Run both passes on ``video`` (first ``frames`` frames) and log the report; returns the numbers.
    ``gaze=False`` times the pipeline without the gaze stage (``aulib analyze --no-gaze``).

    Raises :class:`~aulib.video.VideoReadError` for a file that is not a readable video (checked
    before the models load) and when no frame decoded: no fps figure is ever printed for it.
    """
    from aulib.analyzer import Analyzer
    from aulib.video import VideoReadError, analyze_video_rows

    check_video(video)
    t = time.perf_counter()
    analyzer = Analyzer(detector=detector, emotion_model=emotion_model, gaze=gaze)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t
    analyze_video_rows(analyzer, video, max_frames=5, detect_every=detect_every)  # warm-up (ONNX, caches)

    acc: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    restore = _instrument(analyzer, acc, calls)
    st: dict = {}
    t = time.perf_counter()
    try:
        rows = analyze_video_rows(analyzer, video, max_frames=frames, detect_every=detect_every, stats=st,
                                  threaded=False)
    finally:
        restore()
    seq_s = time.perf_counter() - t
    if not st.get("frames"):
        raise VideoReadError(f"{video}: no frame could be decoded ({st.get('error') or 'empty stream'})")
    n = max(1, st["frames"])
    acc["decode"] = st["decode_s"]
    acc["other"] = max(0.0, seq_s - sum(v for k, v in acc.items() if k != "other"))
    faces = sum(1 for r in rows if r.get("success") == 1)

    st2: dict = {}
    t, cpu = time.perf_counter(), time.process_time()
    analyze_video_rows(analyzer, video, max_frames=frames, detect_every=detect_every, stats=st2)
    wall = time.perf_counter() - t
    cpu = time.process_time() - cpu  # all threads of this process (FFmpeg, onnxruntime included)
    fps = st2["frames"] / wall if wall > 0 else 0.0
    cores = cpu / wall if wall > 0 else 0.0

    if not st2.get("frames"):
        raise VideoReadError(f"{video}: no frame could be decoded ({st2.get('error') or 'empty stream'})")
    load = os.getloadavg()
    if st.get("error"):
        log(f"warning: {st['error']} — figures cover the {st['frames']} frames decoded")
    log(f"{Path(video).name}: {st['frames']} frames, {faces} faces analysed, detector every {detect_every} frames "
        f"({st['detections']} detections, {st['redetections']} re-detections after a degraded fit)")
    log(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"(other processes share these cores); models loaded in {load_s:.2f} s")
    log("stage profile, sequential, ms per frame (ms per call):")
    for k in STAGES:
        per_call = f"  ({acc[k] / calls[k] * 1000:.2f} ms × {calls[k]})" if calls.get(k) else ""
        log(f"  {k:<11} {acc[k] / n * 1000:7.2f}{per_call}")
    log(f"  {'total':<11} {seq_s / n * 1000:7.2f}  = {n / seq_s:.1f} fps sequential")
    log("end to end (decode thread + face stage + batched model thread):")
    log(f"  CPU time {cpu / max(1, st2['frames']) * 1000:.2f} ms per frame; this process got {cores:.2f} cores "
        f"on average (a CPU-bound upper bound with {os.cpu_count()} free cores: "
        f"{(os.cpu_count() or 1) * st2['frames'] / max(cpu, 1e-9):.0f} fps)")
    log(f"{fps:.1f} fps")
    return {"fps": fps, "sequential_fps": n / seq_s, "cpu_ms_per_frame": cpu / max(1, st2["frames"]) * 1000,
            "cores_used": cores, "frames": st2["frames"], "faces": faces,
            "ms_per_frame": {k: acc[k] / n * 1000 for k in STAGES}, "load": load}


def paired_openface(video: str | Path, openface: str | Path, pairs: int = 3, frames: int | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Whole-process wall time of ``aulib analyze VIDEO -o x.csv`` and of OpenFace's
    ``FeatureExtraction -f VIDEO -aus -pose -gaze`` (run from its own folder: its model paths are
    relative), alternating, ``pairs`` times; returns the medians and the median aulib/OpenFace ratio.

    Raises FileNotFoundError when ``openface`` is not an executable file, RuntimeError (with the
    tail of its output) when either tool fails on the clip: no ratio is printed from a failed run.
    """
    if frames:  # aulib stopped after N frames while OpenFace read the whole clip: the ratio compared other work
        raise ValueError("--frames limits aulib only (OpenFace always reads the whole clip): time the whole clip "
                         "for the paired ratio, without --frames")
    binary = Path(openface).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise FileNotFoundError(f"{openface}: not an executable OpenFace FeatureExtraction binary")
    video = Path(video).resolve()
    mine = [sys.executable, "-m", "aulib.cli", "analyze", str(video)]
    if frames:
        mine += ["--max-frames", str(frames)]
    theirs = [str(binary), "-f", str(video), "-aus", "-pose", "-gaze", "-mloc", "model/main_clnf_general.txt"]

    def timed(cmd: list[str], out: str, cwd: Path | None = None) -> float:
        t = time.perf_counter()
        r = subprocess.run(cmd + out.split(), cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            tail = " ".join((r.stderr or r.stdout).split())[-300:]
            raise OSError(f"{cmd[0]} failed on {video.name} (exit {r.returncode}): {tail}")  # one error line
        return wall

    ours, of = [], []
    with tempfile.TemporaryDirectory(prefix="aulib-bench-") as tmp:
        for i in range(pairs):
            ours.append(timed(mine, f"-o {tmp}/aulib_{i}.csv"))
            of.append(timed(theirs, f"-out_dir {tmp}/openface_{i}", cwd=binary.parent))
            # a program that exits 0 without analysing (another binary, a stub) gave a confident ratio
            written = [t for t in Path(tmp, f"openface_{i}").glob("*.csv") if len(t.read_bytes().splitlines()) > 1]
            if not written:
                raise OSError(f"{binary}: exited 0 but wrote no table for {video.name}: not OpenFace's "
                              "FeatureExtraction, or it found no frame to analyse")
    ratios = [a / b for a, b in zip(ours, of)]
    res = {"aulib_s": statistics.median(ours), "openface_s": statistics.median(of),
           "ratio": statistics.median(ratios), "pairs": pairs}
    log(f"whole process, {pairs} pairs in turn: aulib {res['aulib_s']:.2f} s, OpenFace {res['openface_s']:.2f} s "
        f"(median); aulib/OpenFace time ratio {res['ratio']:.2f} (median of pairs; < 1: aulib is faster)")
    return res
