"""Keep TensorFlow's start-up chatter out of the notebooks and the terminal; let everything else through.

Importing TensorFlow prints lines no learner can act on ("All log messages before absl::InitializeLog()",
"Could not find cuda drivers", "oneDNN custom operations are on", cuInit failures on a machine without a GPU).
Some of them are written before TensorFlow reads any setting, straight to the process's standard error, so
no environment variable silences them. `quiet_tensorflow()` sets TF_CPP_MIN_LOG_LEVEL (unless you set it) and,
the first time TensorFlow is imported, holds standard error back during the import and passes on every line
that is not one of those notes. Set TF_CPP_MIN_LOG_LEVEL=0 before starting to see everything.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|Could not find cuda drivers|"
    r"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"This TensorFlow binary is optimized to use available CPU instructions|rebuild TensorFlow with the appropriate|"
    r"TF-TRT Warning|cuda_(executor|diagnostics|dnn|blas|fft)\.cc|Attempting to register factory"
)


def filtered(text: str) -> str:
    """`text` without TensorFlow's start-up notes."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Wraps the first import of `tensorflow`: its standard error goes through `filtered`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # find the real spec, once
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self.real_loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self.real_loader.create_module(spec)

    def exec_module(self, module):
        with _filtered_stderr():
            self.real_loader.exec_module(module)


class _filtered_stderr:
    """Send file descriptor 2 to a temporary file, then write back what is not noise."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.capture = tempfile.TemporaryFile(mode="w+b")
        os.dup2(self.capture.fileno(), 2)

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.capture.seek(0)
        rest = filtered(self.capture.read().decode("utf-8", "replace"))
        self.capture.close()
        if rest:
            sys.stderr.write(rest)
            sys.stderr.flush()
        return False


def quiet_tensorflow() -> None:
    """Quiet TensorFlow's logs from now on (call it before TensorFlow is imported; harmless after)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
