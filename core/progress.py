"""The one progress type: ``progress(done, total, message)``, or None for silence.

Jobs pass their :meth:`core.run.jobs.JobContext.progress`; the CLI prints to stderr; the pages
show a bar (:mod:`core.ui`).
"""

from __future__ import annotations

from typing import Callable, Optional

Progress = Optional[Callable[[int, int, str], None]]
