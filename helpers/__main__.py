"""Entry point of `python -m helpers`."""

import os
import sys

# TensorFlow's C++ log lines (cuInit failed on a CPU machine, oneDNN fallbacks) say nothing a learner can act on;
# set TF_CPP_MIN_LOG_LEVEL yourself to see them. (The few lines it prints before its logging starts cannot be
# turned off by any setting in TensorFlow 2.21.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers.cli import main  # noqa: E402  (after the environment is set, before TensorFlow is imported)

sys.exit(main())
