"""Caption generation speed: batched greedy and beam search vs one `model.predict` call per word per image.

The model is `build_merge_model` (256 units) with the Flickr8k-like vocabulary (bench.synthetic), untrained:
its `<end>` is ruled out (bias -1e4), so the batched decoders run all 39 steps (a worst case for them). The per-word
loops are timed per call and quoted for a 13-call caption (12 words + `<end>`, Flickr8k's mean), so the
baseline gets the benefit of stopping early.

- Tutorials: `model.predict` on (image, caption so far) for every word (`predict_loop`).
- `helpers.tutorial_baselines.predict_loop_ids`, the same loop with `predict_on_batch` (no per-call setup).
- Course: `helpers.decoding.decode`, greedy and beam search (width 3), 64 images per compiled call.
"""

from __future__ import annotations

import time

import numpy as np

from bench.synthetic import flickr8k_like

CALLS_PER_CAPTION = 13  # 12 words (Flickr8k's mean caption, cleaned) + <end>


def predict_calls(model, feature: np.ndarray, sequence_length: int, calls: int, use_predict: bool) -> float:
    """Seconds per call of the per-word loop for one image, over `calls` words (greedy, no early stop)."""
    caption = np.zeros((1, sequence_length), dtype="int32")
    caption[0, 0] = 2  # <start>
    image = np.asarray(feature, dtype="float32")[None]
    start = time.perf_counter()
    for t in range(calls):
        inputs = {"image": image, "caption": caption}
        probs = model.predict(inputs, verbose=0) if use_predict else model.predict_on_batch(inputs)
        word = int(np.argmax(probs[0, t][4:])) + 4
        if t + 1 < sequence_length:
            caption[0, t + 1] = word
    return (time.perf_counter() - start) / calls


def measure(images: int = 128, loop_images: int = 2, batch_size: int = 64, beam_width: int = 3) -> dict:
    """Captions/s of batched greedy and beam search vs the per-word loops, on the same model and features."""
    import keras

    from helpers.decoders.merge import build_merge_model
    from helpers.decoding import decode
    from helpers.vocabulary import END_ID, Vocabulary

    captions, features = flickr8k_like(max(images, loop_images, 200))
    vocab = Vocabulary.build(c for caps in captions.values() for c in caps)
    matrix = np.stack(list(features.values()))[:images]
    keras.utils.set_random_seed(0)
    model = build_merge_model(len(vocab), train_features=matrix)
    bias = model.get_layer("next_word").bias  # <end> never wins: every caption runs all steps (worst case)
    bias.assign(np.where(np.arange(len(vocab)) == END_ID, -1e4, bias.numpy()).astype("float32"))
    result = {"vocab_size": len(vocab), "steps": vocab.sequence_length, "images": images}

    for name, width in {"greedy": 1, "beam": beam_width}.items():
        decode(model, matrix[:batch_size], vocab, width, batch_size=batch_size)  # compile
        start = time.perf_counter()
        texts = decode(model, matrix, vocab, width, batch_size=batch_size).captions
        seconds = time.perf_counter() - start
        result[name] = {"captions_per_s": images / seconds, "seconds": seconds, "batch_size": batch_size,
                        "mean_words": float(np.mean([len(t.split()) for t in texts]))}
    result["beam"]["beam_width"] = beam_width

    for name, use_predict in {"predict_loop": True, "predict_on_batch_loop": False}.items():
        predict_calls(model, matrix[0], vocab.sequence_length, 2, use_predict)  # warm-up
        per_call = np.mean([predict_calls(model, matrix[i], vocab.sequence_length, CALLS_PER_CAPTION, use_predict)
                            for i in range(loop_images)])
        result[name] = {"captions_per_s": 1 / (per_call * CALLS_PER_CAPTION), "seconds_per_call": float(per_call),
                        "calls_per_caption": CALLS_PER_CAPTION, "images": loop_images}
    base = result["predict_loop"]["captions_per_s"]
    result["speedup_greedy"] = result["greedy"]["captions_per_s"] / base
    result["speedup_beam"] = result["beam"]["captions_per_s"] / base
    result["speedup_greedy_vs_predict_on_batch"] = (result["greedy"]["captions_per_s"]
                                                    / result["predict_on_batch_loop"]["captions_per_s"])
    return result
