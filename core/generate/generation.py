"""Stable Diffusion generation with diffusers: text-to-image and image-to-image, batched, idempotent.

A *series* is everything that decides the pixels of its images — tag, prompt and negative templates,
model id and revision, size, steps, guidance, scheduler, init images and strength, fast decode, seed
and prompt expansion. Its key is a hash of those; the batch size is not part of it. Image ``i`` of a
series has seed ``S + i`` and the prompt ``prompts.prompt_for(template, i, S, expansion)``, so a
crashed or extended run makes exactly the missing indices, each committed as soon as it is decoded.

Everything a user can get wrong is checked by :func:`plan` before anything is written. Pipelines are
loaded once per (model, task, device, dtype, variant) per process, never changed after loading, and
each is used under its own lock. torch and diffusers are imported only when a pipeline is needed, so
the CLI's error paths stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from core import config
from core.errors import InvalidInput, ModelNotFound, UserError
from core.generate import prompts
from core.run import jobs
from core.store.database import Store

Progress = Callable[[int, int, str], None]

MAX_COUNT = 100_000
MAX_BATCH = 64
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_STEPS = 500
MAX_GUIDANCE = 50.0
EXPANSIONS = prompts.MODES


@dataclass(frozen=True)
class Preset:
    """Defaults for a model family: applied to the spec fields left as ``None``."""

    label: str
    width: int
    height: int
    steps: int
    guidance: float


MODEL_PRESETS: dict[str, Preset] = {
    "stabilityai/sd-turbo": Preset("SD-Turbo", 512, 512, 1, 0.0),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": Preset("Stable Diffusion 1.5", 512, 512, 30, 7.5),
    "stabilityai/sdxl-turbo": Preset("SDXL-Turbo", 512, 512, 1, 0.0),
    "stabilityai/stable-diffusion-xl-base-1.0": Preset("SDXL", 1024, 1024, 30, 5.0),
}
_FAMILY_PRESETS = {
    "sd": MODEL_PRESETS["stable-diffusion-v1-5/stable-diffusion-v1-5"],
    "sdxl": MODEL_PRESETS["stabilityai/stable-diffusion-xl-base-1.0"],
}
_TAESD = {"sd": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}
_IMG2IMG = {
    "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
}


@dataclass
class GenerationSpec:
    """What to generate. ``None`` fields take the model's preset; ``count`` is the series' target size."""

    tag: str
    count: int
    model: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    seed: int = 0
    batch_size: Optional[int] = None  # None: chosen by device when the job runs (default_batch_size)
    init_images: tuple[str, ...] = ()
    strength: float = 0.6
    expansion: str = "random"
    scheduler: Optional[str] = None
    fast_decode: bool = False
    compile: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: ``id`` is what provenance records, ``source`` what ``from_pretrained`` gets."""

    id: str
    source: str
    revision: str
    pipeline_class: str
    family: str
    scheduler: str
    native_size: Optional[int]
    local: bool


@dataclass(frozen=True)
class Plan:
    """A validated spec with every default filled in, its templates, model and series key."""

    spec: GenerationSpec
    template: str
    negative: str
    model: ModelInfo
    init_hashes: tuple[str, ...]
    taesd: Optional[str]
    series: str

    @property
    def task(self) -> str:
        return "img2img" if self.spec.init_images else "text2img"

    def job_params(self) -> dict:
        spec = dataclasses.asdict(self.spec)
        spec["init_images"] = list(spec["init_images"])
        return {"spec": spec, "template": self.template, "negative": self.negative, "series": self.series}


# -- validation ----------------------------------------------------------------------------------

def preset_for(model: str | None) -> Preset:
    """The defaults for a model: a known hub id's preset, else its family's at its native size.

    A model that cannot be found gets the Stable Diffusion 1.5 preset (generation will then say why).
    """
    name = (model or config.DEFAULT_MODEL).strip()
    if name.lower() in MODEL_PRESETS:
        return MODEL_PRESETS[name.lower()]
    try:
        return _defaults(resolve_model(name, network=False))
    except UserError:
        return _FAMILY_PRESETS["sd"]


def _defaults(model: ModelInfo) -> Preset:
    if model.id.lower() in MODEL_PRESETS:
        return MODEL_PRESETS[model.id.lower()]
    preset = _FAMILY_PRESETS[model.family]
    native = model.native_size
    if native and MIN_SIDE <= native <= MAX_SIDE and native % 8 == 0:
        preset = dataclasses.replace(preset, label=f"{preset.label} family", width=native, height=native)
    return preset


