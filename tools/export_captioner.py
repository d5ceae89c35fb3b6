"""Write a trained model of a work folder as the captioner that ships with the course (`helpers/captioner/`).

    python tools/export_captioner.py WORK [--model NAME] [--beam K] --trained-on "Flickr8k's 6,000 train photos ..."

It writes the model's weights in float16 (not its optimizer's state: `float16_weights.py`), its vocabulary,
and its record: the settings it is built from, what it was trained on, and what it scored (the work folder's
saved `evaluate` of the test split at beam width K, which must exist: run `python -m helpers evaluate --beam K`
first). Run it once, on the model the real-data benchmark chose on the dev split; the folder is committed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from float16_weights import save_float16

ROOT = Path(__file__).resolve().parents[1]
NOTICE = """The captioner that ships with the image-captioning course

{decoder} decoder trained by the course on {trained_on}, with {encoder} features ({weights} weights).
Flickr8k (Hodosh, Young and Hockenmaier, 2013) is licensed for research and teaching use only: so is this
model, which was trained on its captions. No photo or caption of Flickr8k is in this folder; the vocabulary is
the words of its train captions seen at least {min_count} times.

Scored on Flickr8k's official test split ({images:,} photos, beam width {beam_width}): BLEU-1..4 {bleu1:.3f} /
{bleu2:.3f} / {bleu3:.3f} / {bleu4:.3f}, CIDEr-D {cider:.3f}. Exported {date} by tools/export_captioner.py.
"""


def export(work_dir: Path, model_name: str, beam_width: int, trained_on: str, out: Path) -> list[Path]:
    """The float16 weights, the vocabulary, the record and the NOTICE of a trained model, written into `out`."""
    from helpers.machinery.files import fingerprint, write_json
    from helpers.machinery.pipeline import load_trained
    from helpers.machinery.shipped_captioner import RECORD, VOCABULARY, WEIGHTS, build_from_record
    from helpers.machinery.workspace import Workspace

    work = Workspace(work_dir)
    model, vocab, config = load_trained(work, model_name)
    scored = work.model(model_name).evaluation("test", beam_width)
    if not scored.is_file():
        raise SystemExit(f"error: {scored} is missing: run `python -m helpers evaluate --beam {beam_width} --model "
                         f"{model_name} --out {work_dir}` first.")
    result = json.loads(scored.read_text(encoding="utf-8"))
    scores = {key: result[key] for key in ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "meteor", "images",
                                           "beam_width", "split")}
    settings = ("decoder", "encoder", "weights", "weights_source", "image_size", "pooling", "units", "dropout",
                "learning_rate", "grid_pool", "max_length", "seed", "best_epoch", "epochs_run")
    record = {**{key: config[key] for key in settings}, "feature_dim": int(model.input["image"].shape[-1]),
              "vocab_size": len(vocab), "fingerprints": {"vocabulary": fingerprint(vocab.as_json())},
              "trained_on": trained_on,
              "min_count": work.read_json("dataset.json").get("min_count"), "scores": scores,
              "exported": datetime.date.today().isoformat()}
    out.mkdir(parents=True, exist_ok=True)
    shipped = build_from_record(record)  # the weights only: not the optimizer's state, which training kept
    shipped.set_weights(model.get_weights())
    save_float16(shipped, out / WEIGHTS)
    write_json(out / VOCABULARY, vocab.as_json())
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (out / "NOTICE").write_text(NOTICE.format(**record, **scores, date=record["exported"]), encoding="utf-8")
    return [out / WEIGHTS, out / VOCABULARY, out / RECORD, out / "NOTICE"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="the work folder of the trained model")
    parser.add_argument("--model", default="model", help="which model of the work folder (default: model)")
    parser.add_argument("--beam", type=int, default=3, help="the beam width whose test scores the record quotes")
    parser.add_argument("--trained-on", required=True, help="what it was trained on, in a few words")
    parser.add_argument("--out", type=Path, default=ROOT / "helpers" / "captioner", help="folder to write to")
    args = parser.parse_args(argv)
    for path in export(args.work, args.model, args.beam, args.trained_on, args.out):
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
