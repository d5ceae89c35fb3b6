"""Test-run settings: quiet TensorFlow, no progress bars, notebooks on the fixture in a throw-away work folder.

Set here, before anything imports TensorFlow, so the notebook kernels nbval starts inherit them too.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("COURSE_DATA", "fixture")
os.environ.setdefault("COURSE_WORK_DIR", tempfile.mkdtemp(prefix="course-notebooks-"))
