"""aulib's settings from environment variables, read one way everywhere.

Why a module: each setting was parsed where it was used, and each parsed it differently — ``AULIB_ORT_CACHE=off``
and ``AULIB_VERIFY_MODELS=FULL`` were silently ignored (only ``0`` and ``full`` counted), and
``AULIB_MAX_TEMP_BYTES=abc`` failed with "invalid literal for int() with base 10: 'abc'", naming no variable.
A malformed number is now a ValueError naming the variable and what it takes; a switch reads the usual words.
"""

from __future__ import annotations

import os

OFF = ("0", "false", "no", "off")
ON = ("1", "true", "yes", "on")


def flag(name: str, default: bool) -> bool:
    """A switch: ``1/true/yes/on`` or ``0/false/no/off`` (any case); unset or empty: ``default``."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ON or raw in OFF:
        return raw in ON
    raise ValueError(f"environment variable {name}={os.environ[name]!r}: give 1 or 0 (on or off)")


def number(name: str, default: float, minimum: float = 0.0, kind: type = float, maximum: float = 1e9) -> float:
    """A finite number (``kind`` int or float) from ``minimum`` to ``maximum``; unset or empty: ``default``.
    ``AULIB_URL_TIMEOUT=inf`` was taken, and every URL then read "no such file" (asyncio's OverflowError)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except (ValueError, OverflowError):
        value = None
    if value is None or not minimum <= value <= maximum:  # NaN and ±inf fail too
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"environment variable {name}={raw!r}: give {what} from {minimum:g} to {maximum:g}")
    return value


def cache_root() -> str | None:
    """``$XDG_CACHE_HOME`` when it is an absolute path (the XDG rule: a relative one is ignored — it wrote the cache
    into the working folder), else ``~/.cache``; None when the home folder is no existing folder of its own (a
    service account's ``HOME=/nonexistent`` was created, and ``HOME=""`` wrote ``/.cache``): no cache then."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return xdg
    home = os.path.expanduser("~")
    if not os.path.isabs(home) or os.path.dirname(home) == home or not os.path.isdir(home):
        return None
    return os.path.join(home, ".cache")
