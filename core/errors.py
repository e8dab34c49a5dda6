"""Errors a user can cause. Pages show them with ``st.error``; the CLI prints one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Base class: bad input, missing data or settings. Never shown with a traceback."""


class InvalidInput(UserError):
    """A value a user typed or uploaded is out of range or malformed."""


class UnknownTag(UserError):
    def __init__(self, name: str):
        super().__init__(f"unknown tag {name!r}: add it first (tags add {name} --prompt …)")
        self.name = name


class NotFound(UserError):
    """A slice, run, image or job that does not exist."""


class NotEnoughImages(UserError):
    """A slice asks for more images of a tag and source than the store has."""


class ModelNotFound(UserError):
    """A model id or folder that cannot be loaded."""


class MissingSetting(UserError):
    """A required setting (an Azure key, an endpoint) is not configured."""


class BackendError(UserError):
    """A training backend refused or failed in a way the user can act on."""


class JobCancelled(Exception):
    """Raised inside a job when the user asked to cancel it."""


class StoreWriteFailed(UserError):
    """The store's disk refused a write (full, read-only, I/O error): the whole command stops."""


class SampleUnavailable(UserError):
    """A bundled sample (the clothing photos) has no source here: not installed and not reachable."""
