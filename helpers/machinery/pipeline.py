"""The course's stages after `prepare`, as functions over one work folder: what the command line and notebooks call.

    extract(work)                 the feature cache of every image in the splits
    train(work)                   a decoder trained on it: model.keras, model.json, history.json
    evaluate(work)                BLEU-1..4 (and CIDEr-D) on a split, beside a human and a floor, like for like
    caption_files(work, paths)    captions for any photos (encode_photos: their features)

Every stage checks that what it reads belongs together (fingerprints in dataset.json and model.json), and says
which file is out of step and what to run when it does not.
"""

from __future__ import annotations

import functools
import json
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.decoders import DEFAULT_DECODER, decoder_spec
from helpers.encoders import AUTO, EncoderChoice, choose_encoder, size_note
from helpers.errors import DatasetError, SettingError, WorkFolderError, check_at_least
from helpers.evaluation import (
    bleu_scores,
    cider_score,
    has_eval_extra,
    like_for_like,
    most_frequent_caption,
    novelty,
    repetition_stats,
)
from helpers.machinery.extraction import extract_features
from helpers.machinery.feature_cache import INDEX, CacheSetting, FeatureSet, picture_changed, read_cache
from helpers.machinery.files import file_sha1, fingerprint, stage, write_json
from helpers.machinery.paths import feature_store, is_fixture_folder
from helpers.machinery.prepare import load_prepared
from helpers.machinery.workspace import DEFAULT_MODEL, ModelFiles, Workspace
from helpers.vocabulary import Vocabulary

if TYPE_CHECKING:
    import keras

    from helpers.decoding import Sampling

EPOCHS = 30  # an upper bound: early stopping on the dev loss ends training sooner
MONITORS = ("dev_loss", "cider", "bleu4")  # what early stopping watches: the teacher-forced dev loss, or a metric
# of the greedy dev captions
# What each stage's out-of-memory message suggests (files.stage): the settings that make it need less.
LOWER_MEMORY = {
    "features": "encode fewer pictures at a time (features --batch-size 8, or run --image-batch-size 8; 32 by "
                "default) or use a smaller encoder (--encoder mobilenet_v2), then run it again: the features "
                "encoded so far are kept",
    "train": "train on smaller batches (--batch-size 32; 64 by default) or a smaller decoder (--units 128); for the "
             "attention decoder, a coarser grid too (--grid-pool 2) or a smaller encoder's (--encoder "
             "mobilenet_v2), then run it again",
    "evaluate": "write the captions with a narrower beam (--beam 1, greedy search, needs the least), then run it again",
    "caption": "caption fewer photos at a time, or with a narrower beam (--beam 1), then run it again",
}


def is_fixture(work: Workspace) -> bool:
    """Whether the prepared data is the shipped fixture (or a copy of it in another layout)."""
    return is_fixture_folder(work.read_json("dataset.json")["data_dir"])


def encoder_choice(work: Workspace, encoder: str = AUTO, weights: str = AUTO) -> EncoderChoice:
    """The encoder and weights that 'auto' means for this work folder's data (`encoders.choose_encoder`)."""
    return choose_encoder(encoder, weights, is_fixture(work))


def feature_setting(work: Workspace, encoder: str = AUTO, weights: str = AUTO, image_size: int | None = None,
                    pooling: str = "avg") -> CacheSetting:
    """The cache setting of these encoder options in this work folder ('auto' resolved)."""
    choice = encoder_choice(work, encoder, weights)
    return CacheSetting.of(choice.encoder, choice.weights, image_size, pooling)


def images_of(work: Workspace) -> dict[str, Path]:
    """Key -> file of every image in the splits of the prepared data."""
    captions, _, dataset = load_prepared(work)
    images_dir = Path(dataset["images_dir"])
    if not images_dir.is_dir():
        raise DatasetError(f"The images folder {images_dir} that dataset.json names is gone (moved or deleted): run "
                           f"`python -m helpers prepare --data FOLDER` with the dataset's new place.")
    return {key: images_dir / key for split in captions.values() for key in split}


