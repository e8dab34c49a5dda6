"""Train: queue one model per slice on a backend, follow the jobs, manage the runs, and quick-test a photo."""

import plotly.express as px
import streamlit as st

from core import azure_settings, backends, config, evaluation, slicing, training, ui

DEFAULT = f"default ({config.DEFAULT_ENCODER}, pretrained, offline)"
CNN = "cnn-small (from scratch, offline)"
OTHER = "a local folder or hub id"
MODES = {"probe": "frozen encoder + logistic regression",
         "tiles": "frozen encoder on native-resolution tiles + logistic regression",
         "finetune": "fine-tune the last blocks",
         "zeroshot": "zero-shot CLIP (no training)"}

st.title("Train")
st.caption("One model per slice. The local backend embeds each image once per size (cached), so a whole "
           "sweep retrains in seconds; cnn-small needs no pretrained weights.")
s = ui.store()
names = list(dict.fromkeys(sl["name"] for sl in slicing.list_slices(s)))

# -- queue ---------------------------------------------------------------------------------------
st.subheader("Queue runs")
if not names:
    st.info("No slices yet: cut some on the Slice page.")
else:
    chosen = st.multiselect("Slices (a name trains every slice of that sweep)", names, default=names[:1],
                            key="tr_slices")
    c1, c2, c3 = st.columns(3)
    backend = c1.selectbox("Backend", backends.available(), key="tr_backend")
    params: dict = {}
    if backend == "local":
        choice = c2.selectbox("Encoder", [DEFAULT, CNN, OTHER], key="tr_encoder")
        if choice == OTHER:
            params["encoder"] = c2.text_input("Folder or hub id", key="tr_encoder_path").strip() or None
        else:
            params["encoder"] = "cnn-small" if choice == CNN else None
        if choice != CNN:
            params["mode"] = c3.selectbox("Mode", list(MODES), format_func=lambda m: MODES[m], key="tr_mode")
        else:
            st.caption("cnn-small learns from the slice alone: on small slices the pretrained default encoder "
                       f"({config.DEFAULT_ENCODER}) is more accurate and the better default.")
            native = c3.checkbox("Train at the slice's own size (up to 1024 px)", key="tr_native")
            if native:
                params["image_size"] = "native"
        with st.expander("Parameters"):
            p1, p2, p3 = st.columns(3)
            params["seed"] = p1.number_input("Seed", value=0, step=1, key="tr_seed")
            if choice == CNN or params.get("mode") == "finetune":
                default_epochs = 20 if choice == CNN else 3
                params["epochs"] = p2.number_input("Epochs", 1, 1000, default_epochs, key=f"tr_epochs_{choice == CNN}")
            if choice != CNN and params.get("mode", "probe") == "probe":
                params["C"] = p3.number_input("C (inverse regularisation)", 1e-4, 1e4, 1.0, format="%.4g", key="tr_c")
    else:
        params["budget_hours"] = c2.number_input("Budget (hours, 0 = quick)", 0, 96, 0, key="tr_budget")
        params["training_type"] = c3.selectbox("Training type", ["Regular", "Advanced"], key="tr_type")
        params["tier"] = c1.selectbox("Azure tier", ["F0", "S0"], index=1, key="tr_tier")
        ui.azure_panel(s, chosen, params)
    if st.button("Queue", type="primary", disabled=not chosen, key="tr_queue"):
        with ui.user_errors():
            st.session_state["tr_batch"] = training.submit_training(s, chosen, backend, params)
            st.rerun()

batch = st.session_state.get("tr_batch")
if batch:
    status = training.sweep_status(s, batch)
    st.caption(f"This batch: {status['done']}/{status['total']} done · {status['running']} running · "
               f"{status['queued']} queued · {status['failed']} failed · {status['cancelled']} cancelled")
    if status["job"]:
        ui.job_status(status["job"], key="tr_job")

# -- runs ------------------------------------------------------------------------------------------
runs = training.list_runs(s)
if not runs:
    st.stop()
st.subheader("Runs")
labels = {r["id"]: evaluation.run_label(r) for r in runs}
st.dataframe([{
    "run": r["id"], "slice": r["slice_name"], "count per tag": r["count_per_tag"], "size": r["size"] or "original",
    "input px": r.get("input_px"),
    "real fraction": r["real_fraction"], "repeat": r["repeat"], "backend": r["backend"], "mode": r["mode"],
    "status": r["status"], "accuracy": r["accuracy"], "time (s)": r["time"], "error": r["error"] or "",
    **azure_settings.metrics_columns(r),
} for r in runs], hide_index=True, width="stretch", key="tr_table")
picked = st.multiselect("Runs to cancel or retry", list(labels), format_func=labels.get, key="tr_picked")
b1, b2, _ = st.columns([1, 1, 4])
cancel = b1.button("Cancel", disabled=not picked, key="tr_cancel")
retry = b2.button("Retry", disabled=not picked, key="tr_retry")
if cancel or retry:
    with ui.user_errors():
        for run_id in picked:
            (training.cancel_run if cancel else training.retry_run)(s, run_id)
        st.session_state["tr_batch"] = picked
        st.rerun()

# -- quick test ------------------------------------------------------------------------------------
st.subheader("Quick test")
finished = [r["id"] for r in runs if r["status"] == "done"]
if not finished:
    st.info("The quick test compares finished runs; none has finished yet.")
    st.stop()
compare = st.multiselect("Runs", finished, default=finished[-3:], format_func=labels.get, key="qt_runs")
where = st.radio("Photo", ["a test photo", "upload one"], horizontal=True, key="qt_where")
image = None
if where == "a test photo":
    tests = evaluation.test_images(s)
    if tests:
        by_id = {im["id"]: im for im in tests}
        image = st.selectbox("Test photo", list(by_id), format_func=lambda i: f"{by_id[i]['tag']} · {i[:12]}",
                             key="qt_image")
    else:
        st.info("No test photos: import some on the Slice page (role: test).")
else:
    upload = st.file_uploader("Photo", type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"], key="qt_upload")
    image = upload.getvalue() if upload else None
if st.button("Predict", disabled=image is None or not compare, key="qt_go"):
    with ui.user_errors():
        st.session_state["qt_result"] = (image, evaluation.quick_test(s, compare, image))
if st.session_state.get("qt_result"):
    shown, rows = st.session_state["qt_result"]
    left, right = st.columns([1, 3])
    left.image(shown if isinstance(shown, bytes) else str(s.image_file(shown)), width="stretch")
    data = [{"run": r["label"], "tag": tag, "probability": p} for r in rows for tag, p in r["probabilities"].items()]
    fig = px.bar(data, x="tag", y="probability", color="run", barmode="group", range_y=[0, 1])
    fig.update_layout(legend={"orientation": "h", "y": -0.25}, margin={"t": 10})
    right.plotly_chart(fig, key="qt_chart")
    left.caption(" · ".join(f"run {r['run']}: **{ui.plain(r['top'])}**" for r in rows))
