"""`python -m bench [--quick] [--only NAME] [--out DIR]`: measure every stage, course vs baseline, print a table."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")

STAGES = ("features", "training", "decoding", "memory", "fixture")

# Sizes of each measurement: full (about 15-20 min on 2 cores) and --quick (under 5 min).
SIZES = {
    "full": {"features": {"course_images": 256, "baseline_images": 32},
             "training": {"images": 6000, "course_steps": None, "baseline_images": 100, "lever_steps": 150},
             "decoding": {"images": 512, "loop_images": 3},
             "memory": {"images": 6000, "steps": 100, "generator_steps": 30},
             "fixture": {"nbval": True}},
    "quick": {"features": {"course_images": 32, "baseline_images": 6},
              "training": {"images": 6000, "course_steps": 30, "baseline_images": 12, "lever_steps": 25},
              "decoding": {"images": 64, "loop_images": 1},
              "memory": {"images": 1000, "steps": 10, "generator_steps": 5},
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
    parser.add_argument("--only", choices=STAGES, action="append", help="run only this stage (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="folder for results.json and results.md (default: bench/results/)")
    args = parser.parse_args(argv)
    from bench import report

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