@stage("features", LOWER_MEMORY["features"])
def extract(work: Workspace, encoder: str = AUTO, weights: str = AUTO, image_size: int | None = None,
            pooling: str = "avg", batch_size: int = 32, progress: bool = True) -> FeatureSet:
    """Encoder features of every image in the splits, cached (and resumable) in the work folder."""
    choice = encoder_choice(work, encoder, weights)
    for note in (choice.note, size_note(choice.encoder, choice.weights, image_size)):
        if note:
            print(note)
    setting = CacheSetting.of(choice.encoder, choice.weights, image_size, pooling)
    return extract_features(images_of(work), work.path(setting.name), encoder=choice.encoder, weights=choice.weights,
                            image_size=setting.image_size, pooling=pooling, batch_size=batch_size, progress=progress,
                            store=feature_store())


def with_features(captions: dict[str, list[str]], features: FeatureSet) -> tuple[dict[str, list[str]], list[str]]:
    """Keep the images that have features; return the keys of those that do not."""
    kept = {k: c for k, c in captions.items() if k in features}
    return kept, sorted(set(captions) - set(kept))


def _no_features(folder: Path, features: FeatureSet, keys: list[str], split: str, encoder: str) -> WorkFolderError:
    """Why no image of a split has features: none of its pictures could be read, or they were never encoded."""
    unreadable = [key for key in keys if key in features.failed]
    if keys and len(unreadable) == len(keys):
        return WorkFolderError(f"None of the {len(keys)} {split} pictures could be read, so none has features: "
                               f"`python -m helpers features` said why for each (kept under \"failed\" in "
                               f"{folder / INDEX}), e.g. {keys[0]}: {features.failed[keys[0]]}. Replace those pictures "
                               "(download the dataset again if all are damaged), then run features and this again.")
    return WorkFolderError(f"No {split} image has features in {folder}: run `python -m helpers features` first (with "
                           f"--encoder {encoder}).")


def pictures_fingerprint(features: FeatureSet, keys: list[str]) -> str:
    """Which pictures the features of `keys` were computed from (their SHA-1s): what a model was trained on."""
    return fingerprint({key: features.pictures.get(key, {}).get("sha1") for key in sorted(keys)})


