"""Train: queue one model per slice on a backend, follow the jobs, manage the runs, and quick-test a photo."""

import streamlit as st

from core import ui
from core.analysis import autoeval, evaluation
from core.data import slicing
from core.train import training
from core.train.backends import azure_settings, registry
from core.views import charts, quicktest, run_views
from core.views.tables import MISSING

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
    backend = c1.selectbox("Backend", registry.available(), key="tr_backend")
    if backend == "local":
        params = ui.local_params(c2, c3)
    else:
        params = {}
        params["budget_hours"] = c2.number_input("Budget (hours, 0 = quick)", 0, 96, 0, key="tr_budget")
        params["training_type"] = c3.selectbox("Training type", azure_settings.TRAINING_TYPES, key="tr_type")
        params["tier"] = c1.selectbox("Azure tier", azure_settings.TIERS, index=azure_settings.TIERS.index("S0"),
                                      key="tr_tier")
        ui.azure_panel(s, chosen, params)
    if st.button("Queue", type="primary", disabled=not chosen, key="tr_queue"):
        with ui.user_errors():
            st.session_state["tr_batch"] = training.submit_training(s, chosen, backend, params)
            st.rerun()

runs = training.list_runs(s)
batch = st.session_state.get("tr_batch") or run_views.active_runs(runs)  # any tab shows the work under way
if batch:
    status = training.sweep_status(s, batch)
    st.caption(run_views.batch_line(status))
    if status["job"]:
        ui.job_status(status["job"], key="tr_job")
scoring = autoeval.active_job(s)
if scoring is not None:
    ui.job_status(scoring, key="tr_eval")


@st.fragment(run_every=2.0)  # redraws the page when a run ends or is scored (a score lands after its job ended)
def follow(seen=run_views.progress_signature(runs, scoring)) -> None:
    if run_views.progress_signature(training.list_runs(s), autoeval.active_job(s)) != seen:
        st.rerun()


# -- runs ------------------------------------------------------------------------------------------
if not runs:
    st.stop()
st.subheader("Runs")
labels = {r["id"]: evaluation.run_label(r) for r in runs}
st.dataframe(run_views.run_rows(runs), hide_index=True, width="stretch", key="tr_table", placeholder=MISSING,
             column_config={"accuracy": st.column_config.NumberColumn(
                 "accuracy", format="%.3f", help="on the test photos, scored when the run ends")})
finished = [r["id"] for r in runs if r["status"] == "done"]
state, caption = run_views.scoring_state(s, runs, scoring)
if state == "no-test":
    st.info("No test photos, so no accuracy yet: add some with the role test on the Data page.")
    ui.link("pages/data.py", "Add test photos on the Data page", icon=":material/photo_library:")
if run_views.active_runs(runs) or scoring is not None or state == "pending":
    follow()
if caption:
    st.caption(caption)
    if state == "pending" and st.button("Score them now", key="tr_score"):
        with ui.user_errors():
            autoeval.submit_if_needed(s)
            st.rerun()
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
scored = [r["id"] for r in runs if r["status"] == "done" and r["accuracy"] is not None]
if scored:
    st.subheader("Run card")
    card = st.selectbox("Run", scored[::-1], format_func=labels.get, key="tr_card")
    [result] = charts.with_slice_names(s, evaluation.results(s, [card])) or [None]
    ui.run_card(result, charts.confusion_matrix(result))

# -- quick test ------------------------------------------------------------------------------------
st.subheader("Quick test")
if not finished:
    st.info("The quick test compares finished runs; none has finished yet.")
    st.stop()
compare = st.multiselect("Runs", finished, default=finished[-3:], format_func=labels.get,
                         key=f"qt_runs_{len(finished)}")  # the latest three, again when another run finishes
image = ui.quick_test_photo(s)
if image is not None and compare:
    with ui.user_errors():
        rows = quicktest.cached(st.session_state, "qt_cache", (quicktest.photo_key(image), tuple(compare)),
                                lambda: evaluation.quick_test(s, compare, image))
        left, right = st.columns([1, 3])
        left.image(image if isinstance(image, bytes) else str(s.image_file(image)), width="stretch")
        right.plotly_chart(quicktest.bars_figure(rows), key="qt_chart")
        left.text(run_views.top_line(rows))
        if st.toggle("Probability against images per tag for this photo", key="qt_curve"):
            st.plotly_chart(quicktest.curve(s, image), key="qt_curve_chart")
