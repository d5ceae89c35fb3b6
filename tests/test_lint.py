"""The package, the tests, the benchmarks and the notebooks pass ruff with the project's settings (pyproject.toml)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "All checks passed" in done.stdout


def test_ruff_reads_the_notebooks(tmp_path):
    """ruff lints .ipynb files itself: an unused import planted in a copy of a notebook is found."""
    notebook = json.loads((ROOT / "notebooks" / "01_data_cleaning.ipynb").read_text(encoding="utf-8"))
    code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    code["source"] = ["import textwrap\n", *code["source"]]
    (tmp_path / "planted.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(tmp_path / "planted.ipynb")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "F401" in done.stdout and "textwrap" in done.stdout
