"""What every command shares: the usage error (exit 2) and the progress printer on stderr."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from core.errors import UserError


class CliUsageError(UserError):
    pass


def progress_printer(what: str) -> Optional[Callable[[int, int, str], None]]:
    """Progress on stderr when it is a terminal (stdout stays for results and the JSON line)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, message: str = "") -> None:
        sys.stderr.write(f"\r{what}: {done}/{total} {message[:60]:<60}")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
