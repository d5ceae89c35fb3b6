"""Test-run settings: quiet TensorFlow, no progress bars, notebooks on the fixture in a throw-away work folder.

Set here, before anything imports TensorFlow, so the notebook kernels nbval starts inherit them too. The feature
store lets every work folder of the run reuse the features of a picture already encoded (by its SHA-1).

The tests run in two processes (`-n 2`, pytest-xdist, in pyproject.toml). All notebooks run in one of them, in
order, in one work folder, as a learner runs them (notebook 06 finds notebook 05's model instead of training its
own); each test file runs whole in one process (`NotebooksTogether` below). Each process has its own work folder
and feature store: a store takes one writer at a time. Two processes share the 2 cores, so a cell takes up to
twice as long as alone: nbval's cell timeout is 600 s.
"""

import os
import tempfile

RUN_APART = {"tests/test_notebooks_rerun.py"}  # test files whose tests may run in different processes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("COURSE_DATA", "fixture")
os.environ.setdefault("COURSE_WORK_DIR", tempfile.mkdtemp(prefix="course-notebooks-"))
os.environ.setdefault("COURSE_FEATURE_STORE", tempfile.mkdtemp(prefix="course-features-"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # each test process its own folders: a store takes one writer at a time
    for name in ("COURSE_WORK_DIR", "COURSE_FEATURE_STORE"):
        os.environ[name] = os.path.join(os.environ[name], os.environ["PYTEST_XDIST_WORKER"])
        os.makedirs(os.environ[name], exist_ok=True)


def pytest_collection_modifyitems(config, items):
    """The longest first, so that the two processes end together: the notebooks, then the files with a test
    marked slow (a minute or more), then the rest, each group in its files' order."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def group(item) -> int:
        return 0 if item.path.suffix == ".ipynb" else 1 if item.path in slow_files else 2

    items.sort(key=group)  # a stable sort: each file keeps its tests' order


def pytest_xdist_make_scheduler(config, log):
    """Every notebook in one process, in order; each test file whole in one process (`--dist loadfile`), but for
    the notebook reruns (`RUN_APART`), two long tests that share nothing; work handed out in the collection's order
    (`pytest_collection_modifyitems`), not by each file's number of tests."""
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False

    class NotebooksTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            if path in RUN_APART:
                return nodeid
            return "notebooks" if path.startswith("notebooks/") and path.endswith(".ipynb") else path

    return NotebooksTogether(config, log)
