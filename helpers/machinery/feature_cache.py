"""The feature cache: an encoder's output for every image, on disk, keyed by the image's `captions.json` key.

A cache is a folder in the work folder named after its encoder setting (`xception_none_299/`, and
`xception_none_299_grid/` for the unpooled grids of notebook 07):

    index.json      the encoder setting, and per image: its part file, its row there, and the fingerprint of the
                    picture it was computed from (size, modification time, SHA-1)
    part-0000.npy   rows of features, one plain .npy file per checkpoint: appended, never rewritten

A part is complete on disk before the index names it, and the index is replaced atomically, so an interrupted
run (Ctrl-C, `kill -9`, a full disk) leaves a cache whose index names only complete rows. Rows are read with
ordinary file reads, not a memory map, so a 3 GB grid cache streams through a few megabytes of memory.
No pickle anywhere: NumPy reads every part with `allow_pickle=False`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.encoders import check_pooling, encoder_spec, weights_label
from helpers.errors import WorkFolderError
from helpers.machinery.files import file_sha1, replacing, write_json

CACHE_FORMAT = 2
INDEX = "index.json"


@dataclass(frozen=True)
class CacheSetting:
    """What a cache's features were computed with; two caches mix only if all of it is equal."""

    encoder: str
    weights: str  # "imagenet", "none" or a weights file's name
    image_size: int
    pooling: str  # "avg" (a vector per image) or "none" (a grid of vectors per image)

    @classmethod
    def of(cls, encoder: str, weights, image_size: int | None = None, pooling: str = "avg") -> CacheSetting:
        """The setting for an encoder, its weights (as given to build_encoder), an input size and a pooling."""
        spec = encoder_spec(encoder)
        return cls(encoder, weights_label(weights), int(image_size or spec.image_size), check_pooling(pooling))

    @property
    def name(self) -> str:
        """The cache folder's name, e.g. "xception_none_299" or "xception_imagenet_299_grid"."""
        label = re.sub(r"[^A-Za-z0-9._-]", "_", self.weights)
        return f"{self.encoder}_{label}_{self.image_size}" + ("_grid" if self.pooling == "none" else "")

    @property
    def dtype(self) -> str:
        """Grids are a hundred times bigger than vectors: they are kept in half precision."""
        return "float32" if self.pooling == "avg" else "float16"

    def as_dict(self) -> dict:
        return {"encoder": self.encoder, "weights": self.weights, "image_size": self.image_size,
                "pooling": self.pooling}


def picture_fingerprint(path: Path, sha1: bool = True) -> dict:
    """What identifies a picture's content: its size and modification time, and (if asked) its SHA-1."""
    stat = path.stat()
    found = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {**found, "sha1": file_sha1(path)} if sha1 else found


def picture_changed(path: Path, recorded: dict) -> bool:
    """Whether the picture at `path` differs from the one `recorded` was taken of (hashing only if it must)."""
    try:
        now = picture_fingerprint(path, sha1=False)
    except OSError:
        return True
    if now == {k: recorded.get(k) for k in now}:
        return False
    return file_sha1(path) != recorded.get("sha1")


