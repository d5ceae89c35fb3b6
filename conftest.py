"""Test-run settings: quiet TensorFlow, no progress bars, notebooks on the fixture in a throw-away work folder.

Set here, before anything imports TensorFlow, so the notebook kernels nbval starts inherit them too. The feature
store lets every work folder of the run reuse the features of a picture already encoded (by its SHA-1).

The tests run in two processes (`-n 2`, pytest-xdist, in pyproject.toml): the notebooks in order in one of them
(they share one work folder, 05 trains what 06-09 read), everything else beside them in the other.
"""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("COURSE_DATA", "fixture")
os.environ.setdefault("COURSE_WORK_DIR", tempfile.mkdtemp(prefix="course-notebooks-"))
os.environ.setdefault("COURSE_FEATURE_STORE", tempfile.mkdtemp(prefix="course-features-"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # each test process its own folders: a store takes one writer at a time
    for name in ("COURSE_WORK_DIR", "COURSE_FEATURE_STORE"):
        os.environ[name] = os.path.join(os.environ[name], os.environ["PYTEST_XDIST_WORKER"])
        os.makedirs(os.environ[name], exist_ok=True)


def pytest_collection_modifyitems(items):
    """Every notebook's cells in one group: one process runs them all, in order."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group("notebooks"))
