"""The course's own errors: one family, so that the command line turns each into one line that says what to do.

Everything a learner can cause and fix (a missing folder, a damaged file, a refused argument, files of two
different runs) raises a `CourseError` whose message names the file and the fix. A bug in the course raises
anything else and shows its traceback.
"""

from __future__ import annotations

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
