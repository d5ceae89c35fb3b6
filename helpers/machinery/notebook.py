"""What every notebook does first (find the data and the work folder, on Colab keep it on Google Drive, seed,
print versions, say which dataset and device are in use) and the stages a notebook reruns when it finds an earlier
notebook's files missing or stale.

Light on purpose: importing this module never imports TensorFlow (notebooks 01-02 do not need it).
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from helpers import __version__
from helpers.encoders import choose_encoder
from helpers.errors import CourseError, DatasetError, WorkFolderError
from helpers.machinery import find_data
from helpers.machinery.dataset import detect_layout
from helpers.machinery.device import device_line
from helpers.machinery.find_data import IN_COLAB
from helpers.machinery.paths import PACKAGE_DIR, data_dir, default_work_dir, feature_store, is_fixture_folder
from helpers.machinery.workspace import Workspace

# Only used where pyproject.toml cannot be found; tools/set_repository.py rewrites it with the setting.
FALLBACK_REPOSITORY = "captioning-course/cnn-lstm-captioning"
# Set by the test runners and notebook executors; a person at a notebook has none of them.
HEADLESS_VARIABLES = ("PYTEST_CURRENT_TEST", "PAPERMILL_EXECUTION", "COURSE_HEADLESS")
DRIVE = Path("/content/drive")  # where Colab mounts Google Drive; "My Drive" is its MyDrive/ folder
DRIVE_FOLDER = "cnn-lstm-captioning"  # the folder in My Drive that keep_work_on_drive() keeps the work in


def _course_pyprojects() -> list[Path]:
    """The pyproject.toml files that may be the course's: beside the package, or beside data/ (a Colab clone)."""
    places = [PACKAGE_DIR.parent / "pyproject.toml"]
    with contextlib.suppress(DatasetError):  # outside a clone of the course: no data/ folder
        places.append(data_dir().parent / "pyproject.toml")
    return places


def read_repository(pyproject: Path) -> str | None:
    """The `[tool.course] repository` setting of a pyproject.toml, or None if it has none."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: read the one line
        table = re.search(r"^\[tool\.course\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
        found = table and re.search(r'^repository\s*=\s*"([^"]+)"', table.group(1), re.MULTILINE)
        return found.group(1) if found else None
    return tomllib.loads(text).get("tool", {}).get("course", {}).get("repository")


def repository() -> str:
    """GitHub owner/name of the course, from pyproject.toml's `[tool.course]`."""
    for pyproject in _course_pyprojects():
        if pyproject.is_file() and (found := read_repository(pyproject)):
            return found
    return FALLBACK_REPOSITORY


