"""Shared pieces of the app pages: the cached ``Analyzer``, labels, upload limits."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from aulib.analyzer import Analyzer
from aulib.results import EMOTIONS, RULE_EMOTIONS, au_name

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_face.jpg"
RUNS_KEY = "_aulib_completed_runs"

#: One lock for every use of the shared Analyzer (live callback threads and page scripts).
ANALYZE_LOCK = threading.Lock()


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


MAX_IMAGE_MB = _env_int("AULIB_APP_MAX_IMAGE_MB", 50)
MAX_VIDEO_MB = _env_int("AULIB_APP_MAX_VIDEO_MB", 500)


def load_analyzer(emotion_model: str | None = None) -> tuple[Analyzer, str | None]:
    """An Analyzer and, when the CNN emotion model cannot be loaded, the note saying so.

    ``emotion_model`` defaults to ``$AULIB_EMOTION_MODEL`` or ``cnn``; a missing, corrupt or
    checksum-mismatching CNN falls back to ``Analyzer(emotion_model="none")`` (AUs and the
    rule-based emotion percentages still work).
    """
    wanted = emotion_model or os.environ.get("AULIB_EMOTION_MODEL", "cnn")
    if wanted == "none":
        return Analyzer(emotion_model="none"), None
    try:
        return Analyzer(emotion_model=wanted), None  # type: ignore[arg-type]
    except Exception as e:
        note = (f"The {wanted} emotion model could not be loaded ({type(e).__name__}: {e}). "
                "Showing AUs and the rule-based emotion percentages only.")
        return Analyzer(emotion_model="none"), note


@st.cache_resource(show_spinner="Loading the face, AU and emotion models…")
def get_analyzer() -> tuple[Analyzer, str | None]:
    """The process-wide Analyzer (models load once per server process) and its fallback note."""
    # One BLAS thread for the server process: the AU models' matrix products are tiny, and a second
    # OpenBLAS thread on a busy machine makes each call wait for a descheduled worker (see aulib.video).
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    return load_analyzer()


def analyzer_with_note() -> Analyzer:
    """The shared Analyzer; shows the fallback note on the page when the CNN is not loaded."""
    analyzer, note = get_analyzer()
    if note:
        st.warning(note, icon=":material/warning:")
    return analyzer


def annotate(image: np.ndarray, faces: list, labels: list[str]) -> np.ndarray:
    """Copy of an RGB image with each face's box, its 68 landmarks and a label on a filled tag.

    (``aulib.faces_table.draw_faces`` also numbers the landmarks, which buries a live face in digits.)
    """
    out = image.copy()
    scale = max(0.7, max(image.shape[:2]) / 700)
    thick = max(1, int(round(2 * scale)))
    for f, text in zip(faces, labels):
        x, y, w, h = (int(round(v)) for v in f.box)
        color = (40, 210, 90) if f.success else (230, 60, 60)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick)
        if f.landmarks is not None:
            r = max(1, min(thick, w // 60))
            for px, py in f.landmarks:
                cv2.circle(out, (int(px), int(py)), r, (255, 220, 0), -1, cv2.LINE_AA)
        font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale
        (tw, th), base = cv2.getTextSize(text, font, fs, thick)
        if tw > max(1.5 * w, 80):  # small faces (group photos): shrink the tag to about the box width
            fs *= max(1.5 * w, 80) / tw
            (tw, th), base = cv2.getTextSize(text, font, fs, thick)
        ty = y - 6 if y - th - base - 6 > 0 else y + h + th + 6
        cv2.rectangle(out, (x - 1, ty - th - 4), (x + tw + 6, ty + base), color, -1)
        cv2.putText(out, text, (x + 3, ty - 1), font, fs, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def emotion_label(row: dict) -> str:
    """Short label for a face: CNN emotion and probability, else the best rule-based emotion."""
    emo = row.get("emotion")
    if isinstance(emo, str):
        return f"{emo} {row.get(f'p_{emo}', float('nan')):.0%}"
    best = max(RULE_EMOTIONS, key=lambda e: row.get(f"rule_{e}", 0.0) or 0.0)
    return f"{best} {row.get(f'rule_{best}', 0.0):.0f}% (AU rules)"


def emotion_scores(row: dict) -> tuple[str, dict[str, float]]:
    """``("CNN probability", {...})`` when the CNN ran, else ``("% of prototype AUs", {...})`` in 0–1."""
    if isinstance(row.get("emotion"), str):
        return "CNN probability", {e: float(row.get(f"p_{e}", 0.0)) for e in EMOTIONS}
    return "% of prototype AUs", {e: float(row.get(f"rule_{e}", 0.0)) / 100 for e in RULE_EMOTIONS}


def au_intensities(row: dict, aus: list[int]) -> dict[str, float]:
    return {au_name(a): float(row.get(f"{au_name(a)}_r", np.nan)) for a in aus}


def face_table(row: dict, aus: list[int]) -> pd.DataFrame:
    """Per-AU table for one face: occurrence (SVM) and intensity (SVR)."""
    return pd.DataFrame({
        "AU": [au_name(a) for a in aus],
        "present": ["yes" if row.get(f"{au_name(a)}_c") == 1 else "–" for a in aus],
        "intensity (0–5)": [f"{row.get(f'{au_name(a)}_r', np.nan):.2f}" for a in aus],
    }).set_index("AU")


def ice_servers() -> list[dict]:
    """ICE servers for WebRTC: ``[]`` (offline) unless ``AULIB_ICE_SERVERS`` holds a JSON list."""
    raw = os.environ.get("AULIB_ICE_SERVERS", "").strip()
    if not raw:
        return []
    try:
        servers = json.loads(raw)
    except ValueError:
        st.warning(f"AULIB_ICE_SERVERS is not valid JSON, ignoring it: {raw!r}")
        return []
    return servers if isinstance(servers, list) else [servers]


def patch_webrtc() -> None:
    """Work around two streamlit-webrtc issues (idempotent).

    * Its multi-page check compares Streamlit's ``script_run_count``, which is incremented on the
      event loop after a run's "finished" message is sent and so can lag behind; in ~9 % of
      sessions a fresh connection is then taken for an orphan and closed. We count completed
      script runs ourselves (``main.py`` increments ``RUNS_KEY`` at the end of every full run),
      which keeps the check (navigating away and back still resets the stream) without the race.
    * With ``AULIB_APP_LOOPBACK_ICE=1`` the server offers 127.0.0.1 as its only ICE candidate
      (aioice skips loopback), so a browser on the same host connects inside a network namespace
      that has only ``lo``, and no packet leaves 127.0.0.1.
    """
    from streamlit_webrtc import component

    if hasattr(component, "get_script_run_count") and not getattr(component, "_aulib_patched", False):
        component.get_script_run_count = lambda _info: int(st.session_state.get(RUNS_KEY, 0))
        component._aulib_patched = True
    if os.environ.get("AULIB_APP_LOOPBACK_ICE") == "1":
        import aioice.ice

        aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]


# No page icons: Streamlit turns a page's Material icon into the tab's favicon, fetched from a font CDN,
# and emoji need a colour-emoji font on the server's clients. The app must work offline.
PAGES = {  # url path → (module, title)
    "live": ("aulib.app.live", "Live webcam"),
    "image": ("aulib.app.image_page", "Image"),
    "video": ("aulib.app.video_page", "Video"),
}


def app_page(url_path: str) -> st.Page:
    """The ``st.Page`` of one of the app's pages (for ``st.navigation`` and ``st.page_link``)."""
    import importlib

    module, title = PAGES[url_path]
    return st.Page(importlib.import_module(module).page, title=title, url_path=url_path, default=url_path == "live")
