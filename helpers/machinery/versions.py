"""The oldest TensorFlow and Keras the course works with, checked before either is imported.

An older one fails later, and obscurely (Keras 2 has no `keras.ops`; Keras 3.0 builds the attention layer with
the wrong shape), so the package says it at once, with the one-line upgrade. The bounds are pyproject.toml's
(a test keeps them equal), the oldest releases the tests pass on (`nox -s floor`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata

from helpers.errors import VersionError

MINIMUM = {"tensorflow": "2.16.2", "keras": "3.1.1"}
UPGRADE = 'pip install -U "tensorflow>=2.16.2" "keras>=3.1.1"'


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "2.16.0rc1" -> (2, 16, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", re.match(r"[\d.]*", version)[0]))


def installed_versions() -> dict[str, str | None]:
    """The installed version of each package of MINIMUM (None where it is not installed)."""
    found = {}
    for package in MINIMUM:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def check_versions(installed: Mapping[str, str | None] | None = None) -> None:
    """Raise VersionError naming each package older than MINIMUM and the upgrade (a missing one is left to import)."""
    installed = installed_versions() if installed is None else installed
    old = [f"{package} {version} (needs {MINIMUM[package]} or later)" for package, version in installed.items()
           if version is not None and release(version) < release(MINIMUM[package])]
    if old:
        raise VersionError(f"This course needs a newer TensorFlow/Keras than installed: {', '.join(old)}. "
                           f"Run `{UPGRADE}`, then restart the kernel (Colab: Runtime > Restart session) "
                           "or the command.")
