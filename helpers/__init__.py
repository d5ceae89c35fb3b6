"""The image-captioning course's code, in two layers.

The modules here are the lessons' code, what a notebook builds or shows (each docstring names its notebook):
cleaning, vocabulary, encoders and images, decoders/, training, decoding, evaluation, retrieval, fine_tune,
tutorial_baselines, literature; errors is the one family of errors both layers raise. `helpers.machinery` holds
what serves them: the work folder, atomic files, the feature store, dataset layouts, the stages, the command line,
the demo, the notebooks' set-up, the fixture and the figures. The lessons' modules import nothing from it.
"""

from helpers.machinery.versions import check_versions

__version__ = "0.1.0"

check_versions()  # before any module of the package imports TensorFlow or Keras
