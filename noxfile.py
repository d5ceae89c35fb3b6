"""Test both ends of the versions the course declares: `nox -s floor` and `nox -s newest` (pip install nox).

- floor: every dependency of pyproject.toml pinned at its declared lower bound (TensorFlow, Keras, NumPy, ...),
  then the unit tests (everything but the notebook runs).
- newest: the newest releases the declared ranges allow, then the whole test command (unit tests and notebooks).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
UNIT_TESTS = ["tests", "-m", "not notebooks"]


def floor_pins() -> list[str]:
    """`name==lower bound` for every runtime dependency in pyproject.toml (each declares one with >=)."""
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,\s]*)", requirement)
        if not match:
            raise ValueError(f"{requirement!r} in pyproject.toml has no lower bound to pin")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


@nox.session(python="3.11")
def floor(session: nox.Session) -> None:
    """The oldest versions the course says it supports: the unit tests."""
    constraints = Path(session.create_tmp()) / "floor-constraints.txt"
    constraints.write_text("\n".join(floor_pins()) + "\n", encoding="utf-8")
    session.install("-c", str(constraints), "-e", ".[dev]")
    session.run("python", "-c", "import tensorflow as tf, keras, numpy; "
                "print('floor:', 'tensorflow', tf.__version__, 'keras', keras.__version__, 'numpy', numpy.__version__)")
    session.run("python", "-m", "pytest", *UNIT_TESTS, *session.posargs)


@nox.session(python="3.11")
def newest(session: nox.Session) -> None:
    """The newest versions the declared ranges allow: the whole test command, notebooks included."""
    session.install("--upgrade", "-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)
