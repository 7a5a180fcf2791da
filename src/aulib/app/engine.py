"""The app's server-side machinery, without Streamlit: model loading, the video job queue, memory bounds.

Why this module exists: the web server is shared by everyone who opens the app, on a machine with a few
cores. Three rules keep it usable under real use:

* **Live frames never wait for uploads.** Videos are analysed in separate worker processes (each loads
  the models once), at the lowest CPU priority (``nice`` 19: they use the CPU time live streams and page
  scripts leave), ``cores - 1`` of them (at least one), with a
  FIFO queue whose position is shown on the page. The server process keeps the remaining core for live
  streams and page scripts; the live callbacks share the server's one ``Analyzer`` without a lock (its
  stages hold no per-call state) and each stream analyses only its newest frame.
* **Bounded memory.** Images are checked against :data:`aulib.io.MAX_PIXELS` from their header before any
  decoding (the CLI's rule, :func:`aulib.io.read_image`); concurrent decodes share a pixel budget
  (:class:`PixelBudget`) so several users' large photos are read one after another, not all at once;
  cached results are bounded in bytes (:class:`ByteLRU`); freed heap is handed back to the OS after large
  images (:func:`trim_memory`). A video's frames live only in its worker process.
* **Messages name the user's file**, never a server path or an FFmpeg error number (:func:`clean_message`).

Environment variables: ``AULIB_APP_VIDEO_WORKERS`` (default ``cores - 1``, at least 1),
``AULIB_APP_MAX_QUEUED_VIDEOS`` (default 8: further uploads are refused with "server busy"),
``AULIB_APP_VIDEO_NICE`` (default 19),
``AULIB_APP_CACHE_MB`` (default 64), ``AULIB_APP_DECODE_MP`` (megapixels decoded at once, default
:data:`aulib.io.MAX_PIXELS`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import multiprocessing as mp
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import types
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def env_int(name: str, default: int) -> int:
    """One of the app's integer settings (:data:`aulib.app.SETTINGS`, which holds its bounds) from the
    environment (:func:`aulib.env.number`): unset or empty gives ``default``, a malformed or out-of-range value is a
    ValueError naming the variable — ``AULIB_APP_MAX_IMAGE_MB=-1`` was a 1 MB upload limit and ``=50.5`` the
    default, both without a word."""
    from aulib.app import SETTINGS
    from aulib.env import number

    least, most = SETTINGS[name]
    return int(number(name, default, minimum=least, kind=int, maximum=most))


def cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def load_analyzer(emotion_model: str | None = None) -> tuple[Any, str | None]:
    """An Analyzer and, when the CNN emotion model cannot be loaded, the note saying so.

    ``emotion_model`` defaults to ``$AULIB_EMOTION_MODEL`` or ``cnn``. A network that cannot be loaded (missing,
    corrupt, checksum mismatch) is left out, most useful first: the images' second opinions (``tta=False``: the
    CNN emotion stays — a damaged ``emotion_cnn_ema.onnx`` dropped it), then the CNN emotion (AUs and the
    rule-based emotion percentages still work), then gaze. The AU models' own network cannot be left out: that
    error is raised (the pages show it in one message).
    """
    from aulib.analyzer import Analyzer

    wanted = emotion_model or os.environ.get("AULIB_EMOTION_MODEL", "cnn")
    tries: list[tuple[dict, str]] = [
        ({"emotion_model": wanted}, ""),
        ({"emotion_model": wanted, "tta": False}, "Photos are analysed without their second opinions (mirror "
                                                  "image, second network, AU heads)."),
        ({"emotion_model": "none"}, "Showing AUs and the rule-based emotion percentages only."),
        ({"emotion_model": "none", "gaze": False}, "Showing AUs and the rule-based emotion percentages only, "
                                                   "without gaze."),
    ]
    if wanted == "none":
        tries = [t for t in tries if t[0]["emotion_model"] == "none"]
    first: Exception | None = None
    for options, fallback in tries:
        try:
            analyzer = Analyzer(**options)  # type: ignore[arg-type]
        except Exception as e:
            first = first or e
            continue
        if first is None:
            return analyzer, None
        return analyzer, f"A model could not be loaded ({type(first).__name__}: {first}). {fallback}"
    assert first is not None
    raise first


def one_blas_thread() -> None:
    """One BLAS thread: the AU models' matrix products are tiny, and a second OpenBLAS thread on a busy
    machine makes each call wait for a descheduled worker (see aulib.video)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