@stage("train", LOWER_MEMORY["train"])
def train(work: Workspace, decoder: str = DEFAULT_DECODER, encoder: str = AUTO, weights: str = AUTO,
          image_size: int | None = None, epochs: int = EPOCHS, batch_size: int = 64, units: int = 256,
          dropout: float = 0.5, learning_rate: float = 1e-3, patience: int = 3, seed: int = 0, resume: bool = False,
          verbose: int | str = "auto", strategy="auto", model_name: str = DEFAULT_MODEL,
          grid_pool: int = 1, tensorboard: str | Path | None = None, monitor: str = "dev_loss"
          ) -> dict[str, list[float]]:
    """Train a decoder with teacher forcing; keep the best checkpoint, its settings and the history in the folder.

    Every setting is checked before anything is written. `grid_pool` (attention only): average each
    grid_pool x grid_pool block of the encoder's grid before attending (2: 5 x 5 cells instead of 10 x 10).
    `strategy` ("auto", "default", "mirrored" or a `tf.distribute.Strategy`) spreads each batch over the devices;
    `batch_size` is the global batch.
    `model_name` names the model's files (model.keras by default; notebooks 07-08 train others beside it).
    `tensorboard`: a folder for TensorBoard's logs (loss curves and the model's graph), `tensorboard --logdir` it.
    `monitor`: what early stopping and the checkpoint watch: "dev_loss" (teacher forcing), or "cider" / "bleu4",
    the CIDEr-D or BLEU-4 of the greedy captions of the dev split, computed after every epoch.
    On a GPU with tensor cores the model trains in mixed precision (float16 compute on float32 weights, logits and
    loss in float32: half the activations' memory, matrix products on the tensor cores); on the CPU in float32, as
    before (`training.precision_policy`). model.json records which ("precision").
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("units", units), ("patience", patience),
                        ("grid_pool", grid_pool)):
        check_at_least(name, value)
    if not 0.0 <= dropout < 1.0:
        raise SettingError(f"dropout must be at least 0 and below 1, not {dropout!r}.")
    if monitor not in MONITORS:
        raise SettingError(f"Unknown monitor {monitor!r}: choose one of {', '.join(MONITORS)}.")
    if monitor == "cider" and not has_eval_extra():
        raise SettingError('monitor "cider" needs CIDEr-D, from the eval extra: pip install '
                           '"captioning-course-helpers[eval]", or monitor "bleu4".')
    spec = decoder_spec(decoder)
    if grid_pool != 1 and spec.pooling != "none":
        raise SettingError(f"grid_pool is for the attention decoder, which reads a grid; {decoder} reads one vector.")
    files = work.model(model_name)
    captions, vocab, dataset = load_prepared(work)
    choice = encoder_choice(work, encoder, weights)
    setting = CacheSetting.of(choice.encoder, choice.weights, image_size, spec.pooling)
    features = read_cache(work.path(setting.name))
    train_caps, missing = with_features(captions["train"], features)
    dev_caps, missing_dev = with_features(captions["dev"], features)
    if not train_caps or not dev_caps:
        split = "train" if not train_caps else "dev"
        raise _no_features(work.path(setting.name), features, list(captions[split]), split, choice.encoder)
    if missing or missing_dev:
        print(f"Training without {len(missing) + len(missing_dev)} images that have no features "
              f"(unreadable or not extracted), e.g. {(missing + missing_dev)[:3]}")
    settings = {"decoder": decoder, **setting.as_dict(), "weights_source": choice.weights,
                "vocab_size": len(vocab), "max_length": vocab.max_length,
                "units": units, "dropout": dropout, "learning_rate": learning_rate, "batch_size": batch_size,
                "patience": patience, "seed": seed, "grid_pool": grid_pool, "monitor": monitor,
                "fingerprints": dict(dataset["fingerprints"]), "data_dir": dataset["data_dir"],
                "pictures": pictures_fingerprint(features, [*train_caps, *dev_caps])}
    if resume:
        _check_resumable(files, settings)
    return _fit(work, files, spec, features, train_caps, dev_caps, vocab, settings, epochs, resume, verbose, strategy,
                tensorboard)


def _check_resumable(files: ModelFiles, settings: dict) -> None:
    """`train --resume` continues only a model trained on the same data, vocabulary and settings."""
    if not files.keras.exists():
        raise WorkFolderError(f"Cannot resume: there is no {files.keras}. Train without --resume first.")
    if damage := files.checkpoint_damage():
        raise files.damaged(files.keras, damage)
    if not files.record.exists():
        return  # stopped before its first record: the checkpoint is all there is
    before = files.read_record()
    differences = [f"{key}: {before.get(key)!r} then, {value!r} now" for key, value in settings.items()
                   if key not in ("data_dir", "pictures") and before.get(key) != value]
    if differences:
        raise WorkFolderError(f"Cannot resume: {files.keras} was trained with other settings or data "
                              f"({'; '.join(differences)}). Train without --resume to start again.")


def _fit(work, files, spec, features, train_caps, dev_caps, vocab, settings, epochs, resume, verbose, strategy,
         tensorboard):
    """Build the decoder under the strategy, fit it, and record each checkpoint in its .json as it is saved."""
    import keras

    from helpers.machinery.device import precision_policy
    from helpers.machinery.files import save_model
    from helpers.training import make_dataset, precision, set_seed, strategy_for, strategy_name, train_model

    set_seed(settings["seed"])
    distribution = strategy_for(strategy)
    policy = precision_policy()  # mixed precision on a GPU with tensor cores, float32 elsewhere
    if resume and files.record.exists() and (before := files.read_record().get("precision", "float32")) != policy:
        print(f"Note: {files.keras} was trained in {before} and this machine trains in {policy} (another device): the "
              "weights go on from the checkpoint, the optimizer's running averages start again.")
    normaliser = spec.statistics(features, list(train_caps), settings["grid_pool"])
    with distribution.scope(), precision(policy):  # variables are made once per device, kept in sync
        model = spec.build(len(vocab), feature_dim=features.row_shape[-1], units=settings["units"],
                           embedding_dim=settings["units"], dropout=settings["dropout"],
                           learning_rate=settings["learning_rate"], **normaliser)
    batch_size, seed = settings["batch_size"], settings["seed"]
    train_ds = make_dataset(train_caps, features, vocab, batch_size=batch_size, shuffle=True, seed=seed)
    dev_ds = make_dataset(dev_caps, features, vocab, batch_size=batch_size, shuffle=False, seed=seed)
    settings = {**settings, "strategy": strategy_name(distribution), "replicas": distribution.num_replicas_in_sync,
                "precision": policy}
    previous = json.loads(files.history.read_text(encoding="utf-8")) if resume and files.history.exists() else {}
    checkpoint = files.keras

    def record(status: str, **extra) -> None:
        write_json(files.record, {**settings, "status": status, "model_sha1": file_sha1(checkpoint), **extra})

    class HistoryFile(keras.callbacks.Callback):
        """The history after every epoch (after the checkpoint), so an interrupted run keeps its curve."""

        def __init__(self):
            super().__init__()
            self.history = {name: list(values) for name, values in previous.items()}

        def on_epoch_end(self, epoch, logs=None):
            for name, value in (logs or {}).items():
                self.history.setdefault(name, []).append(float(value))
            write_json(files.history, self.history)

    history_file = HistoryFile()
    callbacks = [history_file]
    if tensorboard is not None:  # one run per model name: curves of several models side by side
        callbacks.append(keras.callbacks.TensorBoard(Path(tensorboard) / files.name, write_graph=True))
    watched = "val_loss" if settings["monitor"] == "dev_loss" else f"val_{settings['monitor']}"
    started = time.perf_counter()
    train_model(model, train_ds, dev_ds, epochs=epochs, checkpoint_path=checkpoint, patience=settings["patience"],
                verbose=verbose, resume=resume, callbacks=callbacks, monitor=watched, save=save_model,
                score=None if watched == "val_loss" else _dev_score(settings["monitor"], features, dev_caps, vocab),
                on_save=lambda epoch, value: record("training", best_epoch=len(previous.get("loss", [])) + epoch,
                                                    best_score=value,
                                                    **({"best_val_loss": value} if watched == "val_loss" else {})))
    history = history_file.history
    sign = 1 if watched == "val_loss" else -1
    best = min(range(len(history[watched])), key=lambda epoch: sign * history[watched][epoch])
    record("complete", epochs_run=len(history["loss"]),
           epochs_this_run=len(history["loss"]) - len(previous.get("loss", [])),
           best_epoch=best + 1, best_score=history[watched][best],
           best_val_loss=history["val_loss"][best], seconds=round(time.perf_counter() - started, 1))
    return history


def _dev_score(metric: str, features: FeatureSet, dev_caps: dict[str, list[str]], vocab: Vocabulary):
    """model -> the CIDEr-D or BLEU-4 of its greedy captions of the dev split (what `monitor` watches)."""
    from helpers.decoding import decode

    keys = list(dev_caps)
    references = [dev_caps[k] for k in keys]

    def score(model) -> float:
        written = decode(model, features, vocab, keys=keys).captions
        return cider_score(references, written) if metric == "cider" else bleu_scores(references, written)["bleu4"]

    return score


def _read_model(path: str, policy: str) -> keras.Model:
    """A saved model, read from its .keras file under the dtype policy it was trained in (`policy`): a
    mixed-precision model gets its loss scaling back."""
    import keras

    from helpers.training import precision

    with precision(policy):
        return keras.models.load_model(path, safe_mode=True)


@functools.lru_cache(maxsize=4)
def _shared_model(path: str, sha1: str, policy: str) -> keras.Model:
    """`_read_model` once per checkpoint (`sha1`: a new save is read again), so that captioning a few photos at a
    time reuses the model and the search compiled for it."""
    return _read_model(path, policy)


def load_trained(work: Workspace, model_name: str = DEFAULT_MODEL, to_train: bool = False
                 ) -> tuple[keras.Model, Vocabulary, dict]:
    """A trained model, its vocabulary and settings, checked against the prepared files before use.

    The model is loaded once per checkpoint and shared; `to_train` gives a copy of its own, to change.
    """

    files = work.model(model_name)
    path, again = files.keras, files.train_command()
    if not path.exists():
        raise WorkFolderError(f"{path} is missing: run {again} (or notebook 05) first (same work folder: {work.root}).")
    resume = f"{again.rstrip('`')} --resume --out {work.root}`"
    if not files.record.exists():
        raise WorkFolderError(f"{path} has no {files.record.name} beside it (training was stopped before it recorded "
                              f"its first epoch): run {resume}.")
    config = files.read_record()
    if config["model_sha1"] != file_sha1(path):
        if damage := files.checkpoint_damage():  # not a checkpoint newer than its record: a broken file
            raise files.damaged(path, damage)
        raise WorkFolderError(f"{path} and {files.record} are from different moments of training (it was stopped "
                              f"during a save): run {resume} to continue from {path.name}, or {again} to start again.")
    captions, vocab, dataset = load_prepared(work)
    for key, name in (("vocabulary", "vocab.json"), ("captions", "captions.json")):
        if config["fingerprints"].get(key) != dataset["fingerprints"].get(key):
            raise WorkFolderError(f"{work.path(name)} changed after {path} was trained (another `prepare`, or "
                                  f"notebook 02 with another min_count): train again ({again}), or prepare the "
                                  "data the model was trained on.")
    from helpers.machinery.device import FULL

    policy = config.get("precision", FULL)  # the dtype policy it was trained in
    try:
        model = _read_model(str(path), policy) if to_train else _shared_model(str(path), config["model_sha1"], policy)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as error:
        raise files.damaged(path, f"{type(error).__name__}: {error}") from error
    if config.get("status") == "training":
        print(f"Note: {path} holds epoch {config.get('best_epoch')} of a training run that did not finish; "
              f"{resume} continues it.")
    _note_pictures_changed(work, config, captions, path, again)
    return model, vocab, config


def _note_pictures_changed(work: Workspace, config: dict, captions: dict, path: Path, again: str) -> None:
    """Say so when `features` has encoded train or dev pictures again since the model learned from the old ones."""
    setting = CacheSetting(config["encoder"], config["weights"], config["image_size"], config["pooling"])
    if "pictures" not in config or not (work.path(setting.name) / INDEX).is_file():
        return  # trained before the course recorded its pictures, or no features here (an archive folder)
    features = read_cache(work.path(setting.name))
    keys = [key for split in ("train", "dev") for key in captions[split] if key in features]
    if pictures_fingerprint(features, keys) != config["pictures"]:
        print(f"Note: {path} was trained on the old pictures: `features` has encoded train or dev pictures again "
              f"since (changed ones, or ones that had no features). Train again ({again}) to learn from them.")


def trained_features(work: Workspace, config: dict, keys: list[str]) -> FeatureSet:
    """The cached features a trained model reads, for `keys`, refusing pictures changed since they were encoded."""
    setting = CacheSetting(config["encoder"], config["weights"], config["image_size"], config["pooling"])
    features = read_cache(work.path(setting.name)).subset(keys)
    images = images_of(work)
    changed = [k for k in features if k in features.pictures and picture_changed(images[k], features.pictures[k])]
    if changed:
        raise WorkFolderError(f"{len(changed)} picture(s) changed since their features were computed, e.g. "
                              f"{images[changed[0]]}: run `python -m helpers features --out {work.root}` (it encodes "
                              "changed pictures again), then this command again.")
    return features


@stage("evaluate", LOWER_MEMORY["evaluate"])
def evaluate(work: Workspace, split: str = "test", beam_width: int = 1, meteor: bool = False,
             model_name: str = DEFAULT_MODEL, sampling: Sampling | None = None) -> dict:
    """BLEU-1..4, CIDEr-D and ROUGE-L of generated captions on a split (greedy, beam or sampled captions), beside the
    human baseline, the floor, how repetitive and how new the captions are.

    The model's and the floor's scores are against all the references of each image ("bleu1", ..., "floor"); the
    human baseline ("human") is each reference in turn against the others, and "like_for_like" holds the model and
    the floor against those same references, averaged over the rounds in the same way (`like_for_like`).
    CIDEr-D is None without the `eval` extra; METEOR only with `meteor=True` (None without the extra or Java:
    it starts a Java process that takes about 10 s and 2 GB of memory, so it is asked for).
    """
    from helpers.decoding import check_beam_width, decode

    if split not in ("train", "dev", "test"):
        raise SettingError(f"Unknown split {split!r}: choose train, dev or test.")
    model, vocab, config = load_trained(work, model_name)
    check_beam_width(beam_width, vocab)
    captions = work.read_json("captions.json")
    features = trained_features(work, config, list(captions[split]))
    references, missing = with_features(captions[split], features)
    if not references:
        raise WorkFolderError(f"No image of the {split} split has features: run `python -m helpers features` first.")
    keys = list(references)
    hypotheses = decode(model, features, vocab, beam_width, keys=keys, sampling=sampling).captions
    refs = [references[k] for k in keys]
    floor, times = most_frequent_caption(captions["train"])
    scores = like_for_like(refs, {"model": hypotheses, "floor": [floor] * len(refs)}, meteor=meteor)
    same = scores["same_as_human"]
    result = {"split": split, "images": len(keys), "images_without_features": missing, "beam_width": beam_width,
              "sampling": asdict(sampling) if sampling else None,
              "decoder": config["decoder"], "encoder": config["encoder"], "weights": config["weights"],
              **scores["all"]["model"], "human": same["human"],
              "floor": {"caption": floor, "times_in_train": times, **scores["all"]["floor"]},
              "like_for_like": {"rounds": scores["rounds"], "model": same["model"], "floor": same["floor"]},
              "repetition": repetition_stats(hypotheses, vocab), **novelty(hypotheses, captions["train"]),
              "captions": dict(zip(keys, hypotheses, strict=True))}
    write_json(work.model(model_name).evaluation(split, beam_width, sampling), result)
    return result


def encode_photos(work: Workspace, config: dict, paths: list[str | Path]) -> tuple[dict[str, Path], FeatureSet]:
    """Any image files encoded for a trained model's settings: (name -> file, their FeatureSet).

    The features are cached in the work folder's `photos/` cache, keyed by each file's full path; a photo
    replaced under the same name is encoded again. Unreadable files are in the FeatureSet's `failed`.
    """
    images = {str(Path(p)): Path(p).expanduser().resolve() for p in paths}
    setting = CacheSetting(config["encoder"], config["weights"], config["image_size"], config["pooling"])
    found = extract_features(images, work.path("photos") / setting.name, encoder=setting.encoder,
                             weights=config.get("weights_source", config["weights"]), image_size=setting.image_size,
                             pooling=setting.pooling, progress=False, store=feature_store())
    return images, found


def shipped_answers(work: Workspace, model_name: str = DEFAULT_MODEL) -> dict | None:
    """The record of the captioner that ships with the course where it answers for `model_name` (the default model,
    not trained in this work folder yet), else None: `load_captioner`'s choice."""
    from helpers.machinery.shipped_captioner import shipped_record

    if model_name != DEFAULT_MODEL or work.model(model_name).keras.exists():
        return None
    return shipped_record()


def load_captioner(work: Workspace, model_name: str = DEFAULT_MODEL) -> tuple[keras.Model, Vocabulary, dict]:
    """`load_trained`; where the work folder has no model yet and the default one is asked for, the captioner that
    ships with the course (saying so)."""
    from helpers.machinery.shipped_captioner import load_shipped, shipped_note

    if (record := shipped_answers(work, model_name)) is not None:
        print(shipped_note(record))
        return load_shipped()
    return load_trained(work, model_name)


@stage("caption", LOWER_MEMORY["caption"])
def caption_files(work: Workspace, paths: list[str | Path], beam_width: int = 1, model_name: str = DEFAULT_MODEL,
                  sampling: Sampling | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Caption any image files with the trained model (or the shipped one): (path -> caption, path -> why it could
    not be read)."""
    from helpers.decoding import check_beam_width, decode

    model, vocab, config = load_captioner(work, model_name)
    check_beam_width(beam_width, vocab)
    images, found = encode_photos(work, config, paths)
    keys = [k for k in images if k in found]
    captions = decode(model, found, vocab, beam_width, keys=keys, sampling=sampling).captions if keys else []
    return dict(zip(keys, captions, strict=True)), found.failed