def _display_path(path: Path) -> str:
    """`path` relative to the course folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(data_dir().parent.resolve()))
    except (DatasetError, ValueError):
        return str(path)


def banner(folder: Path, is_fixture: bool) -> None:
    """Say which dataset this notebook uses and how to switch; on the fixture, which encoder and why; which device
    TensorFlow runs on (on Colab without a GPU: how to get one). Imports no TensorFlow (`helpers.machinery.device`)."""
    found = detect_layout(folder)
    images = sum(1 for p in found.images_dir.rglob("*") if p.is_file())
    if is_fixture:
        print(f"Using the FIXTURE dataset ({_display_path(folder)}, {found.layout} layout: {images} small synthetic "
              "pictures). To use Flickr8k, set DATA below to its folder, or to \"flickr8k\" to download it.")
    else:
        print(f"Using {found.layout} data from {folder} ({images:,} images).")
    if is_fixture_folder(folder):
        print(choose_encoder(fixture=True).note)
    print(device_line())


def keep_work_on_drive(folder: str | None = DRIVE_FOLDER, mount_point: str | Path = DRIVE) -> Path | None:
    """On Colab: mount Google Drive and keep the work folder and the feature store in `folder` of My Drive.

    A Colab runtime forgets its disk when it disconnects, and each notebook may run on a fresh one: with the work
    on Drive, the next notebook (and a reconnected runtime) finds the captions, the vocabulary, the features and the
    models, and `train --resume` continues where training stopped. Sets COURSE_WORK_DIR to `folder`/work and
    COURSE_FEATURE_STORE to `folder`/features (`keep_work_in`); run it before `notebook_workspace()`. Returns the
    work folder. Off Colab, or with `folder` None, it does nothing (and prints nothing) and returns None.
    """
    if not find_data.IN_COLAB or not folder:
        return None
    from google.colab import drive

    try:
        drive.mount(str(mount_point))  # asks once for access; once mounted, a second call says so and goes on
    except Exception as error:  # Colab's own errors (access refused, a timeout) have no common class
        raise WorkFolderError(f"Google Drive was not mounted ({type(error).__name__}: {error}): run this cell again "
                              "and allow the access Colab asks for, or call keep_work_on_drive(None) to keep the "
                              "work on this runtime's disk (lost when it disconnects).") from None
    work = keep_work_in(Path(mount_point) / "MyDrive" / folder)
    print(f"Keeping the work on Google Drive: the work folder is {work} and the features are shared in "
          f"{feature_store()}, so the next notebook and a new runtime find them.")
    return work


def keep_work_in(folder: str | Path) -> Path:
    """Make `folder`/work the work folder and `folder`/features the feature store, for this kernel and every command
    it starts (COURSE_WORK_DIR, COURSE_FEATURE_STORE, which they read); returns the work folder."""
    folder = Path(folder).expanduser()
    work, store = folder / "work", folder / "features"
    for made in (work, store):
        try:
            made.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkFolderError(f"cannot make {made} to keep the work in ({error.strerror}): check that the folder "
                                  "can be written (on Colab: that Google Drive is mounted and not full), or keep "
                                  "the work in another folder.") from None
    os.environ["COURSE_WORK_DIR"], os.environ["COURSE_FEATURE_STORE"] = str(work), str(store)
    return work


def notebook_workspace() -> Workspace:
    """The work folder the notebooks share: $COURSE_WORK_DIR, else `work/` in the course folder."""
    return Workspace(default_work_dir())


def start(data: str = "auto", seed: int = 0) -> tuple[Path, bool, Workspace]:
    """A notebook's set-up in one call: seed and versions (`setup`), the dataset (`find_data.resolve_data`) and its
    banner, the work folder the notebooks share (printed). Returns (the dataset's folder, whether it is the
    fixture, the work folder)."""
    setup(seed)
    folder, is_fixture = find_data.resolve_data(data)
    banner(folder, is_fixture)
    work = notebook_workspace()
    print(f"Work folder: {work.root}")
    return folder, is_fixture, work


def ensure_prepared(work: Workspace, folder: Path) -> dict:
    """Notebook 01's outputs for `folder` in `work`, running its `prepare` stage if they are missing or stale."""
    from helpers.machinery.prepare import load_prepared, prepare

    try:
        _, _, dataset = load_prepared(work)
    except CourseError as problem:
        reason = ("notebook 01 has not run in this work folder (on Colab, each notebook runs on a fresh machine)"
                  if not work.path("dataset.json").exists() else f"{problem}")
    else:
        if Path(dataset["data_dir"]) == Path(folder).resolve():
            print(f"Found notebook 01's captions.json in {work.root}.")
            return dataset
        reason = f"the work folder holds captions of another dataset ({dataset['data_dir']})"
    print(f"Running notebook 01's prepare stage now: {reason}.")
    return prepare(work, folder)


def ensure_features(work: Workspace, folder: Path, weights: str = "auto", **options):
    """Notebook 03's feature cache (or another encoder's, with `options`), extracting whatever is missing."""
    from helpers.machinery.pipeline import extract

    ensure_prepared(work, folder)
    return extract(work, weights=weights, **options)


