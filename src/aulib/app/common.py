"""Shared pieces of the app pages: the server's Analyzer and video queue, labels, upload limits and
refusal messages (the machinery without Streamlit is in :mod:`aulib.app.engine`)."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from aulib.analyzer import Analyzer
from aulib.app.engine import PixelBudget, VideoJobs, cores, env_int, load_analyzer, one_blas_thread
from aulib.au.facs import au_label, prototype_matches, summarize_matches
from aulib.face.record import EMOTIONS, Face
from aulib.io import MAX_PIXELS
from aulib.table import RULE_EMOTIONS

__all__ = ["load_analyzer"]  # re-exported: the pages and tests load models through common

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_face.jpg"
RUNS_KEY = "_aulib_completed_runs"

MAX_IMAGE_MB = env_int("AULIB_APP_MAX_IMAGE_MB", 50)
MAX_VIDEO_MB = env_int("AULIB_APP_MAX_VIDEO_MB", 500)
#: Longest side of the annotated images the pages show and cache (a 100 MP photo is not sent to browsers).
PREVIEW_SIDE = env_int("AULIB_APP_PREVIEW_PX", 1600)


@st.cache_resource(show_spinner="Loading the face, AU and emotion models…")
def get_analyzer() -> tuple[Analyzer, str | None]:
    """The server's Analyzer (models load once per server process) and its fallback note.

    Shared without a lock by the live callbacks and the image page: its stages keep no per-call state.
    """
    one_blas_thread()
    import sys

    # Each live frame makes hundreds of short GIL-releasing calls (OpenCV, ONNX, NumPy); with several
    # streams a thread that gives the GIL up for one waits up to the switch interval to get it back
    # (5 ms by default), which halved two streams' frame rates here. 0.5 ms keeps the convoy short.
    from aulib.env import number

    sys.setswitchinterval(number("AULIB_APP_SWITCH_INTERVAL", 0.0005, 1e-6, maximum=1.0))
    return load_analyzer()


@st.cache_resource(show_spinner=False)
def get_jobs() -> VideoJobs:
    """The server's video queue and its worker processes (started on the first video)."""
    return VideoJobs()


