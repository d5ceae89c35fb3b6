"""Run a module as `python -m` would and write what it cost: `python -m bench.measured OUT.json MODULE ARGS...`.

OUT.json gets the process's wall time, peak resident set size (VmHWM) and bytes written to storage
(`write_bytes` of /proc/self/io), also when the module fails. `usage()` gives the same figures from inside any
process (the scale benchmark's last notebook cell calls it in the kernel).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _proc_field(path: str, name: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def usage() -> dict:
    """This process's peak RSS in MiB and the MiB it wrote to storage so far (None where /proc does not say)."""
    peak_kb, written = _proc_field("/proc/self/status", "VmHWM:"), _proc_field("/proc/self/io", "write_bytes:")
    return {"peak_rss_mb": None if peak_kb is None else peak_kb / 1024,
            "written_mb": None if written is None else written / 2**20}


def run_worker(module: str, *args) -> dict:
    """`python -m module args...` in a process of its own (its peak is its own); the JSON of its last line."""
    python_path = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=python_path)
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`python -m {module} {' '.join(map(str, args))}` failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    out, module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    started, code = time.perf_counter(), 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        Path(out).write_text(json.dumps({**usage(), "seconds": time.perf_counter() - started}))
    return code


if __name__ == "__main__":
    sys.exit(main())
