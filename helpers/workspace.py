"""The work folder that each stage (and each notebook) writes and the next one reads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Which stage writes each file, so a missing one can be explained.
PRODUCED_BY = {
    "captions.json": "`python -m helpers prepare` or notebook 01",
    "dataset.json": "`python -m helpers prepare` or notebook 01",
    "vocab.json": "`python -m helpers prepare` or notebook 02",
    "model.keras": "`python -m helpers train` or notebook 05",
    "model.json": "`python -m helpers train` or notebook 05",
    "history.json": "`python -m helpers train` or notebook 05",
}


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Workspace:
    """Paths of everything the pipeline writes under one folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser())
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """Path of a file in the work folder (it may not exist yet)."""
        return self.root / name

    def require(self, name: str) -> Path:
        """Path of a file an earlier stage must have written, or a message saying which stage to run."""
        path = self.path(name)
        if not path.exists():
            stage = PRODUCED_BY.get(name, "the stage that writes it")
            raise FileNotFoundError(f"{path} is missing: run {stage} first (same work folder: {self.root}).")
        return path

    def read_json(self, name: str) -> Any:
        """Load a JSON file an earlier stage wrote."""
        return json.loads(self.require(name).read_text(encoding="utf-8"))

    def write_json(self, name: str, data: Any) -> Path:
        """Write a JSON file atomically and return its path."""
        write_json(self.path(name), data)
        return self.path(name)

