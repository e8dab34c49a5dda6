"""Results: each tag's predicted probability against images per tag, metrics, arm comparisons, confusion,
and the report."""

from pathlib import Path

import streamlit as st

from core import ui
from core.analysis import arms, compare
from core.analysis.evaluation import evaluate
from core.analysis.evaluation import results as stored_results
from core.flows import experiment_run
from core.views import axes, charts, result_labels, tables
from core.views.report import default_report_path, write_report

st.title("Results")
s = ui.store()
all_results = charts.with_slice_names(s, stored_results(s))
verdict = experiment_run.answer(s)
with st.container(border=True, key="answer"):
    st.subheader("The answer so far")
    for line in verdict["sentences"]:
        st.markdown(f"- {ui.plain(line)}")
    for line in verdict["missing"] + verdict["todo"]:
        st.warning(f"The question is still open — {ui.plain(line)}")
    for line in verdict["notes"]:
        st.caption(ui.plain(line))

if not all_results:
    st.info("No results yet: a finished run is scored on the labelled test photos the moment it ends. "
            "Add test photos (Data page, role test), cut slices (Slice) and train on them (Train).")
    for target, label in (("pages/data.py", "Add test photos on the Data page"),
                          ("pages/slice.py", "Cut slices on the Slice page"),
                          ("pages/train.py", "Train on the Train page")):
        ui.link(target, label)
    if st.button("Evaluate finished runs", key="evaluate"):
        with ui.user_errors(), st.spinner("Scoring the test images…"):
            evaluate(s)
            st.rerun()
    st.stop()


def show(fig, key: str, **select):
    """A chart with its HTML download (plotly.js embedded); PNG via the chart toolbar's camera button."""
    event = st.plotly_chart(fig, key=key, config={"displaylogo": False, "toImageButtonOptions": {"filename": key}},
                            **select)
    for note in axes.figure_notes(fig):  # warnings under the chart, never over its axis
        st.caption(ui.plain(note))
    st.download_button("Download chart (HTML)", lambda: fig.to_html(include_plotlyjs=True), file_name=f"{key}.html",
                       mime="text/html", key=f"{key}-html", on_click="ignore", icon=":material/download:")
    return event


names = sorted({result_labels.slice_label(r) for r in all_results})
backends = sorted({r["backend"] for r in all_results})
left, middle, right = st.columns([3, 2, 2])
chosen_names = left.multiselect("Slices", names, default=names)
chosen_backends = middle.multiselect("Backends", backends, default=backends)
error = right.radio("Error bars", list(charts.ERRORS),
                    format_func=lambda e: {"combined": "95% (repeats + test set)", "std": "± 1 std",
                                           "ci95": "95% repeats only"}[e],
                    horizontal=True, help="combined: repeat spread and test-set uncertainty together; the "
                    "others show only the spread of runs that differ in their slice's repeat.")
results = [r for r in all_results if result_labels.slice_label(r) in chosen_names and r["backend"] in chosen_backends]
if not results:
    st.warning("No run matches: pick at least one slice and one backend.")
    st.stop()
st.caption(f"{len(results)} of {len(all_results)} runs. PNG of any chart: the camera button in its toolbar.")
stale = [r["run"] for r in results if r.get("stale")]
if stale:
    st.warning(f"{len(stale)} runs were scored on an older set of test images.")
    if st.button("Re-evaluate them", key="reevaluate"):
        with ui.user_errors(), st.spinner("Scoring the test images…"):
            evaluate(s, stale)
            st.rerun()

per_image, averages, metrics, comparing, confusion, table = st.tabs(
    ["Per test image", "True-tag probability", "Metrics", "Compare", "Confusion", "Table & report"])

with per_image:
    images = charts.scored_images(results)
    flips = charts.flip_counts(results)
    tags = ["all tags"] + charts.tags_of(results)
    a, b = st.columns([2, 3])
    tag = a.selectbox("Test images of", tags, key="picker-tag")
    most_flips = b.toggle("Most prediction changes first", value=True, key="picker-flips")
    shown = [im for im in images if tag == "all tags" or im["tag"] == tag]
    if most_flips:
        shown.sort(key=lambda im: -flips.get(im["image"], 0))
    shown = shown[:24]
    if st.session_state.get("results-image") not in {im["image"] for im in images}:
        st.session_state["results-image"] = shown[0]["image"] if shown else images[0]["image"]
    for row in range(0, len(shown), 8):
        for col, im in zip(st.columns(8), shown[row:row + 8]):
            col.image(str(s.image_file(im["image"])), caption=f"{ui.plain(im['tag'])} · {flips.get(im['image'], 0)}×",
                      width="stretch")
            picked = im["image"] == st.session_state["results-image"]
            if col.button("Picked" if picked else "Pick", key=f"pick-{im['image']}", type="primary" if picked else "secondary",
                          width="stretch"):
                st.session_state["results-image"] = im["image"]
                st.rerun()
    image_id = st.session_state["results-image"]
    with ui.user_errors():
        show(charts.probability_vs_count(results, image_id, error=error), "probability-vs-count")
        show(charts.image_history(results, image_id), "image-history")

