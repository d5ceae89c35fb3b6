"""The way many popular Flickr8k tutorials train and caption, kept only to compare with the course's way
(notebooks 04 and 05).

- Training: every prefix of every caption is one example, left-padded to a fixed length, with the next word as
  a one-hot vector (`progressive_examples`), fed to a model whose LSTM returns only its last step
  (`build_prefix_model`). The course trains on whole captions with teacher forcing (helpers/training.py).
- Captioning: one full-model call per word of one image (`predict_loop_ids`). The course runs every step of a
  batch inside one compiled function (helpers/decoding.py).

Notebooks 04-06 and `python -m bench` measure the difference; nothing else in the course uses this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import keras
import numpy as np
from keras import layers

from helpers.decoders.base import image_input, standardiser
from helpers.decoding import ruled_out
from helpers.vocabulary import END_ID, PAD_ID, START_ID, Vocabulary


def build_prefix_model(
    vocab_size: int,
    max_length: int,
    train_features: np.ndarray | None = None,
    feature_dim: int | None = None,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """The tutorials' model: (image, one left-padded prefix of `max_length` ids) -> next-word probabilities (B, V).

    The same layers as `build_merge_model`, but the LSTM returns only its last step and the target is a one-hot
    vector, so each training example teaches one word.
    """
    image = image_input(train_features, feature_dim)
    prefix = keras.Input(shape=(max_length,), dtype="int32", name="prefix")
    x = standardiser(train_features)(image)
    x = layers.Dropout(dropout, name="image_dropout")(x)
    image_vector = layers.Dense(units, activation="relu", name="image_dense")(x)
    words = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(prefix)
    words = layers.Dropout(dropout, name="caption_dropout")(words)
    caption_vector = layers.LSTM(units, name="lstm")(words)
    merged = layers.Add(name="merge")([image_vector, caption_vector])
    hidden = layers.Dense(units, activation="relu", name="decoder_dense")(merged)
    next_word = layers.Dense(vocab_size, activation="softmax", name="next_word")(hidden)
    model = keras.Model({"image": image, "prefix": prefix}, next_word, name="prefix_captioner")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"])
    return model


def progressive_examples(
    captions: Mapping[str, list[str]], features: Mapping[str, np.ndarray], vocab: Vocabulary
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Yield `({"image": (F,), "prefix": (L,)}, one-hot next word (V,))` for every prefix of every caption.

    The prefix `<start> w1..wt` is left-padded with 0 to L = `vocab.sequence_length` ids (the longest prefix a
    train caption has); the target is word t+1 (or `<end>`) as a one-hot vector.
    """
    width = vocab.sequence_length
    for image, image_captions in captions.items():
        for caption in image_captions:
            ids = vocab.encode(caption)
            for t in range(1, len(ids)):
                prefix = np.full(width, PAD_ID, dtype="int32")
                kept = ids[:t][-width:]
                prefix[width - len(kept):] = kept
                target = np.zeros(len(vocab), dtype="float32")
                target[ids[t]] = 1.0
                yield {"image": np.asarray(features[image]), "prefix": prefix}, target


def count_progressive_examples(captions: Mapping[str, list[str]]) -> int:
    """How many examples `progressive_examples` yields: one per word of each caption, plus one for `<end>`."""
    return sum(len(caption.split()) + 1 for image_captions in captions.values() for caption in image_captions)


def progressive_bytes(captions: Mapping[str, list[str]], vocab: Vocabulary, feature_dim: int = 2048) -> int:
    """Memory those examples take if held in arrays at once (float32 feature and one-hot, int32 prefix)."""
    per_example = 4 * (feature_dim + vocab.sequence_length + len(vocab))
    return count_progressive_examples(captions) * per_example


def predict_loop_ids(model: keras.Model, feature: np.ndarray, vocab: Vocabulary) -> list[int]:
    """Greedy word ids for one image, running the whole model again for every new word (slow)."""
    caption = np.full((1, vocab.sequence_length), PAD_ID, dtype="int32")  # fixed shape: compiled once
    caption[0, 0] = START_ID
    image = np.asarray(feature, dtype="float32")[None]
    ids = []
    for t in range(vocab.sequence_length):
        logits = model.predict_on_batch({"image": image, "caption": caption})[0, t]  # seen <start> + t words
        word = int(np.argmax(logits + ruled_out(len(logits), first_step=t == 0).numpy()))
        ids.append(word)
        if word == END_ID or t + 1 == vocab.sequence_length:
            break
        caption[0, t + 1] = word
    return ids
