"""Text progress bars on stdout: they stay readable in a saved notebook, where a widget would show "0/8000"."""

from __future__ import annotations

import os
import sys


def progress_bar(total: int | None, enabled: bool, desc: str, unit: str = "img", **options):
    """A tqdm bar on stdout, 100 columns wide; off if not `enabled` or if TQDM_DISABLE is set."""
    from tqdm import tqdm

    disabled = not enabled or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return tqdm(total=total, unit=unit, desc=desc, disable=disabled, file=sys.stdout, dynamic_ncols=False, ncols=100,
                **options)