with averages:
    with ui.user_errors():
        show(charts.true_tag_probability_vs_count(results, error=error), "true-tag-probability")

with metrics:
    metric = st.radio("Metric", list(charts.METRICS), format_func=charts.METRICS.get, horizontal=True, key="metric")
    shown_runs = {r["run"] for r in results}
    baselines, missing = [], []
    for row in arms.arm_table(results):
        if row["real_fraction"] is None or row["real_fraction"] >= 1.0:
            continue
        twin = arms.real_only_match(all_results, row["id"])
        if twin:
            baselines += [r for r in all_results if r["arm"] == twin and r["run"] not in shown_runs]
        else:
            missing.append(row)
    with ui.user_errors():
        show(charts.metrics_vs_count(results + list({r["run"]: r for r in baselines}.values()), metric, error=error),
             f"metric-{metric}")
    for row in missing[:3]:
        c1, c2 = st.columns([4, 2])
        c1.caption(f"No real-only baseline for {row['label']}: the same counts, size and training with real "
                   "photos only.")
        if c2.button("Make the matching real-only sweep", key=f"baseline-{row['id']}"):
            with ui.user_errors():
                made = arms.make_real_only_sweep(s, all_results, row["id"])
                st.success(f"Sweep {made['name']}: {len(made['slices'])} slices, {len(made['runs'])} runs queued "
                           "for training; evaluate them when they are done.")

with comparing:
    table_of_arms = arms.arm_table(all_results)
    arm_ids = [row["id"] for row in table_of_arms]
    arm_names = {row["id"]: f"{row['id']} · {row['label']}" for row in table_of_arms}
    if len(arm_ids) < 2:
        st.info("Compare needs two arms (lines): train another sweep or configuration first.")
    else:
        c1, c2 = st.columns(2)
        pa, pb = arms.proposed_pair(all_results)  # synthetic vs its real-only twin at equal counts
        arm_a = c1.selectbox("Arm a", arm_ids, index=arm_ids.index(pa), format_func=arm_names.get, key="compare-a")
        arm_b = c2.selectbox("Arm b", arm_ids, index=arm_ids.index(pb), format_func=arm_names.get, key="compare-b")
        st.caption("Paired difference in accuracy (a − b) on the same test images, with a 95% interval from a "
                   "bootstrap over test images and repeats. 'within noise' when the interval contains 0.")
        with ui.user_errors():
            compared = compare.compare_results(all_results, arm_a, arm_b)
            st.dataframe([{"images per tag": c["count_per_tag"], "a": round(c["a"], 3), "b": round(c["b"], 3),
                           "difference": round(c["difference"], 3),
                           "95% interval": f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]",
                           "p-value": round(c["p_value"], 4), "verdict": c["verdict"],
                           "repeats a/b": "/".join(map(str, c["repeats"]))} for c in compared["comparisons"]],
                         hide_index=True, key="compare-table")
            for c in compared["comparisons"]:
                st.text(compare.sentence(c))
            pairs = st.session_state.setdefault("report-comparisons", [])
            if st.button("Include this comparison in the report", key="compare-include",
                         disabled=(arm_a, arm_b) in pairs):
                pairs.append((arm_a, arm_b))
                st.rerun()
            if pairs:
                st.caption("In the report: " + "; ".join(f"{a} vs {b}" for a, b in pairs))

with confusion:
    by_run = {r["run"]: r for r in charts.history_order(results)}
    run = st.selectbox("Run", list(by_run), format_func=lambda i: charts.run_label(by_run[i]), key="confusion-run")
    event = show(charts.confusion_matrix(by_run[run]), f"confusion-{run}", on_select="rerun", selection_mode="points")
    cell = charts.cell_from_selection(event)
    if cell is None:
        st.caption("Click a cell to see the test images behind it.")
    else:
        cell_images = charts.confusion_cell_images(by_run[run], *cell)
        st.markdown(f"**{len(cell_images)}** test images of **{ui.plain(cell[0])}** predicted as **{ui.plain(cell[1])}**")
        if cell_images:
            st.image([str(s.image_file(i)) for i in cell_images[:48]], caption=[i[:12] for i in cell_images[:48]],
                     width=96)

with table:
    st.dataframe(tables.results_frame(results), hide_index=True)
    st.download_button("Download all results (CSV)", tables.results_csv(all_results), file_name="synthlab-results.csv",
                       mime="text/csv", key="results-csv", on_click="ignore", icon=":material/download:")
    st.divider()
    st.write("One HTML file with these charts, the run table, slice specs, prompts and generation settings; "
             "it opens offline.")
    if st.button("Build report", key="build-report", type="primary"):
        with ui.user_errors(), st.spinner("Writing the report…"):
            path = write_report(s, default_report_path(s), run_ids=[r["run"] for r in results],
                                comparisons=st.session_state.get("report-comparisons", []))
            st.session_state["results-report"] = str(path)
    if st.session_state.get("results-report"):
        report = Path(st.session_state["results-report"])
        st.success(f"Report written to {ui.plain(report)}")
        st.download_button("Download report (HTML)", lambda: report.read_bytes(), file_name=report.name,
                           mime="text/html", key="report-download", on_click="ignore", icon=":material/download:")