_LIBC: Any = None


def trim_memory() -> None:
    """Give freed heap back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Decoding a 100 MP photo allocates ~0.7 GB in many blocks; glibc keeps the freed pages in its arenas,
    so without this the server's resident size ratchets up with every large upload.
    """
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        _LIBC = False


# Seconds between the server's own malloc_trim calls (start_trimmer).
TRIM_EVERY_S = 60.0
_TRIMMER: threading.Thread | None = None
_TRIM_LOCK = threading.Lock()


def start_trimmer(every: float = TRIM_EVERY_S) -> threading.Thread:
    """Once per server process: a daemon thread calling :func:`trim_memory` every ``every`` seconds. Closed tabs
    (released after Streamlit's 120 s reconnect window), ended live streams and finished uploads free their memory,
    but glibc keeps it in its arenas: 66–77 MB of a soak's growth went back to the OS at a trim, which ran only
    after large photos before."""
    global _TRIMMER
    with _TRIM_LOCK:
        if _TRIMMER is None or not _TRIMMER.is_alive():
            def loop() -> None:
                while _TRIMMER is threading.current_thread():  # a replaced trimmer (tests) ends
                    time.sleep(every)
                    trim_memory()

            _TRIMMER = threading.Thread(target=loop, name="aulib-malloc-trim", daemon=True)
            _TRIMMER.start()
        return _TRIMMER


_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_INTERNAL = re.compile(r":\s*'[A-Za-z_][\w]*\(\)'")  # FFmpeg's "…: 'avcodec_send_packet()'"