class _Part:
    """One .npy file of rows (or an in-memory array), read a few rows at a time."""

    def __init__(self, array: np.ndarray | None = None, path: Path | None = None):
        self.array, self.path = array, path
        if path is not None:
            with open(path, "rb") as file:
                version = np.lib.format.read_magic(file)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(file)
                self.offset = file.tell()
            if fortran or dtype.hasobject:
                raise ValueError(f"{path.name} is not a plain array of numbers")
            self.shape, self.dtype = tuple(shape), dtype
            expected = self.offset + int(np.prod(shape)) * dtype.itemsize
            if path.stat().st_size != expected:
                raise ValueError(f"{path.name} has {path.stat().st_size:,} bytes, its header says {expected:,}")
        else:
            self.shape, self.dtype = array.shape, array.dtype

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The rows at `indices`, in that order."""
        if self.array is not None:
            return self.array[indices]
        row_shape = self.shape[1:]
        row_bytes = int(np.prod(row_shape)) * self.dtype.itemsize
        out = np.empty((len(indices), *row_shape), dtype=self.dtype)
        order = np.argsort(indices, kind="stable")
        with open(self.path, "rb") as file:
            start = 0
            while start < len(order):  # one read per run of consecutive rows
                end = start + 1
                while end < len(order) and indices[order[end]] == indices[order[end - 1]] + 1:
                    end += 1
                first = int(indices[order[start]])
                data = os.pread(file.fileno(), row_bytes * (end - start), self.offset + first * row_bytes)
                out[order[start:end]] = np.frombuffer(data, dtype=self.dtype).reshape(end - start, *row_shape)
                start = end
        return out


class FeatureSet(Mapping):
    """Encoder features by image key: `features[key]` is one image's row, `features.stack(keys)` many at once.

    It also says which images could not be read (`failed`, key -> reason) and what the features were computed
    with (`meta`). A FeatureSet from a cache reads its rows from disk only when asked for them.
    """

    def __init__(self, meta: dict, rows: dict[str, tuple[int, int]], parts: list[_Part],
                 failed: dict[str, str] | None = None, pictures: dict[str, dict] | None = None):
        self.meta, self._rows, self._parts = meta, rows, parts
        self.failed = dict(failed or {})
        self.pictures = dict(pictures or {})  # key -> fingerprint of the picture its row was computed from

    @classmethod
    def from_arrays(cls, features: Mapping[str, np.ndarray], meta: dict | None = None) -> FeatureSet:
        """An in-memory FeatureSet (for tests, benchmarks and photos captioned once)."""
        keys = list(features)
        array = np.stack([np.asarray(features[k]) for k in keys]) if keys else np.zeros((0, 0), np.float32)
        return cls(dict(meta or {}), {k: (0, i) for i, k in enumerate(keys)}, [_Part(array)])

    def __getitem__(self, key: str) -> np.ndarray:
        part, row = self._rows[key]
        return self._parts[part].rows(np.array([row]))[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one image's features: (2048,) for an Xception vector, (10, 10, 2048) for its grid."""
        return tuple(self.meta.get("shape") or self._parts[0].shape[1:])

    def subset(self, keys: Sequence[str]) -> FeatureSet:
        """The same features, limited to `keys` that have them (failed ones keep their reasons)."""
        wanted = set(keys)
        return FeatureSet(self.meta, {k: v for k, v in self._rows.items() if k in wanted}, self._parts,
                          {k: r for k, r in self.failed.items() if k in wanted and k not in self._rows},
                          {k: p for k, p in self.pictures.items() if k in wanted})

    def stack(self, keys: Sequence[str], dtype: str | None = "float32") -> np.ndarray:
        """The features of `keys` stacked in that order: (len(keys), *row_shape), float32 unless told otherwise.

        This is the one way the course gathers features; a key without features is a WorkFolderError that
        names it (and why it has none, if its image could not be read).
        """
        keys = list(keys)
        missing = [k for k in keys if k not in self._rows]
        if missing:
            shown = ", ".join(f"{k} ({self.failed[k]})" if k in self.failed else k for k in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise WorkFolderError(f"No features for {len(missing)} image(s): {shown}{more}. Run `python -m helpers "
                                  "features` (or notebook 03); images that cannot be read have none.")
        if not keys:
            return np.zeros((0, *self.row_shape), dtype=dtype or "float32")
        where = np.array([self._rows[k] for k in keys])
        out = None
        for part in np.unique(where[:, 0]):
            chosen = np.flatnonzero(where[:, 0] == part)
            rows = self._parts[part].rows(where[chosen, 1])
            if out is None:
                out = np.empty((len(keys), *rows.shape[1:]), dtype=dtype or rows.dtype)
            out[chosen] = rows
        return out


# --- The cache folder ---------------------------------------------------------------------------------


def read_cache(folder: Path) -> FeatureSet:
    """The features a cache folder holds; a WorkFolderError naming what is wrong if it is damaged."""
    folder = Path(folder)
    index_path = folder / INDEX
    if not index_path.is_file():
        raise WorkFolderError(f"No feature cache at {folder}: run `python -m helpers features` (or notebook 03) "
                              "first, with the same encoder settings and work folder.")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {index.get('format')!r}, this course writes {CACHE_FORMAT}")
        parts = [_Part(path=folder / name) for name in index["parts"]]
        rows = {key: (int(entry["part"]), int(entry["row"])) for key, entry in index["images"].items()}
        if any(not 0 <= p < len(parts) or not 0 <= r < parts[p].shape[0] for p, r in rows.values()):
            raise ValueError("the index names rows its part files do not have")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DamagedCacheError(folder, f"{type(error).__name__}: {error}") from error
    pictures = {key: entry["picture"] for key, entry in index["images"].items() if "picture" in entry}
    return FeatureSet(index["meta"], rows, parts, index.get("failed", {}), pictures)


class DamagedCacheError(WorkFolderError):
    """A cache folder whose index or part files cannot be read."""

    def __init__(self, folder: Path, reason: str):
        super().__init__(f"{folder} is not a readable feature cache ({reason}). Delete that folder and extract "
                         "the features again (`python -m helpers features`).")
        self.folder, self.reason = Path(folder), reason


def append_to_cache(folder: Path, setting: CacheSetting, cache: FeatureSet, new: dict[str, np.ndarray],
                    pictures: dict[str, dict], failed: dict[str, str]) -> FeatureSet:
    """Add `new` rows (and the images that `failed`) to the cache folder; returns the cache as it now is.

    The rows go into a new part file, written completely before the index that names them replaces the old one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    parts = list(cache._parts)
    rows = {key: where for key, where in cache._rows.items() if key not in failed}  # a picture now unreadable
    names = [p.path.name for p in parts]
    meta = {**setting.as_dict(), "dtype": setting.dtype, **cache.meta}
    if new:
        array = np.stack([np.asarray(new[k], dtype=setting.dtype) for k in new])
        meta = {**meta, "shape": list(array.shape[1:]), "feature_dim": int(array.shape[-1])}
        name = f"part-{_next_part_number(folder, names):04d}.npy"
        with replacing(folder / name, suffix=".npy", needed=array.nbytes) as tmp:
            np.save(tmp, array, allow_pickle=False)
        parts.append(_Part(path=folder / name))
        names.append(name)
        rows.update({key: (len(parts) - 1, i) for i, key in enumerate(new)})
    all_failed = {k: r for k, r in {**cache.failed, **failed}.items() if k not in new}
    all_pictures = {**cache.pictures, **pictures}
    index = {"format": CACHE_FORMAT, "meta": meta, "parts": names, "failed": all_failed,
             "images": {key: {"part": p, "row": r, **({"picture": all_pictures[key]} if key in all_pictures else {})}
                        for key, (p, r) in rows.items()}}
    write_json(folder / INDEX, index)
    return FeatureSet(meta, rows, parts, all_failed, all_pictures)


def _next_part_number(folder: Path, names: list[str]) -> int:
    """One more than any part the index or the folder holds (a part left by an interrupted run is overwritten)."""
    numbers = [int(m.group(1)) for n in names if (m := re.fullmatch(r"part-(\d+)\.npy", n))]
    return max(numbers, default=-1) + 1


def open_cache(folder: Path, setting: CacheSetting) -> FeatureSet:
    """The cache to extend: empty if there is none, moved aside if damaged, an error if it is another setting's."""
    folder = Path(folder)
    empty = FeatureSet(setting.as_dict() | {"dtype": setting.dtype}, {}, [])
    if not (folder / INDEX).exists():
        return empty
    try:
        cache = read_cache(folder)
    except DamagedCacheError as error:
        aside = _aside_name(folder)
        os.replace(folder, aside)
        print(f"{folder} was not a readable feature cache ({error.reason}): moved it aside to {aside.name} "
              "and starting over.")
        return empty
    differences = [f"{key} {cache.meta.get(key)!r} in the cache, {value!r} asked for"
                   for key, value in setting.as_dict().items() if cache.meta.get(key) != value]
    if differences:
        raise WorkFolderError(f"{folder} holds features of another encoder setting ({'; '.join(differences)}). "
                              f"Delete it, or use the folder named for this setting: {setting.name}.")
    _remove_unindexed_parts(folder, cache)
    return cache


def _aside_name(folder: Path) -> Path:
    """A free name beside `folder` for a damaged cache: name.damaged, name.damaged-2, ..."""
    candidate, n = folder.with_name(folder.name + ".damaged"), 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}.damaged-{n}")
    return candidate


def _remove_unindexed_parts(folder: Path, cache: FeatureSet) -> None:
    """Delete part files an interrupted run wrote but never indexed (and stray temporary files)."""
    indexed = {p.path.name for p in cache._parts}
    for path in folder.iterdir():
        if (path.name.startswith("part-") and path.name not in indexed) or path.name.startswith("."):
            path.unlink(missing_ok=True)
