"""Recover MobileNetV2's ImageNet weights from Google's quantized TFLite file, as the Keras weights files the course
ships in `helpers/weights/` (run once; the result is committed).

    pip install ai-edge-litert                       # the TFLite interpreter: needed by this tool only
    python tools/convert_mobilenet_v2.py mobilenet_v2_1.0_224_quant.tflite [--out helpers/weights]

The input is `mobilenet_v2_1.0_224_quant.tflite` from Google's Coral test data (Apache License 2.0): MobileNetV2,
width 1.0, 224 x 224 pixels, trained on ImageNet with quantization-aware training, 1,001 classes (0: background).
Its SHA-256 is checked first. The tool writes two Keras weights files in float16, byte for byte the same on
every run:

- `mobilenet_v2_imagenet_notop.weights.h5`: the encoder, for `keras.applications.MobileNetV2(include_top=False)`;
- `mobilenet_v2_imagenet_classifier.weights.h5`: the classifier on the pooled vector (a Dense layer of 1,001
  classes), for the tests and notebook 03's "what the network sees".

How the TFLite graph maps onto Keras's layers:
- Each convolution of the TFLite file is one Keras convolution, in the same order (Conv -> Conv1,
  expanded_conv/depthwise -> expanded_conv_depthwise, expanded_conv_N/expand -> block_N_expand, ...,
  Conv_1 -> Conv_1); the tool checks each TFLite tensor's name and shape against the Keras layer it fills.
- Weights are uint8 with a scale and a zero point: real = scale * (q - zero_point). Biases are int32 with zero
  point 0 and the scale input_scale * weight_scale.
- TFLite stores a filter as (out, height, width, in), Keras as (height, width, in, out); a depthwise filter as
  (1, height, width, channels), Keras as (height, width, channels, 1).
- Batch norm is folded into the convolutions: the TFLite filter is already W * gamma / sqrt(var + eps) and its
  bias beta - mean * gamma / sqrt(var + eps). Keras's MobileNetV2 has a BatchNormalization (epsilon 1e-3) after
  every convolution instead of a bias, so each one is set to pass the folded bias through: gamma 1, beta the
  folded bias, moving mean 0, moving variance 1 - epsilon (then (x - 0) / sqrt(1 - eps + eps) * 1 + beta =
  x + beta).
- The classifier is a 1 x 1 convolution on the pooled 1,280 numbers: a Dense kernel of (1280, 1001).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
from float16_weights import save_float16

TFLITE_SHA256 = "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
ENCODER_FILE = "mobilenet_v2_imagenet_notop.weights.h5"
CLASSIFIER_FILE = "mobilenet_v2_imagenet_classifier.weights.h5"
CLASSES = 1001
CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "helpers" / "weights"


def slim_scope(keras_name: str) -> str:
    """The TFLite (TF-slim) name scope of a Keras MobileNetV2 convolution: block_3_expand -> expanded_conv_3/expand/."""
    if keras_name == "Conv1":
        return "MobilenetV2/Conv/"
    if keras_name == "Conv_1":
        return "MobilenetV2/Conv_1/"
    found = re.fullmatch(r"(?:block_(\d+)|expanded_conv)_(expand|depthwise|project)", keras_name)
    if not found:
        raise ValueError(f"{keras_name} is not a MobileNetV2 convolution")
    block = f"expanded_conv_{found[1]}" if found[1] else "expanded_conv"
    return f"MobilenetV2/{block}/{found[2]}/"


def check_sha256(path: Path) -> None:
    """The TFLite file must be the one this mapping was written for."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != TFLITE_SHA256:
        raise SystemExit(f"error: {path} has SHA-256 {digest}, not {TFLITE_SHA256} (mobilenet_v2_1.0_224_quant.tflite "
                         "from Google's Coral test data): this tool converts that file only.")


