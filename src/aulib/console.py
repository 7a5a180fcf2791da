"""The ``aulib`` console script (and ``python -m aulib``).

Why a module of its own: a console script imports its entry point before calling it, and
:mod:`aulib.cli` takes ≈ 0.3 s to import (typer, rich); a Ctrl-C in that time printed a Python
traceback ending in ``KeyboardInterrupt`` (exit −2) instead of the one line ``interrupted`` and the
shell's 130 that the command gives once it runs.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Load the command line, then run it; a Ctrl-C while it loads is said in one line (exit 130)."""
    try:
        from aulib.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    app(prog_name="aulib")