def _family(pipeline_class: str) -> str:
    return "sdxl" if "XL" in pipeline_class else "sd"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _native_size(unet_cfg: dict, vae_cfg: dict) -> Optional[int]:
    sample = unet_cfg.get("sample_size")
    blocks = vae_cfg.get("block_out_channels")
    if isinstance(sample, int) and isinstance(blocks, list) and blocks:
        return sample * 2 ** (len(blocks) - 1)
    return None


def _folder_fingerprint(folder: Path) -> str:
    """A revision for a local folder: its file names and sizes and the text of its config files."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\0".encode())
        if path.suffix in (".json", ".txt"):
            h.update(path.read_bytes())
    return "local-" + h.hexdigest()[:16]


def _hub_file(repo_id: str, filename: str, network: bool = True) -> Optional[str]:
    """A file of a hub repo: from the local cache first, else downloaded (unless offline). A hub that
    cannot be reached is found out by one short connect (:mod:`core.models.hub`), never by waiting out retries."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import try_to_load_from_cache

    from core.models import hub

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return cached
    if not network:
        return None
    state = hub.hub_state()
    if state != hub.ONLINE:
        raise ModelNotFound(hub.not_cached_reason(f"model {repo_id!r}", state))
    try:
        return hub.download(repo_id, filename)
    except hf_errors.GatedRepoError:
        raise ModelNotFound(f"model {repo_id!r} is gated: accept its licence on the hub and log in "
                            "(hf auth login)") from None
    except hf_errors.RepositoryNotFoundError:
        raise ModelNotFound(f"no model {repo_id!r} on the Hugging Face hub (check the id, or log in "
                            "for a private model)") from None
    except (hf_errors.EntryNotFoundError, hf_errors.RevisionNotFoundError):
        return None
    except hf_errors.OfflineModeIsEnabled:
        raise ModelNotFound(hub.not_cached_reason(f"model {repo_id!r}", hub.OFFLINE)) from None
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        raise ModelNotFound(f"the Hugging Face hub did not answer for {repo_id!r} "
                            f"({type(exc).__name__}); retry, or give a local folder") from None


def _hub_not_cached(model: str) -> str:
    from core.models import hub

    return hub.not_cached_reason(f"model {model!r}")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_model(model: str | None, *, network: bool = True) -> ModelInfo:
    """Find a model as a local diffusers folder or a hub id (cache first); :class:`ModelNotFound` if neither.

    With ``network=False`` a hub id is looked up in the local cache only.
    """
    model = (model or config.DEFAULT_MODEL).strip()
    if not model:
        raise ModelNotFound("no model given")
    path = Path(model).expanduser()
    if path.is_file():
        raise ModelNotFound(f"{model} is a single file: give a diffusers model folder (with model_index.json) "
                            "or a hub id")
    if not path.exists() and (model.startswith((".", "/", "~", "\\")) or not _HUB_ID.match(model)):
        if _HUB_ID.match(model) or os.sep in model or model.startswith((".", "~")):
            raise ModelNotFound(f"no model folder at {model}")
        raise ModelNotFound(f"{model!r} is neither a model folder nor a Hugging Face hub id like owner/name")
    if path.is_dir():
        path = path.resolve()
        index = _read_json(path / "model_index.json")
        if not index.get("_class_name"):
            raise ModelNotFound(f"{path} is not a diffusers model folder: it has no model_index.json")
        return ModelInfo(
            id=str(path), source=str(path), revision=_folder_fingerprint(path),
            pipeline_class=index["_class_name"], family=_family(index["_class_name"]),
            scheduler=str(_read_json(path / "scheduler" / "scheduler_config.json").get("_class_name") or ""),
            native_size=_native_size(_read_json(path / "unet" / "config.json"), _read_json(path / "vae" / "config.json")),
            local=True,
        )
    index_file = _hub_file(model, "model_index.json", network)
    if index_file is None:
        if network:
            raise ModelNotFound(f"model {model!r} on the Hugging Face hub has no model_index.json: "
                                "it is not a diffusers pipeline")
        raise ModelNotFound(_hub_not_cached(model))
    snapshot = Path(index_file).parent
    index = _read_json(Path(index_file))
    if not index.get("_class_name"):
        raise ModelNotFound(f"model {model!r} is not a diffusers pipeline (no usable model_index.json)")
    unet = _read_json(snapshot / "unet" / "config.json")
    vae = _read_json(snapshot / "vae" / "config.json")
    sched = _read_json(snapshot / "scheduler" / "scheduler_config.json")
    return ModelInfo(
        id=model, source=model, revision=snapshot.name, pipeline_class=index["_class_name"],
        family=_family(index["_class_name"]), scheduler=str(sched.get("_class_name") or ""),
        native_size=_native_size(unet, vae), local=False,
    )


