"""`save_float16(model, path)`: a Keras weights file with every array in float16, byte for byte the same each run.

Shared by the tools that write the weights the course ships (`convert_mobilenet_v2.py`, `export_captioner.py`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def save_float16(model, path: Path) -> None:
    """`model.save_weights` with every array in float16 (half the bytes), written whole, then renamed into place."""
    import h5py

    with tempfile.TemporaryDirectory() as scratch:
        full = Path(scratch) / "float32.weights.h5"
        model.save_weights(full)
        partial = path.with_name(f".{path.name}.tmp")
        with h5py.File(full, "r") as source, h5py.File(partial, "w") as target:
            def copy(name: str, item) -> None:
                if isinstance(item, h5py.Dataset):
                    target.create_dataset(name, data=item[()].astype(np.float16), track_times=False)
                else:
                    target.require_group(name)
            source.visititems(copy)
        partial.replace(path)
