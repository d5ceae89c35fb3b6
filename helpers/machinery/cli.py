"""`python -m helpers`: the whole course pipeline from a terminal, over the same functions the notebooks use.

Every stage reads and writes one work folder (--out). A long stage first says which device TensorFlow runs it
on. A problem with your data, files or settings ends in one line that names the file and the fix (exit code 2);
Ctrl-C says what was kept and how to go on (130).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import sys
from pathlib import Path

from helpers import retrieval
from helpers.decoders import DECODERS
from helpers.encoders import AUTO, ENCODERS
from helpers.errors import CourseError, DiskFullError
from helpers.fine_tune import FINE_TUNE_LEARNING_RATE
from helpers.images import find_image_files
from helpers.machinery import pipeline, search_stage
from helpers.machinery.device import device_line, gpus
from helpers.machinery.files import is_disk_full
from helpers.machinery.fine_tune_stage import fine_tune
from helpers.machinery.layouts.base import printable
from helpers.machinery.paths import default_work_dir, fixture_dir, is_fixture_folder
from helpers.machinery.prepare import MIN_COUNT, prepare
from helpers.machinery.workspace import Workspace


def _print_prepare(summary: dict) -> None:
    """A readable account of what `prepare` loaded and dropped."""
    s = summary["splits"]
    print(f"Loaded {summary['images']:,} images, {summary['captions']:,} captions ({summary['layout']} layout) "
          f"from {summary['data_dir']}")
    print(f"Split: {s['train']:,} train / {s['dev']:,} dev / {s['test']:,} test, "
          f"{summary['unsplit_images']} in no split")
    print(f"Vocabulary: {summary['vocab_size']:,} tokens (min_count {summary['min_count']}), longest train caption "
          f"{summary['max_length']} words, {summary['dev_unknown_rate']:.1%} of dev words unknown")
    for note in summary["notes"]:
        print(f"  note: {note}")
    for row in summary["skipped"][:10]:
        print(f"  skipped {printable(row['file'])} {row['item']}: {row['reason']}")
    if len(summary["skipped"]) > 10:
        print(f"  ... and {len(summary['skipped']) - 10} more (see --json)")


LONG_STAGES = ("features", "train", "evaluate", "run")  # the commands that first say which device runs them
EVALUATION_METRICS = (("bleu1", "BLEU-1"), ("bleu2", "BLEU-2"), ("bleu3", "BLEU-3"), ("bleu4", "BLEU-4"),
                      ("cider", "CIDEr-D"), ("rouge_l", "ROUGE-L"), ("meteor", "METEOR"))


def _print_evaluation(result: dict) -> None:
    """Every metric of the model beside the human baseline and the floor, each column saying what it compares, and
    the captions' variety."""
    same, floor = result["like_for_like"], result["floor"]
    n, each = same["rounds"], same["rounds"] - 1
    computed = [name for key, name in EVALUATION_METRICS[4:] if result.get(key) is not None]
    how = f"sampled ({result['sampling']})" if result.get("sampling") else f"beam width {result['beam_width']}"
    print(f"BLEU on {result['images']} {result['split']} images{''.join(f', {name}' for name in computed)} "
          f"({result['decoder']} decoder, {result['encoder']} features with {result['weights']} weights, {how}):")
    columns = {("model", f"vs all {n} refs"): result, ("model", f"vs the human's {each}"): same["model"],
               ("human", f"vs the other {each}"): result["human"], ("floor", f"vs all {n} refs"): floor,
               ("floor", f"vs the human's {each}"): same["floor"]}
    for line in range(2):
        print(f"  {'':8}" + "".join(f"{name[line]:>18}" for name in columns))
    for key, name in EVALUATION_METRICS:
        if result.get(key) is not None:
            print(f"  {name:8}" + "".join(f"{scores[key]:>18.3f}" for scores in columns.values()))
    print(f"  (human: each of an image's {n} captions in turn, scored against the other {each}; model and floor vs "
          f"the human's {each}:\n   against those same {each} in each round; each averaged over the {n} rounds)")
    print(f"  (floor: the most frequent train caption, {floor['caption']!r}, written for every image)")
    rep = result["repetition"]
    print(f"  {rep['distinct_caption_share']:.0%} of captions are distinct; {result['novel_share']:.0%} are not a "
          f"train caption word for word; {rep['repeated_word_share']:.0%} repeat a word; {rep['distinct_words']} "
          f"distinct words used ({rep['vocabulary_used_share']:.0%} of the vocabulary)")


