"""The "merge" captioning model: image features and the words so far -> the next word, at every step (notebook 04).

    image (F,)    -> normalize -> dropout -> dense (relu) ----------------------+
                                                                                add -> dense (relu) -> next-word logits
    caption (T,)  -> embedding (id 0 = padding) -> dropout -> LSTM (every step) -+

The image and the words meet only after the LSTM (Tanti, Gatt and Camilleri, 2018, call this *merge*). Trained
with teacher forcing: the caption input is `<start> w1 ... wn` and the target is `w1 ... wn <end>`, so output
position t predicts word t+1 from the image and words 0..t.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from helpers.decoders.base import compile_captioner, embed, image_input, standardiser


def build_merge_model(
    vocab_size: int,
    train_features: np.ndarray | None = None,
    feature_dim: int | None = None,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """The merge model on whole captions: (image (B, F), caption ids (B, T)) -> next-word logits (B, T, V).

    `train_features` (the train images' features) give the normalisation its mean and variance, and the input its
    width (unless `feature_dim` says it).
    """
    image = image_input(train_features, feature_dim)
    caption = keras.Input(shape=(None,), dtype="int32", name="caption")
    x = standardiser(train_features)(image)
    x = layers.Dropout(dropout, name="image_dropout")(x)
    image_vector = layers.Dense(units, activation="relu", name="image_dense")(x)
    words = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(caption)
    words = layers.Dropout(dropout, name="caption_dropout")(words)
    caption_vectors = layers.LSTM(units, return_sequences=True, name="lstm")(words)
    merged = layers.Add(name="merge")([image_vector, caption_vectors])  # the image vector is added at every step
    hidden = layers.Dense(units, activation="relu", name="decoder_dense")(merged)
    logits = layers.Dense(vocab_size, name="next_word", dtype="float32")(hidden)  # linear: the loss takes the softmax
    model = keras.Model({"image": image, "caption": caption}, logits, name="merge_captioner")
    return compile_captioner(model, learning_rate)


class MergeStepDecoder:
    """The merge model's layers, rearranged to advance one word at a time for a batch."""

    def __init__(self, model: keras.Model):
        layer = model.get_layer
        self.normalize, self.image_dense = layer("normalize"), layer("image_dense")
        self.embedding, self.cell = layer("embedding"), layer("lstm").cell
        self.merge, self.decoder_dense, self.next_word = layer("merge"), layer("decoder_dense"), layer("next_word")

    def start(self, features: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """Memory [image vectors (B, units)] and the LSTM's empty state [h, c] for a batch of features (B, F)."""
        image_vector = self.image_dense(self.normalize(features))
        zeros = tf.zeros([tf.shape(features)[0], self.cell.units], dtype=self.cell.compute_dtype)  # float16 if mixed
        return [image_vector], [zeros, zeros]

    def step(self, memory: list[tf.Tensor], words: tf.Tensor, state: list[tf.Tensor]):
        """Previous word ids (B,) -> next-word logits (B, V), the new state, and no attention weights (B, 0)."""
        [image_vector] = memory
        output, state = self.cell(embed(self.embedding, words), state, training=False)
        logits = self.next_word(self.decoder_dense(self.merge([image_vector, output])))
        return logits, state, tf.zeros([tf.shape(words)[0], 0])
