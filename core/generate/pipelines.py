"""Diffusers pipelines, loaded once per (model, task, device, scheduler) and cached per process; rendering one batch of a plan."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from core import config
from core.errors import InvalidInput, ModelNotFound
from core.generate import prompts
from core.generate.planning import MAX_BATCH, Plan, check_int
from core.models import builtin_generator, generators

_IMG2IMG = {
    "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
}


@dataclass
class _Loaded:
    pipe: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_PIPES: dict[tuple, _Loaded] = {}


_PIPES_LOCK = threading.RLock()


def default_batch_size(device: str, model_id: str | None = None) -> int:
    """Images per pipeline call when none is asked for (``SYNTHLAB_BATCH_SIZE`` overrides).

    Measured with ``bench/generation.py`` (b): on CPU batch 4 beats one at a time (one set of Python and
    scheduler overhead per four images); on CUDA it grows with the card's memory; MPS stays small."""
    forced = config.setting("SYNTHLAB_BATCH_SIZE")
    if forced:
        try:
            return check_int("SYNTHLAB_BATCH_SIZE", int(forced), 1, MAX_BATCH)
        except ValueError:
            raise InvalidInput(f"setting SYNTHLAB_BATCH_SIZE must be a whole number, not {forced!r}") from None
    if model_id == builtin_generator.NAME:
        return builtin_generator.BATCH_SIZE
    if device.startswith("cuda"):
        import torch

        gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
        return 8 if gib >= 40 else 4 if gib >= 16 else 2
    if device == "mps":
        return 2
    return 4


def _dtype_for(device: str):
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


def _load_base(model: generators.ModelInfo, device: str, dtype) -> Any:
    import diffusers
    import transformers
    from diffusers import DiffusionPipeline

    for lib in (diffusers, transformers):
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if not model.local:
        kwargs["revision"] = model.revision
    try:
        try:
            pipe = DiffusionPipeline.from_pretrained(model.source, variant="fp16", **kwargs) \
                if str(dtype) == "torch.float16" else DiffusionPipeline.from_pretrained(model.source, **kwargs)
        except (ValueError, OSError, EnvironmentError):
            if str(dtype) != "torch.float16":
                raise
            pipe = DiffusionPipeline.from_pretrained(model.source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any load failure is the model's fault, told plainly
        raise ModelNotFound(f"cannot load model {model.id}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def get_pipeline(model: generators.ModelInfo, task: str, device: str, *, scheduler: str | None = None,
                 taesd: str | None = None, compile: bool = False) -> _Loaded:
    """The process-wide pipeline for (model, task, device, dtype, scheduler, fast decode, compile).

    The base text-to-image pipeline is loaded once; every other variant is ``from_pipe`` of it,
    sharing the weights, with its own scheduler instance and its own lock. Nothing is changed later.
    """
    dtype = _dtype_for(device)
    base_key = (model.source, model.revision, "base", device, str(dtype))
    key = (model.source, model.revision, task, device, str(dtype), scheduler or model.scheduler, taesd, compile)
    with _PIPES_LOCK:
        if key in _PIPES:
            return _PIPES[key]
        if base_key not in _PIPES:
            _PIPES[base_key] = _Loaded(_load_base(model, device, dtype))
        base = _PIPES[base_key].pipe
        _PIPES[key] = _Loaded(_variant(base, model, task, device, dtype, scheduler, taesd, compile))
        return _PIPES[key]


def _variant(base, model: generators.ModelInfo, task: str, device: str, dtype, scheduler: str | None, taesd: str | None,
             compile: bool):
    import diffusers

    sched_cls = getattr(diffusers, scheduler) if scheduler else type(base.scheduler)
    overrides: dict[str, Any] = {"scheduler": sched_cls.from_config(base.scheduler.config)}
    if taesd:
        try:
            overrides["vae"] = diffusers.AutoencoderTiny.from_pretrained(taesd, dtype=dtype).to(device)
        except Exception as exc:  # noqa: BLE001
            raise ModelNotFound(f"cannot load the tiny autoencoder {taesd}: {type(exc).__name__}: {exc}") from exc
    if compile:
        import torch

        overrides["unet"] = torch.compile(base.unet)
    if task == "img2img":
        name = _IMG2IMG.get(type(base).__name__)
        if name:
            pipe = getattr(diffusers, name).from_pipe(base, **overrides)
        else:
            pipe = diffusers.AutoPipelineForImage2Image.from_pipe(base, **overrides)
    else:
        pipe = type(base).from_pipe(base, **overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def clear_pipelines() -> None:
    """Drop every cached pipeline (frees memory; the next generation loads again)."""
    with _PIPES_LOCK:
        _PIPES.clear()


def dtype_name(device: str) -> str:
    """The dtype a pipeline runs in on ``device``, as provenance records it (``float16``/``float32``)."""
    return "float16" if device.startswith("cuda") else "float32"


def render_batch(pl: Plan, loaded: _Loaded, chunk: list[int], inits: list, on_step=None) -> list[tuple]:
    """Images ``chunk`` (series indices, one pipeline call) of a plan: ``[(index, image, prompt, negative)]``.

    The same call whoever makes it — this process or a Ray worker — so image *i* of a series is the
    same for a given batch composition: its seed ``S + i`` and its prompt depend on ``i`` only.
    """
    import torch

    s = pl.spec
    texts = prompts.expand_indices(pl.template, chunk, s.seed, s.expansion)
    negs = prompts.expand_indices(pl.negative, chunk, s.seed, s.expansion) if pl.negative else [""] * len(chunk)
    kwargs: dict[str, Any] = {
        "prompt": texts, "negative_prompt": negs if any(negs) else None, "num_inference_steps": s.steps,
        "guidance_scale": s.guidance, "generator": [torch.Generator("cpu").manual_seed(s.seed + i) for i in chunk],
        "output_type": "pil",
    }
    if on_step is not None:
        kwargs["callback_on_step_end"] = on_step
    if inits:
        kwargs.update(image=[inits[i % len(inits)] for i in chunk], strength=s.strength)
    else:
        kwargs.update(width=s.width, height=s.height)
    with loaded.lock, torch.inference_mode():
        images = loaded.pipe(**kwargs).images
    return list(zip(chunk, images, texts, negs))