def _resolve_taesd(family: str) -> str:
    """The tiny autoencoder for fast decode: ``SYNTHLAB_TAESD`` (folder or hub id) or madebyollin's TAESD."""
    name = config.setting("SYNTHLAB_TAESD") or _TAESD[family]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{path} is not a tiny autoencoder folder: it has no config.json")
        return str(path.resolve())
    reason = "which is not available offline"
    if _HUB_ID.match(name):
        try:
            if _hub_file(name, "config.json"):
                return name
        except ModelNotFound as exc:
            reason = f"which cannot be had: {exc}"
    raise ModelNotFound(f"fast decode needs the tiny autoencoder {name!r}, {reason}; "
                        "download it or set SYNTHLAB_TAESD to a local folder")


def _hash_init_image(path_text: str) -> str:
    from PIL import Image, UnidentifiedImageError

    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InvalidInput(f"init image {path_text} does not exist")
    try:
        data = path.read_bytes()
        with Image.open(path) as im:
            im.load()
            if im.width < 8 or im.height < 8:
                raise InvalidInput(f"init image {path_text} is too small ({im.width}x{im.height})")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"init image {path_text} is not a readable image ({type(exc).__name__})") from None
    return hashlib.sha256(data).hexdigest()


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, not {value}")
    return value


def plan(store: Store, spec: GenerationSpec, *, template: str | None = None, negative: str | None = None) -> Plan:
    """Validate a spec completely, fill in the preset and compute the series key. Writes nothing.

    ``template`` and ``negative`` override the tag's current prompts (a queued job keeps the ones it
    was submitted with).
    """
    tag = store.get_tag(spec.tag)
    template = tag["prompt"] if template is None else template
    if not (template or "").strip():
        raise InvalidInput(f"tag {tag['name']!r} has no prompt: set one first "
                           f"(tags add {tag['name']!r} --update --prompt …)")
    template = prompts.validate_template(template, what=f"prompt of tag {tag['name']!r}")
    negative = (tag["negative"] if negative is None else negative) or ""
    if negative.strip():
        negative = prompts.validate_template(negative, what=f"negative prompt of tag {tag['name']!r}")
    _check_int("count", spec.count, 1, MAX_COUNT)
    if spec.batch_size is not None:
        _check_int("batch size", spec.batch_size, 1, MAX_BATCH)
    _check_int("seed", spec.seed, 0, 2**63 - 1 - MAX_COUNT)
    if spec.expansion not in EXPANSIONS:
        raise InvalidInput(f"expansion must be one of {', '.join(EXPANSIONS)}, not {spec.expansion!r}")
    init_images = tuple(str(Path(p).expanduser().resolve()) for p in spec.init_images or ())
    if init_images and not (isinstance(spec.strength, (int, float)) and 0 < spec.strength <= 1):
        raise InvalidInput(f"strength must be above 0 and at most 1, not {spec.strength!r}")
    for name in ("width", "height"):
        value = getattr(spec, name)
        if value is not None:
            _check_int(name, value, MIN_SIDE, MAX_SIDE)
            if value % 8:
                raise InvalidInput(f"{name} must be a multiple of 8, not {value} (try {value // 8 * 8 or 8})")
    if spec.steps is not None:
        _check_int("steps", spec.steps, 1, MAX_STEPS)
    if spec.guidance is not None and not (isinstance(spec.guidance, (int, float)) and 0 <= spec.guidance <= MAX_GUIDANCE):
        raise InvalidInput(f"guidance must be between 0 and {MAX_GUIDANCE:g}, not {spec.guidance!r}")

    model = resolve_model(spec.model)
    preset = _defaults(model)
    width = spec.width or preset.width
    height = spec.height or preset.height
    steps = spec.steps or preset.steps
    guidance = float(preset.guidance if spec.guidance is None else spec.guidance)
    if init_images and int(steps * spec.strength) < 1:
        raise InvalidInput(f"image-to-image with {steps} step(s) at strength {spec.strength:g} runs no step: "
                           f"raise --steps to at least {int(1 / spec.strength) + 1} or the strength")
    scheduler = spec.scheduler or model.scheduler
    if spec.scheduler and spec.scheduler != model.scheduler:  # the model's own needs no check (nor diffusers)
        _check_scheduler(spec.scheduler)
    init_hashes = tuple(_hash_init_image(p) for p in spec.init_images or ())
    taesd = _resolve_taesd(model.family) if spec.fast_decode else None

    resolved = dataclasses.replace(
        spec, tag=tag["name"], model=model.id, width=width, height=height, steps=steps, guidance=guidance,
        init_images=init_images, strength=float(spec.strength) if init_images else 0.6, scheduler=scheduler,
        fast_decode=bool(spec.fast_decode), compile=bool(spec.compile),
    )
    key = {
        "tag": resolved.tag, "template": template, "negative": negative, "model": model.id,
        "revision": model.revision, "width": width, "height": height, "steps": steps, "guidance": guidance,
        "scheduler": scheduler, "init": list(init_hashes), "strength": resolved.strength if init_hashes else None,
        "taesd": taesd, "seed": resolved.seed, "expansion": resolved.expansion,
    }
    series = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return Plan(resolved, template, negative, model, init_hashes, taesd, series)


