"""Training under a tf.distribute strategy: the default one in-process, two mirrored CPU replicas in a subprocess."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from helpers.decoders.merge import build_merge_model
from helpers.errors import SettingError
from helpers.training import make_dataset, strategy_for, strategy_name, train_model
from helpers.vocabulary import Vocabulary


def test_auto_is_the_default_strategy_without_two_gpus():
    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("this machine has several GPUs: auto picks MirroredStrategy there")
    assert strategy_for("auto") is tf.distribute.get_strategy()
    assert strategy_for("default").num_replicas_in_sync == 1
    assert strategy_name(strategy_for("default")) == "DefaultStrategy"


def test_a_strategy_object_passes_through_and_unknown_names_fail():
    strategy = tf.distribute.get_strategy()
    assert strategy_for(strategy) is strategy
    with pytest.raises(SettingError, match="auto, default, mirrored"):
        strategy_for("tpu")


def test_training_under_the_default_strategy(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    captions = {f"img{i}.jpg": [" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(2)] for i in range(20)}
    features = {name: rng.normal(size=8).astype("float32") for name in captions}
    vocab = Vocabulary.build(c for caps in captions.values() for c in caps)
    strategy = strategy_for("default")
    with strategy.scope():
        model = build_merge_model(len(vocab), np.stack(list(features.values())), feature_dim=8, units=16,
                                  embedding_dim=16, learning_rate=1e-2)
    train_ds = make_dataset(captions, features, vocab, batch_size=8, buckets=3)
    dev_ds = make_dataset(captions, features, vocab, batch_size=8, shuffle=False, buckets=3)
    history = train_model(model, train_ds, dev_ds, epochs=3, checkpoint_path=tmp_path / "m.keras", verbose=0)
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]


# Logical devices must be set before TensorFlow starts, so two CPU replicas need a fresh interpreter. The same
# pipeline.train as the CLI, on the fixture (small untrained-encoder features), with two mirrored CPU replicas.
# Each batch is trimmed to its longest caption, so batches differ in length, and the last batch of each length
# group is partial, possibly odd-sized: MirroredStrategy splits every batch along its first axis only, so both
# replicas always see the same length (a replica may get fewer examples, or none, in a partial batch).
MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from helpers.machinery import pipeline
    from helpers.decoding import decode
    from helpers.machinery.prepare import prepare
    from helpers.training import make_dataset
    from helpers.machinery.workspace import Workspace

    work = Workspace(sys.argv[1])
    prepare(work)
    pipeline.extract(work, image_size=71, progress=False)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    history = pipeline.train(work, image_size=71, epochs=3, batch_size=24, units=32, dropout=0.0,
                             learning_rate=3e-3, patience=5, strategy=strategy, verbose=0)
    model, vocab, config = pipeline.load_trained(work)
    captions_json = work.read_json("captions.json")
    features = pipeline.trained_features(work, config, list(captions_json["train"]))
    captions = decode(model, features, vocab, keys=list(captions_json["train"])[:4]).captions
    train_ds = make_dataset(captions_json["train"], features, vocab, batch_size=24, seed=0)
    shapes = [list(x["caption"].shape) for x, _ in train_ds]  # the batches pipeline.train was given
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "history": history, "config": config,
                      "captions": captions, "shapes": shapes}))
""")


@pytest.mark.slow
def test_two_mirrored_cpu_replicas_train_through_the_pipeline(tmp_path):
    done = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "work")], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["config"]["strategy"] == "MirroredStrategy" and result["config"]["replicas"] == 2
    loss = result["history"]["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0], loss
    shapes = result["shapes"]
    assert len({length for _, length in shapes}) > 1 and any(size % 2 for size, _ in shapes), shapes
    assert len(result["captions"]) == 4 and all(isinstance(c, str) for c in result["captions"])
