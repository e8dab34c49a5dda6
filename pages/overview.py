"""Experiment overview: the four steps as a checklist with live counts, the next action, the original
experiment as a preset, and the clothing sample: loaded on an empty store, followed while it loads, finished
when it stopped half way."""

import streamlit as st

from core import ui
from core.data.slicing import parse_ints
from core.flows import experiment, experiment_run
from core.redact import plain
from core.train import training

st.title("Overview")
st.caption("Does training on Stable Diffusion images make the classifier better — how many, at what size, "
           "mixed how? Four steps; each links to its page.")
store = ui.store()
state = experiment.status(store)

for n, step in enumerate(state["steps"], 1):
    with st.container(border=True, key=f"ov_step_{step.key}"):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.markdown(f"{':material/check_circle:' if step.done else ':material/radio_button_unchecked:'} "
                      f"**Step {n} of 4 · {step.title}**")
        left.text(step.detail)
        with right:
            ui.link(step.page, label=f"Open {step.page.split('/')[-1].removesuffix('.py').title()}",
                    icon=":material/arrow_forward:")

with st.container(border=True, key="ov_one_click"):
    st.markdown("**The whole experiment in one click**, offline: the clothing sample, images from the built-in "
                "`fashion-mini` generator, three arms (synthetic only, mixed, real-only), training, scores, verdicts.")
    running = experiment_run.active_job(store)
    if running:
        ui.job_status(running, key="ov_experiment_job")
    else:
        with st.expander("Settings"):
            c1, c2, c3 = st.columns(3)
            one = experiment_run.ExperimentRun()
            x_per_tag = c1.number_input("Images per tag", 1, experiment_run.MAX_PER_TAG, one.per_tag, key="ox_per_tag")
            x_counts = c2.text_input("Slice counts", ", ".join(map(str, one.counts)), key="ox_counts")
            x_repeats = c3.number_input("Repeats", 1, 10, one.repeats, key="ox_repeats")
        if st.button("Run the whole experiment", key="ov_experiment", icon=":material/rocket_launch:"):
            with ui.user_errors():
                experiment_run.submit_experiment(store, experiment_run.ExperimentRun(
                    per_tag=int(x_per_tag), counts=parse_ints(x_counts, "counts"), repeats=int(x_repeats)))
                st.rerun()

nxt = state["next"]
sample_spot = st.container()  # the sample's bar, or what it lacks, filled in once the Next button is read

preset_box = st.expander("The original experiment (preset)", expanded=nxt.action == "cut")
with preset_box:
    st.text(experiment.describe())
    c1, c2, c3 = st.columns(3)
    counts = c1.text_input("Images per tag", ", ".join(map(str, experiment.PRESET.counts)), key="ov_counts")
    sizes = c2.text_input("Sizes (px)", ", ".join(map(str, experiment.PRESET.sizes)), key="ov_sizes")
    repeats = c3.number_input("Repeats", 1, 100, experiment.PRESET.repeats, key="ov_repeats")
    b1, b2 = st.columns(2)
    add_tags = b1.button("Add the preset's tags and prompts", key="ov_tags")
    cut = b2.button("Cut the preset slices", key="ov_cut")


def preset() -> experiment.ExperimentPreset:
    return experiment.PRESET.narrowed(parse_ints(counts, "counts"), parse_ints(sizes, "sizes"), int(repeats))


def cut_slices() -> None:
    out = experiment.cut_preset(store, preset())
    arms = ", ".join(f"{name}: {a['slices']} slices ({a['created']} new)" for name, a in out["arms"].items())
    st.session_state["ov_message"] = [("success", f"Preset slices ready — {arms}")] + [
        ("warning", f"{name} not cut: {plain(why)}") for name, why in out["skipped"].items()]


st.subheader("Next")
st.caption(nxt.why)
go_next = st.button(nxt.label, type="primary", key="ov_next", icon=":material/play_arrow:")
with ui.user_errors():
    if add_tags:
        changed = experiment.add_preset_tags(store, preset())
        st.session_state["ov_message"] = [("success", f"Tags added or given prompts: {plain(', '.join(changed) or 'none')}")]
        st.rerun()
    if cut:
        cut_slices()
        st.rerun()
    if go_next:
        if nxt.action == "cut":
            cut_slices()
            st.rerun()
        elif nxt.action == "train":
            st.session_state["tr_batch"] = training.submit_training(store, state["untrained"], "local", {})
            st.session_state["tr_slices"] = state["untrained"]
            ui.go(nxt.page)
        elif nxt.action != "sample":
            ui.go(nxt.page)
with sample_spot:
    ui.sample_box(store, key="ov", found=state["sample"], button=False, pressed=go_next and nxt.action == "sample")

for kind, message in st.session_state.pop("ov_message", []):
    (st.success if kind == "success" else st.warning)(message)
