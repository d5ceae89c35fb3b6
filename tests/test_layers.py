"""The package's two layers: the lessons' modules at the top of helpers/, the machinery in helpers/machinery/.

A lesson module imports nothing from the machinery (not even inside a function), and its docstring names the
notebook that teaches it, so a reader can tell the two apart and find each module's lesson.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
FACE = {"__init__.py", "__main__.py"}  # the package's face: what `import helpers` and `python -m helpers` run
SHARED = {"errors.py"}  # the one family of errors both layers raise
LESSONS = sorted(p for p in [*HELPERS.glob("*.py"), *(HELPERS / "decoders").glob("*.py")] if p.name not in FACE)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_lessons_and_the_machinery_are_both_there():
    names = {p.relative_to(HELPERS).as_posix() for p in LESSONS}
    assert {"cleaning.py", "vocabulary.py", "training.py", "decoding.py", "decoders/merge.py"} <= names
    assert (HELPERS / "machinery" / "pipeline.py").is_file() and (HELPERS / "machinery" / "cli.py").is_file()
    assert not (HELPERS / "pipeline.py").exists()


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.relative_to(HELPERS).as_posix())
def test_a_lesson_module_imports_no_machinery(path):
    machinery = sorted(m for m in imported_modules(path) if m == "helpers.machinery" or
                       m.startswith("helpers.machinery."))
    assert machinery == [], f"{path.name} imports {machinery}"


@pytest.mark.parametrize("path", [p for p in LESSONS if p.name not in SHARED and p.name != "__init__.py"
                                  or p.parent.name == "decoders"], ids=lambda p: p.relative_to(HELPERS).as_posix())
def test_a_lesson_module_names_its_notebook(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert re.search(r"\bnotebooks? \d\d", docstring, re.IGNORECASE), f"{path.name}'s docstring names no notebook"
