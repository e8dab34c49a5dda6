"""Diagnostics: why synthetic images help or hurt — diversity, domain gap, generator fingerprint."""

import pandas as pd
import streamlit as st

from core import config, ui
from core.analysis import diagnostics
from core.data.slicing import parse_ints
from core.redact import plain
from core.views import diagnostic_views
from core.views.tables import MISSING

MAX_CLUSTERS = 12
THUMB_PX = 96

st.title("Diagnostics")
st.caption("Every number here answers a question asked after a bad curve: are the synthetic images varied "
           "enough, how far are they from real photos, and can a probe tell them apart — at which size?")
store = ui.store()
tags = store.tag_names()
if not tags:
    st.info("No tags yet: add tags and generate or import images first.")
    st.stop()

with st.form("diagnose"):
    chosen = st.multiselect("Tags", tags, default=tags, key="dg_tags")
    c1, c2 = st.columns(2)
    sizes_text = c1.text_input("Pixel sizes (comma-separated)", key="dg_sizes",
                               value=", ".join(map(str, diagnostics.suggested_sizes(store))),
                               help="the synthetic-vs-real probe runs once per size; the first size is also "
                                    "used for diversity and the Fréchet distance")
    encoder = c2.text_input("Encoder (hub id or local folder)", value=config.DEFAULT_ENCODER, key="dg_encoder")
    run = st.form_submit_button("Run diagnostics", type="primary")
if run:
    with ui.user_errors():
        diagnostics.submit_diagnosis(store, chosen, parse_ints(sizes_text, "sizes"), encoder.strip() or None)

active = diagnostics.diagnosis_to_show(store)
if active is not None:
    ui.job_status(active, key="diagnose")

result = diagnostics.latest_diagnosis(store)
if result is None:
    st.info("No diagnosis yet: pick tags and sizes and press **Run diagnostics**.")
    st.stop()

st.subheader("Per tag")
st.caption(f"Diagnosis {result['job']} ({result.get('finished', '')}), encoder {plain(result['encoder']['name'])}; "
           f"diversity and Fréchet distance at {result['embedding_size']} px.")
st.dataframe(pd.DataFrame(diagnostic_views.summary_rows(result)), hide_index=True, key="dg_table", placeholder=MISSING)
with st.expander("How to read these numbers"):
    st.markdown(
        "- **Diversity**: mean pairwise cosine distance of embeddings; synthetic well below real means "
        "the generator repeats itself.\n"
        "- **Distinct prompts**: expanded prompts behind the synthetic images; few prompts, little variety.\n"
        "- **Fréchet synthetic↔real** against its **floor** (two halves of the real photos): near the floor, "
        "the encoder sees one distribution; far above it, a domain gap.\n"
        "- **AUC @ size**: a cross-validated linear probe on encoder embeddings telling synthetic from real. "
        "0.5: no fingerprint; near 1: something gives the origin away. Falling at a smaller size: "
        "downscaling removes it.\n"
        "- **Pixel AUC @ size**: the same probe on pixels alone (the power spectrum of a high-pass residual "
        "over the whole frequency plane, plus residual statistics) — it sees high-frequency traces that an "
        "encoder's own resize throws away. Each AUC comes with its 95 % interval; an interval "
        "that holds 0.5 means no detectable difference. The pixel probe's interval is calibrated: the **null "
        "band** is where its AUC falls when origin is shuffled at random (repeated cross-validation against "
        "199 permutations), and *trace found* means the AUC lies beyond it.")
for tag, r in result["tags"].items():
    for metric, reason in r.get("notes", {}).items():
        st.caption(f"**{plain(tag)}** · {metric}: {plain(reason)}")

if result.get("spectrum"):
    st.subheader("Power spectrum")
    st.caption("Mean radial power spectrum of the greyscale images at each size; diffusion images are known "
               "to differ from photos at high frequencies.")
    st.plotly_chart(diagnostic_views.spectrum_figure(result), key="dg_spectrum")
    st.caption("The radial profile runs out to the corner radius (past 0.5 cycles/pixel along an axis), where "
               "checkerboards and upsampling artefacts live. Below: synthetic/real power over the whole 2-D "
               "frequency plane (log10; red: more power in synthetic images). A generator's periodic trace "
               "shows as a bright spot — a checkerboard in the four corners.")
    for size in result["spectrum"]:
        ratio = diagnostic_views.spectrum_ratio_figure(result, size)
        if ratio is not None:
            st.plotly_chart(ratio, key=f"dg_ratio_{size}")

st.subheader("Suspected wrong labels")
st.caption("Out-of-fold predictions of the default encoder's probe, then confident learning (cleanlab): images "
           "whose tag their look-alikes disagree with. " + (result.get("label_issues_note") or ""))
ui.label_issue_gallery(store, result.get("label_issues") or [], key="dg-labels")

st.subheader("Near-duplicates")
st.caption(diagnostic_views.duplicate_rule_text(result)
           + " Rejecting keeps the first image of a cluster; rejected images never enter a slice.")
any_cluster = False
for tag, r in result["tags"].items():
    clusters = r["duplicate_clusters"]
    if not clusters:
        continue
    any_cluster = True
    st.markdown(f"**{plain(tag)}** — {len(clusters)} cluster(s)")
    for n, cluster in enumerate(clusters[:MAX_CLUSTERS]):
        images = diagnostics.cluster_images(store, cluster)
        if not images:
            continue
        st.image([im["path"] for im in images], width=THUMB_PX,
                 caption=[f"{im['source']}{' · rejected' if im['rejected'] else ''}" for im in images])
        pending = [im for im in images[1:] if not im["rejected"]]
        if st.button(f"Reject {len(pending)} duplicate(s), keep the first", key=f"dg-reject-{tag}-{n}",
                     disabled=not pending):
            with ui.user_errors():
                diagnostics.reject_duplicates(store, [im["id"] for im in images])
                st.rerun()
    if len(clusters) > MAX_CLUSTERS:
        st.caption(f"… and {len(clusters) - MAX_CLUSTERS} more clusters (see `python -m core diagnose --json`).")
if not any_cluster:
    st.caption("No near-duplicates found.")
