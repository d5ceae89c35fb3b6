"""Atomic writes: every file the course saves is written beside its target under a temporary name, then renamed.

A reader (or a rerun after `kill -9`, a full disk, Ctrl-C) sees either the old file or the new one, never half
of one: `os.replace` within one folder is atomic on every system the course runs on. A temporary file that a
killed process left is removed by the next write of its target. A full disk while writing is a DiskFullError
that says how much room the write needed, and which stage (`stage`) was writing; memory that runs out during a
stage is an OutOfMemoryError that names the stage and the settings that need less.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from helpers.errors import FREE_MEMORY, DiskFullError, OutOfMemoryError, is_out_of_memory

if TYPE_CHECKING:
    import keras

SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # NumPy's OSError (no errno) when a write comes up short


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A name beside `path` for its new content: hidden, unique to this process, ending in `suffix`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def remove_temporaries(path: Path) -> None:
    """Delete the temporary files of `path` that an earlier, killed write left beside it."""
    for found in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        found.unlink(missing_ok=True)


def is_disk_full(error: OSError) -> bool:
    """Whether an OSError means that the disk is full: ENOSPC, or NumPy's short write (which has no errno)."""
    return error.errno == errno.ENOSPC or (error.errno is None and bool(SHORT_WRITE.search(str(error))))


@contextlib.contextmanager
def room_for(path: Path, needed: int | None) -> Iterator[None]:
    """Turn a full disk while writing `path` (about `needed` bytes) into a DiskFullError.

    A DiskFullError from a write nested inside this one also needs room for this one's `needed` bytes (what
    this write had staged is removed as well).
    """
    try:
        yield
    except DiskFullError as error:
        error.needed = (error.needed or 0) + (needed or 0) or None
        raise
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise DiskFullError(path, needed) from error


def stage(name: str, lower_memory: str = FREE_MEMORY) -> Callable:
    """Decorator: a full disk, or memory running out, while the function runs is reported as the stage `name`'s (the
    outermost stage wins: `train --fine-tune` encodes features too). `lower_memory` says which settings of the
    stage make it need less memory; an OutOfMemoryError names them."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except (DiskFullError, OutOfMemoryError) as error:
                error.stage = name
                if isinstance(error, OutOfMemoryError):
                    error.lower = lower_memory
                raise
            except Exception as error:
                if is_out_of_memory(error):
                    raise OutOfMemoryError(error, name, lower_memory) from error
                raise

        return run

    return decorate


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = "", needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.

    `suffix` is for writers that insist on a file ending (Keras wants `.keras`, NumPy `.npy`); `needed`, about
    how many bytes will be written, is what a full disk's message asks room for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_temporaries(path)
    tmp = temporary_path(path, suffix)
    with room_for(path, needed):
        try:
            yield tmp
            _flush_to_disk(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _flush_to_disk(path: Path) -> None:
    """Make the written bytes durable before the rename that publishes them."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with replacing(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def json_text(data: Any) -> str:
    """The JSON text the course writes (UTF-8, indented one space, a final newline)."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as JSON to `path` atomically."""
    return write_bytes(path, json_text(data).encode("utf-8"))


def replace_together(contents: dict[Path, bytes], before_renaming: Callable[[], object] | None = None) -> None:
    """Write several files so that an error leaves all the old ones: every new file is complete before any is renamed.

    `before_renaming` runs once all of them are written, just before the first rename.
    """
    staged: list[tuple[Path, Path]] = []
    with room_for(next(iter(contents)), sum(len(data) for data in contents.values())):
        try:
            for path, data in contents.items():
                remove_temporaries(path)
                tmp = temporary_path(path)
                staged.append((tmp, path))
                tmp.write_bytes(data)
                _flush_to_disk(tmp)
            if before_renaming is not None:
                before_renaming()
            for tmp, path in staged:
                os.replace(tmp, path)
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)


def fingerprint(data: Any) -> str:
    """A short, stable hash of JSON-able data: equal data, equal fingerprint."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_sha1(path: str | Path) -> str:
    """SHA-1 of a file's bytes (read in blocks)."""
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


SAVED_BYTES_PER_VARIABLE = 2048  # what a saved model adds to each variable's numbers: HDF5's records, the config


def saved_size(model: keras.Model) -> int:
    """About how many bytes saving `model` writes: its variables and, once compiled, its optimizer's (a fixture
    model measured 1.4 KB more per variable than its numbers, at 16 units and at 256)."""
    optimizer = getattr(model, "optimizer", None)
    variables = [*model.variables, *(optimizer.variables if optimizer is not None else [])]
    numbers = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return numbers + SAVED_BYTES_PER_VARIABLE * len(variables)


def save_model(model: keras.Model, path: str | Path) -> None:
    """`model.save(path)` atomically: to a temporary file first (room for it checked), then renamed over `path`."""
    with replacing(path, suffix=Path(path).suffix, needed=saved_size(model)) as tmp:
        model.save(tmp)
