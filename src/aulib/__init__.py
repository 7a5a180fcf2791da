"""aulib: offline facial Action Unit and emotion recognition.

The public API is reachable from the top-level package, imported on first use (PEP 562), so
``import aulib`` stays cheap (no numpy, pandas, OpenCV or onnxruntime until something needs them):

* :class:`aulib.Analyzer` — loads the shipped models once; ``analyze(paths)`` → DataFrame.
* :func:`aulib.analyze` — the same with a default Analyzer, built on the first call.
* :class:`aulib.Face` — the per-face record that carries everything through the pipeline.
* :func:`aulib.read_image` — robust image reading (RGB uint8, EXIF orientation, clear errors).
* The seed's functions ``get_img_aus_occurrences``, ``get_img_aus_intensities`` and
  ``get_img_emotions_occurrences``.
* The error types ``ImageReadError`` and ``ModelFileError``.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# onnxruntime's telemetry (1.2x+ on Linux: a device-id file under ~/.cache/Microsoft, events naming the model files,
# and "[W:onnxruntime ... telemetry_1ds.cc] Failed to persist telemetry device ID" on every run, piped output and
# each Dask worker included, where that folder is unwritable) is switched off before onnxruntime is first imported:
# ``disable_telemetry_events()`` afterwards came too late for the file and the warning. aulib is offline. A user's
# own setting of the variable is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Public name → module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "Analyzer": "aulib.analyzer",
    "get_img_aus_occurrences": "aulib.analyzer",
    "get_img_aus_intensities": "aulib.analyzer",
    "get_img_emotions_occurrences": "aulib.analyzer",
    "Face": "aulib.face",
    "read_image": "aulib.io",
    "ImageReadError": "aulib.io",
    "ModelFileError": "aulib.models",
}

__all__ = [
    "Analyzer", "Face", "ImageReadError", "ModelFileError", "__version__", "analyze", "get_img_aus_intensities",
    "get_img_aus_occurrences", "get_img_emotions_occurrences", "read_image",
]

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time these are loaded lazily
    import pandas as pd

    from aulib.analyzer import (
        Analyzer,
        get_img_aus_intensities,
        get_img_aus_occurrences,
        get_img_emotions_occurrences,
    )
    from aulib.face import Face
    from aulib.io import ImageReadError, read_image
    from aulib.models import ModelFileError


def analyze(paths: Any, **kwargs: Any) -> pd.DataFrame:
    """Analyse images, folders or videos with a default :class:`Analyzer` (built once, then reused).

    ``paths``: one path or a list; ``kwargs`` go to :meth:`Analyzer.analyze` (e.g. ``cropped=True``).
    Returns the DataFrame of the README's columns ("Output columns"), one row per face per frame.
    """
    from aulib.analyzer import analyze as _analyze

    return _analyze(paths, **kwargs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aulib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
