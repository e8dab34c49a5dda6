"""Data: the photos of each tag — upload into a tag and role, thumbnails by tag and source with counts,
reject and restore, and what an upload rejected with its reason."""

import streamlit as st

from core import ui
from core.flows import experiment, imports
from core.redact import plain
from core.views import captions
from core.views.tables import MISSING

ROLES = {"real": "real (may enter slices)", "test": "test (only scores runs)"}
THUMBS = 16

st.title("Data")
st.caption("Every photo of every tag, by source. Rejected photos stay on disk and never enter a slice.")
store = ui.store()
tags = store.tag_names()

# -- upload ----------------------------------------------------------------------------------------
with st.container(border=True, key="dv_upload_box"):
    st.subheader("Add photos")
    c1, c2 = st.columns(2)
    tag = c1.selectbox("Into tag", [imports.FROM_FOLDERS, *tags], index=1 if tags else 0, key="dv_tag")
    role = c2.radio("Role", list(ROLES), format_func=ROLES.get, horizontal=True, key="dv_role")
    upload_key = f"dv_files_{st.session_state.get('dv_round', 0)}"
    files = st.file_uploader("Drop photos here, or a .zip of tag-named folders", accept_multiple_files=True,
                             key=upload_key)
    if st.button("Import", type="primary", disabled=not files, key="dv_import"):  # a job: goes on if the page is left
        with ui.user_errors():
            st.session_state["dv_job"] = imports.submit_import(store, [(f.name, f.getvalue()) for f in files], tag, role)
            st.session_state["dv_round"] = st.session_state.get("dv_round", 0) + 1
            st.rerun()
    running, result, error = imports.followed(store, st.session_state.get("dv_job"))
    if running:
        ui.job_status(running, key="dv_import_job")
    if error:
        st.error(plain(error), icon="⚠️")
    if result:
        st.success(plain(imports.summary(result, with_role=True)))
        if result["rejected"]:
            st.caption("Rejected on upload, with the reason:")
            st.dataframe([{"file": r["path"], "reason": r["reason"]} for r in result["rejected"]],
                         hide_index=True, width="stretch", key="dv_rejected", placeholder=MISSING)

ui.sample_box(store, key="dv")  # on an empty store, while it loads, or when it stopped half way
if not tags:
    st.info("No tags yet: drop a zip of tag-named folders above, or load the clothing sample.")
    st.stop()

# -- counts and thumbnails ---------------------------------------------------------------------------
counts = experiment.image_counts(store)
st.subheader("Photos per tag")
st.dataframe([{"tag": t, **{s: c[s]["kept"] for s in c}, "rejected": sum(v["rejected"] for v in c.values())}
              for t, c in counts.items()], hide_index=True, key="dv_counts", placeholder=MISSING)
show_rejected = st.toggle("Show rejected photos", value=False, key="dv_show_rejected")
for name, by_source in counts.items():
    total = sum(v["kept"] for v in by_source.values())
    with st.expander(f"{plain(name)} · {total} photo(s)", expanded=len(counts) <= 4):
        for source, n in by_source.items():
            shown_n = n["kept"] + (n["rejected"] if show_rejected else 0)
            if not shown_n:
                continue
            st.markdown(f"**{source}** · {n['kept']} kept · {n['rejected']} rejected")
            offset, limit = ui.paginate(shown_n, key=f"dv_page_{name}_{source}_{show_rejected}", page_size=THUMBS)
            images = store.list_images(name, source, include_rejected=show_rejected, limit=limit, offset=offset)
            cols = st.columns(8)
            for n_image, image in enumerate(images):
                with cols[n_image % 8]:
                    st.image(image["path"], width="stretch")
                    st.caption(plain(captions.short_caption(image)))
                    if st.button("Restore" if image["rejected"] else "Reject", key=f"dv_{source}-{image['id']}"):
                        store.set_rejected(image["id"], not image["rejected"])
                        st.rerun()
