"""Train: queue one model per slice on a backend, follow the jobs, manage the runs, and quick-test a photo."""

import streamlit as st

from core import config, ui
from core.analysis import autoeval, evaluation
from core.data import slicing
from core.train import backends, training
from core.train.backends import azure_settings
from core.views import charts, quicktest

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
    st.info("No slices yet: cut some on the Slice page, or the preset's from the Overview.")
    ui.link("pages/slice.py", "Cut slices on the Slice page", icon=":material/content_cut:")
else:
    if [n for n in st.session_state.get("tr_slices", []) if n not in names]:
        st.session_state["tr_slices"] = [n for n in st.session_state["tr_slices"] if n in names]
    chosen = st.multiselect("Slices (a name trains every slice of that sweep)", names,
                            default=None if "tr_slices" in st.session_state else names[:1], key="tr_slices")
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

scoring = autoeval.active_job(s)
if scoring is not None:
    ui.job_status(scoring, key="tr_eval")

# -- runs ------------------------------------------------------------------------------------------
runs = training.list_runs(s)
if not runs:
    st.stop()
st.subheader("Runs")
labels = {r["id"]: evaluation.run_label(r) for r in runs}


def interval(ci) -> str:
    return f"{ci[0]:.3f} – {ci[1]:.3f}" if ci and None not in ci else ""


st.dataframe([{
    "run": r["id"], "slice": r["slice_name"], "count per tag": r["count_per_tag"], "size": r["size"] or "original",
    "input px": r.get("input_px"),
    "real fraction": r["real_fraction"], "repeat": r["repeat"], "backend": r["backend"], "mode": r["mode"],
    "status": r["status"], "accuracy": r["accuracy"], "95% interval": interval(r.get("accuracy_ci")),
    "time (s)": r["time"], "error": r["error"] or "",
    **azure_settings.metrics_columns(r),
} for r in runs], hide_index=True, width="stretch", key="tr_table",
    column_config={"accuracy": st.column_config.NumberColumn("accuracy", format="%.3f",
                                                             help="on the test photos, scored when the run ends")})
finished = [r["id"] for r in runs if r["status"] == "done"]
scored = [r for r in runs if r["status"] == "done" and r["accuracy"] is not None]
pending = autoeval.pending_runs(s)
if finished and not evaluation.test_images(s):
    st.info("No test photos, so no accuracy yet: add some with the role test on the Data page.")
    ui.link("pages/data.py", "Add test photos on the Data page", icon=":material/photo_library:")
elif pending and scoring is None:
    st.caption(f"{len(pending)} finished run(s) not scored on the current test photos yet.")
    if st.button("Score them now", key="tr_score"):
        with ui.user_errors():
            autoeval.submit_if_needed(s)
            st.rerun()
elif finished and not pending:
    st.caption(f"All {len(finished)} finished run(s) scored on {len(evaluation.test_images(s))} test photo(s).")
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

# -- run card --------------------------------------------------------------------------------------
if scored:
    st.subheader("Run card")
    by_id = {r["id"]: r for r in scored}
    card = st.selectbox("Run", list(by_id)[::-1], format_func=labels.get, key="tr_card")
    [result] = charts.with_slice_names(s, evaluation.results(s, [card])) or [None]
    with st.container(border=True, key="tr_card_box"):
        m1, m2, m3 = st.columns(3)
        m1.metric("Accuracy", f"{result['accuracy']:.3f}", help="on the test photos")
        m2.metric("95% interval", interval(result.get("accuracy_ci")) or "n/a")
        m3.metric("Macro F1", f"{result['macro_f1']:.3f}" if result.get("macro_f1") is not None else "n/a")
        left, right = st.columns([2, 3])
        left.dataframe([{"tag": t, "precision": v["precision"], "recall": v["recall"], "AP": v["average_precision"],
                         "test photos": v["support"]} for t, v in result["per_tag"].items()],
                       hide_index=True, width="stretch", key="tr_card_tags")
        right.plotly_chart(charts.confusion_matrix(result), key="tr_card_confusion")
        if result.get("stale"):
            st.caption("Scored on an older set of test photos; it is scored again automatically.")

# -- quick test ------------------------------------------------------------------------------------
st.subheader("Quick test")
if not finished:
    st.info("The quick test compares finished runs; none has finished yet.")
    st.stop()
compare = st.multiselect("Runs", finished, default=finished[-3:], format_func=labels.get,
                         key=f"qt_runs_{len(finished)}")  # the latest three, again when another run finishes
where = st.radio("Photo", ["a test photo", "upload one"], horizontal=True, key="qt_where")
image = None
if where == "a test photo":
    tests = evaluation.test_images(s)
    if tests:
        by_image = {im["id"]: im for im in tests}
        image = st.selectbox("Test photo", list(by_image), format_func=lambda i: f"{by_image[i]['tag']} · {i[:12]}",
                             key="qt_image")
    else:
        st.info("No test photos: add some on the Data page (role: test), or drop a photo instead.")
else:
    upload = st.file_uploader("Drop a photo", type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
                              key="qt_upload")
    image = upload.getvalue() if upload else None
if image is not None and compare:
    with ui.user_errors():
        cache = st.session_state.setdefault("qt_cache", {})
        key = (quicktest.photo_key(image), tuple(compare))
        if key not in cache:
            cache.clear()
            cache[key] = evaluation.quick_test(s, compare, image)
        rows = cache[key]
        left, right = st.columns([1, 3])
        left.image(image if isinstance(image, bytes) else str(s.image_file(image)), width="stretch")
        right.plotly_chart(quicktest.bars_figure(rows), key="qt_chart")
        left.text(" · ".join(f"run {r['run']}: {r['top']}" for r in rows))
        if st.toggle("Probability against images per tag for this photo", key="qt_curve"):
            st.plotly_chart(quicktest.curve(s, image), key="qt_curve_chart")
