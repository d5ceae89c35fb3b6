"""End-to-end fine-tuning: the encoder's last block learns together with the decoder, from the pictures themselves.

    pipeline.train(work, ...)                  # stage 1: the decoder on cached, frozen features
    fine_tune(work, epochs=5)                  # stage 2: the encoder's last block unfrozen, from images
    fine_tune(work, "a", save_as="b")          # stage 2 from model a, saved as model b (a stays as it was)

Stage 1 is ordinary training. Stage 2 starts from its decoder and the same encoder, unfreezes the encoder's last
block (`EncoderSpec.fine_tune_after`: Xception's exit flow, blocks 13 and 14; MobileNetV2's last block and its
final 1 x 1 convolution; the early blocks see edges and textures any picture has, the last one the parts of
objects, which is what captions name), and trains both at a
learning rate ten times lower than stage 1's, so that the first updates from a decoder still adjusting do not
wreck what the encoder already knows. Batch-norm layers stay frozen and in inference mode: their statistics come
from millions of ImageNet pictures, and batches of a few photos would overwrite them with noise.

The images are read through `tf.data` with light augmentation: a random crop of a slightly larger picture and a
little brightness and contrast jitter, never a horizontal flip (captions say "on the left of"). Each image is
encoded once a step and its five captions are scored together. Afterwards the fine-tuned encoder's weights are
saved beside the model (their SHA-1 in the file name, so a feature cache names the exact encoder it came from),
every image of the splits is encoded with it, and `evaluate`, `caption` and `search` use it from then on. On a GPU
with tensor cores the encoder and the decoder learn in mixed precision, as stage 1 does (helpers/training.py): the
encoder's activations, the most memory this stage takes, are half the size.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from helpers import pipeline
from helpers.encoders import build_encoder, encoder_spec
from helpers.errors import SettingError, check_at_least
from helpers.files import file_sha1, replacing, stage, write_json
from helpers.images import load_image
from helpers.training import precision, precision_policy, saved_size, set_seed, teacher_forcing_arrays, train_model
from helpers.vocabulary import PAD_ID, Vocabulary
from helpers.workspace import DEFAULT_MODEL, Workspace

CAPTIONS_PER_IMAGE = 5  # Flickr8k's; an image with fewer repeats them, one with more keeps its first five
CROP_MARGIN = 1.15  # augmentation: a random crop of the picture read this much larger
FINE_TUNE_LEARNING_RATE = 1e-4
# What the out-of-memory message of this stage suggests (files.stage).
LOWER_MEMORY = ("fine-tune on fewer pictures a step (--fine-tune-batch-size 8; 16 by default) or with a smaller "
                "encoder (--encoder mobilenet_v2, for both stages), then run it again")


def unfreeze_last_block(encoder: keras.Model, after: str) -> int:
    """Make the layers after `after` trainable (batch norm excepted), the others frozen; the weights unfrozen."""
    names = [layer.name for layer in encoder.layers]
    if after not in names:
        raise SettingError(f"{encoder.name} has no layer {after!r} to fine-tune after.")
    start = names.index(after) + 1
    encoder.trainable = True
    for index, layer in enumerate(encoder.layers):
        layer.trainable = index >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return int(sum(np.prod(w.shape) for w in encoder.trainable_weights))


def grouped_captions(captions: dict[str, list[str]], vocab: Vocabulary, width: int) -> tuple[list[str], np.ndarray,
                                                                                             np.ndarray]:
    """(keys, inputs, targets): each image's five captions for teacher forcing, (images, 5, width) each."""
    five = {key: [found[i % len(found)] for i in range(CAPTIONS_PER_IMAGE)] for key, found in captions.items()}
    keys, inputs, targets = teacher_forcing_arrays(five, vocab)
    padded = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=PAD_ID) for a in (inputs, targets)]
    shape = (-1, CAPTIONS_PER_IMAGE, width)
    return keys[::CAPTIONS_PER_IMAGE], padded[0].reshape(shape), padded[1].reshape(shape)


def image_dataset(paths: list[Path], inputs: np.ndarray, targets: np.ndarray, encoder: str, image_size: int,
                  batch_size: int, augment: bool, seed: int) -> tf.data.Dataset:
    """Batches of ({"pixels": (B, S, S, 3), "caption": (B, 5, T)}, targets (B, 5, T)), read from the files.

    Pictures are read as feature extraction reads them (`load_image`); with `augment`, shuffled every epoch and
    randomly cropped and jittered (in one sequential step, so a seed gives the same crops every run).
    """
    read_size = round(image_size * CROP_MARGIN) if augment else image_size

    def read(path: bytes) -> np.ndarray:
        return load_image(os.fsdecode(path), read_size, encoder).astype(np.float32)

    def read_tf(path, caption, target):
        pixels = tf.numpy_function(read, [path], tf.float32, stateful=False)
        pixels.set_shape((read_size, read_size, 3))
        return pixels, caption, target

    def jitter(pixels, caption, target):
        pixels = tf.image.random_crop(pixels, (image_size, image_size, 3), seed=seed)
        pixels = tf.image.random_brightness(pixels, 0.1, seed=seed + 1)  # inputs are about -1..1 (or caffe's)
        pixels = tf.image.random_contrast(pixels, 0.9, 1.1, seed=seed + 2)
        return pixels, caption, target

    dataset = tf.data.Dataset.from_tensor_slices(([os.fsencode(p) for p in paths], inputs, targets))
    if augment:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(read_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment:
        dataset = dataset.map(jitter)
    dataset = dataset.map(lambda pixels, caption, target: ({"pixels": pixels, "caption": caption}, target))
    return dataset.batch(batch_size).prefetch(2)


def end_to_end(encoder: keras.Model, decoder: keras.Model, image_size: int, width: int,
               learning_rate: float) -> keras.Model:
    """Pixels and five captions an image -> logits (B, 5, T, V): the encoder once per image, the decoder per caption."""
    pixels = keras.Input((image_size, image_size, 3), name="pixels")
    caption = keras.Input((CAPTIONS_PER_IMAGE, width), dtype="int32", name="caption")
    features = encoder(pixels, training=False)  # batch norm in inference mode, whatever fit() says
    features = keras.ops.repeat(features, CAPTIONS_PER_IMAGE, axis=0)
    logits = decoder({"image": features, "caption": keras.ops.reshape(caption, (-1, width))})
    if isinstance(logits, list | tuple):  # Keras 3.1 gives a one-output functional model's output as a list
        logits = logits[0]
    logits = keras.ops.reshape(logits, (-1, CAPTIONS_PER_IMAGE, width, decoder.output_shape[-1]))
    model = keras.Model({"pixels": pixels, "caption": caption}, logits, name="end_to_end_captioner")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID))
    return model


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
        splits[split], _ = pipeline._with_features(captions[split], features)
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
                          patience=patience or config["patience"], verbose=verbose)
    checkpoint.unlink(missing_ok=True)  # the best epoch is in `model` now; what is kept is saved below
    weights = _save_encoder(encoder, files.keras.parent, files.name)
    with replacing(files.keras, suffix=".keras", needed=saved_size(decoder)) as tmp:
        decoder.save(tmp)
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
