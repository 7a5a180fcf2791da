"""The ``aulib`` console script (and ``python -m aulib``).

Why a module of its own: a console script imports its entry point before calling it, and
:mod:`aulib.cli` takes ≈ 0.3 s to import (typer, rich); a Ctrl-C in that time printed a Python
traceback ending in ``KeyboardInterrupt`` (exit −2) instead of the one line ``interrupted`` and the
shell's 130 that the command gives once it runs.
"""

from __future__ import annotations

import sys


def tolerant_streams() -> None:
    """Let stdout and stderr show what their encoding cannot with ``?`` instead of failing: on a Latin-1 or
    cp1252 terminal (``PYTHONIOENCODING=latin-1``, Windows consoles) the report, ``demo`` and ``--help`` ended
    with "'latin-1' codec can't encode character '\\u2013'" and exit 2, the table written but nothing shown."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
        if encoding in ("utf-8", "utf8"):
            continue
        try:
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # not a text stream aulib can change: left as it is
            pass


def _pipe_closed(console: object) -> None:
    """rich's ``Console.on_broken_pipe`` for the program: the ``BrokenPipeError`` goes on to the command
    line's handler, which exits 0 quietly as for every other output (rich's own ends the process with exit 1:
    ``aulib --help | head -1`` failed in a ``set -o pipefail`` script)."""
    console.quiet = True  # type: ignore[attr-defined]
    raise BrokenPipeError


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler ending a job) or SIGHUP (the terminal or the ssh session
    closed under a run), taken as a Ctrl-C is: what finished is kept for ``--resume``, a video cut short is
    marked so in its table, one line is said, exit 128 + the signal's number (143, 129). Python's default ended
    the process on the spot: no message, a lock file left, the last rows lost in a file buffer."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


# The signals a run ends on as it does on SIGTERM (SIGHUP does not exist on Windows).
TERMINATING = ("SIGTERM", "SIGHUP")


def main() -> None:
    """Load the command line, then run it; a Ctrl-C while it loads is said in one line (exit 130)."""
    import signal

    tolerant_streams()
    # The program draws its figures with matplotlib's Figure (no GUI backend, no pyplot), yet matplotlib checks this
    # variable when imported: a bad value ("MPLBACKEND=garbage", one from another machine's profile) failed
    # `aulib plot` and `report` with an error blaming the input table.
    import os

    os.environ.pop("MPLBACKEND", None)
    for name in TERMINATING:
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN:  # nohup's kept
            signal.signal(getattr(signal, name), _terminate)
    try:
        import rich.console

        from aulib.cli import app
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        sys.stderr.write("terminated\n" if terminated else "interrupted\n")
        raise SystemExit(128 + e.signum if isinstance(e, Terminated) else 130) from None
    rich.console.Console.on_broken_pipe = _pipe_closed  # type: ignore[method-assign]
    try:
        app(prog_name="aulib")
    except OSError as e:  # `aulib > /dev/full`: click prints the help of a bare `aulib` after every handler of ours
        from aulib.cli import help_not_shown

        said = help_not_shown(e)
        if said is None:
            raise
        sys.stderr.write(f"error: {said}\n")
        raise SystemExit(1) from None
