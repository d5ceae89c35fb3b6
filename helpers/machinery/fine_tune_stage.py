"""Stage 2 of training, end-to-end fine-tuning, over a work folder: the stage around the lesson code of
helpers/fine_tune.py (notebook 09).

    pipeline.train(work, ...)                  # stage 1: the decoder on cached, frozen features
    fine_tune(work, epochs=5)                  # stage 2: the encoder's last block unfrozen, from images
    fine_tune(work, "a", save_as="b")          # stage 2 from model a, saved as model b (a stays as it was)
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import keras

from helpers.encoders import build_encoder, encoder_spec
from helpers.errors import SettingError, check_at_least
from helpers.fine_tune import FINE_TUNE_LEARNING_RATE, end_to_end, grouped_captions, image_dataset, unfreeze_last_block
from helpers.machinery import pipeline
from helpers.machinery.device import precision_policy
from helpers.machinery.files import file_sha1, replacing, save_model, saved_size, stage, write_json
from helpers.machinery.workspace import DEFAULT_MODEL, Workspace
from helpers.training import precision, set_seed, train_model

# What the out-of-memory message of this stage suggests (files.stage).
LOWER_MEMORY = ("fine-tune on fewer pictures a step (--fine-tune-batch-size 8; 16 by default) or with a smaller "
                "encoder (--encoder mobilenet_v2, for both stages), then run it again")


@stage("train --fine-tune", LOWER_MEMORY)
def fine_tune(work: Workspace, model_name: str = DEFAULT_MODEL, epochs: int = 5,
              learning_rate: float = FINE_TUNE_LEARNING_RATE, image_batch_size: int = 16, patience: int | None = None,
              verbose: int | str = "auto", save_as: str | None = None) -> dict[str, list[float]]:
    """Stage 2 on a model trained by `pipeline.train`: returns this stage's history (loss, val_loss per epoch).

    The result replaces `model_name`, or is saved as the model `save_as` with `model_name` left as it was.
    """
    check_at_least("fine-tune epochs", epochs)
    check_at_least("image batch size", image_batch_size)
    decoder, vocab, config = pipeline.load_trained(work, model_name, to_train=True)
    if config["pooling"] != "avg":
        raise SettingError(f"--fine-tune trains the merge or inject decoder (one vector an image), not "
                           f"{config['decoder']}: the attention decoder reads a grid, which this course keeps frozen.")
    if config.get("fine_tune"):
        raise SettingError(f"{work.model(model_name).keras} is fine-tuned already: train it again without "
                           f"--fine-tune first ({work.model(model_name).train_command()}), or fine-tune another.")
    source, files = work.model(model_name), work.model(save_as or model_name)
    spec, size = encoder_spec(config["encoder"]), config["image_size"]
    set_seed(config["seed"])
    policy = precision_policy()  # as in stage 1: mixed precision on a GPU with tensor cores, float32 elsewhere
    with precision(policy):
        encoder = build_encoder(spec.name, config["weights_source"], size, pooling="avg")  # the cache's encoder
    trainable = unfreeze_last_block(encoder, spec.fine_tune_after)
    captions, images = work.read_json("captions.json"), pipeline.images_of(work)
    splits = {}
    for split in ("train", "dev"):  # the images with features: the ones stage 1 trained on
        features = pipeline.trained_features(work, config, list(captions[split]))
        splits[split], _ = pipeline.with_features(captions[split], features)
    width = max(len(vocab.encode(c)) - 1 for split in splits.values() for found in split.values() for c in found)
    data = {}
    for split, augment in (("train", True), ("dev", False)):
        keys, inputs, targets = grouped_captions(splits[split], vocab, width)
        data[split] = image_dataset([images[k] for k in keys], inputs, targets, spec.name, size, image_batch_size,
                                    augment, config["seed"])
    with precision(policy):  # compiled under it: Keras scales the loss in mixed precision
        model = end_to_end(encoder, decoder, size, width, learning_rate)
    started = time.perf_counter()
    checkpoint = files.keras.with_name(f"{files.name}.fine_tuning.keras")
    history = train_model(model, data["train"], data["dev"], epochs=epochs, checkpoint_path=checkpoint,
                          patience=patience or config["patience"], verbose=verbose, save=save_model)
    checkpoint.unlink(missing_ok=True)  # the best epoch is in `model` now; what is kept is saved below
    weights = _save_encoder(encoder, files.keras.parent, files.name)
    save_model(decoder, files.keras)
    record = {**config, "weights": weights.name, "weights_source": str(weights), "model_sha1": file_sha1(files.keras),
              "fine_tune": {"from_weights": config["weights"], "epochs_run": len(history["loss"]),
                            "learning_rate": learning_rate, "image_batch_size": image_batch_size,
                            "unfrozen_after": spec.fine_tune_after, "trainable_encoder_weights": trainable,
                            "precision": policy,
                            "best_val_loss": min(history["val_loss"]),
                            "seconds": round(time.perf_counter() - started, 1)}}
    record["fine_tune"]["from_epoch"] = _append_history(source.history, files.history, history)
    write_json(files.record, record)
    pipeline.extract(work, spec.name, str(weights), size, progress=verbose != 0)
    for stale in _saved_encoders(files.keras.parent, files.name) - {weights}:
        stale.unlink(missing_ok=True)  # an earlier fine-tuning of this name: no record names it now
    return history


def _save_encoder(encoder: keras.Model, folder: Path, name: str) -> Path:
    """The encoder's weights in `folder`, written whole first, then named after the model and their SHA-1."""
    written = folder / f"{name}_encoder.weights.h5"
    with replacing(written, suffix=".weights.h5", needed=saved_size(encoder)) as tmp:
        encoder.save_weights(tmp)
    final = folder / f"{name}_encoder_{file_sha1(written)[:10]}.weights.h5"
    os.replace(written, final)
    return final


def _saved_encoders(folder: Path, name: str) -> set[Path]:
    """The encoder weights that fine-tuning the model `name` saved in `folder`."""
    pattern = re.compile(rf"{re.escape(name)}_encoder_[0-9a-f]{{10}}\.weights\.h5")
    return {path for path in folder.glob(f"{name}_encoder_*.weights.h5") if pattern.fullmatch(path.name)}


def _append_history(stage_1: Path, path: Path, history: dict[str, list[float]]) -> int:
    """Stage 2's losses after stage 1's (read from `stage_1`) in `path`; returns the epoch where stage 2 began."""
    both = json.loads(stage_1.read_text(encoding="utf-8"))
    start = len(both["loss"])
    write_json(path, {key: both.get(key, [])[:start] + [float(v) for v in values] for key, values in history.items()})
    return start + 1
