"""Every notebook (but 09, see NOTEBOOKS) runs on other layouts of the fixture: twice, top to bottom, in ONE
kernel on its MS-COCO 2017 copy (with the same results both times), and once on its Karpathy copy. (nbval runs
them all on the fixture itself.)

Learners re-run cells and whole notebooks out of order; a notebook that only works once (a file it moves,
a list it appends to, a cache it half-fills) fails here. One kernel serves all notebooks in order (01 first,
sharing one work folder, as a learner's session does): each notebook's cells are executed, then executed again.
Outputs with numbers in them must be equal in both passes, once timings and progress bars are masked out.
The copies are small (every fifth image) and train for two epochs: these runs check the plumbing of every
layout (COCO's keys hold a folder: `train2017/x.jpg`), while nbval checks the lessons' numbers on the fixture.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest

from helpers.machinery.fixture_layouts import write_fixture_layout

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EVERY = 5  # every fifth image of each split
# Notebook 09 trains eight models through the same extract/train/evaluate calls as 03-06 (which run here): on
# these copies it would only repeat their plumbing, at more than the cost of the other eight together. That its
# fine-tuning cell can run again is tested in tests/test_fine_tune.py.
NOTEBOOKS = sorted(p for p in (Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")
                   if not p.name.startswith("09_"))
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


def stderr_output(cell) -> str:
    """What a code cell printed to stderr (warnings and logs)."""
    return "".join(o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stderr")


def execute(client, notebook, times: int) -> list[tuple[int, str, str]]:
    """Run every code cell of `notebook` `times` times in the client's kernel: [(cell index, first, last output)].

    A last pass that makes TensorFlow compile a function again ("retracing" on stderr) is marked in its output,
    so that it counts as a difference: a cell run again must reuse what it compiled."""
    passes = []
    for _ in range(times):
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
    pairs = zip(passes[0].cells, passes[-1].cells, strict=True)
    marked = "\n(retraced)" if times > 1 else ""
    return [(i, text_output(a), text_output(b) + (marked if "retracing" in stderr_output(b) else ""))
            for i, (a, b) in enumerate(pairs) if a.cell_type == "code"]


def run_every_notebook(data: Path, work: Path, times: int, monkeypatch) -> list[str]:
    """Execute every notebook `times` times in one kernel on `data`: the differences between first and last pass,
    and every output that prints NaN."""
    monkeypatch.setenv("COURSE_DATA", str(data))
    monkeypatch.setenv("COURSE_WORK_DIR", str(work))
    monkeypatch.setenv("COURSE_EPOCHS", "2")
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
            for index, once, again in execute(client, notebook, times):
                if re.search(r"\bNaN\b", once):  # a table cell with no value prints as "–", never as NaN
                    differences.append(f"{path.name} cell {index} prints NaN:\n{once}")
                if once != again and (re.search(r"\d", once + again) or again.endswith("(retraced)")):
                    diff = difflib.unified_diff(once.splitlines(), again.splitlines(), "first run", "second run",
                                                lineterm="", n=1)
                    differences.append(f"{path.name} cell {index}:\n" + "\n".join(diff))
    return differences


def test_every_notebook_runs_twice_in_one_kernel_on_the_coco_copy(tmp_path, monkeypatch):
    assert NOTEBOOKS, "no notebooks found"
    data = write_fixture_layout("coco2017", tmp_path / "coco", every=EVERY)
    differences = run_every_notebook(data, tmp_path / "work", 2, monkeypatch)
    assert not differences, "outputs changed when the notebooks ran again:\n\n" + "\n\n".join(differences)


def test_every_notebook_runs_on_the_karpathy_copy(tmp_path, monkeypatch):
    data = write_fixture_layout("karpathy", tmp_path / "karpathy", every=EVERY)
    assert run_every_notebook(data, tmp_path / "work", 1, monkeypatch) == []
