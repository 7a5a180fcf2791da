"""``python -m aulib …``: the ``aulib`` command (for environments where the console script is not on PATH)."""

from aulib.console import main

main()
