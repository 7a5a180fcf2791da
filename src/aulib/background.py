"""Background threads that must not be cut off inside native code when Python exits.

aulib runs onnxruntime and the video decoder in helper threads (the video model stage, the decoder,
the loader of the image-mode networks). Python kills daemon threads at the end of finalisation, and
one that is inside onnxruntime then aborts the whole process ("terminate called without an active
exception", exit 134) — after a photo with no face, which finishes before its loader, or on Ctrl-C
during a video. Non-daemon threads would be waited for instead, but then a helper waiting for work
keeps a finished program alive, and a helper that stops when the main thread ends would cut off a
video that a user's own worker thread is still analysing after the main thread returned.

So helpers are daemons started with :func:`start`, and an :mod:`atexit` hook — which runs after
Python has waited for every non-daemon thread and before daemon threads are killed — asks each
live helper to stop (its ``stop`` callable) and waits for it to leave native code.

A user's own threads call onnxruntime too (the face stage runs in the caller's thread), and Python
does not always wait for them: a daemon thread, or a worker the main thread was joining when Ctrl-C
came (Python then counts it as finished) was cut off inside onnxruntime — the same abort. So every
onnxruntime call is a *native stretch* (:func:`native`, through :func:`aulib.models.onnx_session`):
the exit hook lets no new stretch start (that thread ends quietly, by ``SystemExit``) and waits for
the running ones to end before finalisation goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

# Live helpers and how to ask each to stop; a helper removes itself when it ends (no leak in a server).
_LIVE: dict[threading.Thread, Callable[[], None] | None] = {}
_LOCK = threading.Lock()
EXIT_WAIT_S = 10.0  # per helper; one batch of model runs or one decoded frame takes far less

_ACTIVE: dict[int, int] = {}  # thread ident → native stretches it is running now (each thread writes its own)
_EXITING = False
_ENDING: set[int] = set()  # threads the exit turned back: they are unwinding out of aulib
# thread ident → when it last began a native stretch. A thread analysing between two onnxruntime calls runs
# OpenCV (C++) too, which aborts the process the same way when finalisation cuts it off as it takes the GIL
# back (Ctrl-C on a worker looping over photos: once in CI, once in 3 local runs of that test). The exit
# also waits for every thread that began one in the last RECENT_S: it ends at its next stretch, by SystemExit.
_RECENT: dict[int, float] = {}
RECENT_S = 2.0


@contextlib.contextmanager
def native() -> Iterator[None]:
    """Run the block as a native stretch: the interpreter's exit waits for it to end, and once the exit
    has begun no new one starts — the calling thread ends by ``SystemExit``, which a thread ends on
    without a traceback (and which no ``except Exception`` of aulib turns into an error row).

    No lock: each thread writes only its own entry of :data:`_ACTIVE` (one dict operation, atomic under the
    GIL), counting itself in *before* it reads :data:`_EXITING`, which the exit hook sets before it reads
    ``_ACTIVE`` — so a stretch either sees the exit and turns back, or is seen and waited for. A lock taken
    here was leaked by the main thread when a signal's exception (Ctrl-C, a timeout's SIGALRM) landed between
    taking it and the ``with`` block: every other thread then blocked on it for good (a loop interrupting
    ``analyze(video)`` froze after ≈ 100 interrupts). The count is put back to what it was on the way out,
    so an interrupt at any point leaves it right."""
    me = threading.get_ident()
    before = _ACTIVE.get(me, 0)
    try:
        _ACTIVE[me] = before + 1
        if _EXITING:
            _ENDING.add(me)
            raise SystemExit("aulib: the interpreter is exiting; no new analysis starts")
        _RECENT[me] = time.monotonic()
        yield
    finally:
        if before:
            _ACTIVE[me] = before
        else:
            _ACTIVE.pop(me, None)


def _wait_until_gone(idents: set[int], seconds: float) -> None:
    """Wait (polling) until none of these threads runs any more. ``Thread.join`` cannot tell: a worker
    the main thread was joining when Ctrl-C came is already marked finished (Python 3.11)."""
    deadline = time.monotonic() + seconds
    idents = idents - {threading.main_thread().ident}
    while time.monotonic() < deadline and idents & set(sys._current_frames()):
        time.sleep(0.01)


def start(target: Callable[[], None], name: str, stop: Callable[[], None] | None = None) -> threading.Thread:
    """Run ``target`` in a daemon thread that the interpreter's exit will stop (``stop()``) and join."""

    def run() -> None:
        # Ctrl-C must reach the main thread: a signal the kernel hands to another thread only sets a
        # flag, and a main thread blocked in Thread.join() never saw it (the program ran on). Helpers,
        # and the threads FFmpeg starts from them (its decoder threads inherit the mask), refuse it.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            target()
        finally:
            with _LOCK:
                _LIVE.pop(threading.current_thread(), None)

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _LOCK:
        _LIVE[thread] = stop
    thread.start()
    return thread


def _others_active() -> set[int]:
    """Threads other than this one (the exit hook's, the main thread) inside a native stretch now; a count the
    main thread left behind when an interrupt cut its bookkeeping short is no stretch running."""
    return set(_ACTIVE) - {threading.get_ident()}


@atexit.register
def _stop_all() -> None:
    global _EXITING
    _EXITING = True  # before _ACTIVE is read: see native()
    busy = _others_active()  # threads inside onnxruntime now: they unwind out of aulib after this call
    now = time.monotonic()
    busy |= {t for t, when in list(_RECENT.items()) if now - when < RECENT_S} - {threading.get_ident()}
    with _LOCK:
        live = list(_LIVE.items())
    for _, stop in live:
        if stop is not None:
            try:
                stop()
            except Exception:  # pragma: no cover - stopping must never raise at exit
                pass
    deadline = time.monotonic() + EXIT_WAIT_S  # every thread's running onnxruntime call ends before finalisation
    while _others_active() and time.monotonic() < deadline:
        time.sleep(0.005)
    for thread, _ in live:
        thread.join(EXIT_WAIT_S)
    # ... and so does the unwinding of every thread that was in one, or was turned back (closing its
    # video, the model thread, FFmpeg's decoder): finalisation tore native state down under it
    busy |= set(_ENDING)
    _wait_until_gone(busy, EXIT_WAIT_S)
