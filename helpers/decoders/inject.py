"""The "init-inject" captioning model: the image sets the LSTM's first state, and the words do the rest (notebook 09).

    image (F,)   -> normalize -> dropout -> dense (tanh) -> h0, dense (tanh) -> c0 --+
    caption (T,) -> embedding (id 0 = padding) -> dropout -> LSTM (from h0, c0) ------+-> dense (relu) -> logits

Tanti, Gatt and Camilleri (2018, "Where to put the image in an image caption generator") sort captioners by where
the image enters the recurrent network: *pre-inject* feeds it as the first word (Show and Tell: the LSTM reads the
image vector, then `<start>`, then the words); *init-inject* makes it the LSTM's initial state (this model); *par-
inject* adds it to every word; *merge* keeps it out of the LSTM and joins it with the LSTM's output
(helpers/decoders/merge.py). Init-inject is chosen here because it needs no special first step: training and
decoding are those of the merge model, only the start state differs. In their Flickr8k experiments merge and
init-inject scored within a few BLEU points of each other, and merge needed a smaller LSTM for it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from helpers.decoders.base import compile_captioner, embed, image_input, standardiser


def build_inject_model(
    vocab_size: int,
    train_features: np.ndarray | None = None,
    feature_dim: int | None = None,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """The init-inject model: (image (B, F), caption ids (B, T)) -> next-word logits (B, T, V)."""
    image = image_input(train_features, feature_dim)
    caption = keras.Input(shape=(None,), dtype="int32", name="caption")
    x = standardiser(train_features)(image)
    x = layers.Dropout(dropout, name="image_dropout")(x)
    state = [layers.Dense(units, activation="tanh", name="init_h")(x),
             layers.Dense(units, activation="tanh", name="init_c")(x)]
    words = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(caption)
    words = layers.Dropout(dropout, name="caption_dropout")(words)
    hidden = layers.LSTM(units, return_sequences=True, name="lstm")(words, initial_state=state)
    hidden = layers.Dense(units, activation="relu", name="decoder_dense")(hidden)
    logits = layers.Dense(vocab_size, name="next_word", dtype="float32")(hidden)  # float32 even in mixed precision
    model = keras.Model({"image": image, "caption": caption}, logits, name="inject_captioner")
    return compile_captioner(model, learning_rate)


class InjectStepDecoder:
    """The init-inject model's layers, advancing one word at a time: the image is read once, at the start."""

    def __init__(self, model: keras.Model):
        layer = model.get_layer
        self.normalize, self.init_h, self.init_c = layer("normalize"), layer("init_h"), layer("init_c")
        self.embedding, self.cell = layer("embedding"), layer("lstm").cell
        self.decoder_dense, self.next_word = layer("decoder_dense"), layer("next_word")

    def start(self, features: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """No memory (the image is in the state), and the LSTM's first state [h0, c0] from the features (B, F)."""
        x = self.normalize(features)
        return [], [self.init_h(x), self.init_c(x)]

    def step(self, memory: list[tf.Tensor], words: tf.Tensor, state: list[tf.Tensor]):
        """Previous word ids (B,) -> next-word logits (B, V), the new state, and no attention weights (B, 0)."""
        output, state = self.cell(embed(self.embedding, words), state, training=False)
        return self.next_word(self.decoder_dense(output)), state, tf.zeros([tf.shape(words)[0], 0])
