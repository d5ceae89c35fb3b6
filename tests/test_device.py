"""The device, said and used: the line every notebook's banner and every long command prints (the GPU's name, or
"CPU only", and on Colab how to get a GPU), and the precision training chooses for it (mixed on a GPU with tensor
cores, float32 on the CPU), with models built in mixed precision keeping their logits in float32."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.decoders import DECODERS
from helpers.decoders.attention import location_stats
from helpers.machinery import cli, device, find_data, pipeline
from helpers.machinery.device import FULL, MIXED, Gpu, device_line, precision_policy
from helpers.machinery.workspace import Workspace
from helpers.training import precision

T4 = Gpu("Tesla T4", (7, 5))
COLAB_CPU = ("Device: CPU only (2 cores): this Colab runtime has no GPU. For one, choose Runtime > Change runtime "
             "type > T4 GPU, then {again} (a new runtime starts with an empty disk: keep_work_on_drive() keeps "
             "your work).")


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(device, "cpu_cores", lambda: 2)


@pytest.fixture
def on_colab(monkeypatch):
    monkeypatch.setattr(find_data, "IN_COLAB", True)


@pytest.fixture
def off_colab(monkeypatch):
    monkeypatch.setattr(find_data, "IN_COLAB", False)


def fake_tensorflow_gpus(monkeypatch, *details: dict) -> None:
    """TensorFlow's GPU list and each GPU's details, as on a machine with those GPUs."""
    physical = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(len(details))]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: physical if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[physical.index(gpu)])


def test_a_gpu_is_named_on_colab_and_off_it(monkeypatch):
    for colab in (False, True):
        monkeypatch.setattr(find_data, "IN_COLAB", colab)
        assert device_line([T4]) == "Device: GPU (Tesla T4)."
        assert device_line([T4, Gpu("Tesla T4")]) == "Device: 2 GPUs (Tesla T4, Tesla T4)."


def test_the_cpu_off_colab_is_one_short_line(two_cores, off_colab):
    assert device_line([]) == "Device: CPU only (2 cores)."


def test_the_cpu_on_colab_says_how_to_get_a_gpu(two_cores, on_colab):
    assert device_line([]) == COLAB_CPU.format(again="run the notebook again from the top")
    assert device_line([], again="run this command again") == COLAB_CPU.format(again="run this command again")


def test_tensorflows_gpus_are_named_by_their_details(monkeypatch):
    fake_tensorflow_gpus(monkeypatch, {"device_name": "Tesla T4", "compute_capability": (7, 5)}, {})
    assert device.gpus(ask_tensorflow=True) == [T4, Gpu("/physical_device:GPU:1")]
    assert device_line(device.gpus()) == "Device: 2 GPUs (Tesla T4, /physical_device:GPU:1)."  # TF is imported here
    fake_tensorflow_gpus(monkeypatch)
    assert device.gpus() == []


def test_before_tensorflow_starts_the_gpus_are_the_drivers(tmp_path, monkeypatch):
    for bus, model in (("0000:00:04.0", "Tesla T4"), ("0000:00:05.0", "NVIDIA A100-SXM4-40GB")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t {model}\nIRQ:   \t\t 11\n", encoding="utf-8")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device.driver_gpus(tmp_path) == [Gpu("Tesla T4"), Gpu("NVIDIA A100-SXM4-40GB")]
    for visible, expected in (("1", ["NVIDIA A100-SXM4-40GB"]), ("1,0", ["NVIDIA A100-SXM4-40GB", "Tesla T4"]),
                              ("", []), ("-1", []), ("0,7,1", ["Tesla T4"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert [gpu.name for gpu in device.driver_gpus(tmp_path)] == expected, visible
    assert device.driver_gpus(tmp_path / "no driver") == []


@pytest.mark.parametrize(("colab", "gpus", "expected"), [
    (False, [{"device_name": "Tesla T4", "compute_capability": (7, 5)}], "Device: GPU (Tesla T4)."),
    (True, [{"device_name": "Tesla T4", "compute_capability": (7, 5)}], "Device: GPU (Tesla T4)."),
    (False, [], "Device: CPU only (2 cores)."),
    (True, [], COLAB_CPU.format(again="run this command again")),
])
def test_a_long_command_says_its_device_first(colab, gpus, expected, two_cores, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(find_data, "IN_COLAB", colab)
    fake_tensorflow_gpus(monkeypatch, *gpus)
    for command in (["features"], ["train"], ["evaluate"], ["run", "--data", str(tmp_path / "nothing")]):
        assert cli.main([*command, "--out", str(tmp_path / "work")]) == 2  # nothing to work on: each then stops
        captured = capsys.readouterr()
        assert captured.out.splitlines()[0] == expected, command
        assert captured.err.startswith("error: ") and "Traceback" not in captured.err
    assert cli.main(["evaluate", "--json", "--out", str(tmp_path / "work")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines()[0] == expected  # stdout stays JSON only
    assert cli.main(["caption", "--out", str(tmp_path / "work"), str(tmp_path / "none.jpg")]) == 2
    assert "Device" not in capsys.readouterr().out  # a short command prints its captions only


@pytest.mark.parametrize(("gpus", "policy"), [
    ([], FULL),
    ([T4], MIXED),
    ([T4, Gpu("NVIDIA A100-SXM4-40GB", (8, 0))], MIXED),
    ([Gpu("Tesla P100-PCIE-16GB", (6, 0))], FULL),  # no tensor cores: float16 is no faster
    ([T4, Gpu("Tesla K80", (3, 7))], FULL),
    ([Gpu("METAL")], FULL),  # no compute capability said
])
def test_mixed_precision_only_on_gpus_with_tensor_cores(gpus, policy):
    assert precision_policy(gpus) == policy


def test_the_policy_asks_tensorflow(monkeypatch):
    fake_tensorflow_gpus(monkeypatch, {"device_name": "Tesla T4", "compute_capability": (7, 5)})
    assert precision_policy() == MIXED
    fake_tensorflow_gpus(monkeypatch)
    assert precision_policy() == FULL


def build(name: str, policy: str) -> keras.Model:
    rng = np.random.default_rng(0)
    vectors, grids = rng.normal(size=(6, 8)).astype("float32"), rng.normal(size=(6, 2, 2, 8)).astype("float32")
    normaliser = {"stats": location_stats(dict(enumerate(grids)))} if name == "attention" else \
        {"train_features": vectors}
    keras.utils.set_random_seed(0)
    with precision(policy):
        return DECODERS[name].build(12, feature_dim=8, units=8, embedding_dim=8, **normaliser)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_mixed_precision_model_computes_in_float16_and_keeps_logits_and_loss_in_float32(name):
    model = build(name, MIXED)
    assert keras.mixed_precision.dtype_policy().name == FULL  # restored after building
    assert model.get_layer("lstm").compute_dtype == "float16" and model.get_layer("lstm").variable_dtype == "float32"
    assert model.get_layer("next_word").compute_dtype == "float32" and model.outputs[0].dtype == "float32"
    assert model.get_layer("normalize").compute_dtype == "float32"  # features standardised before any rounding
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)  # small gradients survive float16
    shape = model.input["image"].shape[1:]
    inputs = {"image": np.ones((2, *shape), "float32"), "caption": np.ones((2, 3), "int32")}
    logits = model(inputs, training=False)
    assert logits.dtype == "float32" and logits.shape == (2, 3, 12)
    full = build(name, FULL)
    full.set_weights(model.get_weights())  # the same weights in float32: the same function, to float16's precision
    np.testing.assert_allclose(np.asarray(logits), np.asarray(full(inputs, training=False)), atol=2e-2)
    loss = model.compute_loss(inputs, np.ones((2, 3), "int32"), logits)
    assert loss.dtype == "float32"


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_the_cpu_path_is_float32_as_before(name):
    model = build(name, FULL)
    assert {layer.compute_dtype for layer in model.layers if layer.compute_dtype} == {"float32"}
    assert type(model.optimizer) is keras.optimizers.Adam


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # Keras' word for the note below
def test_training_on_a_gpu_is_mixed_and_resumes_on_the_cpu(tmp_path, monkeypatch, capsys):
    """A model trained in mixed precision (a GPU, faked) evaluates anywhere and resumes on the CPU in float32."""
    work, size = str(tmp_path / "work"), ["--image-size", "71"]
    assert cli.main(["prepare", "--out", work]) == 0 and cli.main(["features", "--out", work, *size]) == 0
    monkeypatch.setattr(device, "tensorflow_gpus", lambda: [T4])
    assert cli.main(["train", "--out", work, *size, "--units", "16", "--epochs", "1"]) == 0
    record = json.loads((tmp_path / "work" / "model.json").read_text())
    assert record["precision"] == MIXED
    saved = keras.models.load_model(tmp_path / "work" / "model.keras", safe_mode=True)  # by anyone, anywhere
    assert saved.get_layer("lstm").compute_dtype == "float16" and saved.outputs[0].dtype == "float32"
    monkeypatch.setattr(device, "tensorflow_gpus", lambda: [])
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the course loads it with its loss scaling: no optimizer state is skipped
        model, _, _ = pipeline.load_trained(Workspace(work))
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert cli.main(["evaluate", "--out", work]) == 0
    assert 0 < json.loads((tmp_path / "work" / "evaluation_test.json").read_text())["bleu1"] <= 1
    assert cli.main(["train", "--resume", "--out", work, *size, "--units", "16", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert (f"Note: {tmp_path / 'work' / 'model.keras'} was trained in mixed_float16 and this machine trains in "
            "float32 (another device): the weights go on from the checkpoint, the optimizer's running averages "
            "start again.") in out.splitlines()
    assert "Trained 1 epoch (2 in all)" in out
    assert json.loads((tmp_path / "work" / "model.json").read_text())["precision"] == FULL