def _check_scheduler(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]+Scheduler", name or ""):
        raise InvalidInput(f"scheduler must be a diffusers scheduler class name such as EulerDiscreteScheduler, not {name!r}")
    import diffusers

    if not hasattr(diffusers, name):
        raise InvalidInput(f"diffusers has no scheduler {name!r}")


# -- pipelines -----------------------------------------------------------------------------------

@dataclass
class _Loaded:
    pipe: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_PIPES: dict[tuple, _Loaded] = {}
_PIPES_LOCK = threading.RLock()


def default_batch_size(device: str) -> int:
    """Images per pipeline call when none is asked for (``SYNTHLAB_BATCH_SIZE`` overrides).

    Measured with ``bench/generation.py`` (b): on CPU batch 4 beats one at a time (one set of Python and
    scheduler overhead per four images); on CUDA it grows with the card's memory; MPS stays small."""
    forced = config.setting("SYNTHLAB_BATCH_SIZE")
    if forced:
        try:
            return _check_int("SYNTHLAB_BATCH_SIZE", int(forced), 1, MAX_BATCH)
        except ValueError:
            raise InvalidInput(f"setting SYNTHLAB_BATCH_SIZE must be a whole number, not {forced!r}") from None
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


def _load_base(model: ModelInfo, device: str, dtype) -> Any:
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


