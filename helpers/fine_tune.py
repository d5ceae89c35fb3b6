"""End-to-end fine-tuning: the encoder's last block learns together with the decoder, from the pictures themselves
(notebook 09). The stage that runs it over a work folder is helpers/machinery/fine_tune_stage.py.

    unfreeze_last_block(encoder, spec.fine_tune_after)       # the encoder's last block learns, the rest stays
    image_dataset(paths, inputs, targets, ...)               # pictures (augmented) and their captions' ids
    end_to_end(encoder, decoder, image_size, width, 1e-4)    # pixels -> encoder -> decoder -> next-word logits

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

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from helpers.errors import SettingError
from helpers.images import load_image
from helpers.training import teacher_forcing_arrays
from helpers.vocabulary import PAD_ID, Vocabulary

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
