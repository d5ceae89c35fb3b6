"""The course's stages as functions over one work folder: what the command line and the notebooks call.

TensorFlow is imported only inside the stages that need it, so `prepare` answers in a second.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from helpers.dataset import SPLITS, load_dataset
from helpers.evaluation import bleu_scores, cider_score, human_bleu, meteor_score, repetition_stats
from helpers.features import cache_meta, extract_features, feature_cache_name, load_features, weights_label
from helpers.paths import fixture_dir
from helpers.vocabulary import Vocabulary
from helpers.workspace import Workspace


# Course defaults. min_count 5 is the usual Flickr8k threshold (Show and Tell): it shrinks the output softmax from
# about 7,500 words to about 2,800, the biggest speed lever in training (bench/README.md).
MIN_COUNT = 5
EPOCHS = 30  # an upper bound: early stopping on the dev loss ends training sooner


def prepare(work: Workspace, data_dir: str | Path | None = None, min_count: int = MIN_COUNT) -> dict:
    """Load, clean and split the captions, build the vocabulary on train; write captions.json and vocab.json."""
    data = load_dataset(data_dir or fixture_dir())
    train = [c for caps in data.split_captions("train").values() for c in caps]
    vocab = Vocabulary.build(train, min_count=min_count)
    work.write_json("captions.json", {s: data.split_captions(s) for s in SPLITS})
    vocab.save(work.path("vocab.json"))
    in_split = {n for names in data.splits.values() for n in names}
    summary = {
        "data_dir": str(data.root.resolve()),
        "layout": data.layout,
        "images": len(data.captions),
        "captions": data.caption_count,
        "splits": {s: len(names) for s, names in data.splits.items()},
        "unsplit_images": len(set(data.captions) - in_split),
        "vocab_size": len(vocab),
        "max_length": vocab.max_length,
        "min_count": min_count,
        "dev_unknown_rate": vocab.unknown_rate(c for caps in data.split_captions("dev").values() for c in caps),
        "skipped": [s.__dict__ for s in data.skipped],
        "notes": data.notes,
    }
    work.write_json("dataset.json", {**summary, "images_dir": str(data.images_dir.resolve())})
    return summary


def is_fixture(work: Workspace) -> bool:
    """Whether the prepared data is the shipped fixture."""
    return Path(work.read_json("dataset.json")["data_dir"]) == fixture_dir().resolve()


def resolve_weights(work: Workspace, weights: str = "auto") -> str:
    """'auto' means an untrained encoder on the fixture (offline, CI) and ImageNet weights on real data."""
    if weights != "auto":
        return weights
    return "none" if is_fixture(work) else "imagenet"


def features_path(work: Workspace, weights: str, image_size: int) -> Path:
    """The feature cache of one encoder setting in this work folder."""
    return work.path(feature_cache_name(weights, image_size))


def extract(work: Workspace, weights: str = "auto", image_size: int = 299, batch_size: int = 32,
            progress: bool = True):
    """Xception features of every image in the splits, cached (and resumable) in the work folder."""
    weights = resolve_weights(work, weights)
    images_dir = Path(work.read_json("dataset.json")["images_dir"])
    names = sorted({n for split in work.read_json("captions.json").values() for n in split})
    return extract_features([images_dir / n for n in names], features_path(work, weights, image_size),
                            weights=weights, image_size=image_size, batch_size=batch_size, progress=progress)


def split_features(work: Workspace, weights: str, image_size: int) -> dict[str, np.ndarray]:
    """Cached features keyed like captions.json (whose COCO names keep their folder: `val2014/x.jpg`)."""
    by_file = load_features(features_path(work, weights, image_size)).features
    names = {n for split in work.read_json("captions.json").values() for n in split}
    return {n: by_file[Path(n).name] for n in names if Path(n).name in by_file}


def _with_features(captions: dict[str, list[str]], available: dict) -> tuple[dict[str, list[str]], list[str]]:
    """Keep the images that have features; return the names of those that do not."""
    kept = {n: c for n, c in captions.items() if n in available}
    return kept, sorted(set(captions) - set(kept))


def train(work: Workspace, weights: str = "auto", image_size: int = 299, epochs: int = EPOCHS, batch_size: int = 64,
          units: int = 256, dropout: float = 0.5, learning_rate: float = 1e-3, patience: int = 3, seed: int = 0,
          resume: bool = False, verbose: int | str = "auto", strategy="auto") -> dict[str, list[float]]:
    """Train the merge model with teacher forcing; keep the best checkpoint and the history in the work folder.

    `strategy` ("auto", "default", "mirrored" or a `tf.distribute.Strategy`, see `training.strategy_for`) spreads
    each batch over the devices; `batch_size` is the global batch, shared among them.
    """
    from helpers.model import build_merge_model
    from helpers.training import make_dataset, set_seed, strategy_for, strategy_name, train_model

    set_seed(seed)
    weights = resolve_weights(work, weights)
    captions, vocab = work.read_json("captions.json"), Vocabulary.load(work.require("vocab.json"))
    features = split_features(work, weights, image_size)
    train_caps, missing = _with_features(captions["train"], features)
    dev_caps, missing_dev = _with_features(captions["dev"], features)
    if missing or missing_dev:
        print(f"Training without {len(missing) + len(missing_dev)} images that have no features "
              f"(unreadable or not extracted), e.g. {(missing + missing_dev)[:3]}")
    distribution = strategy_for(strategy)
    with distribution.scope():  # variables (model and optimizer) are created once per device, kept in sync
        model = build_merge_model(len(vocab), train_features=np.stack([features[n] for n in train_caps]),
                                  units=units, embedding_dim=units, dropout=dropout, learning_rate=learning_rate)
    train_ds = make_dataset(train_caps, features, vocab, batch_size=batch_size, shuffle=True, seed=seed)
    dev_ds = make_dataset(dev_caps, features, vocab, batch_size=batch_size, shuffle=False, seed=seed)
    settings = {"weights": weights, "image_size": image_size, "vocab_size": len(vocab),
                "max_length": vocab.max_length, "units": units, "seed": seed, "batch_size": batch_size,
                "strategy": strategy_name(distribution), "replicas": distribution.num_replicas_in_sync}
    checkpoint, started = work.path("model.keras"), time.time()
    try:
        history = train_model(model, train_ds, dev_ds, epochs=epochs, checkpoint_path=checkpoint,
                              patience=patience, verbose=verbose, resume=resume)
    except KeyboardInterrupt:  # Ctrl-C / a stopped cell: describe the best epoch saved so far, if any
        if checkpoint.is_file() and (resume or checkpoint.stat().st_mtime >= started):
            work.write_json("model.json", {**settings, "epochs_run": None, "interrupted": True})
        raise
    work.write_json("history.json", history)
    work.write_json("model.json", {**settings, "epochs_run": len(history["loss"])})
    return history


def load_trained(work: Workspace):
    """The trained model, its vocabulary and settings, checked against each other before use."""
    import keras

    config, vocab = work.read_json("model.json"), Vocabulary.load(work.require("vocab.json"))
    if (config["vocab_size"], config["max_length"]) != (len(vocab), vocab.max_length):
        raise ValueError(
            f"{work.path('model.keras')} was trained with a vocabulary of {config['vocab_size']} words and captions of "
            f"up to {config['max_length']} words, but {work.path('vocab.json')} has {len(vocab)} and "
            f"{vocab.max_length}: the vocabulary was rebuilt after training. Train again (`python -m helpers train`).")
    model = keras.models.load_model(work.require("model.keras"), safe_mode=True)
    if model.output_shape[-1] != len(vocab):
        raise ValueError(
            f"{work.path('model.keras')} predicts one of {model.output_shape[-1]} words, but {work.path('vocab.json')} "
            f"has {len(vocab)}: the model and the vocabulary come from different runs. Train again "
            f"(`python -m helpers train` or notebook 05), or put back the vocab.json it was trained with.")
    _check_feature_cache(work, config, model)
    return model, vocab, config


def _check_feature_cache(work: Workspace, config: dict, model) -> None:
    """The feature cache that model.json points to must come from the same encoder as the model's input."""
    path = features_path(work, config["weights"], config["image_size"])
    if not path.is_file():
        return  # caption_files encodes its images itself; evaluate says which stage to run
    meta = cache_meta(path)
    expected = {"weights": weights_label(config["weights"]), "image_size": config["image_size"],
                "feature_dim": model.input["image"].shape[-1]}
    differences = [f"{key} {meta.get(key)!r} in the cache, {value!r} for the model"
                   for key, value in expected.items() if meta.get(key) != value]
    if differences:
        raise ValueError(
            f"{path} was not written by the encoder {work.path('model.keras')} was trained on "
            f"({'; '.join(differences)}; see {work.path('model.json')}). Delete the cache and run "
            f"`python -m helpers features` with the model's settings, or train again on these features.")


