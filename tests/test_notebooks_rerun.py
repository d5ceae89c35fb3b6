"""Every notebook runs twice, top to bottom, in ONE kernel on the fixture, with the same results both times.

Learners re-run cells and whole notebooks out of order; a notebook that only works once (a file it moves,
a list it appends to, a cache it half-fills) fails here. One kernel serves all notebooks in order (01 first,
sharing one work folder, as a learner's session does): each notebook's cells are executed, then executed again.
Outputs with numbers in them must be equal in both passes, once timings and progress bars are masked out.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 300
# Lines whose numbers change from run to run: Keras' step timings, tqdm bars, wall-clock times.
TIMING = re.compile(r"ms/step|s/step|s/epoch|it/s|img/s|s/it|\d+%\|.*\||\[\d+:\d+<|wall time|elapsed|took \d|"
                    r"\d(\.\d+)? ?(ms|s|sec|seconds|min)\b", re.I)
# Log lines (TensorFlow's retracing warnings, absl) that Python logging prints once per process, not per run.
LOGGING = re.compile(r"^(WARNING|INFO|ERROR):(tensorflow|absl|root)|^[IWE]\d{4} ")


def text_output(cell) -> str:
    """What a code cell printed to stdout and its result's text, with timing lines left out (not stderr:
    Python shows a warning once per place, so the second pass legitimately prints fewer)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data") and "text/plain" in output.get("data", {}):
            text = output.data["text/plain"]
            parts.append(re.sub(r" at 0x[0-9a-f]+", "", text))  # object reprs: "<Figure ... at 0x7f...>"
    lines = "".join(parts).splitlines()
    return "\n".join(line for line in lines if not TIMING.search(line) and not LOGGING.search(line))


def execute_twice(client, notebook) -> list[tuple[int, str, str]]:
    """Run every code cell of `notebook` twice in the client's kernel: [(cell index, first, second)]."""
    passes = []
    for _ in range(2):
        copy = nbformat.from_dict(nbformat.v4.new_notebook(cells=[dict(c) for c in notebook.cells],
                                                           metadata=notebook.metadata))
        for cell in copy.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        client.nb = copy
        for index, cell in enumerate(copy.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)  # raises CellExecutionError naming the cell and the traceback
        passes.append(copy)
    return [(i, text_output(a), text_output(b)) for i, (a, b) in enumerate(zip(*(p.cells for p in passes)))
            if a.cell_type == "code"]


@pytest.mark.slow
def test_every_notebook_runs_twice_in_one_kernel_with_identical_results(tmp_path, monkeypatch):
    assert NOTEBOOKS, "no notebooks found"
    monkeypatch.setenv("COURSE_DATA", "fixture")
    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    first = nbformat.read(NOTEBOOKS[0], as_version=4)
    client = nbclient.NotebookClient(first, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS[0].parent)}})
    differences = []
    with client.setup_kernel(env=dict(os.environ)):
        for path in NOTEBOOKS:
            notebook = nbformat.read(path, as_version=4)
            for index, once, twice in execute_twice(client, notebook):
                if once != twice and re.search(r"\d", once + twice):
                    diff = difflib.unified_diff(once.splitlines(), twice.splitlines(), "first run", "second run",
                                                lineterm="", n=1)
                    differences.append(f"{path.name} cell {index}:\n" + "\n".join(diff))
    assert not differences, "outputs changed when the notebooks ran again:\n\n" + "\n\n".join(differences)
