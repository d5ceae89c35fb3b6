"""Which device TensorFlow runs the course on: the GPUs it sees (their names), or the CPU, said in one line.

    print(device_line())     # Device: GPU (Tesla T4).   or   Device: CPU only (2 cores).

Light on purpose, like helpers/machinery/notebook.py: before TensorFlow is imported (notebooks 01-02 never import
it), the GPUs are the NVIDIA driver's (/proc/driver/nvidia/gpus, with CUDA_VISIBLE_DEVICES applied), which TensorFlow
uses once it starts; afterwards, and wherever a stage asks for it, they are TensorFlow's own list. On Colab
without a GPU the line says how to get one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers.machinery import find_data

NVIDIA_DRIVER = Path("/proc/driver/nvidia/gpus")  # one folder per GPU, each with an `information` file
MIXED = "mixed_float16"  # Keras' dtype policies: compute in float16, weights in float32
FULL = "float32"
TENSOR_CORES = (7, 0)  # the compute capability from which float16 runs on tensor cores (V100, T4, A100, ...)


@dataclass(frozen=True)
class Gpu:
    """One GPU: its name and, when TensorFlow says it, its compute capability (major, minor)."""

    name: str
    compute_capability: tuple[int, int] | None = None


def tensorflow_gpus() -> list[Gpu]:
    """The GPUs TensorFlow sees (it is imported if it was not), with their names and compute capabilities."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        found.append(Gpu(details.get("device_name") or device.name, tuple(capability) if capability else None))
    return found


def driver_gpus(folder: Path | None = None) -> list[Gpu]:
    """The NVIDIA GPUs the driver lists (in `folder`, NVIDIA_DRIVER by default), as CUDA_VISIBLE_DEVICES leaves them
    to TensorFlow, without importing it."""
    names = []
    for information in sorted((folder or NVIDIA_DRIVER).glob("*/information")):
        try:
            lines = information.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        names += [line.split(":", 1)[1].strip() for line in lines if line.startswith("Model:")]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # "" or "-1" hide them all; "0,1" keeps those (CUDA stops at the first invalid entry)
        kept = []
        for entry in visible.split(","):
            if not entry.strip().isdigit() or int(entry) >= len(names):
                break
            kept.append(names[int(entry)])
        names = kept
    return [Gpu(name) for name in names]


def gpus(ask_tensorflow: bool | None = None) -> list[Gpu]:
    """The GPUs TensorFlow will use: its own list once it is imported (or with `ask_tensorflow`), else the driver's."""
    if ask_tensorflow or (ask_tensorflow is None and "tensorflow" in sys.modules):
        return tensorflow_gpus()
    return driver_gpus()


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def device_line(found: list[Gpu] | None = None, again: str = "run the notebook again from the top") -> str:
    """One line: the GPUs TensorFlow will use, or "CPU only" (on Colab: how to get a GPU, then `again`)."""
    found = gpus() if found is None else found
    if found:
        names = ", ".join(gpu.name for gpu in found)
        return f"Device: GPU ({names})." if len(found) == 1 else f"Device: {len(found)} GPUs ({names})."
    cores = cpu_cores()
    line = f"Device: CPU only ({cores} core{'s' if cores != 1 else ''})"
    if find_data.IN_COLAB:
        return (f"{line}: this Colab runtime has no GPU. For one, choose Runtime > Change runtime type > T4 GPU, then "
                f"{again} (a new runtime starts with an empty disk: keep_work_on_drive() keeps your work).")
    return f"{line}."


def precision_policy(found: Sequence[Gpu] | None = None) -> str:
    """The Keras dtype policy to train in (helpers/training.py explains it): "mixed_float16" where every GPU
    TensorFlow uses has tensor cores (compute capability 7.0 or more), else "float32" (the CPU, and older GPUs,
    compute float16 no faster)."""
    found = gpus(ask_tensorflow=True) if found is None else found
    fast = [gpu for gpu in found if gpu.compute_capability is not None and gpu.compute_capability >= TENSOR_CORES]
    return MIXED if found and len(fast) == len(found) else FULL