def clean_message(message: str, name: str, paths: tuple[str | Path, ...] = ()) -> str:
    """A reason fit for the page: server paths replaced by the user's file name, FFmpeg error numbers and
    internal function names removed, and a leading ``"<name>: "`` dropped (the page names the file)."""
    text = str(message)
    for p in sorted({str(p) for p in paths if str(p)}, key=len, reverse=True):
        text = text.replace(p, name)
    text = _INTERNAL.sub("", _ERRNO.sub("", text))
    text = text.replace(f": '{name}'", "").replace(f": {name!r}", "")
    for prefix in (f"{name}: ", f"{name}:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return " ".join(text.split()) or "unknown error"


# ---------------------------------------------------------------------------------------------- memory
class PixelBudget:
    """At most ``limit`` pixels being decoded/analysed at once across the server (blocking, FIFO-ish).

    A request larger than the whole budget still runs, alone. Small images (phone photos) pass side by
    side; two 100 MP uploads are decoded one after the other, so the server's peak stays near one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self.used = 0
        self.waiting = 0
        self._cv = threading.Condition()

    @contextlib.contextmanager
    def take(self, pixels: int, on_wait: Callable[[], None] | None = None):
        pixels = min(max(0, int(pixels)), self.limit)
        with self._cv:
            if self.used + pixels > self.limit and on_wait is not None:
                on_wait()
            self.waiting += 1
            try:
                while self.used + pixels > self.limit:
                    self._cv.wait()
            finally:
                self.waiting -= 1
            self.used += pixels
        try:
            yield
        finally:
            with self._cv:
                self.used -= pixels
                self._cv.notify_all()


class ByteLRU:
    """A thread-safe least-recently-used cache bounded in bytes (``size(value)`` estimates each entry).

    An entry larger than the whole budget is not kept. Unlike ``st.cache_data(max_entries=…)``, whose
    bound is a count, this bounds the memory whatever the entries weigh.
    """

    def __init__(self, max_bytes: int, size: Callable[[Any], int]) -> None:
        self.max_bytes = int(max_bytes)
        self.size = size
        self.bytes = 0
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any) -> None:
        n = int(self.size(value))
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if n > self.max_bytes:
                return
            self._data[key] = (value, n)
            self.bytes += n
            while self.bytes > self.max_bytes:
                _, (_, m) = self._data.popitem(last=False)
                self.bytes -= m

    def __len__(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------------------------- videos
class QueueFull(RuntimeError):
    """The video queue is full: the server is saturated, the upload is refused (try again later)."""


@dataclass
class Job:
    """One uploaded video's analysis. ``state``: queued → running → done / failed / cancelled."""

    id: int
    name: str
    every: int
    folder: Path
    path: Path
    state: str = "queued"
    done: int = 0
    total: int = 0
    result: Any = None  # the DataFrame when done
    error: str = ""
    submitted: float = field(default_factory=time.monotonic)
    started: float = 0.0
    finished: float = 0.0
    # an unguessable name for the page's address (?video=…): a reloaded page finds its job again by it
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    owner: int = 0  # the JobHandle (browser session) that answers for it: only its end cancels the job

    @property
    def finished_state(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


def _worker_main(conn, nice: int) -> None:  # pragma: no cover - runs in the worker process
    """A video worker: lower CPU priority, models loaded once, then one job after another over ``conn``."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(nice)
    one_blas_thread()
    try:
        analyzer, note = load_analyzer()
    except Exception as e:
        conn.send(("failed", f"the models could not be loaded ({type(e).__name__}: {e})"))
        return
    from aulib.table import to_frame
    from aulib.video import analyze_video_rows

    conn.send(("ready", note or ""))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, path, name, every = msg
        shown = [0.0]

        def progress(done: int, total: int = 0, job_id: int = job_id, shown: list = shown) -> None:
            now = time.monotonic()
            if now - shown[0] >= 0.2:
                shown[0] = now
                conn.send(("progress", job_id, done, total))

        try:
            stats: dict = {}
            df = to_frame(analyze_video_rows(analyzer, path, every=every, progress=progress, stats=stats),
                          analyzer.columns)
            where = (path, Path(path).parent)
            df["error"] = [clean_message(m, name, where) if m else m for m in df["error"]]
            df["input"] = name
            # what the command line says as a warning (the file's other video streams): the page shows it too
            df.attrs["note"] = clean_message(stats["note"], name, where) if stats.get("note") else ""
            conn.send(("done", job_id, df))
        except Exception as e:  # a stream that defeats the reader's own error handling
            conn.send(("error", job_id, clean_message(f"{type(e).__name__}: {e}", name, (path, Path(path).parent))))
        del msg
        trim_memory()


class _Worker:
    """One worker process and the thread that feeds it jobs from the shared queue."""

    def __init__(self, jobs: VideoJobs, index: int) -> None:
        self.jobs, self.index = jobs, index
        self.proc: mp.Process | None = None
        self.conn: Any = None
        self.thread = threading.Thread(target=self._loop, name=f"aulib-video-{index}", daemon=True)
        self.thread.start()

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a web server with threads
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.jobs.nice), daemon=True,
                                name=f"aulib-video-worker-{self.index}")
        # Under ``streamlit run`` the app's script is ``__main__``, and spawn runs the parent's main script in the
        # child first (as ``__mp_main__``): each worker start ran the whole app page — ≈ 1 s, +150 MB, and ~16
        # "missing ScriptRunContext" lines in the server's log. The worker needs only this module: the child is
        # started with no main script to import.
        main = sys.modules.get("__main__")
        stand_in = types.ModuleType("__main__")  # no __file__, no __spec__
        sys.modules["__main__"] = stand_in
        try:
            self.proc.start()
        finally:
            if sys.modules.get("__main__") is stand_in and main is not None:
                sys.modules["__main__"] = main
        child.close()
        self.conn = parent
        kind, *rest = self.conn.recv()  # models loaded (≈1–2 s), or why not
        if kind != "ready":
            self._stop()
            raise RuntimeError(rest[0] if rest else "the video worker did not start")

    def _stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
        self.proc, self.conn = None, None

    def _loop(self) -> None:
        while True:
            job = self.jobs._next()
            if job is None:
                self._stop()
                return
            try:
                self._run(job)
            except Exception as e:  # worker crashed (killed for memory, segfault) or could not start
                self._stop()
                self.jobs._finish(job, "failed", error=f"the analysis stopped unexpectedly ({e or type(e).__name__}); "
                                  "try again, or a shorter clip")
            finally:
                self.jobs._finish(job, job.state)  # no-op unless cancelled: frees its running slot
                shutil.rmtree(job.folder, ignore_errors=True)

    def _run(self, job: Job) -> None:
        if self.proc is None or not self.proc.is_alive():
            self._spawn()
        self.conn.send((job.id, str(job.path), job.name, job.every))
        while True:
            if job.state == "cancelled":
                self._stop()  # the only way to stop FFmpeg/ONNX mid-call; the next job respawns a worker
                return
            if not self.conn.poll(0.2):
                if not self.proc.is_alive():
                    raise RuntimeError(f"worker exited with code {self.proc.exitcode}")
                continue
            try:
                kind, job_id, *rest = self.conn.recv()
            except EOFError:
                raise RuntimeError("worker exited") from None
            if job_id != job.id:
                continue
            if kind == "progress":
                job.done, job.total = rest
            elif kind == "done":
                self.jobs._finish(job, "done", result=rest[0])
                return
            else:
                self.jobs._finish(job, "failed", error=rest[0])
                return


def _remove_orphaned_uploads() -> None:
    """Remove upload copies (``aulib-video-<pid>-…`` in the temporary folder) of servers no longer running: a
    server killed (SIGKILL, a power cut) mid-analysis could not remove its own."""
    for folder in Path(tempfile.gettempdir()).glob("aulib-video-*-*"):
        m = re.fullmatch(r"aulib-video-(\d+)-.+", folder.name)
        if m is None or not folder.is_dir():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:  # its server is gone
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, OverflowError, ValueError):  # another user's live process, or not a pid
            continue


class VideoJobs:
    """A FIFO queue of video analyses served by ``workers`` niced worker processes.

    ``submit`` copies the upload to a private temporary folder (removed when the job ends) and returns a
    :class:`Job` whose ``state``, ``done``/``total`` and :meth:`position` the page polls.
    """

    def __init__(self, workers: int | None = None, max_queued: int | None = None, nice: int | None = None) -> None:
        self.workers_wanted = workers or env_int("AULIB_APP_VIDEO_WORKERS", max(1, cores() - 1))
        self.max_queued = max_queued or env_int("AULIB_APP_MAX_QUEUED_VIDEOS", 8)
        self.nice = env_int("AULIB_APP_VIDEO_NICE", 19) if nice is None else nice
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        self._workers: list[_Worker] = []
        self._closed = False
        self._folders: set[Path] = set()  # uploads' copies (a few bytes each, for the server's life)
        self._tokens: dict[str, Job] = {}  # jobs by token, for a reloaded page (finished ones for KEEP_FOUND_S)
        _remove_orphaned_uploads()
        atexit.register(self._remove_uploads)

    def _remove_uploads(self) -> None:
        """At exit (the server stopped by Ctrl-C mid-analysis): the running and queued videos' copies go too. They
        were left in the temporary folder, up to 500 MB each, at every restart."""
        for folder in list(self._folders):
            shutil.rmtree(folder, ignore_errors=True)

    def submit(self, data: IO[bytes], name: str, every: int) -> Job:
        """Queue ``data`` (a binary file object, copied in 1 MB pieces) for analysis; raises :class:`QueueFull`."""
        with self._cv:
            if len(self._queue) >= self.max_queued:
                raise QueueFull(f"{len(self._queue)} videos are already waiting")
        # named by this server's process: a later server removes what a killed one left (_remove_orphaned_uploads)
        folder = Path(tempfile.mkdtemp(prefix=f"aulib-video-{os.getpid()}-"))
        self._folders.add(folder)
        path = folder / ("upload" + "".join(Path(name).suffixes[-1:]).lower()[:10])
        with contextlib.suppress(AttributeError, OSError):
            data.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(data, out, 1 << 20)
        job = Job(next(self._ids), name, int(every), folder, path)
        with self._cv:
            self._forget_old()
            self._tokens[job.token] = job
            self._queue.append(job)
            if len(self._workers) < self.workers_wanted:
                self._workers.append(_Worker(self, len(self._workers)))
            self._cv.notify()
        return job

    def find(self, token: str) -> Job | None:
        """The job of ``token`` (a page's ``?video=`` address), while it waits, runs, or finished less than
        :data:`KEEP_FOUND_S` ago; None otherwise (cancelled jobs are not found)."""
        with self._cv:
            self._forget_old()
            job = self._tokens.get(str(token))
            return None if job is None or job.state == "cancelled" else job

    def _forget_old(self) -> None:
        now = time.monotonic()
        for token, job in list(self._tokens.items()):
            if job.state == "cancelled" or (job.finished_state and now - job.finished > KEEP_FOUND_S):
                del self._tokens[token]

    def release(self, job: Job, owner: int) -> None:
        """A browser session's handle of ``job`` is gone (its tab closed, the session dropped): the job is
        cancelled, unless another session took it over (the same page reloaded: :class:`JobHandle`)."""
        if job.owner == owner:
            self.cancel(job)

    def position(self, job: Job) -> int:
        """1 for the next job to start, 2 after it…; 0 when ``job`` is not waiting."""
        with self._cv:
            for i, j in enumerate(self._queue):
                if j is job:
                    return i + 1
        return 0

    def load(self) -> tuple[int, int]:
        """``(videos being analysed, videos waiting)``."""
        with self._cv:
            return len(self._running), len(self._queue)

    def cancel(self, job: Job) -> None:
        """Stop ``job``: dropped from the queue, or its worker process stopped (and later replaced)."""
        with self._cv:
            if job.finished_state:
                return
            if job in self._queue:
                self._queue.remove(job)
                shutil.rmtree(job.folder, ignore_errors=True)
            job.state, job.finished = "cancelled", time.monotonic()
            self._cv.notify_all()

    def close(self) -> None:
        """Stop the workers (tests; the server's workers are daemons that end with it)."""
        with self._cv:
            self._closed = True
            for job in list(self._queue) + list(self._running):
                job.state = "cancelled"
            self._queue.clear()
            self._cv.notify_all()
        for w in self._workers:
            w.thread.join(10)

    # called by the worker threads
    def _next(self) -> Job | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            job = self._queue.popleft()
            job.state, job.started = "running", time.monotonic()
            self._running.append(job)
            return job

    def _finish(self, job: Job, state: str, result: Any = None, error: str = "") -> None:
        with self._cv:
            if job in self._running:
                self._running.remove(job)
            if not job.finished_state:
                job.state, job.result, job.error, job.finished = state, result, error, time.monotonic()
            self._cv.notify_all()


_OWNERS = itertools.count(1)
KEEP_FOUND_S = 180.0  # how long a finished job can still be found by its token (a page reloaded as it ended)


class JobHandle:
    """What a browser session keeps of its video job: cancelling it when the session is dropped (the
    user closed the tab) or when the user uploads something else."""

    def __init__(self, jobs: VideoJobs, job: Job, key: Hashable) -> None:
        self.job, self.key = job, key
        # the newest handle answers for the job: a page reloaded mid-analysis takes its job over by its token,
        # and the old session's end (Streamlit drops it 2 minutes later) no longer cancels it. Before, the
        # reloaded page could not see its job, which ran on unseen and held the only worker
        job.owner = owner = next(_OWNERS)
        self._finalizer = weakref.finalize(self, jobs.release, job, owner)

    def cancel(self) -> None:
        self._finalizer()
