"""The aulib web app (Streamlit): live webcam, image upload and video upload pages.

Start it with ``aulib app`` or ``streamlit run <path of main.py>``. Nothing here imports
Streamlit; the pages import it when the server runs them. Needs the ``app`` extra
(``pip install 'aulib[app]'``).

Environment variables read by the app:

- ``AULIB_ICE_SERVERS``: JSON list of WebRTC ICE servers for the live page (default ``[]``: no
  STUN/TURN, which works on this machine and on a LAN; set e.g.
  ``'[{"urls": ["stun:stun.example.org:3478"]}]'`` to reach the app across NATs).
- ``AULIB_APP_LOOPBACK_ICE=1``: the server side of WebRTC offers only 127.0.0.1 (aioice skips the
  loopback address otherwise); for tests and network namespaces with nothing but ``lo``.
- ``AULIB_APP_MAX_IMAGE_MB`` / ``AULIB_APP_MAX_VIDEO_MB``: upload limits (default 50 / 500 MB).
- ``AULIB_EMOTION_MODEL``: ``cnn`` (default), ``multitask`` or ``none``.
- ``AULIB_APP_VIDEO_WORKERS``, ``AULIB_APP_MAX_QUEUED_VIDEOS``, ``AULIB_APP_VIDEO_NICE``,
  ``AULIB_APP_CACHE_MB``, ``AULIB_APP_DECODE_MP``, ``AULIB_APP_PREVIEW_PX``: the video queue and the
  memory bounds (see :mod:`aulib.app.engine` and the README's app section).
"""

from __future__ import annotations

import sys
from pathlib import Path

APP_FILE = Path(__file__).resolve().parent / "main.py"

# The app's whole-number settings: (least, most) value of each, read by :func:`aulib.app.engine.env_int` (their
# defaults are in the modules that read them).
SETTINGS = {"AULIB_APP_MAX_IMAGE_MB": (1, 10**9), "AULIB_APP_MAX_VIDEO_MB": (1, 10**9),
            "AULIB_APP_PREVIEW_PX": (64, 10**9), "AULIB_APP_DECODE_MP": (1, 10**9),
            "AULIB_APP_VIDEO_WORKERS": (1, 10**9), "AULIB_APP_MAX_QUEUED_VIDEOS": (1, 10**9),
            "AULIB_APP_VIDEO_NICE": (0, 19), "AULIB_APP_CACHE_MB": (1, 10**9)}


def check_settings() -> None:
    """ValueError naming the first of :data:`SETTINGS` set to a value the app refuses: ``aulib app`` says it in
    one line before the server starts, instead of each page failing on it."""
    from aulib.app.engine import env_int

    for name, (least, _) in SETTINGS.items():
        env_int(name, least)


def streamlit_command(port: int | None = None, host: str | None = None, headless: bool = False,
                      max_upload_mb: int = 500, extra: list[str] | None = None) -> list[str]:
    """The ``streamlit run`` command line that serves the app."""
    # postScriptGC off: streamlit runs a full gc.collect(2) after every script run, and the live
    # panel reruns several times a second; each collection held the GIL long enough to stall the
    # camera callback (a third of the script thread's time in a profile of the live page). No file
    # watcher: an installed app does not edit itself, and polling its sources costs CPU.
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_FILE),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
           "--server.maxUploadSize", str(max_upload_mb),
           "--runner.postScriptGC", "false", "--server.fileWatcherType", "none"]
    if port is not None:
        cmd += ["--server.port", str(port)]
    if host is not None:
        cmd += ["--server.address", host]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd + list(extra or [])
