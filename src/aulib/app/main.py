"""Streamlit entry script: ``streamlit run src/aulib/app/main.py`` (or ``aulib app``).

Three pages: Live (webcam through WebRTC), Image (upload photos) and Video (upload a clip).
"""

from __future__ import annotations

import streamlit as st

from aulib.app.common import PAGES, RUNS_KEY, app_page
from aulib.app.engine import start_trimmer

start_trimmer()  # once per server process: freed memory back to the OS every minute

# No page_icon: a Material icon favicon would be fetched from a font CDN, and the app is offline.
st.set_page_config(page_title="aulib — facial Action Units and emotions", layout="wide")

nav = st.navigation([app_page(p) for p in PAGES])
with st.sidebar:
    st.caption("aulib: offline facial Action Unit (AU) occurrence and intensity, rule-based and CNN "
               "emotions. Everything runs on this server; nothing is sent elsewhere.")
nav.run()
# Counted only when a full run completes (not when it is interrupted or re-run): see common.patch_webrtc.
st.session_state[RUNS_KEY] = st.session_state.get(RUNS_KEY, 0) + 1
