"""The one protocol every training backend follows, and the spec of a run.

A backend turns a slice into a model (:meth:`Trainer.train`) and a model plus images into
probabilities over the run's tags (:meth:`Trainer.predict`). Bookkeeping — run rows, jobs, status,
timings, the predictions cache — lives in :mod:`core.train.training` and :mod:`core.analysis.evaluation`, so a
backend only does the work.

The dicts a backend receives:

* ``slice``: a slice as :func:`core.data.slicing.get_slice` returns it (``id``, ``name``, ``hash``,
  ``count_per_tag``, ``size``, ``real_fraction``, ``repeat``, ``images``) plus ``tags`` (the sorted
  tags of its members) and ``members`` (image dicts with ``id``, ``tag``, ``source``, ``path``).
  A zero-shot run gets a pseudo-slice: ``id`` None, ``count_per_tag`` 0, ``members`` empty.
* ``run``: a run as :func:`core.train.training.get_run` returns it: ``id``, ``backend``, ``params`` (dict),
  ``artifact`` (path or None), ``metrics`` (dict, with ``tags``), ``slice`` (slice id or None),
  ``size`` (the pixel size the model was trained at, None = original).
* ``images``: image dicts with at least ``id`` and ``path`` (a PNG file; an uploaded photo that is not
  in the store has the SHA-256 of its PNG bytes as ``id``, like a stored image would).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.progress import Progress
from core.store.database import Store


@runtime_checkable
class Trainer(Protocol):
    """A training backend. Implementations may also define ``validate(store, params) -> dict``, called
    before any run row is written: it returns the normalised params (defaults filled in, so equal
    requests give equal runs) and raises a :class:`core.errors.UserError` for bad ones; and
    ``plan(store, slices, params) -> dict``, called with the whole sweep before any run row is written
    (Azure checks its quotas there and raises a :class:`core.errors.UserError` to refuse)."""

    name: str

    def train(self, store: Store, slice: dict, params: dict, progress: Progress) -> dict:
        """Train one model on ``slice``. Returns ``{"artifact": path or None, "metrics": {...}}``;
        ``metrics["tags"]`` must list the tags the model predicts. ``progress(done, total, message)``
        may raise :class:`core.errors.JobCancelled`; let it propagate."""
        ...

    def predict(self, store: Store, run: dict, images: list[dict]) -> list[dict[str, float]]:
        """One ``{tag: probability}`` per image, over all tags of the run, each summing to 1."""
        ...
