"""Helpers for the browser tests of the Streamlit app: fake camera file, server process, Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


def find_chromium() -> str | None:
    """The system Chromium (Debian package), or None.

    ``AULIB_CHROMIUM`` overrides the path; ``AULIB_CHROMIUM=none`` skips the browser tests.
    """
    env = os.environ.get("AULIB_CHROMIUM")
    if env == "none":
        return None
    for p in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if p and Path(p).is_file() and os.access(p, os.X_OK):
            return p
    return shutil.which("chromium")


def make_y4m(video: Path, out: Path, seconds: float = 3.0, width: int = 640) -> Path:
    """A yuv420p Y4M clip for Chromium's fake camera, from the start of ``video`` (PyAV, no ffmpeg CLI).

    The clip plays forward then backward so the looped fake camera has no jump at the seam.
    """
    import av

    frames = []
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or 30
        limit = int(seconds * float(rate) / 2) or 1
        for i, f in enumerate(c.decode(s)):
            if i >= limit:
                break
            h = int(round(f.height * width / f.width / 2)) * 2
            frames.append(f.reformat(width=width, height=h, format="yuv420p"))
    frames = frames + frames[-2:0:-1]
    with av.open(str(out), "w", format="yuv4mpegpipe") as o:
        st = o.add_stream("rawvideo", rate=rate)
        st.width, st.height, st.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for i, f in enumerate(frames):
            f.pts = i
            for pkt in st.encode(f):
                o.mux(pkt)
        for pkt in st.encode():
            o.mux(pkt)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log: Path, port: int | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start the app headless on 127.0.0.1; returns the process and its base URL once it is healthy."""
    from aulib.app import streamlit_command

    port = port or free_port()
    cmd = streamlit_command(port=port, host="127.0.0.1", headless=True,
                            extra=["--server.fileWatcherType", "none", "--server.runOnSave", "false",
                                   "--global.developmentMode", "false"])
    e = dict(os.environ, AULIB_APP_LOOPBACK_ICE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.update(env or {})
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=e, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        time.sleep(0.3)
    stop_app(proc)
    raise RuntimeError(f"streamlit did not become healthy in 60 s:\n{log.read_text(errors='replace')}")


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def python_has(*modules: str) -> str | None:
    """Name of the first module that cannot be imported, or None."""
    import importlib.util

    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                return m
        except (ImportError, ValueError):
            return m
    return None
