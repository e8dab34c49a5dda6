"""What a generation will do, decided before any pixel: the spec, the model presets and limits, and the plan (resolved model, prompts, seeds) a job follows."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from core import config
from core.errors import InvalidInput, UserError
from core.generate import prompts
from core.models import builtin_generator, generators
from core.store.database import Store

MAX_COUNT = 100_000


MAX_BATCH = 64


MIN_SIDE, MAX_SIDE = 32, 2048


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
    builtin_generator.NAME: Preset(builtin_generator.LABEL, builtin_generator.NATIVE_SIZE,
                                   builtin_generator.NATIVE_SIZE, builtin_generator.STEPS, builtin_generator.GUIDANCE),
    "stabilityai/sd-turbo": Preset("SD-Turbo", 512, 512, 1, 0.0),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": Preset("Stable Diffusion 1.5", 512, 512, 30, 7.5),
    "stabilityai/sdxl-turbo": Preset("SDXL-Turbo", 512, 512, 1, 0.0),
    "stabilityai/stable-diffusion-xl-base-1.0": Preset("SDXL", 1024, 1024, 30, 5.0),
}


_FAMILY_PRESETS = {
    "sd": MODEL_PRESETS["stable-diffusion-v1-5/stable-diffusion-v1-5"],
    "sdxl": MODEL_PRESETS["stabilityai/stable-diffusion-xl-base-1.0"],
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
class Plan:
    """A validated spec with every default filled in, its templates, model and series key."""

    spec: GenerationSpec
    template: str
    negative: str
    model: generators.ModelInfo
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


def preset_for(model: str | None) -> Preset:
    """The defaults for a model: a known hub id's preset, else its family's at its native size.

    A model that cannot be found gets the Stable Diffusion 1.5 preset (generation will then say why).
    """
    name = (model or config.default_model()).strip()
    if name.lower() in MODEL_PRESETS:
        return MODEL_PRESETS[name.lower()]
    try:
        return _defaults(generators.resolve_model(name, network=False))
    except UserError:
        return _FAMILY_PRESETS["sd"]


def _defaults(model: generators.ModelInfo) -> Preset:
    if model.id.lower() in MODEL_PRESETS:
        return MODEL_PRESETS[model.id.lower()]
    preset = _FAMILY_PRESETS[model.family]
    native = model.native_size
    if native and MIN_SIDE <= native <= MAX_SIDE and native % 8 == 0:
        preset = dataclasses.replace(preset, label=f"{preset.label} family", width=native, height=native)
    return preset


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


def check_int(name: str, value: Any, low: int, high: int) -> int:
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
    check_int("count", spec.count, 1, MAX_COUNT)
    if spec.batch_size is not None:
        check_int("batch size", spec.batch_size, 1, MAX_BATCH)
    check_int("seed", spec.seed, 0, 2**63 - 1 - MAX_COUNT)
    if spec.expansion not in EXPANSIONS:
        raise InvalidInput(f"expansion must be one of {', '.join(EXPANSIONS)}, not {spec.expansion!r}")
    init_images = tuple(str(Path(p).expanduser().resolve()) for p in spec.init_images or ())
    if init_images and not (isinstance(spec.strength, (int, float)) and 0 < spec.strength <= 1):
        raise InvalidInput(f"strength must be above 0 and at most 1, not {spec.strength!r}")
    for name in ("width", "height"):
        value = getattr(spec, name)
        if value is not None:
            check_int(name, value, MIN_SIDE, MAX_SIDE)
            if value % 8:
                raise InvalidInput(f"{name} must be a multiple of 8, not {value} (try {value // 8 * 8 or 8})")
    if spec.steps is not None:
        check_int("steps", spec.steps, 1, MAX_STEPS)
    if spec.guidance is not None and not (isinstance(spec.guidance, (int, float)) and 0 <= spec.guidance <= MAX_GUIDANCE):
        raise InvalidInput(f"guidance must be between 0 and {MAX_GUIDANCE:g}, not {spec.guidance!r}")

    model = generators.resolve_model(spec.model)
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
    taesd = generators.resolve_taesd(model.family) if spec.fast_decode else None

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