def get_pipeline(model: ModelInfo, task: str, device: str, *, scheduler: str | None = None,
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


def _variant(base, model: ModelInfo, task: str, device: str, dtype, scheduler: str | None, taesd: str | None,
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


# -- running -------------------------------------------------------------------------------------

_foreground = threading.local()


def _fit(image, width: int, height: int):
    from PIL import Image, ImageOps

    with Image.open(image) as im:
        return ImageOps.fit(im.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


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


def batches_of(missing: list[int], batch_size: int) -> list[list[int]]:
    """The pipeline calls a run makes: the missing indices in order, ``batch_size`` at a time."""
    return [missing[k:k + batch_size] for k in range(0, len(missing), batch_size)]


def _save(ctx: jobs.JobContext, pl: Plan, i: int, image, text: str, neg: str, *, device: str, dtype: str,
          scheduler: str, engine: Optional[str] = None) -> bool:
    """Commit image ``i`` of the series (file, then row). Returns whether a new image was stored."""
    s = pl.spec
    extra = {"device": device, "dtype": dtype, "expansion": s.expansion, "template": pl.template,
             "batch_size": s.batch_size}
    if pl.init_hashes:
        extra.update(init_image=pl.init_hashes[i % len(pl.init_hashes)], strength=s.strength)
    if pl.taesd:
        extra["fast_decode"] = pl.taesd
    if engine:
        extra["engine"] = engine
    _, created = ctx.store.add_image(
        image, tag=s.tag, source="synthetic", extra=extra, model_id=pl.model.id,
        model_revision=pl.model.revision, prompt=text, negative=neg, seed=s.seed + i, steps=s.steps,
        guidance=s.guidance, scheduler=scheduler, series=pl.series, series_index=i, job_id=ctx.job_id,
    )
    return created


def run_generate_job(ctx: jobs.JobContext) -> dict:
    """Job handler ``generate``: make the missing images of the job's series, committing each one.

    With ``workers`` in the params the pipeline calls run on that many Ray actors
    (:mod:`core.generate.remote` on :mod:`core.run.pool`); this process still decides what is missing and writes every image.
    """
    p = ctx.params
    spec = GenerationSpec(**{**p["spec"], "init_images": tuple(p["spec"].get("init_images") or ())})
    pl = plan(ctx.store, spec, template=p["template"], negative=p["negative"])
    s = pl.spec
    workers = int(p.get("workers") or 0)
    existing = ctx.store.series_indices(pl.series)
    missing = [i for i in range(s.count) if i not in existing]
    skipped = s.count - len(missing)
    user_progress: Optional[Progress] = getattr(_foreground, "progress", None)

    def report(done: int, message: str, force: bool = False) -> None:
        ctx.progress(done, len(missing), message, force=force)
        if user_progress:
            user_progress(done, len(missing), message)

    where = f" on {workers} Ray worker(s)" if workers else ""
    report(0, f"loading {pl.model.id}{where}" + (f" ({skipped} already exist)" if skipped else ""), force=True)
    if missing and s.batch_size is None:
        s = dataclasses.replace(s, batch_size=default_batch_size(config.device()))
        pl = dataclasses.replace(pl, spec=s)
    inits = [_fit(path, s.width, s.height) for path in s.init_images] if missing else []
    generated = duplicates = 0
    if workers and missing:
        from PIL import Image

        from core.generate.remote import render_on_cluster
        from core.store.database import png_bytes

        results = render_on_cluster(pl, batches_of(missing, s.batch_size),
                                    [png_bytes(im) for im in inits], workers,
                                    tick=lambda: ctx.check_cancelled())
        have = set(existing)
        with contextlib.closing(results):
            for result in results:
                for item in result["images"]:
                    if item["index"] in have:
                        continue
                    have.add(item["index"])
                    with Image.open(io.BytesIO(item["png"])) as raw:
                        image = raw.convert("RGB")
                    created = _save(ctx, pl, item["index"], image, item["prompt"], item["negative"],
                                    device=result["device"], dtype=result["dtype"], scheduler=result["scheduler"],
                                    engine="ray")
                    generated += 1
                    duplicates += 0 if created else 1
                    report(generated, f"image {item['index'] + 1} of {s.count} saved{where}")
    elif missing:
        device = config.device()
        loaded = get_pipeline(pl.model, pl.task, device, scheduler=s.scheduler, taesd=pl.taesd, compile=s.compile)
        steps_run = int(s.steps * s.strength) if inits else s.steps
        for chunk in batches_of(missing, s.batch_size):
            label = f"image {chunk[0] + 1}" + (f"–{chunk[-1] + 1}" if len(chunk) > 1 else "") + f" of {s.count}"

            def on_step(pipe, step, timestep, tensors, _label=label, _done=generated):
                report(_done, f"{_label}: step {step + 1}/{steps_run}")
                return tensors

            for i, image, text, neg in render_batch(pl, loaded, chunk, inits, on_step):
                created = _save(ctx, pl, i, image, text, neg, device=device, dtype=dtype_name(device),
                                scheduler=type(loaded.pipe.scheduler).__name__)
                generated += 1
                duplicates += 0 if created else 1
                report(generated, f"{label} saved")
    report(len(missing), "done", force=True)
    ids = ctx.store.series_indices(pl.series)
    return {
        "job": ctx.job_id, "generated": generated, "skipped": skipped, "duplicates": duplicates,
        "series": pl.series, "images": [ids[i] for i in range(s.count) if i in ids],
        "engine": "ray" if workers else "local", "workers": workers,
    }


def _job_params(store: Store, spec: GenerationSpec, workers: int) -> dict:
    from core.run import cluster

    workers = cluster.check_workers(workers)
    params = plan(store, spec).job_params()
    if workers:
        cluster.ensure_reachable()
        params["workers"] = workers
    return params


def submit_generation(store: Store, spec: GenerationSpec, workers: int = 0) -> int:
    """Validate a spec and queue its job for the app's worker thread. Returns the job id.

    ``workers`` > 0 runs the pipeline calls on that many Ray actors (the job still writes the store).
    """
    return jobs.submit(store, "generate", _job_params(store, spec, workers))


def generate(store: Store, spec: GenerationSpec, progress: Optional[Progress] = None, workers: int = 0) -> dict:
    """Validate, then run a generation job in this thread (the CLI's path).

    Returns ``{"job", "generated", "skipped", "images": [ids of the series, in index order], …}``.
    Nothing is written when the spec is invalid. ``workers`` > 0: on that many Ray actors
    (``"engine": "ray"`` in the result).
    """
    job_id = jobs.submit(store, "generate", _job_params(store, spec, workers), claim=True)
    _foreground.progress = progress
    started = time.monotonic()
    try:
        job = jobs.run_job(store, job_id)
    finally:
        _foreground.progress = None
    if job["status"] == "cancelled":
        have = len(store.series_indices(job["params"]["series"]))
        raise UserError(f"job {job_id} was cancelled with {have} of {spec.count} images made; "
                        "run the same command again to finish")
    result = dict(job["result"] or {})
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
