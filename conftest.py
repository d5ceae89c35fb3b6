"""Test-run settings: quiet TensorFlow, no progress bars, notebooks on the fixture in a throw-away work folder.

Set here, before anything imports TensorFlow, so the notebook kernels nbval starts inherit them too. The feature
store lets every work folder of the run reuse the features of a picture already encoded (by its SHA-1).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("COURSE_DATA", "fixture")
os.environ.setdefault("COURSE_WORK_DIR", tempfile.mkdtemp(prefix="course-notebooks-"))
os.environ.setdefault("COURSE_FEATURE_STORE", tempfile.mkdtemp(prefix="course-features-"))
