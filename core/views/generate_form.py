"""What the Generate page's forms need, as plain data: saving a tag from the tag form, how many prompts a
template yields, the model choices and their labels, the generation specs a form describes, and the jobs
to follow."""

from __future__ import annotations

from typing import MutableMapping, Sequence

from core import config
from core.errors import UserError
from core.generate import planning, prompts
from core.generate.planning import MODEL_PRESETS, GenerationSpec
from core.run import jobs
from core.store.database import Store

OTHER = "Other: a hub id or a local folder"
NEW_TAG = "(new tag)"
EMPTY_TAG = {"name": "", "prompt": "", "negative": ""}
MAX_SEED = 2**31
MODEL_MISSING = ("Image generation needs a diffusers model: downloaded once from the hub, or copied in as a folder. "
                 f"Pick another preset, or choose “{OTHER}” and give the folder's path.")
WORKERS_HELP = ("0: in this process. N: N Ray workers, on a local Ray or the cluster in SYNTHLAB_RAY_ADDRESS; this "
                "app still writes every image.")


def save_tag(store: Store, editing: str, name: str, prompt: str, negative: str) -> str:
    """Validate the templates and save the tag (a new one when ``editing`` is :data:`NEW_TAG`, else an
    update of ``editing``); returns the saved name. A bad template or name raises a ``UserError``."""
    for text, what in ((prompt, "prompt"), (negative, "negative prompt")):
        if text.strip():
            prompts.validate_template(text, what)
    return store.add_tag(name, prompt, negative, update=editing != NEW_TAG)["name"]


def save_tag_form(store: Store, state: MutableMapping, editing: str) -> None:
    """The tag form's Save (a callback, so the form can be cleared before it is drawn again): reads the form's
    fields from ``state`` (the session), saves, then clears the form for the next tag, picks the new tag for
    generation and leaves ``gen_tag_saved``; a problem is left in ``gen_tag_error`` instead."""
    state.pop("gen_tag_error", None)
    state["gen_form_used"] = True  # keep the form open for the next tag
    try:
        saved = save_tag(store, editing, *(state.get(f"gen_{f}_{editing}", "") for f in ("name", "prompt", "negative")))
    except UserError as exc:
        state["gen_tag_error"] = str(exc)
        return
    if "gen_tags" in state and saved not in state["gen_tags"]:
        state["gen_tags"] = [*state["gen_tags"], saved]
    for field in ("name", "prompt", "negative"):
        state[f"gen_{field}_{NEW_TAG}"] = ""
    state["gen_edit"] = NEW_TAG
    state["gen_tag_saved"] = saved


def prompt_count_caption(prompt: str) -> str:
    """How many prompts a template yields, in words (a bad template raises a ``UserError``)."""
    n = prompts.count_prompts(prompt)
    return f"This template yields {n} distinct prompt(s)." if n <= prompts.COUNT_CAP else f"This template yields {n:,} prompt variants."


def model_choices() -> list[str]:
    return list(MODEL_PRESETS) + [OTHER]


def default_model_index() -> int:
    """Where the default generator (:func:`core.config.default_model`) is among :func:`model_choices`."""
    default = config.default_model()
    return list(MODEL_PRESETS).index(default) if default in MODEL_PRESETS else 0


def model_label(model: str) -> str:
    """A preset's label, with its id unless the label already names it (``fashion-mini``)."""
    if model not in MODEL_PRESETS:
        return model
    label = MODEL_PRESETS[model].label
    return label if model in label else f"{label} ({model})"


def preset_caption(preset: planning.Preset, device: str) -> str:
    return (f"Defaults for this model ({preset.label}): {preset.width}×{preset.height} px, "
            f"{preset.steps} step(s), guidance {preset.guidance:g}. Device: {device}.")


def default_batch(model: str | None, device: str) -> int:
    """The Generate page's batch size: the one a job would choose by itself, from its one place
    (:func:`core.generate.pipelines.default_batch_size`: fashion-mini 64, CPU 4, CUDA 2/4/8 by memory, MPS 2,
    ``SYNTHLAB_BATCH_SIZE`` over all)."""
    from core.generate.pipelines import default_batch_size

    return default_batch_size(device, model or config.default_model())


def number_fields(preset: planning.Preset, model_key: str) -> list[tuple]:
    """The size and sampling inputs under a model, from its preset and the generation limits:
    ``(field, label, min, max, default, step, key)``; keys carry the model so a new model shows its defaults."""
    return [("width", "Width", planning.MIN_SIDE, planning.MAX_SIDE, preset.width, 8, f"gen_w_{model_key}"),
            ("height", "Height", planning.MIN_SIDE, planning.MAX_SIDE, preset.height, 8, f"gen_h_{model_key}"),
            ("steps", "Steps", 1, planning.MAX_STEPS, preset.steps, 1, f"gen_steps_{model_key}"),
            ("guidance", "Guidance", 0.0, planning.MAX_GUIDANCE, float(preset.guidance), 0.5, f"gen_g_{model_key}")]


def tag_rows(tags: Sequence[dict]) -> list[dict]:
    return [{"tag": t["name"], "prompt": t["prompt"], "negative": t["negative"], **t["counts"]} for t in tags]


def specs(tags: Sequence[str], **fields) -> list[GenerationSpec]:
    """One generation spec per tag, the same fields for each."""
    return [GenerationSpec(tag=t, **fields) for t in tags]


def jobs_to_follow(store: Store, submitted: Sequence[int]) -> list[int]:
    """This session's generation jobs and every active one, in order."""
    active = [j["id"] for j in jobs.list_jobs(store, kind="generate", limit=20) if j["status"] in jobs.ACTIVE]
    return sorted(set(submitted) | set(active))
