"""`python bench/run.py` = `python -m bench`, for those who run scripts by path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import main  # noqa: E402

sys.exit(main())
