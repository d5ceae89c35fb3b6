"""Plumbing for the image-captioning course: data, vocabulary, features, model, training, decoding, BLEU."""

from helpers.versions import check_versions

__version__ = "0.1.0"

check_versions()  # before any module of the package imports TensorFlow or Keras
