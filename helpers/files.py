"""Atomic writes: every file the course saves is written beside its target under a temporary name, then renamed.

A reader (or a rerun after `kill -9`, a full disk, Ctrl-C) sees either the old file or the new one, never half
of one: `os.replace` within one folder is atomic on every system the course runs on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A name beside `path` for its new content: hidden, unique to this process, ending in `suffix`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.

    `suffix` is for writers that insist on a file ending (Keras wants `.keras`, NumPy `.npy`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path, suffix)
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
    with replacing(path) as tmp:
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
    try:
        for path, data in contents.items():
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
