"""`python -m bench [--quick] [--only NAME] [--out DIR]`: measure every stage, course vs baseline, print a table.

Also `python -m bench --scale N`: every CLI stage and notebook on an N-image Flickr8k-shaped dataset, time,
peak memory and disk written, extrapolated to 8,091 images (bench/scale.py); and `python -m bench --flickr8k-text
CAPTIONS`: the figures the course quotes about Flickr8k's captions; and `python -m bench --real DIR`: the whole
course on a real Flickr8k folder, every stage timed with its peak memory, every model scored (bench/real.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")

STAGES = ("features", "training", "decoding", "memory", "fine_tune", "fixture")
REAL_STAGES = ("prepare", "features", "train", "fine_tune", "evaluate", "report")  # bench.real.group_of's names
RESULTS = Path(__file__).resolve().parent / "results"

# Sizes of each measurement: full (about 15-20 min on 2 cores) and --quick (under 5 min).
SIZES = {
    "full": {"features": {"course_images": 256, "baseline_images": 32},
             "training": {"images": 6000, "course_steps": None, "baseline_images": 100, "lever_steps": 150},
             "decoding": {"images": 512, "loop_images": 3},
             "memory": {"images": 6000, "steps": 100, "generator_steps": 30},
             "fine_tune": {"image_size": 299, "batch": 16, "steps": 5, "frozen_steps": 50},
             "fixture": {"nbval": True}},
    "quick": {"features": {"course_images": 32, "baseline_images": 6},
              "training": {"images": 6000, "course_steps": 30, "baseline_images": 12, "lever_steps": 25,
                           "peak_n": 2048},
              "decoding": {"images": 64, "loop_images": 1},
              "memory": {"images": 1000, "steps": 10, "generator_steps": 5},
              "fine_tune": {"image_size": 299, "batch": 16, "steps": 2, "frozen_steps": 20},
              "fixture": {"nbval": False}},
}


def run(stages=STAGES, quick: bool = False, log=print) -> dict:
    """Run the chosen measurements; returns {stage: result}."""
    import importlib

    modules = {"fixture": "bench.fixture_run"}
    results = {}
    for stage in stages:
        start = time.perf_counter()
        module = importlib.import_module(modules.get(stage, f"bench.{stage}"))
        results[stage] = module.measure(**SIZES["quick" if quick else "full"][stage])
        log(f"[bench] {stage}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: under 5 minutes")
    parser.add_argument("--only", choices=sorted({*STAGES, *REAL_STAGES}), action="append",
                        help=f"run only this stage (repeatable): {', '.join(STAGES)}; with --real: "
                             f"{', '.join(REAL_STAGES)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for results.json and results.md (default: bench/results/, with --real "
                             "bench/results/real/)")
    parser.add_argument("--flickr8k-text", type=Path, metavar="CAPTIONS",
                        help="only compute the figures the course quotes about Flickr8k's captions, from a copy of "
                             "captions.txt or Flickr8k.token.txt")
    parser.add_argument("--scale", type=int, metavar="N",
                        help="only run every CLI stage and notebook on N and N/4 synthetic Flickr8k-shaped images, "
                             "and extrapolate time and peak memory to 8,091 (bench/scale.py)")
    parser.add_argument("--scale-epochs", type=int, default=2, help="training epochs in --scale runs")
    parser.add_argument("--cli-only", action="store_true", help="--scale: the CLI stages only, not the notebooks")
    real = parser.add_argument_group("--real DIR", "the whole course on a real Flickr8k folder (bench/real.py)")
    real.add_argument("--real", type=Path, metavar="DIR",
                      help="only run every stage of the course on this Flickr8k folder (Kaggle or original layout), "
                           "score every model, and write results.json, results.md and gallery.html (resumable)")
    real.add_argument("--encoder", default="auto", help="the encoder (auto: xception where its ImageNet weights can "
                                                        "be had, else mobilenet_v2, whose weights ship)")
    real.add_argument("--image-size", type=int, default=None, help="the encoder's input size (default: its own)")
    real.add_argument("--seeds", type=int, nargs="+", help="the merge decoder's seeds (default: 0 1 2)")
    real.add_argument("--epochs", type=int, help="the most epochs of each training (default: the course's, early "
                                                 "stopping on the dev loss)")
    real.add_argument("--fine-tune-epochs", type=int,
                      help="the budget of the frozen and the fine-tuned runs from the first merge seed (default: 5)")
    real.add_argument("--limit", type=int, help="only the first N images of each split (a quick try)")
    real.add_argument("--units", type=int, help="the decoders' units (default: the course's 256)")
    real.add_argument("--no-meteor", dest="meteor", action="store_false",
                      help="leave out METEOR (on by default where Java is: about 10 s an evaluation to start it)")
    args = parser.parse_args(argv)
    if not args.real and set(args.only or ()) - set(STAGES):
        parser.error(f"--only {', '.join(sorted(set(args.only) - set(STAGES)))} is a stage of --real")
    if args.real and set(args.only or ()) - set(REAL_STAGES):
        parser.error(f"with --real, --only names one of {', '.join(REAL_STAGES)}")
    args.out = args.out or (RESULTS / "real" if args.real else RESULTS)
    from bench import report

    if args.real:
        from bench import real

        given = {key: getattr(args, key) for key in ("image_size", "epochs", "fine_tune_epochs", "limit", "units")
                 if getattr(args, key) is not None}
        if args.seeds:
            given["seeds"] = tuple(args.seeds)
        settings = real.Settings(str(args.real.resolve()), str(args.out.resolve()), args.encoder,
                                 meteor=args.meteor, **given)
        results = real.run(settings, args.only or ())
        if results is not None:
            print("\n".join(real.lines(results)))
            print(f"\nWritten: {args.out / 'results.json'}, results.md and gallery.html")
        return 0

    if args.scale:
        from bench import scale

        result = scale.measure(args.scale, epochs=args.scale_epochs, notebooks=not args.cli_only)
        args.out.mkdir(parents=True, exist_ok=True)
        result["machine"] = report.machine()
        (args.out / "scale.json").write_text(json.dumps(result, indent=1))
        (args.out / "scale.md").write_text("\n".join(scale.lines(result)) + "\n")
        print("\n".join(scale.lines(result)))
        return 0 if result["within_budget"] else 1

    if args.flickr8k_text:
        from bench import flickr8k_text

        result = flickr8k_text.measure(args.flickr8k_text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "flickr8k_text.json").write_text(json.dumps(result, indent=1))
        print("\n".join(flickr8k_text.lines(result)))
        return 0

    started = time.perf_counter()
    results = run(args.only or STAGES, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)  # the raw figures first, whatever happens to the table
    (args.out / "raw.json").write_text(json.dumps(results, indent=1, default=float))
    info = dict(report.machine(), quick=args.quick, total_s=time.perf_counter() - started)
    paths = report.write(results, args.out, info)
    print(report.markdown(report.rows(results), info).split("\n\n", 1)[0])
    print(report.text_table(report.rows(results)))
    print(f"\nWritten: {paths['json']} and {paths['markdown']} ({info['total_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
