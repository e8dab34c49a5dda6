"""Results: each tag's predicted probability against images per tag, metrics, arm comparisons, confusion,
and the report."""

import streamlit as st

from core import ui
from core.analysis import arms, autoeval, compare
from core.analysis.evaluation import results as stored_results
from core.flows import experiment_run
from core.redact import plain
from core.views import charts, result_tabs, tables

st.title("Results")
s = ui.store()
all_results = charts.with_slice_names(s, stored_results(s))
with st.container(border=True, key="answer"):
    st.subheader("The answer so far")
    for kind, line in experiment_run.answer_lines(s):  # the verdicts, what is missing, the upscale notes
        getattr(st, kind)(plain(line))

if not all_results:
    st.info(result_tabs.NO_RESULTS)
    for target, label in result_tabs.NO_RESULTS_LINKS:
        ui.link(target, label)
    ui.score_button(s, "Evaluate finished runs", "evaluate")
    st.stop()

names, backends = result_tabs.filter_choices(all_results)
left, middle, right = st.columns([3, 2, 2])
chosen_names = left.multiselect("Slices", names, default=names)
chosen_backends = middle.multiselect("Backends", backends, default=backends)
error = right.radio("Error bars", list(charts.ERRORS), format_func=result_tabs.ERROR_LABELS.get, horizontal=True,
                    help=result_tabs.ERROR_HELP)
results = result_tabs.filtered(all_results, chosen_names, chosen_backends)
if not results:
    st.warning("No run matches: pick at least one slice and one backend.")
    st.stop()
st.caption(f"{len(results)} of {len(all_results)} runs. PNG of any chart: the camera button in its toolbar.")
stale = autoeval.stale_runs(results)
if stale:
    st.warning(f"{len(stale)} runs were scored on an older set of test images.")
    ui.score_button(s, "Re-evaluate them", "reevaluate", stale)

per_image, averages, metrics, comparing, confusion, table = st.tabs(
    ["Per test image", "True-tag probability", "Metrics", "Compare", "Confusion", "Table & report"])

with per_image:
    a, b = st.columns([2, 3])
    tag = a.selectbox("Test images of", [result_tabs.ALL_TAGS] + charts.tags_of(results), key="picker-tag")
    most_flips = b.toggle("Most prediction changes first", value=True, key="picker-flips")
    shown, flips, image_id = result_tabs.picker(results, tag, most_flips, st.session_state.get("results-image"))
    st.session_state["results-image"] = image_id
    ui.image_picker(s, shown, flips, key="results-image")
    image_id = st.session_state["results-image"]
    with ui.user_errors():
        ui.chart(charts.probability_vs_count(results, image_id, error=error), "probability-vs-count")
        ui.chart(charts.image_history(results, image_id), "image-history")

with averages, ui.user_errors():
    ui.chart(charts.true_tag_probability_vs_count(results, error=error), "true-tag-probability")

with metrics:
    metric = st.radio("Metric", list(charts.METRICS), format_func=charts.METRICS.get, horizontal=True, key="metric")
    drawn, missing = result_tabs.with_real_only_baselines(results, all_results)
    with ui.user_errors():
        ui.chart(charts.metrics_vs_count(drawn, metric, error=error), f"metric-{metric}")
    for row in missing[:3]:
        c1, c2 = st.columns([4, 2])
        c1.caption(f"No real-only baseline for {row['label']}: the same counts, size and training with real photos only.")
        if c2.button("Make the matching real-only sweep", key=f"baseline-{row['id']}"):
            with ui.user_errors():
                made = arms.make_real_only_sweep(s, all_results, row["id"])
                st.success(result_tabs.sweep_made(made))

with comparing:
    arm_names = result_tabs.arm_choices(all_results)
    if len(arm_names) < 2:
        st.info("Compare needs two arms (lines): train another sweep or configuration first.")
    else:
        c1, c2 = st.columns(2)
        arm_ids = list(arm_names)
        pa, pb = arms.proposed_pair(all_results)  # synthetic vs its real-only twin at equal counts
        arm_a = c1.selectbox("Arm a", arm_ids, index=arm_ids.index(pa), format_func=arm_names.get, key="compare-a")
        arm_b = c2.selectbox("Arm b", arm_ids, index=arm_ids.index(pb), format_func=arm_names.get, key="compare-b")
        st.caption(result_tabs.COMPARE_CAPTION)
        with ui.user_errors():
            compared = compare.compare_results(all_results, arm_a, arm_b)
            st.dataframe(result_tabs.comparison_rows(compared), hide_index=True, key="compare-table",
                         placeholder=tables.MISSING)
            pairs = st.session_state.setdefault("report-comparisons", [])
            if st.button("Include this comparison in the report", key="compare-include", disabled=(arm_a, arm_b) in pairs):
                pairs.append((arm_a, arm_b))
                st.rerun()
            if pairs:
                st.caption("In the report: " + "; ".join(f"{a} vs {b}" for a, b in pairs))

with confusion:
    by_run = {r["run"]: r for r in charts.history_order(results)}
    run = st.selectbox("Run", list(by_run), format_func=lambda i: charts.run_label(by_run[i]), key="confusion-run")
    cell = charts.cell_from_selection(ui.chart(charts.confusion_matrix(by_run[run]), f"confusion-{run}",
                                               on_select="rerun", selection_mode="points"))
    if cell is None:
        st.caption("Click a cell to see the test images behind it.")
    else:
        cell_images = charts.confusion_cell_images(by_run[run], *cell)
        st.markdown(f"**{len(cell_images)}** test images of **{plain(cell[0])}** predicted as **{plain(cell[1])}**")
        if cell_images:
            st.image([str(s.image_file(i)) for i in cell_images[:48]], caption=[i[:12] for i in cell_images[:48]], width=96)

with table:
    st.dataframe(tables.results_frame(results), hide_index=True, placeholder=tables.MISSING)
    st.download_button("Download all results (CSV)", tables.results_csv(all_results), file_name="synthlab-results.csv",
                       mime="text/csv", key="results-csv", on_click="ignore", icon=":material/download:")
    st.divider()
    st.write(result_tabs.REPORT_TEXT)
    ui.report_box(s, [r["run"] for r in results], st.session_state.get("report-comparisons", []))
