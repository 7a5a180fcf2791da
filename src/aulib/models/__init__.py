"""Shipped model files and their manifest.

Models are data, not code: every file in this folder is listed in ``manifest.json`` with its
sha256, what it was trained on and its evaluation figures. :func:`model_path` verifies the
checksum before anything reads the file, so a truncated download, a hand-edited file or a model
from another AU set is refused with a message naming the file instead of giving silently wrong
predictions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent
MANIFEST = MODELS_DIR / "manifest.json"


class ModelFileError(RuntimeError):
    """A model file is missing, corrupted (checksum mismatch) or not the kind expected."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(manifest: str | Path = MANIFEST) -> dict[str, Any]:
    """The manifest as a dict (``{"models": {name: entry}}``); empty when there is none yet."""
    manifest = Path(manifest)
    if not manifest.exists():
        return {"models": {}}
    try:
        return json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{manifest}: not valid JSON ({e})") from e


def model_entry(name: str, manifest: str | Path = MANIFEST) -> dict[str, Any]:
    """Manifest entry of the shipped model ``name`` (file name inside the models folder)."""
    entries = read_manifest(manifest).get("models", {})
    if name not in entries:
        raise ModelFileError(f"{name}: not listed in {manifest}")
    return entries[name]


def verify(path: str | Path, expected_sha256: str) -> Path:
    """Return ``path`` if it exists and its sha256 matches, else raise :class:`ModelFileError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ModelFileError(
            f"{path}: checksum mismatch (sha256 {actual[:12]}…, manifest says {expected_sha256[:12]}…); "
            "the file is corrupted or is not the model this aulib version ships"
        )
    return path


def model_path(name: str, path: str | Path | None = None) -> Path:
    """Path of shipped model ``name`` after checking it against the manifest.

    ``path`` overrides where the file is read from (e.g. a user's copy); the checksum recorded
    for ``name`` must still match, so a wrong or damaged file never loads.
    """
    entry = model_entry(name)
    return verify(path if path is not None else MODELS_DIR / name, entry["sha256"])


def register(path: str | Path, info: dict[str, Any], manifest: str | Path = MANIFEST) -> dict[str, Any]:
    """Add or replace the manifest entry of ``path`` (a file in the models folder) with its sha256.

    Used by the training commands so the manifest is always generated, never edited by hand.
    """
    path = Path(path)
    data = read_manifest(manifest)
    entry = {"sha256": sha256_of(path), "bytes": path.stat().st_size, **info}
    data.setdefault("models", {})[path.name] = entry
    data.setdefault(
        "licence",
        "Models trained on CK+ (Cohn-Kanade extended) and FER2013/FER+ data: these datasets are licensed "
        "for non-commercial research only, and so are the shipped weights derived from them.",
    )
    Path(manifest).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return entry


def unregister(name: str, manifest: str | Path = MANIFEST) -> None:
    """Drop the entry of a model file that is no longer shipped (the file itself is left alone)."""
    data = read_manifest(manifest)
    data.get("models", {}).pop(name, None)
    Path(manifest).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
