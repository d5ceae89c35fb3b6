"""`python -m helpers`: the whole course pipeline from a terminal, over the same functions the notebooks use."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

from helpers import pipeline
from helpers.paths import default_work_dir
from helpers.workspace import Workspace

def _print_prepare(summary: dict) -> None:
    """A readable account of what `prepare` loaded and dropped."""
    s = summary["splits"]
    print(f"Loaded {summary['images']} images, {summary['captions']} captions ({summary['layout']} layout) "
          f"from {summary['data_dir']}")
    print(f"Split: {s['train']} train / {s['dev']} dev / {s['test']} test, {summary['unsplit_images']} in no split")
    print(f"Vocabulary: {summary['vocab_size']} tokens (min_count {summary['min_count']}), longest train caption "
          f"{summary['max_length']} words, {summary['dev_unknown_rate']:.1%} of dev words unknown")
    for note in summary["notes"]:
        print(f"  note: {note}")
    for row in summary["skipped"][:10]:
        print(f"  skipped {row['file']} {row['item']}: {row['reason']}")
    if len(summary["skipped"]) > 10:
        print(f"  ... and {len(summary['skipped']) - 10} more (see --json)")


def _print_evaluation(result: dict) -> None:
    """BLEU beside the human baseline, and CIDEr-D / METEOR where they were computed."""
    print(f"BLEU on {result['images']} {result['split']} images (beam width {result['beam_width']}, "
          f"encoder weights: {result['weights']}):")
    for k in ("bleu1", "bleu2", "bleu3", "bleu4"):
        print(f"  {k.upper()}: model {result[k]:.3f}   one human vs the other four {result['human'][k]:.3f}")
    for k, name in (("cider", "CIDEr-D"), ("meteor", "METEOR")):
        if result.get(k) is not None:
            print(f"  {name}: model {result[k]:.3f}")
    rep = result["repetition"]
    print(f"  {rep['repeated_word_share']:.0%} of captions repeat a word; {rep['distinct_words']} distinct words used")


def cmd_prepare(args: argparse.Namespace) -> dict:
    summary = pipeline.prepare(Workspace(args.out), args.data, min_count=args.min_count)
    _print_prepare(summary)
    return summary


def cmd_features(args: argparse.Namespace) -> dict:
    found = pipeline.extract(Workspace(args.out), args.weights, args.image_size, args.batch_size)
    print(f"{len(found.features)} images have features ({found.meta['weights']} weights); {len(found.failed)} failed")
    return {"images": len(found.features), "failed": found.failed, **found.meta}


def cmd_train(args: argparse.Namespace) -> dict:
    work = Workspace(args.out)
    history = pipeline.train(work, args.weights, args.image_size, epochs=args.epochs, batch_size=args.batch_size,
                             units=args.units, patience=args.patience, seed=args.seed, resume=args.resume,
                             strategy=args.strategy,
                             verbose="auto" if sys.stdout.isatty() else 2)  # one line an epoch in logs
    best = min(history["val_loss"])
    print(f"Trained {len(history['loss'])} epochs; best dev loss {best:.3f}; model saved to {work.path('model.keras')}")
    return {"epochs": len(history["loss"]), "best_val_loss": best}


def cmd_evaluate(args: argparse.Namespace) -> dict:
    result = pipeline.evaluate(Workspace(args.out), args.split, args.beam, meteor=args.meteor)
    _print_evaluation(result)
    return result


def cmd_caption(args: argparse.Namespace) -> dict:
    paths = [p for arg in args.images for p in (sorted(Path(arg).glob("*")) if Path(arg).is_dir() else [Path(arg)])]
    captions, failed = pipeline.caption_files(Workspace(args.out), paths, args.beam)
    for name, caption in captions.items():
        print(f"{name}: {caption}")
    for name, reason in failed.items():
        print(f"{name}: could not be read ({reason})", file=sys.stderr)
    return {"captions": captions, "failed": failed}


def cmd_run(args: argparse.Namespace) -> dict:
    work = Workspace(args.out)
    summary = cmd_prepare(args)
    found = pipeline.extract(work, args.weights, args.image_size, args.batch_size, progress=not args.json)
    cmd_train(args)
    result = cmd_evaluate(args)
    untrained = pipeline.untrained_bleu(work, "test", args.seed)
    print(f"An untrained model scores BLEU-1 {untrained['bleu1']:.3f} on the same images.")
    shown = dict(list(result["captions"].items())[:args.show])
    references = work.read_json("captions.json")[args.split]
    for name, caption in shown.items():
        print(f"\n{name}\n  model: {caption}\n  human: {references[name][0]}")
    return {"prepare": summary, **{k: result[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "meteor", "human")},
            "untrained": untrained, "captions": shown}


def cmd_fixture(args: argparse.Namespace) -> dict:
    from helpers.fixture import make_fixture
    from helpers.paths import fixture_dir

    out = make_fixture(args.out if args.out_given else fixture_dir())
    print(f"Fixture written to {out}")
    return {"fixture": str(out)}


def _what_was_saved(args: argparse.Namespace) -> str:
    """After Ctrl-C: what the interrupted command kept on disk, and how to go on."""
    work = Workspace(args.out)
    if args.command in ("train", "run") and work.path("model.json").is_file() \
            and work.read_json("model.json").get("interrupted"):
        return (f"the best epoch so far is saved in {work.path('model.keras')}. Continue from it with "
                f"`python -m helpers train --resume --out {args.out}` (or train(..., resume=True) in Python).")
    if args.command in ("features", "run") and any(work.root.glob("xception_*.npz")):
        return (f"the features computed so far are saved in {work.root}; run the same command again "
                "to finish the others.")
    return "nothing new was saved; run the command again."


def _parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=None, help="work folder (default: ./work in the course repo)")
    common.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", type=Path, default=None, help="Flickr8k folder, either layout (default: the fixture)")
    data.add_argument("--min-count", type=int, default=pipeline.MIN_COUNT, help="keep words seen at least this often in train")
    enc = argparse.ArgumentParser(add_help=False)
    enc.add_argument("--weights", default="auto",
                     help="imagenet, none (untrained) or a local .h5 file (default: none on the fixture, else imagenet)")
    enc.add_argument("--image-size", type=int, default=299)
    enc.add_argument("--batch-size", type=int, default=32, help="images per encoder batch")
    fit = argparse.ArgumentParser(add_help=False)
    fit.add_argument("--epochs", type=int, default=pipeline.EPOCHS)
    fit.add_argument("--units", type=int, default=256)
    fit.add_argument("--patience", type=int, default=3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--resume", action="store_true", help="start from the saved checkpoint")
    fit.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored"),
                     help="tf.distribute strategy: auto = mirrored on 2+ GPUs, else default (--batch-size is global)")
    beam = argparse.ArgumentParser(add_help=False)
    beam.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy)")
    split = argparse.ArgumentParser(add_help=False)
    split.add_argument("--split", default="test", choices=("train", "dev", "test"))
    split.add_argument("--meteor", action="store_true", help="also METEOR (needs the eval extra and Java; ~10 s)")

    sub.add_parser("prepare", parents=[common, data], help="load, clean, split, build the vocabulary").set_defaults(func=cmd_prepare)
    sub.add_parser("features", parents=[common, enc], help="extract Xception features (cached, resumable)").set_defaults(func=cmd_features)
    sub.add_parser("train", parents=[common, enc, fit], help="train the LSTM decoder").set_defaults(func=cmd_train)
    sub.add_parser("evaluate", parents=[common, beam, split], help="BLEU-1..4 on a split").set_defaults(func=cmd_evaluate)
    cap = sub.add_parser("caption", parents=[common, beam], help="caption image files or folders")
    cap.add_argument("images", nargs="+", type=Path)
    cap.set_defaults(func=cmd_caption)
    run = sub.add_parser("run", parents=[common, data, enc, fit, beam, split], help="the whole pipeline")
    run.add_argument("--show", type=int, default=3, help="test captions to print")
    run.set_defaults(func=cmd_run)
    sub.add_parser("fixture", parents=[common], help="regenerate the shipped fixture (deterministic; --out to write elsewhere)").set_defaults(func=cmd_fixture)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; problems with the user's files end in a message, not a traceback."""
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"  # no source lines
    args = _parser().parse_args(argv)
    args.out_given = args.out is not None
    args.out = args.out or default_work_dir()
    try:
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # keep stdout pure JSON
            result = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_what_was_saved(args)}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=1))
    return 0
