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
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable

# Live helpers and how to ask each to stop; a helper removes itself when it ends (no leak in a server).
_LIVE: dict[threading.Thread, Callable[[], None] | None] = {}
_LOCK = threading.Lock()
EXIT_WAIT_S = 10.0  # per helper; one batch of model runs or one decoded frame takes far less


def start(target: Callable[[], None], name: str, stop: Callable[[], None] | None = None) -> threading.Thread:
    """Run ``target`` in a daemon thread that the interpreter's exit will stop (``stop()``) and join."""

    def run() -> None:
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


@atexit.register
def _stop_all() -> None:
    with _LOCK:
        live = list(_LIVE.items())
    for _, stop in live:
        if stop is not None:
            try:
                stop()
            except Exception:  # pragma: no cover - stopping must never raise at exit
                pass
    for thread, _ in live:
        thread.join(EXIT_WAIT_S)
