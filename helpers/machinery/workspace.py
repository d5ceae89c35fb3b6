"""The work folder that each stage (and each notebook) writes and the next one reads.

Every file in it is written atomically (helpers/machinery/files.py). A file that is missing says which stage writes
it; a file that is damaged (half-copied, edited by hand) says so and which stage writes it again.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.errors import SettingError, WorkFolderError
from helpers.machinery.files import replace_together, write_json

DEFAULT_MODEL = "model"
RESERVED_NAMES = {"captions", "vocab", "dataset", "history", "index", "scenes", "encoder"}

# Which stage writes each file, so a missing or damaged one can be explained.
PRODUCED_BY = {
    "captions.json": "`python -m helpers prepare` (or notebook 01)",
    "dataset.json": "`python -m helpers prepare` (or notebook 01)",
    "vocab.json": "`python -m helpers prepare` (or notebook 02)",
    "model.keras": "`python -m helpers train` (or notebook 05)",
    "model.json": "`python -m helpers train` (or notebook 05)",
    "history.json": "`python -m helpers train` (or notebook 05)",
}
# What a model's .json record must hold for the course to use it (a record edited by hand may not).
RECORD_KEYS = {"decoder": str, "encoder": str, "weights": str, "image_size": int, "pooling": str, "fingerprints": dict,
               "status": str, "model_sha1": str}
KERAS_MEMBERS = {"config.json", "model.weights.h5"}  # the files in every .keras archive


@dataclass(frozen=True)
class ModelFiles:
    """The files of one trained model in a work folder.

    The default model is `model.keras` with `model.json` (its settings, fingerprints and progress) and
    `history.json` (its loss curves); another model NAME (`train --model NAME`, notebooks 07-08) is
    `NAME.keras`, `NAME.json` and `NAME.history.json` beside it, sharing the folder's captions and features.
    """

    name: str
    root: Path

    def _file(self, default: str, suffix: str) -> Path:
        return self.root / (default if self.name == DEFAULT_MODEL else f"{self.name}{suffix}")

    @property
    def keras(self) -> Path:
        return self._file("model.keras", ".keras")

    @property
    def record(self) -> Path:
        return self._file("model.json", ".json")

    @property
    def history(self) -> Path:
        return self._file("history.json", ".history.json")

    def evaluation(self, split: str, beam_width: int = 1, sampling=None) -> Path:
        """Where `evaluate` writes its scores and captions (one file per split, beam width and way of sampling)."""
        what = f"{split}{'' if beam_width == 1 else f'_beam{beam_width}'}{f'_{sampling.name}' if sampling else ''}"
        return self._file(f"evaluation_{what}.json", f".evaluation_{what}.json")

    def train_command(self) -> str:
        """The command that trains this model again."""
        return "`python -m helpers train`" + ("" if self.name == DEFAULT_MODEL else f" --model {self.name}")

    def read_record(self) -> dict:
        """The model's .json record; a WorkFolderError saying it is damaged if it is not one the course wrote."""
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self.damaged(self.record, f"{type(error).__name__}: {error}") from error
        if not isinstance(record, dict):
            raise self.damaged(self.record, f"a JSON {type(record).__name__}, not a record of training")
        wrong = [key for key, kind in RECORD_KEYS.items() if not isinstance(record.get(key), kind)]
        if wrong:
            raise self.damaged(self.record, f"its {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} missing or "
                                            "not what training writes")
        return record

    def checkpoint_damage(self) -> str | None:
        """Why the .keras file is not a whole Keras archive (cut off, emptied, bits flipped, not a zip), or None."""
        try:
            with zipfile.ZipFile(self.keras) as archive:
                broken, members = archive.testzip(), set(archive.namelist())
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            return f"{type(error).__name__}: {error}"
        if broken:
            return f"BadZipFile: {broken} in it fails its CRC check"
        if missing := KERAS_MEMBERS - members:
            return f"a zip file without {' and '.join(sorted(missing))}: not a Keras model"
        return None

    def damaged(self, path: Path, reason: str) -> WorkFolderError:
        """The error for this model's checkpoint or record being damaged: train again, or use a copy in archive/."""
        copies = sorted(self.root.glob(f"archive/*/{self.keras.name}"))
        kept = f", or use the copy in {copies[-1].parent} (--out {copies[-1].parent})" if copies else ""
        return WorkFolderError(f"{path} is damaged ({reason}): run {self.train_command()} again (not --resume: "
                               f"it needs a whole checkpoint and its record){kept}.")

    def files(self) -> list[Path]:
        """Every file of this model that exists."""
        fixed = [self.keras, self.record, self.history]
        return [p for p in fixed if p.exists()] + sorted(self.root.glob(self.evaluation("*").name))


@dataclass(frozen=True)
class Workspace:
    """Paths of everything the pipeline writes under one folder."""

    root: Path

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser()
        object.__setattr__(self, "root", root)
        if root.exists() and not root.is_dir():
            raise WorkFolderError(f"The work folder {root} is a file, not a folder: pass another --out "
                                  "(COURSE_WORK_DIR in a notebook), or move the file away.")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkFolderError(f"cannot make the work folder {root}: {error.strerror} when making "
                                  f"{error.filename or root}; use --out with a folder you can write to "
                                  "(COURSE_WORK_DIR in a notebook)") from error

    def path(self, name: str) -> Path:
        """Path of a file in the work folder (it may not exist yet)."""
        return self.root / name

    def stage_of(self, name: str) -> str:
        """The stage that writes a file of the work folder."""
        return PRODUCED_BY.get(name, "the stage that writes it")

    def require(self, name: str) -> Path:
        """Path of a file an earlier stage must have written, or a message saying which stage to run."""
        path = self.path(name)
        if not path.exists():
            raise WorkFolderError(f"{path} is missing: run {self.stage_of(name)} first "
                                  f"(same work folder: {self.root}).")
        return path

    def read_json(self, name: str) -> Any:
        """Load a JSON file an earlier stage wrote; a WorkFolderError if it is missing or damaged."""
        path = self.require(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WorkFolderError(f"{path} is damaged ({type(error).__name__}: {error}): run "
                                  f"{self.stage_of(name)} again to rewrite it.") from error

    def write_json(self, name: str, data: Any) -> Path:
        """Write a JSON file atomically and return its path."""
        return write_json(self.path(name), data)

    def model(self, name: str = DEFAULT_MODEL) -> ModelFiles:
        """The files of the trained model `name` (a name of letters, digits, '-' and '_')."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name) or name in RESERVED_NAMES:
            raise SettingError(f"{name!r} cannot name a model: use letters, digits, '-' and '_' (not "
                               f"{', '.join(sorted(RESERVED_NAMES))}).")
        return ModelFiles(name, self.root)

    def copy_model(self, source: str, target: str) -> ModelFiles:
        """The trained model `source` copied as `target` (checkpoint, history and record, replaced together)."""
        old, new = self.model(source), self.model(target)
        if not (old.keras.exists() and old.record.exists()):
            raise WorkFolderError(f"{old.keras} or its record is missing: run {old.train_command()} first.")
        pairs = ((old.keras, new.keras), (old.history, new.history), (old.record, new.record))
        replace_together({copy: path.read_bytes() for path, copy in pairs if path.exists()})
        return new

    def models(self) -> list[ModelFiles]:
        """Every trained model in the folder (a .keras file with its .json record)."""
        found = []
        for path in sorted(self.root.glob("*.keras")):
            name = path.stem
            if name in RESERVED_NAMES:
                continue
            found.append(ModelFiles(name, self.root))
        return found