def ensure_trained(work: Workspace, folder: Path, weights: str = "auto", decoder: str = "merge",
                   model_name: str = "model", encoder: str = "auto", **train_settings) -> dict:
    """A trained model for `folder` (notebook 05's by default), checked to fit the prepared data and the wanted
    decoder and weights; trained now if it is missing or does not fit. Returns its settings (its .json record)."""
    from helpers.decoders import decoder_spec
    from helpers.machinery.pipeline import feature_setting, load_trained, train

    ensure_prepared(work, folder)
    files = work.model(model_name)
    try:
        _, _, config = load_trained(work, model_name)
        wanted = feature_setting(work, encoder, weights)
        found = (config["decoder"], config["encoder"], config["weights"], config["status"])
        if found != (decoder, wanted.encoder, wanted.weights, "complete"):
            raise CourseError(f"it is a {config['status']} {config['decoder']} model on {config['encoder']} features "
                              f"({config['weights']} weights), and this notebook needs a complete {decoder} model on "
                              f"{wanted.encoder} features ({wanted.weights} weights)")
    except CourseError as problem:
        reason = "it has not been trained in this work folder" if not files.keras.exists() else str(problem)
        print(f"Training {files.keras.name} now: {reason}.")
        ensure_features(work, folder, weights, encoder=encoder, pooling=decoder_spec(decoder).pooling)
        train(work, decoder=decoder, encoder=encoder, weights=weights, verbose=2, model_name=model_name,
              **train_settings)
        return load_trained(work, model_name)[2]
    print(f"Found the trained {files.keras.name} in {work.root}.")
    return config


def _version(package: str) -> str:
    """Installed version of a package, without importing it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def setup(seed: int = 0) -> None:
    """Seed Python and NumPy (and Keras/TensorFlow if already imported); print the versions in use."""
    random.seed(seed)
    np.random.seed(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)
    print(f"Python {platform.python_version()} | NumPy {np.__version__} | TensorFlow {_version('tensorflow')} | "
          f"Keras {_version('keras')} | helpers {__version__} | seed {seed}" + (" | on Colab" if IN_COLAB else ""))


def running_interactively() -> bool:
    """Whether a person is probably looking at this kernel: not under pytest/nbval, papermill or COURSE_HEADLESS."""
    if any(os.environ.get(name) for name in HEADLESS_VARIABLES):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")  # a Jupyter or Colab kernel, not plain python


def upload_box(on_image: Callable[[Path], None], interactive: bool | None = None):
    """A FileUpload widget that saves each uploaded image to a temporary file and calls `on_image(path)`.

    Returns the widget to display, or None when nobody is there to click it (tests, papermill).
    """
    if not (running_interactively() if interactive is None else interactive):
        return None
    import ipywidgets as widgets

    upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload a photo",
                                layout=widgets.Layout(width="16em"))  # the default width cuts the label short
    output = widgets.Output()
    folder = Path(tempfile.mkdtemp(prefix="course-upload-"))

    def uploaded(change) -> None:
        if not change["new"]:
            return
        output.clear_output()
        with output:
            for item in change["new"]:  # ipywidgets 8: a tuple of {"name", "content", ...}
                path = folder / Path(item["name"]).name
                path.write_bytes(bytes(item["content"]))
                on_image(path)

    upload.observe(uploaded, names="value")
    return widgets.VBox([upload, output])


def show_tensorboard(logdir: str | Path) -> None:
    """TensorBoard inside the notebook (what `%tensorboard --logdir` does), on the logs of `train(tensorboard=...)`.

    Finds the `tensorboard` program beside this Python when it is not on PATH (a kernel of a virtual environment
    that was not activated).
    """
    import shlex

    from tensorboard import notebook as tensorboard_in_notebook

    beside = Path(sys.executable).with_name("tensorboard")
    if beside.is_file():
        os.environ.setdefault("TENSORBOARD_BINARY", str(beside))
    tensorboard_in_notebook.start("--logdir " + shlex.quote(str(logdir)))
