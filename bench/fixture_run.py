"""Wall time of the fixture: `python -m helpers run` and the nbval run of every notebook, each in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_NOTEBOOKS = 6  # below this the course is not all there yet: the nbval time would mislead


def _timed(command: list[str], env: dict) -> dict:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    return {"seconds": time.perf_counter() - start, "returncode": done.returncode,
            "tail": (done.stdout + done.stderr)[-800:] if done.returncode else ""}


def measure(nbval: bool = True) -> dict:
    """Seconds of `python -m helpers run --out TMP`, and of `pytest notebooks` (skipped when asked or too few)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TQDM_DISABLE="1")
    result = {}
    with tempfile.TemporaryDirectory(prefix="bench_fixture_") as tmp:
        result["helpers_run"] = _timed([sys.executable, "-m", "helpers", "run", "--out", str(Path(tmp) / "work")], env)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not nbval:
        result["nbval"] = {"skipped": "not run in --quick mode"}
    elif len(notebooks) < MIN_NOTEBOOKS:
        result["nbval"] = {"skipped": f"only {len(notebooks)} notebooks in notebooks/ (fewer than {MIN_NOTEBOOKS})"}
    else:
        with tempfile.TemporaryDirectory(prefix="bench_nbval_") as tmp:
            result["nbval"] = _timed([sys.executable, "-m", "pytest", "notebooks", "-q", "-p", "no:python"],
                                     dict(env, COURSE_WORK_DIR=tmp))
        result["nbval"]["notebooks"] = len(notebooks)
    return result
