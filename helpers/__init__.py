"""Plumbing for the image-captioning course: data, vocabulary, features, model, training, decoding, BLEU."""

__version__ = "0.1.0"
