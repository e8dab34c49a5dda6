"""Generate: tags with prompt templates, Stable Diffusion images per tag as background jobs, a gallery."""

import streamlit as st

from core import config, ui
from core.data import samples
from core.data.samples import load_clothing_sample
from core.errors import ModelNotFound, UserError
from core.generate import planning
from core.generate.generation import submit_generation
from core.generate.planning import MODEL_PRESETS, GenerationSpec, preset_for
from core.generate.prompts import COUNT_CAP, count_prompts, validate_template
from core.models.generators import resolve_model
from core.run import cluster, jobs
from core.store.records import SOURCES

OTHER = "Other: a hub id or a local folder"
NEW_TAG = "(new tag)"

st.title("Generate")
st.caption("Each tag has a prompt template — `{blue|black|ripped} jeans on {a white background|a street}` — "
           "and a series of images made from it. Re-running a series makes only the images it lacks.")
store = ui.store()
tags = store.list_tags()
names = [t["name"] for t in tags]

if not tags and not store.count_images():
    st.info("An empty store. Start with real photos: the clothing sample makes the four tags of the original "
            "experiment (jeans, shoes, shirts, other) with real and test photos from Fashion-MNIST.")
    per_tag = st.number_input("Real photos per tag", 2, 6000, samples.DEFAULT_PER_TAG, key="gen_sample_n")
    if st.button("Load the clothing sample", type="primary", key="gen_sample"):
        with ui.user_errors(), st.spinner("Loading the clothing sample…"):
            bar = st.progress(0.0, text="clothing sample")
            loaded = load_clothing_sample(store, per_tag=int(per_tag), test_per_tag=samples.DEFAULT_TEST_PER_TAG, progress=lambda done, total, message: bar.progress(
                min(done / max(total, 1), 1.0), text=message))
            st.session_state["gen_sample_loaded"] = loaded["imported"]
            st.rerun()
if st.session_state.get("gen_sample_loaded"):
    st.success(f"Clothing sample loaded: {st.session_state.pop('gen_sample_loaded')} photos.")

st.subheader("Tags")
if tags:
    st.dataframe(
        [{"tag": t["name"], "prompt": t["prompt"], "negative": t["negative"], **t["counts"]} for t in tags],
        hide_index=True, width="stretch",
    )


def save_tag(editing: str) -> None:
    """Save the form's tag (a callback, so the form can be cleared before it is drawn again)."""
    name = st.session_state.get(f"gen_name_{editing}", "")
    prompt = st.session_state.get(f"gen_prompt_{editing}", "")
    negative = st.session_state.get(f"gen_negative_{editing}", "")
    st.session_state.pop("gen_tag_error", None)
    st.session_state["gen_form_used"] = True  # keep the form open for the next tag
    try:
        for text, what in ((prompt, "prompt"), (negative, "negative prompt")):
            if text.strip():
                validate_template(text, what)
        saved = store.add_tag(name, prompt, negative, update=editing != NEW_TAG)["name"]
    except UserError as exc:
        st.session_state["gen_tag_error"] = str(exc)
        return
    if "gen_tags" in st.session_state and saved not in st.session_state["gen_tags"]:
        st.session_state["gen_tags"] = [*st.session_state["gen_tags"], saved]
    for field in ("name", "prompt", "negative"):
        st.session_state[f"gen_{field}_{NEW_TAG}"] = ""
    st.session_state["gen_edit"] = NEW_TAG
    st.session_state["gen_tag_saved"] = saved


with st.expander("Add or edit a tag", expanded=not tags or "gen_form_used" in st.session_state):
    editing = st.selectbox("Tag", [NEW_TAG] + names, key="gen_edit")
    current = next((t for t in tags if t["name"] == editing), {"name": "", "prompt": "", "negative": ""})
    name = st.text_input("Name", value=current["name"], key=f"gen_name_{editing}", disabled=editing != NEW_TAG)
    prompt = st.text_area("Prompt template", value=current["prompt"], key=f"gen_prompt_{editing}",
                          help="{a|b|c} picks one of a, b, c; {2$$a|b|c} picks two; nest freely.")
    negative = st.text_input("Negative prompt", value=current["negative"], key=f"gen_negative_{editing}")
    problem = None
    if prompt.strip():
        try:
            n = count_prompts(prompt)
            st.caption(f"This template yields {n} distinct prompt(s)." if n <= COUNT_CAP
                       else f"This template yields {n:,} prompt variants.")
        except UserError as exc:
            problem = str(exc)
            st.error(ui.plain(problem), icon="⚠️")
    st.button("Save tag", key="gen_save_tag", on_click=save_tag, args=(editing,))
    error = st.session_state.pop("gen_tag_error", None)
    if error and error != problem:  # one message per problem
        st.error(ui.plain(error), icon="⚠️")
    saved = st.session_state.pop("gen_tag_saved", None)
    if saved:
        st.success(f"Saved tag {ui.plain(repr(saved))}; the form is ready for the next one.")

