"""Nothing the course saves or loads can run code: no pickle anywhere, models load in Keras' safe mode,
and no user path is ever pasted into a shell command."""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("helpers", "notebooks", "bench")
UNSAFE_LOADING = re.compile(r"\bimport\s+(c?pickle|dill|cloudpickle|joblib|shelve)\b|\bfrom\s+(c?pickle|dill|"
                            r"cloudpickle|joblib|shelve)\b|\bpickle\.|allow_pickle\s*=\s*True|\bjoblib\b|\.pkl\b|"
                            r"safe_mode\s*=\s*False|enable_unsafe_deserialization")
UNSAFE_SHELL = re.compile(r"shell\s*=\s*True|\bos\.system\(|\bos\.popen\(|\bcommands\.getoutput\(")


def without_comments(source: str) -> str:
    """Python source without its comments (a comment may explain why pickle is not used); strings stay."""
    lines = [line if not line.lstrip().startswith(("!", "%")) else "" for line in source.splitlines()]
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.sub(r"(?m)^\s*#.*$", "", "\n".join(lines))
    for token in tokens:
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(lines)


def code_of(path: Path) -> str:
    """A module's source, or a notebook's code cells joined, without comments."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n".join(without_comments("".join(c["source"])) for c in cells if c["cell_type"] == "code")
    return without_comments(path.read_text(encoding="utf-8"))


def course_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for pattern in ("*.py", "*.ipynb") for p in (ROOT / folder).rglob(pattern)
                  if ".ipynb_checkpoints" not in p.parts)


def findings(pattern: re.Pattern, paths: list[Path]) -> list[str]:
    return [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in paths for m in pattern.finditer(code_of(p))]


def test_the_scan_sees_the_course_files():
    names = {p.relative_to(ROOT).as_posix() for p in course_files()}
    assert {"helpers/machinery/feature_cache.py", "helpers/machinery/pipeline.py",
            "notebooks/01_data_cleaning.ipynb"} <= names


def test_no_pickle_and_no_unsafe_model_loading():
    assert findings(UNSAFE_LOADING, course_files()) == []


def test_no_shell_commands_built_from_strings():
    assert findings(UNSAFE_SHELL, course_files()) == []


def test_notebook_shell_lines_do_not_interpolate_variables():
    """IPython pastes `{name}` and `$name` into `!` and `%` lines: a path with a space or `;` would run."""
    bad = []
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for line in "".join(cell["source"]).splitlines() if cell["cell_type"] == "code" else []:
                if line.lstrip().startswith(("!", "%")) and re.search(r"[{$]", line):
                    bad.append(f"{path.name}: {line.strip()}")
    assert bad == []


@pytest.mark.parametrize("planted", ["import pickle\n", "from joblib import dump\n",
                                     "x = np.load(f, allow_pickle=True)\n",
                                     "m = keras.models.load_model(p, safe_mode=False)\n", "open('vocab.pkl', 'wb')\n",
                                     "data = pickle.loads(blob)\n"])
def test_the_scan_catches_planted_pickle(tmp_path, planted):
    module = tmp_path / "planted.py"
    module.write_text("# a comment about pickle. is fine\n" + planted)
    assert UNSAFE_LOADING.search(code_of(module))
    notebook = tmp_path / "planted.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["pickle.load is unsafe"]},
                                              {"cell_type": "code", "source": ["%matplotlib inline\n", planted]}]}))
    assert UNSAFE_LOADING.search(code_of(notebook))


def test_comments_and_markdown_may_explain_why_not(tmp_path):
    module = tmp_path / "fine.py"
    module.write_text('"""Saved as JSON (never pickle)."""\nimport json  # not pickle.dump: it can run code\n')
    assert not UNSAFE_LOADING.search(code_of(module))


def test_models_load_in_safe_mode():
    from helpers.machinery import pipeline

    source = Path(pipeline.__file__).read_text(encoding="utf-8")
    calls = re.findall(r"load_model\((.*)", source)
    assert calls and all("safe_mode=True" in call for call in calls)
