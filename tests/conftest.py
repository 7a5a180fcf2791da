"""Shared fixtures: the real sample data (tests skip cleanly when ../shared/data is absent).

Under CI (``CI=true``, as ``.ci/run`` runs) nothing may skip: a skipped test there means missing
data, a missing extra or a missing browser — something a user would hit — so every skip, at run
time or at collection, is turned into a failure that says why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True when the CI switch is on (``CI=true``/``1``/``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _fail_skip(report, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"{what} skipped under CI=true ({reason}); CI must run every test: "
                       "install the data (../shared/data), the dev/train/app extras and Chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        _fail_skip(report, collector.nodeid)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SAMPLES = DATA / "samples"


def input_tree(root: Path, videos: int = 1) -> Path:
    """A folder of mixed inputs under ``root``: a.jpg, b/multi.jpg, b/broken.png (unreadable) and
    c/clip.mp4 (plus c/other.mp4 when ``videos`` is 2), copied from the samples."""
    import shutil

    (root / "b").mkdir(parents=True)
    (root / "c").mkdir()
    shutil.copy(sample("single_face.jpg"), root / "a.jpg")
    shutil.copy(sample("multi_face.jpg"), root / "b" / "multi.jpg")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    for name in ("clip.mp4", "other.mp4")[:videos]:
        shutil.copy(sample("single_face.mp4"), root / "c" / name)
    return root


def two_camera_video(path: Path, frames: int = 10) -> Path:
    """A Matroska file holding two video streams of one size, as two cameras or a stereo pair leave them:
    stream 0 black, stream 1 the first ``frames`` frames of single_face.mp4."""
    import av
    import numpy as np

    with av.open(str(sample("single_face.mp4"))) as c:
        faces = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), c.decode(video=0))]
    with av.open(str(path), "w") as c:
        streams = [c.add_stream("libx264", rate=30) for _ in range(2)]
        for st in streams:
            st.width, st.height, st.pix_fmt = faces[0].shape[1], faces[0].shape[0], "yuv420p"
        for f in faces:
            for st, img in zip(streams, (np.zeros_like(f), f)):
                for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
        for st in streams:
            for p in st.encode(None):
                c.mux(p)
    return path


def sample(name: str) -> Path:
    """Path of a sample file, skipping the test when the shared data is not there."""
    p = SAMPLES / name
    if not p.exists():
        pytest.skip(f"sample data not available: {p}")
    return p


@pytest.fixture(scope="session")
def pipeline():
    from aulib.face import FacePipeline

    return FacePipeline()


@pytest.fixture(scope="session")
def analyzer():
    from aulib.analyzer import Analyzer

    return Analyzer(emotion_model="none")


@pytest.fixture(scope="session")
def ckplus():
    if not (DATA / "ckplus48").exists():
        pytest.skip("CK+48 data not available")
    from aulib.training.datasets import CKPlus

    return CKPlus.load(DATA)
