"""The captioning decoders the course trains, by name: merge (the default, notebook 04), init-inject (notebook 09)
and soft attention (notebook 07).

Each entry says which features it reads ("avg": one vector per image; "none": the encoder's grid of vectors),
what it learns from the train features before training (`statistics`), how to build it, and how to run it one
word at a time (its `StepDecoder`). A new decoder is its module and one entry here: the stages, the command line
and the searches find it by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from helpers.decoders.attention import AttentionStepDecoder, build_attention_model, grid_statistics
from helpers.decoders.base import StepDecoder, vector_statistics
from helpers.decoders.inject import InjectStepDecoder, build_inject_model
from helpers.decoders.merge import MergeStepDecoder, build_merge_model
from helpers.errors import SettingError


@dataclass(frozen=True)
class DecoderSpec:
    """One decoder family: its name, the pooling of the features it reads, its builder and its step decoder."""

    name: str
    pooling: str
    build: Callable[..., keras.Model]
    step_decoder: Callable[[keras.Model], StepDecoder]
    model_name: str  # the Keras model's name, by which a loaded model is recognised
    # (features, train keys, grid_pool) -> the builder's arguments learnt from the train split (standardisation)
    statistics: Callable[..., dict] = vector_statistics


DECODERS = {spec.name: spec for spec in (
    DecoderSpec("merge", "avg", build_merge_model, MergeStepDecoder, "merge_captioner"),
    DecoderSpec("inject", "avg", build_inject_model, InjectStepDecoder, "inject_captioner"),
    DecoderSpec("attention", "none", build_attention_model, AttentionStepDecoder, "attention_captioner",
                grid_statistics),
)}
DEFAULT_DECODER = "merge"


def decoder_spec(name: str) -> DecoderSpec:
    """The spec of a decoder by name; a SettingError listing the valid names otherwise."""
    if name not in DECODERS:
        raise SettingError(f"Unknown decoder {name!r}: choose one of {', '.join(DECODERS)}.")
    return DECODERS[name]


def step_decoder_for(model: keras.Model) -> StepDecoder:
    """The step decoder of a trained (or loaded) captioning model, found by the model's name."""
    for spec in DECODERS.values():
        if model.name == spec.model_name:
            return spec.step_decoder(model)
    raise SettingError(f"{model.name!r} is not a captioning model of the course "
                       f"({', '.join(s.model_name for s in DECODERS.values())}).")