@st.cache_resource(show_spinner=False)
def get_pixel_budget() -> PixelBudget:
    """Server-wide bound on the pixels being decoded at once (see :class:`~aulib.app.engine.PixelBudget`)."""
    return PixelBudget(env_int("AULIB_APP_DECODE_MP", MAX_PIXELS // 1_000_000) * 1_000_000)


class LiveStreams:
    """Which live streams are active (a frame in the last two seconds), for the load line on the page."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def touch(self, key: int, now: float) -> None:
        with self._lock:
            self._last[key] = now

    def active(self, now: float, window: float = 2.0) -> int:
        with self._lock:
            for k in [k for k, t in self._last.items() if now - t > window]:
                del self._last[k]
            return len(self._last)


@st.cache_resource(show_spinner=False)
def get_live_streams() -> LiveStreams:
    return LiveStreams()


def server_load() -> str:
    """One line on what the server is doing: live streams, videos being analysed and waiting."""
    import time

    running, waiting = get_jobs().load()
    live = get_live_streams().active(time.monotonic())
    return (f"Server: {live} live stream(s) · {running} video(s) being analysed · {waiting} waiting · "
            f"{cores()} core(s)")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md(name: str) -> str:
    """A user's file name safe inside Markdown (``café [1]*.jpg`` is shown as typed, not formatted)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(name).split()) or "(no name)")


def refused(name: str, reason: str) -> None:
    """The one visible refusal message for an upload: names the user's file, says why, on one line."""
    st.error(f"**{md(name)}** was refused: {reason}", icon=":material/block:")


# Streamlit's uploader refuses files over its size limit in the browser and shows that only as a red
# chip with hover-only text, while the page keeps showing the previous result. This script (run in the
# page, no network) turns each refused chip into a visible message naming the file, and hides the
# result container the page marks as stale (key "upload_result") until the refused file is removed.
_REFUSAL_JS = r"""
<div class="aulib-refusals"></div>
<script>
(() => {
  if (window.__aulibRefusals) { window.__aulibRefusals(); return; }
  const update = () => {
    const box = document.querySelector('.aulib-refusals');
    const chips = [...document.querySelectorAll('[data-testid="stFileChip"][aria-invalid="true"]')];
    // a file accepted beside a refused one (the red chip stays listed) has its progress and result shown: they
    // were hidden as stale, and a good video uploaded after a too-big one showed nothing at all
    const accepted = document.querySelectorAll('[data-testid="stFileChip"]:not([aria-invalid="true"])').length;
    document.body.classList.toggle('aulib-refused', chips.length > 0 && accepted === 0);
    if (!box) return;
    const text = chips.map(c => {
      const name = c.querySelector('[data-testid="stFileChipName"]')?.getAttribute('title') || 'file';
      const why = (c.querySelector('[role="alert"]')?.textContent || '').replace(/^Error:\s*/, '');
      return [name, why];
    });
    const key = JSON.stringify(text);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...text.map(([name, why]) => {
      const p = document.createElement('div');
      p.className = 'aulib-refusal';
      p.setAttribute('role', 'alert');
      const b = document.createElement('b');
      b.textContent = name;
      p.append(b, ' was refused: ' + (why || 'upload failed') + ' (limit: ' + box.parentElement.closest(
        '[data-testid="stVerticalBlock"]')?.querySelector('.aulib-limit')?.dataset.limit + ')');
      return p;
    }));
  };
  window.__aulibRefusals = update;
  new MutationObserver(update).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                       attributeFilter: ['aria-invalid']});
  update();
})();
</script>
<style>
.aulib-refusal { background: rgba(255, 43, 43, 0.09); color: rgb(125, 53, 59); border-radius: 0.5rem;
                 padding: 0.75rem 1rem; margin: 0.25rem 0; }
body.aulib-refused .st-key-upload_result { display: none; }
</style>
"""


def upload_refusals(limit: str) -> None:
    """Place the visible message for uploads the browser refused (too large) right here on the page."""
    st.html(f'<span class="aulib-limit" data-limit="{limit}"></span>' + _REFUSAL_JS, unsafe_allow_javascript=True)


def analyzer_with_note() -> Analyzer:
    """The shared Analyzer; shows the fallback note on the page when the CNN is not loaded."""
    try:
        analyzer, note = get_analyzer()
    except Exception as e:  # a broken installation (the AU models' own network damaged): one message, no traceback
        st.error(f"The models could not be loaded: {' '.join(str(e).split())}", icon=":material/error:")
        st.stop()
    if note:
        st.warning(note, icon=":material/warning:")
    return analyzer


def present_aus(face: Face) -> list[int]:
    """AU numbers the occurrence models say are present in a face."""
    if face.au_occurrence is None:
        return []
    return [a for a, o in zip(face.aus, face.au_occurrence) if o == 1]


def rule_matches(face: Face) -> str:
    """The FACS prototype reading of a face: ``"happiness (2 of 2 prototype AUs: AU06+AU12)"``, partial
    matches after "partly", or ``"no emotion prototype matched"`` (see :mod:`aulib.au.facs` for why a
    lone shared AU is not shown as an emotion)."""
    if face.au_occurrence is None:
        return "no AU occurrences"
    return summarize_matches(prototype_matches(face.aus, present_aus(face)))


def emotion_label(face: Face) -> str:
    """Short label for a face: CNN emotion and probability, else the fully matched FACS prototype."""
    if face.emotion is not None and face.emotion_probs is not None:
        return f"{face.emotion} {float(np.max(face.emotion_probs)):.0%}"
    if face.au_occurrence is None:
        return "no fit"
    full = [m for m in prototype_matches(face.aus, present_aus(face)) if m.level == "full"]
    if not full:
        return "no prototype match (AU rules)"
    return f"{full[0].emotion} {len(full[0].present)}/{len(full[0].modelled)} AUs (AU rules)"


def emotion_scores(face: Face) -> tuple[str, dict[str, float]]:
    """``("CNN probability", {...})`` when the CNN ran, else ``("share of prototype AUs", {...})`` in 0–1."""
    if face.emotion_probs is not None:
        return "CNN probability", dict(zip(EMOTIONS, map(float, face.emotion_probs)))
    rules = face.rules if face.rules is not None else np.zeros(len(RULE_EMOTIONS))
    return "share of prototype AUs", {e: float(v) / 100 for e, v in zip(RULE_EMOTIONS, rules)}


def au_intensities(face: Face) -> dict[str, float]:
    """``"AU12 lip corner puller"`` → intensity (0–5) of one face."""
    if face.au_intensity is None:
        return {}
    return {au_label(a): float(v) for a, v in zip(face.aus, face.au_intensity)}


def _cell_colour(value: float, vmax: float = 5.0) -> str:
    """CSS background for a heatmap cell (white → orange → dark red) with readable text colour."""
    from matplotlib import colormaps

    if not np.isfinite(value):
        return "color: #999"
    r, g, b, _ = colormaps["YlOrRd"](min(max(value / vmax, 0.0), 1.0) * 0.9)
    text = "#fff" if value / vmax > 0.55 else "#111"
    return f"background-color: rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}); color: {text}"


def faces_au_table(faces: list[Face]):
    """AUs (rows, with FACS names) × faces (columns): intensity, ``●`` where present, coloured as a heatmap.

    A pandas Styler (st.table / st.dataframe render its colours): one compact grid for any number of faces.
    """
    ok = [f for f in faces if f.success and f.au_intensity is not None]
    aus = ok[0].aus if ok else ()
    index = pd.Index([au_label(a) for a in aus], name="Action Unit (FACS)")
    values = pd.DataFrame({f"face {f.id}": np.asarray(f.au_intensity, np.float64) for f in ok}, index=index)
    marks = pd.DataFrame({f"face {f.id}": [" ●" if o == 1 else "" for o in
                                           (f.au_occurrence if f.au_occurrence is not None else np.zeros(len(aus)))]
                          for f in ok}, index=index)
    text = values.map(lambda v: f"{v:.2f}" if np.isfinite(v) else "–") + marks
    return text.style.apply(lambda _: values.map(_cell_colour), axis=None)


def faces_emotion_table(faces: list[Face]) -> pd.DataFrame:
    """Emotions (rows) × faces (columns): CNN probability when the CNN ran; last row the FACS prototype reading."""
    ok = [f for f in faces if f.success]
    out = {}
    for f in ok:
        col = [f"{p:.2f}" for p in f.emotion_probs] if f.emotion_probs is not None else ["–"] * len(EMOTIONS)
        out[f"face {f.id}"] = col + [rule_matches(f)]
    return pd.DataFrame(out, index=pd.Index([*EMOTIONS, "FACS prototypes"], name="emotion"))


def labels(faces: list[Face]) -> list[str]:
    """Tags drawn on the image: ``face N: <emotion>`` for one face; on a group photo just the face number,
    large enough to read on small faces (tags shrink to the box width), heading that face's column in the
    tables beside the image."""
    if len(faces) > 1:
        return [str(f.id) if f.success else f"{f.id} no fit" for f in faces]
    return [f"face {f.id}: {emotion_label(f) if f.success else 'no fit'}" for f in faces]


def light(faces: list[Face]) -> list[Face]:
    """The faces without pixels and feature vectors (for caches and session state: ≈1 kB each)."""
    for f in faces:
        f.compact()
    return faces


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