def cmd_prepare(args: argparse.Namespace) -> dict:
    summary = prepare(Workspace(args.out), args.data, min_count=args.min_count)
    _print_prepare(summary)
    return summary


def _extract(args: argparse.Namespace, pooling: str):
    return pipeline.extract(Workspace(args.out), args.encoder, args.weights, args.image_size, pooling,
                            args.image_batch_size, progress=not args.json)


def cmd_features(args: argparse.Namespace) -> dict:
    found = _extract(args, "none" if args.grid else "avg")
    print(f"{len(found)} images have {found.meta['encoder']} features ({found.meta['weights']} weights, "
          f"{'grids' if args.grid else 'vectors'} of {tuple(found.row_shape)}); {len(found.failed)} could not be read")
    return {"images": len(found), "failed": found.failed, **found.meta}


def cmd_train(args: argparse.Namespace) -> dict:
    work = Workspace(args.out)
    if args.fine_tune and DECODERS[args.decoder].pooling != "avg":
        raise CourseError(f"--fine-tune trains the merge or inject decoder, not {args.decoder} (it reads the "
                          "encoder's grid, which the course keeps frozen): choose --decoder merge or inject.")
    pipeline.train(work, args.decoder, args.encoder, args.weights, args.image_size, epochs=args.epochs,
                   batch_size=args.batch_size, units=args.units, patience=args.patience, seed=args.seed,
                   resume=args.resume, strategy=args.strategy, model_name=args.model, grid_pool=args.grid_pool,
                   tensorboard=args.tensorboard, monitor=args.monitor,
                   verbose="auto" if sys.stdout.isatty() else 2)  # one line an epoch in logs
    files = work.model(args.model)
    config = json.loads(files.record.read_text(encoding="utf-8"))
    ran, total = config["epochs_this_run"], config["epochs_run"]
    watched = {"cider": "dev CIDEr-D", "bleu4": "dev BLEU-4"}.get(config.get("monitor"))
    best = f"best {watched} {config['best_score']:.3f} (dev loss {config['best_val_loss']:.3f})" if watched else \
        f"best dev loss {config['best_val_loss']:.3f}"
    print(f"Trained {ran} epoch{'s' if ran != 1 else ''}{f' ({total} in all)' if total != ran else ''}; {best} "
          f"(epoch {config['best_epoch']}); model saved to {files.keras}")
    result = {"epochs": ran, "epochs_in_all": total, "best_val_loss": config["best_val_loss"],
              "best_epoch": config["best_epoch"], "monitor": config.get("monitor", "dev_loss"),
              "best_score": config.get("best_score", config["best_val_loss"])}
    if args.fine_tune:
        history = fine_tune(work, args.model, args.fine_tune_epochs, args.fine_tune_learning_rate,
                            args.fine_tune_batch_size, verbose="auto" if sys.stdout.isatty() else 2)
        record = json.loads(files.record.read_text(encoding="utf-8"))
        config = record["fine_tune"]
        print(f"Fine-tuned {config['epochs_run']} epochs with the encoder's last block unfrozen "
              f"({config['trainable_encoder_weights']:,} weights); best dev loss {config['best_val_loss']:.3f}; "
              f"encoder saved to {record['weights_source']}")
        result["fine_tune"] = {**config, "val_loss": history["val_loss"]}
    return result


def cmd_evaluate(args: argparse.Namespace) -> dict:
    if args.retrieval:
        result = search_stage.retrieval_scores(Workspace(args.out), args.split, model_name=args.model)
        print(search_stage.retrieval_table(result))
        return result
    return _evaluate_captions(args)


def _sampling(args: argparse.Namespace):
    """The Sampling the options ask for (any of --temperature, --top-k, --top-p), or None: greedy or beam search."""
    from helpers.decoding import Sampling

    if args.temperature is None and args.top_k is None and args.top_p is None:
        return None
    return Sampling(1.0 if args.temperature is None else args.temperature, args.top_k,
                    1.0 if args.top_p is None else args.top_p, args.sample_seed)


