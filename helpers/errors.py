"""The course's own errors, raised by the lessons' code and the machinery alike: one family, so that the command
line turns each into one line that says what to do.

Everything a learner can cause and fix (a missing folder, a damaged file, a refused argument, files of two
different runs) raises a `CourseError` whose message names the file and the fix. A bug in the course raises
anything else and shows its traceback.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from pathlib import Path


class CourseError(Exception):
    """A problem with the user's data, files or settings; the message says how to fix it."""


class DatasetError(CourseError):
    """The dataset folder is missing, not in a layout the course knows, or holds unusable captions."""


class ImageError(CourseError):
    """An image file that cannot be read; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"Cannot read image {path}: {reason}")
        self.path, self.reason = Path(path), reason


class WorkFolderError(CourseError):
    """A work-folder file is missing, damaged, or does not belong with the others (another run, another dataset)."""


class DiskFullError(WorkFolderError, OSError):
    """The disk filled up while the course wrote `path` (about `needed` bytes, when known); an OSError (ENOSPC) too.

    `stage`, the command whose write it was, is filled in by `files.stage`. Whatever was written in part is
    removed before the message is shown, so the free space it reports is the space there is for the next try.
    """

    def __init__(self, path: str | Path, needed: int | None = None) -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        self.path, self.needed, self.stage = Path(path), needed, None

    def __str__(self) -> str:
        folder = next(p for p in self.path.parents if p.exists())  # a folder made for the write may be gone
        who = f"`python -m helpers {self.stage}`" if self.stage else "the course"
        need = f"about {readable_size(self.needed)} free" if self.needed else "more free space"
        return (f"the disk is full ({self.strerror}): {who} needs {need} in {folder} to write {self.path.name}, and "
                f"{readable_size(shutil.disk_usage(folder).free)} are free there: free some space (or use --out on "
                "another disk), then run it again; what was saved before is intact")


FREE_MEMORY = "close other notebooks and programs to free memory (or use a machine with more), then run it again"


class OutOfMemoryError(CourseError):
    """A stage ran out of memory: TensorFlow's ResourceExhaustedError (a GPU's memory, usually) or the host's
    MemoryError. `stage` and `lower`, the settings that make it need less, are filled in by `files.stage`."""

    def __init__(self, error: BaseException, stage: str | None = None, lower: str = FREE_MEMORY) -> None:
        super().__init__()
        self.error, self.stage, self.lower = error, stage, lower

    def __str__(self) -> str:
        who = f"`python -m helpers {self.stage}`" if self.stage else "the course"
        return f"{who} ran out of memory ({_first_line(self.error)}): {self.lower}"


# What TensorFlow's other errors say when a GPU's memory ran out (a copy to the GPU, cuDNN's workspace).
GPU_OUT_OF_MEMORY = re.compile(r"out of memory|OOM when allocating|Dst tensor is not initialized|ALLOC_FAILED")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` means that memory ran out: MemoryError, TensorFlow's ResourceExhaustedError, or another of its
    errors that says so (checked only where TensorFlow is imported already: without it, none can be raised)."""
    if isinstance(error, MemoryError):
        return True
    errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    if errors is None or not isinstance(error, errors.OpError):
        return False
    return isinstance(error, errors.ResourceExhaustedError) or bool(GPU_OUT_OF_MEMORY.search(error.message or ""))


def _first_line(error: BaseException, longest: int = 160) -> str:
    """`Type: the first line of its message`, cut to about `longest` characters (TensorFlow's run over many lines)."""
    message = getattr(error, "message", None) or str(error)
    line = message.strip().splitlines()[0] if message.strip() else ""
    if len(line) > longest:
        line = line[:longest].rstrip() + "..."
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def readable_size(size: int) -> str:
    """A number of bytes as people read it: 900 bytes, 563 KB, 1.2 MB, 80 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


class WeightsError(CourseError):
    """Encoder weights that cannot be had: no download offline, a missing or damaged weights file."""


class SettingError(CourseError, ValueError):
    """An argument or setting out of its range (epochs, batch size, beam width, min_count, ...)."""


def check_at_least(name: str, value: int, minimum: int = 1) -> int:
    """`value` if it is an integer of at least `minimum`, else a SettingError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingError(f"{name} must be a whole number of at least {minimum}, not {value!r}.")
    return value


class VersionError(CourseError):
    """TensorFlow or Keras older than the course needs (older ones fail later with obscure errors)."""
