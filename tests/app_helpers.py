"""Helpers for the browser tests of the Streamlit app: fake camera file, server process, Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
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


class NetNamespace:
    """A network namespace that has nothing but a loopback interface (needs root and util-linux).

    The app server and Chromium both run in it (``nsenter``), so no packet of the test, WebRTC
    included, can leave 127.0.0.1. Playwright still drives Chromium, over a pipe.
    """

    LO_UP = ("import fcntl, socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
             "f = struct.unpack('16sh', fcntl.ioctl(s, 0x8913, struct.pack('16sh', b'lo', 0)))[1]; "
             "fcntl.ioctl(s, 0x8914, struct.pack('16sh', b'lo', f | 1))")  # SIOC[GS]IFFLAGS, IFF_UP

    def __init__(self, file: Path) -> None:
        self.file = file

    @classmethod
    def create(cls, folder: Path) -> NetNamespace | None:
        """The namespace, or None where it cannot be made (not root, no unshare/nsenter, a sandbox)."""
        if os.environ.get("AULIB_TEST_NETNS") == "0" or not (shutil.which("unshare") and shutil.which("nsenter")):
            return None
        ns = cls(folder / "netns")
        ns.file.touch()
        try:
            made = subprocess.run(["unshare", f"--net={ns.file}", "true"], capture_output=True, timeout=20)
            ok = made.returncode == 0
            ok = ok and ns.run([sys.executable, "-c", cls.LO_UP]).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if not ok:
            ns.close()
            return None
        return ns

    def prefix(self) -> list[str]:
        return ["nsenter", f"--net={self.file}", "--"]

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix() + cmd, capture_output=True, timeout=30)

    def wrap(self, executable: str, folder: Path) -> str:
        """A script that starts ``executable`` inside the namespace (for Playwright's executable_path)."""
        script = folder / f"{Path(executable).name}-netns"
        script.write_text(f'#!/bin/sh\nexec nsenter --net="{self.file}" -- "{executable}" "$@"\n')
        script.chmod(0o755)
        return str(script)

    def close(self) -> None:
        subprocess.run(["umount", str(self.file)], capture_output=True)
        with contextlib.suppress(OSError):
            self.file.unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str, netns: NetNamespace | None) -> bool:
    if netns is None:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                return r.status == 200
        return False
    code = f"import urllib.request as u; u.urlopen({url + '/_stcore/health'!r}, timeout=2)"
    return netns.run([sys.executable, "-c", code]).returncode == 0


def start_app(log: Path, port: int | None = None, env: dict | None = None,
              netns: NetNamespace | None = None) -> tuple[subprocess.Popen, str]:
    """Start the app headless on 127.0.0.1 (inside ``netns`` if given); returns it and its URL once healthy."""
    from aulib.app import streamlit_command

    port = port or free_port()
    cmd = streamlit_command(port=port, host="127.0.0.1", headless=True,
                            extra=["--server.fileWatcherType", "none", "--server.runOnSave", "false",
                                   "--global.developmentMode", "false"])
    e = dict(os.environ, AULIB_APP_LOOPBACK_ICE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.update(env or {})
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen((netns.prefix() if netns else []) + cmd, stdout=fh, stderr=subprocess.STDOUT, env=e,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        if _healthy(url, netns):
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