def _evaluate_captions(args: argparse.Namespace) -> dict:
    result = pipeline.evaluate(Workspace(args.out), args.split, args.beam, meteor=args.meteor, model_name=args.model,
                               sampling=_sampling(args))
    _print_evaluation(result)
    return result


def cmd_caption(args: argparse.Namespace) -> dict:
    paths, problems = find_image_files(args.images)
    work = Workspace(args.out)
    captions, failed = pipeline.caption_files(work, paths, args.beam, args.model,
                                              _sampling(args)) if paths else ({}, {})
    for name, caption in captions.items():
        print(f"{printable(name)}: {caption}")
    if captions and (note := _fixture_model_note(work, args.model, list(captions))):
        print(note, file=sys.stderr)
    for line in problems + [f"{printable(name)}: could not be read ({reason})" for name, reason in failed.items()]:
        print(line, file=sys.stderr)
    if not captions:
        raise CourseError("No image was captioned: give image files or folders of them "
                          f"(e.g. python -m helpers caption {fixture_dir() / 'Images'}).")
    return {"captions": captions, "failed": failed, "problems": problems}


def _fixture_model_note(work: Workspace, model_name: str, captioned: list[str]) -> str | None:
    """A note when the work folder's model learnt the fixture's synthetic scenes and captioned other pictures: it
    describes them in the fixture's words (coloured shapes on grass, sand or snow)."""
    if pipeline.shipped_answers(work, model_name) is not None:
        return None
    data = Path(work.model(model_name).read_record()["data_dir"]).resolve()
    if not is_fixture_folder(data) or all(Path(p).resolve().is_relative_to(data) for p in captioned):
        return None
    return (f"Note: {work.model(model_name).keras} learnt only the fixture's synthetic scenes (coloured shapes on "
            "grass, sand or snow), so its captions of other pictures mean little. For photos, the captioner that "
            "ships with the course (trained on Flickr8k) answers in a work folder with no model yet: add --out and a "
            "new folder's name.")


def cmd_search(args: argparse.Namespace) -> dict:
    paths, problems = find_image_files(args.images) if args.images else (None, [])
    if args.images and not paths:
        raise CourseError(f"No image to search ({'; '.join(problems)}): give image files or folders of them.")
    result = search_stage.search(Workspace(args.out), args.query, paths, args.top, args.normalisation, args.model)
    print(search_stage.search_table(result))
    for line in problems + [f"{printable(name)}: could not be read ({why}), skipped" for name, why in
                            result["failed"].items()]:
        print(line, file=sys.stderr)
    return result


def cmd_run(args: argparse.Namespace) -> dict:
    work = Workspace(args.out)
    summary = cmd_prepare(args)
    _extract(args, DECODERS[args.decoder].pooling)
    cmd_train(args)
    result = _evaluate_captions(args)
    shown = dict(list(result["captions"].items())[:args.show])
    references = work.read_json("captions.json")[args.split]
    for key, caption in shown.items():
        print(f"\n{printable(key)}\n  model: {caption}\n  human: {references[key][0]}")
    scores = {k: result[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "meteor", "human", "floor")}
    return {"prepare": summary, **scores, "captions": shown}


def cmd_demo(args: argparse.Namespace) -> dict:
    from helpers.machinery.demo import CaptionDemo, launch

    try:  # before the model is loaded: seconds a learner without Gradio would wait for nothing
        import gradio  # noqa: F401
    except ImportError:
        raise CourseError("The demo needs Gradio, which the course installs as an extra: "
                          "pip install -e \".[demo]\" (in the course's folder), then run this again.") from None
    demo = CaptionDemo(Workspace(args.out), args.model)  # no trained model: a WorkFolderError that says what to run
    try:
        launch(demo, args.port, args.share)
    except OSError as error:
        raise CourseError(f"Cannot serve on port {args.port} ({error}): choose another with --port.") from None
    return {}


def cmd_fixture(args: argparse.Namespace) -> dict:
    from helpers.machinery.fixture import make_fixture

    out = make_fixture(args.folder)
    print(f"Fixture written to {out}")
    return {"fixture": str(out)}


