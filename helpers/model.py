"""The "merge" captioning model: image features and the words so far -> the next word, at every step.

    image (F,)    -> normalize -> dropout -> dense (relu) ----------------------+
                                                                                add -> dense (relu) -> softmax
    caption (T,)  -> embedding (id 0 = padding) -> dropout -> LSTM (every step) -+

Trained with teacher forcing: the caption input is `<start> w1 ... wn` and the target is
`w1 ... wn <end>`, so output position t predicts word t+1 from the image and words 0..t. That is the
classic per-prefix model of the Flickr8k tutorials, evaluated on all prefixes of a caption at once.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from helpers.vocabulary import PAD_ID


def _image_branch(image, train_features, units: int, dropout: float):
    """Standardise the features (mean and variance of the train images), then project to `units`."""
    normalize = layers.Normalization(name="normalize")
    if train_features is not None:
        normalize.adapt(np.asarray(train_features, dtype="float32"))
    x = normalize(image)
    x = layers.Dropout(dropout, name="image_dropout")(x)
    return layers.Dense(units, activation="relu", name="image_dense")(x)


def _caption_branch(caption, vocab_size: int, embedding_dim: int, units: int, dropout: float, every_step: bool):
    """Embed the word ids (id 0 = padding, masked) and run them through an LSTM."""
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(caption)
    x = layers.Dropout(dropout, name="caption_dropout")(x)
    return layers.LSTM(units, return_sequences=every_step, name="lstm")(x)


def _head(image_vector, caption_vectors, vocab_size: int, units: int):
    """Add the image vector to the LSTM output (broadcast over steps) and predict the next word."""
    x = layers.Add(name="merge")([image_vector, caption_vectors])
    x = layers.Dense(units, activation="relu", name="decoder_dense")(x)
    return layers.Dense(vocab_size, activation="softmax", name="next_word")(x)


def build_merge_model(
    vocab_size: int,
    train_features: np.ndarray | None = None,
    feature_dim: int = 2048,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """The merge model on whole captions: (image (B, F), caption ids (B, T)) -> next-word probabilities (B, T, V)."""
    image = keras.Input(shape=(feature_dim,), dtype="float32", name="image")
    caption = keras.Input(shape=(None,), dtype="int32", name="caption")
    image_vector = _image_branch(image, train_features, units, dropout)
    caption_vectors = _caption_branch(caption, vocab_size, embedding_dim, units, dropout, every_step=True)
    next_word = _head(image_vector, caption_vectors, vocab_size, units)
    model = keras.Model({"image": image, "caption": caption}, next_word, name="merge_captioner")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        # Padding targets count for nothing. (No accuracy metric: Keras's own would count padding, and a
        # custom one would make the saved model unloadable wherever this module is not imported.)
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID),
    )
    return model


def build_prefix_model(
    vocab_size: int,
    max_length: int,
    train_features: np.ndarray | None = None,
    feature_dim: int = 2048,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """The tutorials' version, for comparison: (image, one left-padded prefix of `max_length` ids) -> next word (B, V).

    Same layers as `build_merge_model`, but the LSTM returns only its last step and the target is a
    one-hot vector, so each training example teaches one word.
    """
    image = keras.Input(shape=(feature_dim,), dtype="float32", name="image")
    prefix = keras.Input(shape=(max_length,), dtype="int32", name="prefix")
    image_vector = _image_branch(image, train_features, units, dropout)
    caption_vector = _caption_branch(prefix, vocab_size, embedding_dim, units, dropout, every_step=False)
    next_word = _head(image_vector, caption_vector, vocab_size, units)
    model = keras.Model({"image": image, "prefix": prefix}, next_word, name="prefix_captioner")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def describe_shapes(model: keras.Model, batch_size: int = 2, length: int = 5) -> dict[str, tuple[int, ...]]:
    """Each layer's output shape on a dummy batch of `batch_size` images and captions of `length` ids."""
    probe = keras.Model(model.input, {layer.name: layer.output for layer in model.layers})
    dummy = {
        "image": np.zeros((batch_size, model.input["image"].shape[-1]), dtype="float32"),
        "caption": np.ones((batch_size, length), dtype="int32"),
    }
    return {name: tuple(output.shape) for name, output in probe(dummy, training=False).items()}