st.subheader("Generate images")
if not names:
    st.info("Add a tag with a prompt first.")
else:
    c1, c2 = st.columns(2)
    choice = c1.selectbox(
        "Model", list(MODEL_PRESETS) + [OTHER], key="gen_model_choice",
        index=list(MODEL_PRESETS).index(config.default_model()) if config.default_model() in MODEL_PRESETS else 0,
        format_func=lambda m: (MODEL_PRESETS[m].label if m in MODEL_PRESETS[m].label else
                               f"{MODEL_PRESETS[m].label} ({m})") if m in MODEL_PRESETS else m,
    )
    model = c2.text_input("Hub id or folder", key="gen_model_other") if choice == OTHER else choice
    preset = preset_for(model or None)
    st.caption(f"Defaults for this model ({preset.label}): {preset.width}×{preset.height} px, "
               f"{preset.steps} step(s), guidance {preset.guidance:g}. Device: {ui.device()}.")
    chosen = st.multiselect("Tags", names, default=None if "gen_tags" in st.session_state else names, key="gen_tags")
    cols = st.columns(4)
    count = cols[0].number_input("Images per tag", 1, 100_000, 20, key="gen_count")
    seed = cols[1].number_input("Seed", 0, 2**31, 0, key="gen_seed")
    batch = cols[2].number_input("Batch size", 1, 64, 1, key="gen_batch")
    expansion = cols[3].selectbox("Prompt expansion", ["random", "combinatorial"], key="gen_expansion")
    mk = model or "none"
    width = cols[0].number_input("Width", planning.MIN_SIDE, planning.MAX_SIDE, preset.width, step=8, key=f"gen_w_{mk}")
    height = cols[1].number_input("Height", planning.MIN_SIDE, planning.MAX_SIDE, preset.height, step=8, key=f"gen_h_{mk}")
    steps = cols[2].number_input("Steps", 1, 500, preset.steps, key=f"gen_steps_{mk}")
    guidance = cols[3].number_input("Guidance", 0.0, 50.0, float(preset.guidance), step=0.5, key=f"gen_g_{mk}")
    fast = st.checkbox("Fast decode (tiny autoencoder, TAESD)", key="gen_fast")
    workers = 0
    if cluster.available():
        workers = int(st.number_input(
            "Workers (Ray)", 0, cluster.MAX_WORKERS, 0, key="gen_workers",
            help="0: in this process. N: N Ray workers, on a local Ray or the cluster in SYNTHLAB_RAY_ADDRESS; "
                 "this app still writes every image."))
    if st.button("Generate", type="primary", key="gen_submit", disabled=not chosen):
        st.session_state["gen_model_missing"] = False
        with ui.user_errors(), st.spinner(f"Finding the model {model or config.default_model()} …"):
            try:
                resolve_model(model or None)
            except ModelNotFound:
                st.session_state["gen_model_missing"] = True
                raise
            specs = [GenerationSpec(tag=t, count=int(count), model=model or None, width=int(width),
                                    height=int(height), steps=int(steps), guidance=float(guidance),
                                    seed=int(seed), batch_size=int(batch), expansion=expansion, fast_decode=fast)
                     for t in chosen]
            submitted = [submit_generation(store, spec, workers=workers) for spec in specs]
            st.session_state.setdefault("gen_jobs", [])
            st.session_state["gen_jobs"] += [j for j in submitted if j not in st.session_state["gen_jobs"]]

    if st.session_state.get("gen_model_missing"):
        st.info("Image generation needs a diffusers model: downloaded once from the hub, or copied in as a "
                f"folder. Pick another preset, or choose “{OTHER}” and give the folder's path.")

active = [j["id"] for j in jobs.list_jobs(store, kind="generate", limit=20) if j["status"] in jobs.ACTIVE]
shown_jobs = sorted(set(st.session_state.get("gen_jobs", [])) | set(active))
if len(shown_jobs) > 1:
    ui.batch_progress(shown_jobs, key="gen_batch")
for job_id in shown_jobs:
    ui.job_status(job_id, key="gen")

st.subheader("Gallery")
f1, f2, f3 = st.columns(3)
tag_filter = f1.selectbox("Tag", ["all"] + names, key="gal_tag")
source_filter = f2.selectbox("Source", ["all", *SOURCES], key="gal_source")
show_rejected = f3.checkbox("Show rejected", value=True, key="gal_rejected")
with ui.user_errors():
    tag_arg = None if tag_filter == "all" else tag_filter
    source_arg = None if source_filter == "all" else source_filter
    total = store.count_images(tag_arg, source_arg, include_rejected=show_rejected)
    st.caption(f"{total} image(s)")
    offset, limit = ui.paginate(total, key=f"gal_page_{tag_filter}_{source_filter}_{show_rejected}")
    images = store.list_images(tag_arg, source_arg, include_rejected=show_rejected, limit=limit, offset=offset)
    ui.gallery(store, images, key="gal")
st.caption(f"Store: {ui.plain(store.root)} · default model {config.default_model()}")