def _what_was_saved(args: argparse.Namespace) -> str:
    """After Ctrl-C: what the interrupted command kept on disk, and how to go on."""
    work = Workspace(args.out)
    files = work.model(getattr(args, "model", "model"))
    if args.command in ("train", "run") and files.record.is_file():
        config = json.loads(files.record.read_text(encoding="utf-8"))
        if config.get("status") == "training":
            return (f"the best epoch so far (epoch {config.get('best_epoch')}) is saved in {files.keras}. "
                    f"Continue from it with {files.train_command().rstrip('`')} --resume --out {args.out}` (or "
                    "train(..., resume=True) in Python).")
    if args.command in ("features", "run") and any(work.root.glob("*/index.json")):
        return (f"the features computed so far are saved in {work.root}; run the same command again to finish "
                "the others.")
    return "nothing new was saved; run the command again."


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    """All subcommands and their options, each with its help and its default."""
    formatter = _DefaultsFormatter
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=None,
                        help=f"work folder (default: $COURSE_WORK_DIR, else {default_work_dir()})")
    common.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("--model", default="model",
                       help="which trained model of the work folder: NAME.keras (model.keras by default)")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", type=Path, default=None,
                      help="dataset folder in any layout the course reads (default: the shipped fixture)")
    data.add_argument("--min-count", type=_positive, default=MIN_COUNT,
                      help="keep the words seen at least this often in the train captions")
    enc = argparse.ArgumentParser(add_help=False)
    enc.add_argument("--encoder", default=AUTO, choices=(AUTO, *ENCODERS),
                     help="the pretrained CNN; auto: xception where its ImageNet weights can be downloaded, else "
                          "(and on the fixture) mobilenet_v2, whose ImageNet weights ship with the course")
    enc.add_argument("--weights", default=AUTO,
                     help="imagenet, none (untrained) or a local .h5 file; auto: imagenet (none for an encoder named "
                          "on the fixture whose weights would need a download)")
    enc.add_argument("--image-size", type=_positive, default=None,
                     help="the encoder's input size in pixels (default: its own, 299 for xception, 224 for "
                          "mobilenet_v2)")
    images = argparse.ArgumentParser(add_help=False)
    images.add_argument("--image-batch-size", type=_positive, default=32,
                        help="images per encoder call (lower it if memory runs out)")
    fit = argparse.ArgumentParser(add_help=False)
    fit.add_argument("--decoder", default="merge", choices=tuple(DECODERS),
                     help="merge, init-inject, or soft attention over the encoder's grid")
    fit.add_argument("--epochs", type=_positive, default=pipeline.EPOCHS,
                     help="the most epochs to train; early stopping usually ends sooner")
    fit.add_argument("--batch-size", type=_positive, default=64, help="captions per training batch")
    fit.add_argument("--units", type=_positive, default=256, help="size of the word vectors, the LSTM and dense layers")
    fit.add_argument("--patience", type=_positive, default=3,
                     help="stop after this many epochs without a better dev loss")
    fit.add_argument("--seed", type=int, default=0, help="seed of every random choice (same seed, same model)")
    fit.add_argument("--grid-pool", type=_positive, default=1,
                     help="attention: average blocks of this many cells a side first (2: a 10 x 10 grid -> 5 x 5)")
    fit.add_argument("--monitor", default="dev_loss", choices=pipeline.MONITORS,
                     help="what early stopping watches: the teacher-forced dev loss, or the CIDEr-D or BLEU-4 of "
                          "the greedy dev captions (computed after every epoch)")
    fit.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                     help="also write TensorBoard logs there (then: tensorboard --logdir DIR)")
    fit.add_argument("--resume", action="store_true", help="continue from the saved checkpoint")
    fit.add_argument("--fine-tune", action="store_true",
                     help="then train the encoder's last block too, end to end from the images (merge, inject)")
    fit.add_argument("--fine-tune-epochs", type=_positive, default=5, help="the most epochs of that second stage")
    fit.add_argument("--fine-tune-learning-rate", type=float, default=FINE_TUNE_LEARNING_RATE,
                     help="its learning rate (a tenth of the first stage's)")
    fit.add_argument("--fine-tune-batch-size", type=_positive, default=16,
                     help="images per fine-tuning step (each with its 5 captions)")
    fit.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored"),
                     help="tf.distribute strategy: auto = mirrored on 2+ GPUs, else default (--batch-size is global)")
    beam = argparse.ArgumentParser(add_help=False)
    beam.add_argument("--beam", type=_positive, default=1, help="beam width (1 = greedy search)")
    beam.add_argument("--temperature", type=float, default=None,
                      help="sample each word instead, at this temperature (1: the model's own distribution)")
    beam.add_argument("--top-k", type=int, default=None, help="sample from the K likeliest words only")
    beam.add_argument("--top-p", type=float, default=None,
                      help="sample from the fewest words whose probabilities reach P (nucleus sampling)")
    beam.add_argument("--sample-seed", type=int, default=0, help="the seed of sampling (same seed, same captions)")
    split = argparse.ArgumentParser(add_help=False)
    split.add_argument("--split", default="test", choices=("train", "dev", "test"),
                       help="the split to score (report test; tune settings on dev)")
    split.add_argument("--meteor", action="store_true", help="also METEOR (needs the eval extra and Java; ~10 s)")

    def add(name: str, parents: list, help: str, func) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=parents, help=help, description=help, formatter_class=formatter)
        command.set_defaults(func=func)
        return command

    add("prepare", [common, data], "load, clean and split the captions, build the vocabulary", cmd_prepare)
    features = add("features", [common, enc], "encode every image into the feature cache (resumable)", cmd_features)
    features.add_argument("--batch-size", dest="image_batch_size", type=_positive, default=32,
                          help="images per encoder call (lower it if memory runs out)")
    features.add_argument("--grid", action="store_true",
                          help="keep the encoder's grid of vectors (for --decoder attention)")
    add("train", [common, named, enc, fit], "train a decoder on the cached features", cmd_train)
    evaluate = add("evaluate", [common, named, beam, split], "BLEU-1..4 and CIDEr-D on a split", cmd_evaluate)
    evaluate.add_argument("--retrieval", action="store_true",
                          help="instead: text-to-image retrieval (recall@1/5/10, median rank) of each caption")
    caption = add("caption", [common, named, beam], "caption image files or folders of them", cmd_caption)
    caption.add_argument("images", nargs="+", help="image files or folders (download web pictures first)")
    search = add("search", [common, named], "rank images by how well the model explains a query", cmd_search)
    search.add_argument("query", help='words to look for, e.g. "a dog running on the grass"')
    search.add_argument("images", nargs="*", help="image files or folders (default: the test split's images)")
    search.add_argument("--top", type=_positive, default=5, help="how many of the best images to show")
    search.add_argument("--normalisation", default=retrieval.DEFAULT_NORMALISATION, choices=retrieval.NORMALISATIONS,
                        help="pmi: minus the query's log-probability under an average image; image: minus each "
                             "image's mean over generic captions; none: the log-probability itself")
    run = add("run", [common, named, data, enc, images, fit, beam, split], "the whole pipeline, prepare to evaluate",
              cmd_run)
    run.add_argument("--show", type=int, default=3, help="test captions to print beside a human's")
    demo = add("demo", [common, named], "a web page to caption photos and search them (the demo extra)", cmd_demo)
    demo.add_argument("--port", type=_positive, default=7860, help="serve on http://127.0.0.1:PORT")
    demo.add_argument("--share", action="store_true", help="also a public gradio.live link (needs the internet)")
    fixture = add("fixture", [common], "regenerate the shipped fixture (deterministic)", cmd_fixture)
    fixture.add_argument("folder", nargs="?", type=Path, default=fixture_dir(), help="where to write it")
    return parser


def _file_problem(error: OSError, work: Path) -> str | None:
    """One line for a file-system error on a work-folder file (None for any other file: a bug shows its traceback)."""
    name = Path(error.filename or "")
    try:
        inside = name.resolve().is_relative_to(work.resolve())
    except OSError:
        inside = False
    if not inside:
        return None
    if is_disk_full(error):
        return str(DiskFullError(name))
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {name}: the folder is read-only for you; use --out with a folder you can write to"
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{name} is in the way: --out must be a folder, not a file"
    return f"{name}: {error.strerror}"


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none (flags, None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; problems with the user's data, files or settings end in a message, not a traceback."""
    args = _parser().parse_args(argv)
    args.out = Path(args.out or default_work_dir()).expanduser()
    try:
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # keep stdout pure JSON
            if args.command in LONG_STAGES:
                print(device_line(gpus(ask_tensorflow=True), again="run this command again"))
            result = args.func(args)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        problem = _file_problem(error, args.out)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_what_was_saved(args)}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0
