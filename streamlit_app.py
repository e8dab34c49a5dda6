"""Synthlab: does training on Stable Diffusion images make my image classifier better?

Entry point: ``streamlit run streamlit_app.py``. Navigation over the four steps and a shared sidebar.
"""

import streamlit as st

from core import ui

st.set_page_config(page_title="Synthlab", page_icon=":material/science:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/checklist:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("pages/generate.py", title="Generate", icon=":material/palette:"),
    st.Page("pages/slice.py", title="Slice", icon=":material/content_cut:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/results.py", title="Results", icon=":material/monitoring:"),
    st.Page("pages/diagnostics.py", title="Diagnostics", icon=":material/biotech:"),
]

ui.gate()
page = st.navigation(PAGES)
with ui.user_errors():
    ui.sidebar()
page.run()