def generate(model, features: np.ndarray, vocab: Vocabulary, beam_width: int = 1) -> list[str]:
    """Greedy captions (beam_width 1) or beam-search captions for a batch of feature vectors."""
    from helpers.decoding import beam_captions, greedy_captions

    if beam_width == 1:
        return greedy_captions(model, features, vocab)
    return beam_captions(model, features, vocab, beam_width=beam_width)


def evaluate(work: Workspace, split: str = "test", beam_width: int = 1, meteor: bool = False) -> dict:
    """BLEU-1..4 of generated captions on a split, beside the human baseline and repetition figures.

    Also CIDEr-D (None without the `eval` extra) and, with `meteor=True`, METEOR (None without the extra or Java;
    it starts a Java process that takes about 10 s and 2 GB of memory, so it is asked for).
    """

    model, vocab, config = load_trained(work)
    features = split_features(work, config["weights"], config["image_size"])
    references, missing = _with_features(work.read_json("captions.json")[split], features)
    if not references:
        raise ValueError(f"No image of the {split} split has features: run `python -m helpers features` first.")
    names = list(references)
    hypotheses = generate(model, np.stack([features[n] for n in names]), vocab, beam_width)
    refs = [references[n] for n in names]
    result = {"split": split, "images": len(names), "images_without_features": missing, "beam_width": beam_width,
              "weights": config["weights"], **bleu_scores(refs, hypotheses), "cider": cider_score(refs, hypotheses),
              "meteor": meteor_score(refs, hypotheses) if meteor else None, "human": human_bleu(refs),
              "repetition": repetition_stats(hypotheses), "captions": dict(zip(names, hypotheses))}
    work.write_json(f"evaluation_{split}.json", result)
    return result