def interpreter(path: Path):
    """The TFLite interpreter on `path`, without the XNNPACK delegate, keeping every tensor (for the tests)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise SystemExit("error: this tool reads TFLite files with the ai-edge-litert interpreter: "
                         "pip install ai-edge-litert") from None
    model = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    model.allocate_tensors()
    return model


def dequantize(model, detail: dict) -> np.ndarray:
    """A quantized tensor as real numbers: scale * (q - zero_point), per tensor or per channel."""
    q = model.get_tensor(detail["index"]).astype(np.float64)
    params = detail["quantization_parameters"]
    shape = [1] * q.ndim
    if len(params["scales"]) > 1:
        shape[params["quantized_dimension"]] = -1
    return (q - params["zero_points"].reshape(shape)) * params["scales"].reshape(shape)


def tflite_convolutions(model) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(first name of the filter tensor, filter, bias) of every convolution, in the graph's order."""
    tensors = {detail["index"]: detail for detail in model.get_tensor_details()}
    found = []
    for op in model._get_ops_details():  # the interpreter's only listing of the graph's operations
        if op["op_name"] in CONVOLUTIONS:
            _, weights, bias = (tensors[int(i)] for i in op["inputs"])
            found.append((weights["name"].split(";")[0], dequantize(model, weights), dequantize(model, bias)))
    return found


def keras_networks():
    """Keras's MobileNetV2 without its classifier, and the classifier on the pooled vector."""
    import keras

    encoder = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3))
    classifier = keras.Sequential([keras.Input((1280,)), keras.layers.Dense(CLASSES, name="predictions")])
    return encoder, classifier


def fill(encoder, classifier, convolutions: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Put the TFLite convolutions into the Keras layers (see the module's docstring for the mapping)."""
    import keras

    kinds = keras.layers.Conv2D | keras.layers.DepthwiseConv2D
    layers = [layer for layer in encoder.layers if isinstance(layer, kinds)]
    if len(convolutions) != len(layers) + 1:
        raise SystemExit(f"error: the TFLite file has {len(convolutions)} convolutions; MobileNetV2 has "
                         f"{len(layers)} and the classifier one")
    following = {encoder.layers[i - 1].name: layer for i, layer in enumerate(encoder.layers)
                 if isinstance(layer, keras.layers.BatchNormalization)}
    for layer, (name, kernel, bias) in zip(layers, convolutions, strict=False):
        if not name.startswith(slim_scope(layer.name)):
            raise SystemExit(f"error: Keras's {layer.name} would get the TFLite tensor {name}")
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = kernel[0][..., np.newaxis]  # (1, h, w, c) -> (h, w, c, 1)
        else:
            kernel = kernel.transpose(1, 2, 3, 0)  # (out, h, w, in) -> (h, w, in, out)
        layer.kernel.assign(kernel.astype(np.float32))
        norm = following[layer.name]
        norm.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1.0 - norm.epsilon)])
    name, kernel, bias = convolutions[-1]
    if not name.startswith("MobilenetV2/Logits/"):
        raise SystemExit(f"error: the last convolution is {name}, not the classifier")
    classifier.get_layer("predictions").set_weights([kernel[:, 0, 0, :].T, bias])


def convert(tflite: Path, out: Path) -> list[Path]:
    """Check, read and map the TFLite file; write the two weights files into `out`."""
    check_sha256(tflite)
    encoder, classifier = keras_networks()
    fill(encoder, classifier, tflite_convolutions(interpreter(tflite)))
    out.mkdir(parents=True, exist_ok=True)
    written = [out / ENCODER_FILE, out / CLASSIFIER_FILE]
    save_float16(encoder, written[0])
    save_float16(classifier, written[1])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite", type=Path, help="mobilenet_v2_1.0_224_quant.tflite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write to (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for path in convert(args.tflite, args.out):
        print(f"{path} ({path.stat().st_size:,} bytes, SHA-256 {hashlib.sha256(path.read_bytes()).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
