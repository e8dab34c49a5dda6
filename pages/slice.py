"""Slice: import real and test photos, cut nested reproducible slices, preview and export them."""

import streamlit as st

from core import ui
from core.data import slice_export, slicing
from core.flows import imports
from core.redact import plain
from core.store.imaging import resized
from core.views import slice_form
from core.views.tables import MISSING

st.title("Slice")
ui.link("pages/data.py", "See every photo per tag on the Data page", icon=":material/photo_library:")
st.caption("Slices are immutable subsets: N images per tag, nested within a repeat (10 ⊂ 30 ⊂ …), "
           "at one pixel size, with a share of real photos. `test` photos never enter a slice.")
store = ui.store()
tags = store.tag_names()

# -- import --------------------------------------------------------------------------------------
st.subheader("Import photos")
c1, c2 = st.columns(2)
tag = c1.selectbox("Tag", [imports.FROM_FOLDERS, *tags], index=1 if tags else 0, key="import_tag")
source = c2.radio("Role", ["real", "test", "synthetic"], horizontal=True, key="import_source",
                  help="real photos may enter slices; test photos are only used to evaluate; synthetic: "
                       "images made by another tool (ComfyUI, A1111, a cloud API)")
generator = st.text_input("Generator (the tool that made them)", key="import_generator",
                          placeholder="comfyui", help="kept in each image's provenance, with the parameters "
                          "found in the files") if source == "synthetic" else None
upload_key = f"uploads-{st.session_state.get('upload_round', 0)}"
files = st.file_uploader("Photos, or a .zip of tag-named folders", accept_multiple_files=True, key=upload_key)
if st.button("Import", disabled=not files, key="import"):  # a job: it goes on if the page is left
    with ui.user_errors():
        st.session_state["import_job"] = imports.submit_import(store, [(f.name, f.getvalue()) for f in files], tag,
                                                               source, generator=generator)
        st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
        st.rerun()
running, result, error = imports.followed(store, st.session_state.get("import_job"))
if running:
    ui.job_status(running, key="import_job")
if error:
    st.error(plain(error), icon="⚠️")
if result:
    st.success(plain(imports.summary(result)))
    if result["rejected"]:
        st.dataframe(result["rejected"], hide_index=True, width="stretch", placeholder=MISSING)

if not tags:
    st.info("No tags yet: add them on the Generate page, import a zip of tag-named folders, or load the "
            "clothing sample on the Overview.")
    ui.link("pages/generate.py", "Add tags on the Generate page", icon=":material/palette:")
    ui.link("pages/overview.py", "Load the clothing sample on the Overview", icon=":material/checklist:")
    st.stop()
st.dataframe([{"tag": t["name"], **t["counts"]} for t in store.list_tags()], hide_index=True, placeholder=MISSING)

# -- build a sweep -------------------------------------------------------------------------------
st.subheader("Build a sweep")
for k, v in slice_form.DEFAULTS.items():
    st.session_state.setdefault(k, v)
st.button(slice_form.PRESET_LABEL, on_click=lambda: st.session_state.update(slice_form.preset_values()), key="preset")
c1, c2, c3 = st.columns(3)
name = c1.text_input("Name", key="sl_name", max_chars=slicing.NAME_MAX)
counts = c2.text_input("Images per tag", key="sl_counts", help="comma-separated, e.g. 10, 30, 50")
sizes = c3.text_input("Sizes (px)", key="sl_sizes", help="comma-separated; empty or 'original' keeps pixels")
c1, c2, c3 = st.columns(3)
real = c1.slider("Real fraction", 0.0, 1.0, step=0.05, key="sl_real")
repeats = c2.number_input("Repeats", 1, slicing.MAX_REPEATS, key="sl_repeats")
seed = c3.number_input("Seed", 0, 2**31 - 1, key="sl_seed")
c1, c2, c3 = st.columns(3)
chosen = c1.multiselect("Tags (none = all)", tags, key="sl_tags")
fit = c2.selectbox("Fit", slice_form.FIT_CHOICES, key="sl_fit")
resample = c3.selectbox("Resample", slice_form.RESAMPLE_CHOICES, key="sl_resample")

with st.expander("Filter synthetic images (recorded in the slice's spec)"):
    c1, c2, c3 = st.columns(3)
    dedupe = c1.checkbox("Drop near-duplicates", key="sl_dedupe")
    relabelled = c1.checkbox("Drop suspected wrong labels", key="sl_label_issues")
    min_p = c2.number_input("Min zero-shot probability of own tag (0 = off)", 0.0, 0.99, step=0.05, key="sl_min_p")
    clip = c3.text_input("CLIP model for the zero-shot filter", key="sl_clip", placeholder="openai/clip-vit-base-patch32 (default)")
specs = []
with ui.user_errors():
    specs = slicing.sweep(name, slicing.parse_ints(counts), slicing.parse_sizes(sizes), fit=fit, resample=resample,
                          real_fraction=float(real), repeats=int(repeats), seed=int(seed), tags=tuple(chosen),
                          filter=slice_form.filter_spec(dedupe, min_p, clip, relabelled))
    for warning in slice_form.warnings(store, specs):
        st.warning(plain(warning))
if st.button("Build slices", type="primary", disabled=not specs, key="build"):
    with ui.user_errors():
        done, notes = slice_form.built_summary(slicing.build_sweep(store, specs))
        st.success(done)
        for note in notes:
            st.warning(note)

# -- slices --------------------------------------------------------------------------------------
st.subheader("Slices")
table = slicing.slice_table(store)
if not table:
    st.info("No slices yet.")
    st.stop()
st.dataframe(table, hide_index=True, width="stretch", placeholder=MISSING)
labels = slice_form.preview_labels(table)
picked = st.selectbox("Preview", list(labels), format_func=labels.get, key="preview")
members = slicing.slice_members(store, picked)
shown = members[:slice_form.PREVIEW]
st.image([resized(store, m["id"], 128) for m in shown], caption=[f"{plain(m['tag'])} · {m['source']}" for m in shown],
         width=128)
st.caption(f"{len(shown)} of {len(members)} images shown.")
if st.button("Prepare the export zip", key="export_prepare"):  # a job: it goes on if the page is left
    with ui.user_errors():
        st.session_state["export_job"] = slice_export.submit_export(store, picked)
if st.session_state.get("export_job"):
    ui.job_status(st.session_state["export_job"], key="export_job")
if ready := slice_export.finished_export(store, picked):
    st.download_button("Download as a Hugging Face imagefolder zip", data=ready.read_bytes, mime="application/zip",
                       file_name=ready.name, key="export", on_click="ignore", icon=":material/download:")