def caption_files(work: Workspace, paths: Sequence[str | Path], beam_width: int = 1) -> tuple[dict[str, str], dict[str, str]]:
    """Caption any image files with the trained model: (file name -> caption, file name -> why it failed)."""
    model, vocab, config = load_trained(work)
    with tempfile.TemporaryDirectory() as tmp:  # no cache: a later photo may reuse an earlier one's file name
        found = extract_features([Path(p) for p in paths], Path(tmp) / "features.npz", weights=config["weights"],
                                 image_size=config["image_size"], progress=False)
    names = [Path(p).name for p in paths if Path(p).name in found.features]
    captions = generate(model, found.matrix(names), vocab, beam_width) if names else []
    return dict(zip(names, captions)), found.failed


def untrained_bleu(work: Workspace, split: str = "test", seed: int = 0) -> dict[str, float]:
    """BLEU of the same architecture before any training: the floor a trained model must clear."""
    from helpers.model import build_merge_model
    from helpers.training import set_seed

    set_seed(seed)
    config, vocab = work.read_json("model.json"), Vocabulary.load(work.require("vocab.json"))
    features = split_features(work, config["weights"], config["image_size"])
    references, _ = _with_features(work.read_json("captions.json")[split], features)
    model = build_merge_model(len(vocab), units=config["units"], embedding_dim=config["units"],
                              train_features=np.stack(list(features.values())))
    hypotheses = generate(model, np.stack([features[n] for n in references]), vocab)
    return bleu_scores(list(references.values()), hypotheses)
