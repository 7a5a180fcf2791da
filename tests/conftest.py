"""Shared fixtures: the real sample data (tests skip cleanly when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SAMPLES = DATA / "samples"


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
