"""Generate: tags with prompt templates, Stable Diffusion images per tag as background jobs, a gallery."""

import streamlit as st

from core import config, ui
from core.errors import ModelNotFound, UserError
from core.generate import planning
from core.generate.generation import submit_generation
from core.generate.planning import preset_for
from core.models.generators import resolve_model
from core.redact import plain
from core.run import cluster
from core.views import generate_form as form
from core.views import status_lines
from core.views.generate_form import NEW_TAG, OTHER
from core.views.tables import MISSING

st.title("Generate")
st.caption("Each tag has a prompt template — `{blue|black|ripped} jeans on {a white background|a street}` — "
           "and a series of images made from it. Re-running a series makes only the images it lacks.")
store = ui.store()
tags = store.list_tags()
names = [t["name"] for t in tags]

ui.sample_box(store, key="gen")  # on an empty store, while it loads, or when it stopped half way

st.subheader("Tags")
if tags:
    st.dataframe(form.tag_rows(tags), hide_index=True, width="stretch", placeholder=MISSING)


with st.expander("Add or edit a tag", expanded=not tags or "gen_form_used" in st.session_state):
    editing = st.selectbox("Tag", [NEW_TAG] + names, key="gen_edit")
    current = next((t for t in tags if t["name"] == editing), form.EMPTY_TAG)
    st.text_input("Name", value=current["name"], key=f"gen_name_{editing}", disabled=editing != NEW_TAG)
    prompt = st.text_area("Prompt template", value=current["prompt"], key=f"gen_prompt_{editing}",
                          help="{a|b|c} picks one of a, b, c; {2$$a|b|c} picks two; nest freely.")
    st.text_input("Negative prompt", value=current["negative"], key=f"gen_negative_{editing}")
    problem = None
    if prompt.strip():
        try:
            st.caption(form.prompt_count_caption(prompt))
        except UserError as exc:
            problem = str(exc)
            st.error(plain(problem), icon="⚠️")
    st.button("Save tag", key="gen_save_tag", on_click=form.save_tag_form, args=(store, st.session_state, editing))
    error = st.session_state.pop("gen_tag_error", None)
    if error and error != problem:  # one message per problem
        st.error(plain(error), icon="⚠️")
    if saved := st.session_state.pop("gen_tag_saved", None):
        st.success(f"Saved tag {plain(repr(saved))}; the form is ready for the next one.")

st.subheader("Generate images")
if not names:
    st.info("Add a tag with a prompt first.")
else:
    c1, c2 = st.columns(2)
    choice = c1.selectbox("Model", form.model_choices(), index=form.default_model_index(), key="gen_model_choice",
                          format_func=form.model_label)
    model = c2.text_input("Hub id or folder", key="gen_model_other") if choice == OTHER else choice
    preset = preset_for(model or None)
    st.caption(form.preset_caption(preset, ui.device()))
    chosen = st.multiselect("Tags", names, default=None if "gen_tags" in st.session_state else names, key="gen_tags")
    cols = st.columns(4)
    count = cols[0].number_input("Images per tag", 1, planning.MAX_COUNT, 20, key="gen_count")
    seed = cols[1].number_input("Seed", 0, form.MAX_SEED, 0, key="gen_seed")
    batch = cols[2].number_input("Batch size", 1, planning.MAX_BATCH, form.default_batch(model, ui.device()),
                                 key=f"gen_batch_{model or 'none'}")
    expansion = cols[3].selectbox("Prompt expansion", list(planning.EXPANSIONS), key="gen_expansion")
    size = {field: cols[n].number_input(label, lo, hi, default, step=step, key=key)
            for n, (field, label, lo, hi, default, step, key) in enumerate(form.number_fields(preset, model or "none"))}
    fast = st.checkbox("Fast decode (tiny autoencoder, TAESD)", key="gen_fast")
    workers = int(st.number_input("Workers (Ray)", 0, cluster.MAX_WORKERS, 0, key="gen_workers", help=form.WORKERS_HELP)
                  ) if cluster.available() else 0
    if st.button("Generate", type="primary", key="gen_submit", disabled=not chosen):
        st.session_state["gen_model_missing"] = False
        with ui.user_errors(), st.spinner(f"Finding the model {model or config.default_model()} …"):
            try:
                resolve_model(model or None)
            except ModelNotFound:
                st.session_state["gen_model_missing"] = True
                raise
            specs = form.specs(chosen, count=int(count), model=model or None, width=int(size["width"]),
                               height=int(size["height"]), steps=int(size["steps"]), guidance=float(size["guidance"]),
                               seed=int(seed), batch_size=int(batch), expansion=expansion, fast_decode=fast)
            submitted = [submit_generation(store, spec, workers=workers) for spec in specs]
            st.session_state["gen_jobs"] = list(dict.fromkeys(st.session_state.get("gen_jobs", []) + submitted))
    if st.session_state.get("gen_model_missing"):
        st.info(form.MODEL_MISSING)

shown_jobs = form.jobs_to_follow(store, st.session_state.get("gen_jobs", []))
if len(shown_jobs) > 1:
    ui.batch_progress(shown_jobs, key="gen_batch")
for job_id in shown_jobs:
    ui.job_status(job_id, key="gen")

st.subheader("Gallery")
ui.gallery(store, names)
st.caption(f"Store: {plain(status_lines.shown_path(store.root))} · default model {config.default_model()}")
