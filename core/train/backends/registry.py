"""The training backends by name: each a ``"module:Class"`` string imported lazily (so a backend whose
dependencies are missing costs nothing until it is asked for), one instance per process."""

from __future__ import annotations

import importlib
import importlib.util

from core.errors import InvalidInput
from core.train.backends.base import Trainer

BACKENDS: dict[str, str] = {
    "local": "core.train.backends.local:LocalTrainer",
    "azure": "core.train.backends.azure:AzureTrainer",
}

_instances: dict[str, Trainer] = {}


def get_trainer(name: str) -> Trainer:
    """The trainer registered as ``name`` (one instance per process)."""
    if name not in BACKENDS:
        raise InvalidInput(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in _instances:
        module_name, cls = BACKENDS[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise InvalidInput(f"the {name} backend is not available in this version") from None
        _instances[name] = getattr(module, cls)()
    return _instances[name]


def available() -> list[str]:
    """Backends whose module can be imported here (the Train page offers these)."""
    names = []
    for name, target in BACKENDS.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            names.append(name)
    return names
