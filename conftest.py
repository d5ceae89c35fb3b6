"""Test-run settings: quiet TensorFlow, no progress bars, notebooks on the fixture in a throw-away work folder.

Set here, before anything imports TensorFlow, so the notebook kernels nbval starts inherit them too. The feature
store lets every work folder of the run reuse the features of a picture already encoded (by its SHA-1).

The tests run in two processes (`-n 2 --dist loadfile`, pytest-xdist, in pyproject.toml), each file's tests in one
of them, in order (a notebook's cells share one kernel). Each process has its own work folder and feature store:
a notebook that needs notebook 05's model trains it there if 05 ran in the other process. Two processes share
the 2 cores, so a cell takes up to twice as long as alone: nbval's cell timeout is 600 s (notebook 07's training
cell took 241 s in the last full run, 134 s alone).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("COURSE_DATA", "fixture")
os.environ.setdefault("COURSE_WORK_DIR", tempfile.mkdtemp(prefix="course-notebooks-"))
os.environ.setdefault("COURSE_FEATURE_STORE", tempfile.mkdtemp(prefix="course-features-"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # each test process its own folders: a store takes one writer at a time
    for name in ("COURSE_WORK_DIR", "COURSE_FEATURE_STORE"):
        os.environ[name] = os.path.join(os.environ[name], os.environ["PYTEST_XDIST_WORKER"])
        os.makedirs(os.environ[name], exist_ok=True)

