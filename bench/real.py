"""The whole course on a real Flickr8k folder: `python -m bench --real DIR [--out FOLDER]`.

Runs the course's own stages on the photos (`helpers.machinery.prepare.prepare`,
`helpers.machinery.pipeline.extract`, `train` and `evaluate`, `helpers.machinery.fine_tune_stage.fine_tune`,
`Workspace.copy_model`), each in a process of its own that reports its time and peak memory (VmHWM), all in one
results folder (default bench/results/real/):

    work/       the work folder: captions, vocabulary, feature caches, models and their evaluations
    store/      the feature store (COURSE_FEATURE_STORE): the grid pass gives the pooled vectors too
    stages/     one record per finished stage: a rerun skips those, so an interrupted run resumes
    logs/       what each stage printed
    results.json, results.md, gallery.html

The models: merge with each seed, init-inject and attention (over the encoder's grid), and from the first merge
seed the same budget of more epochs twice, its encoder frozen (a copy trained on with `resume`) and fine-tuned end
to end. Every model is scored on dev and test at beam widths 1, 3 and 5; the width reported as a model's figure
is the one with its best dev CIDEr-D, never chosen on test. A difference smaller than the merge seeds' spread
(max - min) is called noise.

    python -m bench.real STAGE FOLDER     # worker: one stage of the run in FOLDER, prints its figures as JSON
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import importlib.metadata
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import report
from bench.measured import ROOT, run_worker, usage
from helpers.encoders import AUTO
from helpers.evaluation import tokens
from helpers.machinery import pipeline
from helpers.machinery.files import write_json
from helpers.machinery.workspace import Workspace

WIDTHS = (1, 3, 5)
CHOSEN = "dev-chosen"  # a model's figures at the width of its best dev CIDEr-D
METRICS = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "cider": "CIDEr-D",
           "rouge_l": "ROUGE-L", "meteor": "METEOR"}
# The papers' Flickr8k test BLEU-4 the course's decoders are measured against: (decoder, width, target, source).
TARGETS = (("merge", 3, 0.178, "Tanti et al. 2018, merge"), ("attention", CHOSEN, 0.195,
                                                              "Xu et al. 2015, soft attention"))
GALLERY_PHOTOS = 24
VERSIONS = ("tensorflow", "keras", "numpy", "nltk", "pycocoevalcap")


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run: the data, the results folder and every knob (saved in the folder; a resume must match it)."""

    data: str
    out: str
    encoder: str = AUTO
    image_size: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = pipeline.EPOCHS
    fine_tune_epochs: int = 5
    limit: int | None = None
    units: int = 256
    meteor: bool = True  # on the test split, where Java is (about 10 s an evaluation to start it)

    @property
    def folder(self) -> Path:
        return Path(self.out)

    @property
    def work(self) -> Workspace:
        return Workspace(self.folder / "work")

    @property
    def base(self) -> str:
        """The merge model that the frozen and the fine-tuned runs both start from."""
        return f"merge_s{self.seeds[0]}"

    def save(self) -> None:
        """settings.json in the results folder; a SystemExit if it holds another run's."""
        path = self.folder / "settings.json"
        mine = dataclasses.asdict(self) | {"seeds": list(self.seeds)}
        if path.exists() and json.loads(path.read_text()) != mine:
            raise SystemExit(f"{self.folder} holds a run with other settings ({path}): choose another --out, or "
                             "delete that folder to start again.")
        write_json(path, mine)

    @classmethod
    def load(cls, folder: str | Path) -> Settings:
        """The settings saved in a results folder."""
        saved = json.loads((Path(folder) / "settings.json").read_text())
        return cls(**saved | {"seeds": tuple(saved["seeds"])})


def trained_models(settings: Settings) -> dict[str, tuple[str, int]]:
    """The models trained from scratch: name -> (decoder, seed)."""
    first = settings.seeds[0]
    return {**{f"merge_s{seed}": ("merge", seed) for seed in settings.seeds}, "inject": ("inject", first),
            "attention": ("attention", first)}


def all_models(settings: Settings) -> list[str]:
    """Every model the run scores, in the order of the tables."""
    return [*trained_models(settings), f"{settings.base}_frozen", f"{settings.base}_fine_tuned"]


def stage_names(settings: Settings) -> list[str]:
    """Every stage of the run, in order."""
    return ["prepare", "features", *(f"train_{name}" for name in trained_models(settings)), "frozen", "fine_tune",
            "evaluate"]


def group_of(stage: str) -> str:
    """The --only name that runs a stage (bench.__main__.REAL_STAGES)."""
    return "train" if stage.startswith("train_") else "fine_tune" if stage == "frozen" else stage


# --- the stages, each run in a worker process -------------------------------------------------------------------

def limited_view(data: Path, folder: Path, limit: int) -> Path:
    """A view of a Flickr8k folder whose split lists name only the first `limit` images of each split.

    The split lists are written anew; every other file or folder is a link to the original, so no photo or caption
    is copied.
    """
    from helpers.errors import SettingError
    from helpers.machinery.dataset import load_dataset
    from helpers.machinery.layouts.flickr8k import SPLIT_FILES

    dataset = load_dataset(data)
    if dataset.layout not in ("kaggle", "original"):
        raise SettingError(f"--limit reads Flickr8k's two layouts, not {dataset.layout}.")
    lists = folder if dataset.layout == "kaggle" else folder / "Flickr8k_text"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for entry in Path(data).iterdir():
        if entry.name in SPLIT_FILES.values():
            continue
        if lists != folder and entry.name == lists.name:  # the original layout keeps its lists beside its captions
            lists.mkdir()
            for inner in entry.iterdir():
                if inner.name not in SPLIT_FILES.values():
                    (lists / inner.name).symlink_to(inner.resolve())
        else:
            (folder / entry.name).symlink_to(entry.resolve())
    for split, name in SPLIT_FILES.items():
        (lists / name).write_text("".join(f"{key}\n" for key in dataset.splits[split][:limit]), encoding="utf-8")
    return folder


def _prepare(settings: Settings) -> dict:
    from helpers.machinery.prepare import prepare

    data = Path(settings.data)
    if settings.limit is not None:
        data = limited_view(data, settings.folder / "data_view", settings.limit)
    summary = prepare(settings.work, data)
    return {key: summary[key] for key in ("layout", "images", "captions", "splits", "vocab_size", "max_length",
                                          "min_count", "dev_unknown_rate")}


def _features(settings: Settings) -> dict:
    """The grids (attention) and, through the feature store, the pooled vectors of the same pass."""
    work = settings.work
    choice = pipeline.encoder_choice(work, settings.encoder)
    if choice.note:
        print(choice.note)
    grids = pipeline.extract(work, choice.encoder, choice.weights, settings.image_size, "none", progress=False)
    started = time.perf_counter()
    vectors = pipeline.extract(work, choice.encoder, choice.weights, settings.image_size, "avg", progress=False)
    return {"encoder": choice.encoder, "weights": choice.weights, "note": choice.note,
            "image_size": pipeline.feature_setting(work, choice.encoder, choice.weights,
                                                   settings.image_size).image_size,
            "images": len(vectors), "failed": len(grids.failed), "grid_shape": list(grids.row_shape),
            "feature_dim": int(vectors.row_shape[-1]), "vectors_from_store_s": time.perf_counter() - started}


def _encoder(settings: Settings) -> tuple[str, str]:
    """The encoder and weights the features stage settled on."""
    features = json.loads((settings.folder / "stages" / "features.json").read_text())
    return features["encoder"], features["weights"]


def _clear_evaluations(work: Workspace, name: str) -> None:
    """Remove a model's evaluations before it is trained (again): the evaluate stage reuses the ones it finds."""
    for path in work.root.glob(work.model(name).evaluation("*").name):
        path.unlink()


def _train_model(settings: Settings, name: str, decoder: str, seed: int, epochs: int, resume: bool = False) -> dict:
    work = settings.work
    _clear_evaluations(work, name)
    encoder, weights = _encoder(settings)
    pipeline.train(work, decoder, encoder, weights, settings.image_size, epochs=epochs, units=settings.units,
                   seed=seed, resume=resume, model_name=name, verbose=2)
    record = work.read_json(work.model(name).record.name)
    return {"model": name, "decoder": decoder, "seed": seed, "epochs_run": record["epochs_run"],
            "epochs_this_run": record["epochs_this_run"], "best_epoch": record["best_epoch"],
            "best_val_loss": record["best_val_loss"],
            "seconds_per_epoch": record["seconds"] / record["epochs_this_run"]}


def _train(settings: Settings, name: str) -> dict:
    decoder, seed = trained_models(settings)[name]
    return _train_model(settings, name, decoder, seed, settings.epochs)


def _frozen(settings: Settings) -> dict:
    """The base merge model copied, then trained on for the fine-tuning's budget with the encoder frozen."""
    name = f"{settings.base}_frozen"
    settings.work.copy_model(settings.base, name)
    return _train_model(settings, name, "merge", settings.seeds[0], settings.fine_tune_epochs, resume=True)


def _fine_tune(settings: Settings) -> dict:
    """The base merge model trained on end to end, the encoder's last block unfrozen, for the same budget."""
    from helpers.machinery.fine_tune_stage import fine_tune

    name, work = f"{settings.base}_fine_tuned", settings.work
    _clear_evaluations(work, name)
    fine_tune(work, settings.base, epochs=settings.fine_tune_epochs, save_as=name, verbose=2)
    record = work.read_json(work.model(name).record.name)["fine_tune"]
    return {"model": name, **{key: record[key] for key in ("epochs_run", "best_val_loss", "seconds",
                                                            "trainable_encoder_weights", "from_epoch",
                                                            "learning_rate")}}


def _evaluate(settings: Settings) -> dict:
    """Every model on dev and test at every width (METEOR on test, unless turned off), skipping the evaluations
    already written."""
    work, seconds = settings.work, {}
    for name in all_models(settings):
        for split in ("dev", "test"):
            for width in WIDTHS:
                if work.model(name).evaluation(split, width).exists():
                    continue
                started = time.perf_counter()
                pipeline.evaluate(work, split, width, meteor=settings.meteor and split == "test", model_name=name)
                seconds[f"{name} {split} beam {width}"] = time.perf_counter() - started
                print(f"{name} {split} beam {width}: {seconds[f'{name} {split} beam {width}']:.0f} s", flush=True)
    return {"evaluations": len(seconds), "seconds_each": seconds,
            "resumed": len(seconds) < len(all_models(settings)) * 2 * len(WIDTHS)}


def code_version() -> str:
    """A fingerprint of the course's and the benchmark's sources (helpers/, bench/): which code a stage ran, as a
    long run that resumes may span changes to it."""
    digest = hashlib.sha1()
    for path in sorted([*(ROOT / "helpers").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def run_stage(stage: str, settings: Settings) -> dict:
    """One stage's work; its figures."""
    if stage.startswith("train_"):
        return _train(settings, stage.removeprefix("train_"))
    return {"prepare": _prepare, "features": _features, "frozen": _frozen, "fine_tune": _fine_tune,
            "evaluate": _evaluate}[stage](settings)


def main(argv: Sequence[str]) -> int:
    """The worker: run one stage of the run in a folder, its output to logs/STAGE.log, its figures as a JSON line
    (with the CPU seconds it got, the machine's load average as it ended, as the machine may be shared, and the
    version of the code it ran)."""
    stage, folder = argv
    settings = Settings.load(folder)
    os.environ["COURSE_FEATURE_STORE"] = str(settings.folder / "store")
    log = settings.folder / "logs" / f"{stage}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w", encoding="utf-8", buffering=1) as out, contextlib.redirect_stdout(out):
        started = time.perf_counter()
        figures = run_stage(stage, settings)
        seconds = time.perf_counter() - started
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**figures, "seconds": seconds, **usage(), "cpu_seconds": cpu.ru_utime + cpu.ru_stime,
                      "load_average": os.getloadavg(), "code": code_version()}))
    return 0


# --- the run, from the parent process ---------------------------------------------------------------------------

def run(settings: Settings, only: Sequence[str] = (), log=print) -> dict | None:
    """Every stage not done yet (of the `only` groups, if given), each in its own process; then the results, once
    every stage is done (None before)."""
    settings.save()
    for stage in stage_names(settings):
        record = settings.folder / "stages" / f"{stage}.json"
        if (only and group_of(stage) not in only) or record.exists():
            continue
        log(f"[real] {stage} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            figures = run_worker("bench.real", stage, settings.folder)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n(what the stage printed: {settings.folder / 'logs' / stage}.log)") from None
        write_json(record, {**figures, "process_seconds": time.perf_counter() - started})
        log(f"[real] {stage}: {figures['seconds']:.0f} s, peak {figures['peak_rss_mb']:,.0f} MiB", file=sys.stderr,
            flush=True)
    missing = [s for s in stage_names(settings) if not (settings.folder / "stages" / f"{s}.json").exists()]
    if missing or (only and "report" not in only and "evaluate" not in only):
        if missing:
            log(f"[real] not done yet: {', '.join(missing)}", file=sys.stderr)
        return None
    results = collect(settings)
    write_results(results, settings)
    return results


def _evaluation(work: Workspace, name: str, split: str, width: int) -> dict:
    """A model's scores on a split at a width, with its distinct captions, the share that is no train caption, and
    their mean length."""
    result = work.read_json(work.model(name).evaluation(split, width).name)
    captions = list(result["captions"].values())
    return {**{key: result.get(key) for key in METRICS}, "images": result["images"],
            "distinct_captions": len(set(captions)), "novel_share": result.get("novel_share"),
            "mean_words": statistics.fmean(len(tokens(c)) for c in captions),
            "vs_the_humans_references": result["like_for_like"]["model"]}


def _spread(values: list[float | None]) -> dict | None:
    """Mean, min, max and sample standard deviation (None for one value) of one metric over the seeds."""
    if any(v is None for v in values):
        return None
    return {"values": values, "mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else None}


def _difference(first: dict, second: dict, spread: dict) -> dict:
    """first - second for every metric, beside the merge seeds' spread (max - min) and whether it is noise."""
    out = {}
    for key in METRICS:
        if first[key] is None or second[key] is None or spread[key] is None:
            continue
        width = spread[key]["max"] - spread[key]["min"]
        difference = first[key] - second[key]
        out[key] = {"difference": difference, "seed_spread": width, "noise": abs(difference) < width}
    return out


def collect(settings: Settings) -> dict:
    """Every figure of a finished run: the stages, each model's scores, the dev choices, the seeds' spread, the
    comparisons, the human and the floor like for like, the targets, and what training looked like."""
    work = settings.work
    stages = {s: json.loads((settings.folder / "stages" / f"{s}.json").read_text()) for s in stage_names(settings)}
    scores = {name: {split: {width: _evaluation(work, name, split, width) for width in WIDTHS}
                     for split in ("dev", "test")} for name in all_models(settings)}
    by = "cider" if scores[settings.base]["dev"][1]["cider"] is not None else "bleu4"
    chosen = {name: max(WIDTHS, key=lambda w, s=s: s["dev"][w][by]) for name, s in scores.items()}
    test = {name: {**s["test"], CHOSEN: s["test"][chosen[name]]} for name, s in scores.items()}
    merges = [f"merge_s{seed}" for seed in settings.seeds]
    seeds = {width: {key: _spread([test[m][width][key] for m in merges]) for key in METRICS}
             for width in (*WIDTHS, CHOSEN)}
    means = {width: {key: None if s is None else s["mean"] for key, s in spread.items()}
             for width, spread in seeds.items()}
    frozen, tuned = f"{settings.base}_frozen", f"{settings.base}_fine_tuned"
    comparisons = {label: {width: _difference(test[a][width], means[width] if b == "merge" else test[b][width],
                                              seeds[width]) for width in (*WIDTHS, CHOSEN)}
                   for label, (a, b) in {"inject - merge (seeds' mean)": ("inject", "merge"),
                                         "attention - merge (seeds' mean)": ("attention", "merge"),
                                         "fine-tuned - frozen": (tuned, frozen)}.items()}
    sample = work.read_json(work.model(settings.base).evaluation("test", 1).name)
    targets = []
    for decoder, width, target, source in TARGETS:
        figure = means[width]["bleu4"] if decoder == "merge" else test[decoder][width]["bleu4"]
        targets.append({"decoder": decoder, "width": width, "width_used": chosen[decoder] if width == CHOSEN else width,
                        "target": target, "source": source, "figure": figure, "met": figure >= target})
    return {"machine": report.machine(), "date": time.strftime("%Y-%m-%d"), "settings": dataclasses.asdict(settings),
            "data": {"folder": str(Path(settings.data).resolve()), "name": Path(settings.data).resolve().name,
                     **stages["prepare"]},
            "encoder": {key: stages["features"][key] for key in ("encoder", "weights", "image_size", "feature_dim",
                                                                 "grid_shape")},
            "versions": _versions(), "stages": stages,
            "chosen_by": f"dev {METRICS[by]}", "chosen_width": chosen, "scores": scores, "seeds": seeds,
            "comparisons": comparisons, "targets": targets,
            "human": sample["human"], "floor": sample["floor"], "floor_vs_the_humans_references":
                sample["like_for_like"]["floor"], "rounds": sample["like_for_like"]["rounds"],
            "training": {name: _training(work, name) for name in all_models(settings)},
            "captions": _caption_figures(settings)}


def _training(work: Workspace, name: str) -> dict:
    """What a model's loss curves say (the frozen and fine-tuned ones include the epochs of the model they started
    from): where the dev loss was best, and whether the train loss was still falling at the end."""
    history = work.read_json(work.model(name).history.name)
    loss, dev = history["loss"], history["val_loss"]
    best = min(range(len(dev)), key=dev.__getitem__)
    last = loss[-min(4, len(loss)):]
    return {"epochs": len(loss), "best_epoch": best + 1, "best_val_loss": dev[best], "last_val_loss": dev[-1],
            "train_loss_at_best": loss[best], "last_train_loss": loss[-1],
            "train_loss_fall_last_epochs": last[0] - last[-1], "epochs_in_that_fall": len(last) - 1,
            "loss": loss, "val_loss": dev}


def _caption_figures(settings: Settings) -> dict:
    """The human captions of the test split: their mean length, and the share of their words out of vocabulary."""
    from helpers.vocabulary import Vocabulary

    work = settings.work
    test = [c for caps in work.read_json("captions.json")["test"].values() for c in caps]
    vocab = Vocabulary.load(work.require("vocab.json"))
    return {"test_reference_mean_words": statistics.fmean(len(c.split()) for c in test),
            "test_unknown_rate": vocab.unknown_rate(test)}


def _versions() -> dict:
    """The versions of Python, the libraries and Java (METEOR) the run used."""
    found = {"python": sys.version.split()[0]}
    for name in VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    if shutil.which("java"):
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        found["java"] = (done.stderr or done.stdout).splitlines()[0] if (done.stderr or done.stdout) else "?"
    return found


# --- writing the results ------------------------------------------------------------------------------------------

def write_results(results: dict, settings: Settings) -> dict[str, Path]:
    """results.json, results.md and gallery.html in the results folder."""
    folder = settings.folder
    paths = {"json": folder / "results.json", "markdown": folder / "results.md", "gallery": folder / "gallery.html"}
    write_json(paths["json"], results)
    paths["markdown"].write_text("\n".join(lines(results)) + "\n", encoding="utf-8")
    paths["gallery"].write_text(gallery(settings, results), encoding="utf-8")
    return paths


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _width(width: int | str) -> str:
    return "greedy" if width == 1 else f"beam {width}" if isinstance(width, int) else width


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def lines(results: dict) -> list[str]:
    """The tables, in Markdown, ready to paste."""
    sections = (_setup_lines, _stage_lines, _score_lines, _seed_lines, _difference_lines, _human_lines,
                _target_lines, _training_lines)
    return [line for section in sections for line in [*section(results), ""]][:-1]


def _setup_lines(results: dict) -> list[str]:
    enc, data, machine, v = results["encoder"], results["data"], results["machine"], results["versions"]
    return [f"Measured {machine['date']} on {machine['cpu']}, {machine['cores']} cores; Python {v['python']}, "
            f"TensorFlow {v.get('tensorflow', '?')}, Keras {v.get('keras', '?')}, NumPy {v.get('numpy', '?')}. "
            f"Data: `{data['name']}` ({data['layout']} layout, {data['images']:,} images, {data['captions']:,} "
            f"captions; {data['splits']['train']:,} / {data['splits']['dev']:,} / {data['splits']['test']:,} "
            f"train/dev/test). Encoder {enc['encoder']} ({enc['weights']} weights) at {enc['image_size']} px: "
            f"vectors of {enc['feature_dim']:,}, grids of {' x '.join(map(str, enc['grid_shape']))}. Vocabulary "
            f"{data['vocab_size']:,} tokens (min_count {data['min_count']}), {data['dev_unknown_rate']:.1%} of dev "
            f"words unknown. Beam width chosen by {results['chosen_by']}."]


def _stage_lines(results: dict) -> list[str]:
    rows = []
    for stage, f in results["stages"].items():
        note = ""
        if "best_epoch" in f:
            note = f"{f['epochs_this_run']} epochs, best {f['best_epoch']}, {f['seconds_per_epoch']:.0f} s/epoch"
        elif "trainable_encoder_weights" in f:
            note = f"{f['epochs_run']} epochs, {f['trainable_encoder_weights']:,} encoder weights trained"
        elif stage == "evaluate":
            note = f"{f['evaluations']} evaluations" + (" (resumed: this run's only)" if f["resumed"] else "")
        load = " / ".join(f"{x:.1f}" for x in f["load_average"]) if "load_average" in f else "–"
        rows.append([stage, f"{f['seconds']:,.0f}", f"{f['seconds'] / 60:.1f}", f"{f['process_seconds']:,.0f}",
                     _f(f.get("cpu_seconds"), 0), load, f"{f['peak_rss_mb']:,.0f}", f.get("code", "–"), note])
    return ["**Stages** (each in a process of its own; peak RSS = VmHWM; the process's seconds include starting "
            "Python and TensorFlow; CPU s: what the process got of the cores; load: the machine's 1, 5 and 15 min "
            "load average as it ended; code: a fingerprint of helpers/ and bench/ as the stage ran them)", "",
            *_table(["stage", "s", "min", "process s", "CPU s", "load", "peak MiB", "code", ""], rows)]


def _score_lines(results: dict) -> list[str]:
    base = next(iter(results["scores"]))
    rows = []
    for name, splits in results["scores"].items():
        for width in WIDTHS:
            s, mark = splits["test"][width], "*" if results["chosen_width"][name] == width else ""
            rows.append([name, f"{_width(width)}{mark}", _f(splits["dev"][width]["cider"]),
                         *(_f(s[key]) for key in METRICS), f"{s['distinct_captions']:,}", _f(s["novel_share"], 2),
                         _f(s["mean_words"], 1)])
    return [f"**Test scores** ({results['scores'][base]['test'][1]['images']:,} test photos; * the width chosen on "
            "dev; distinct: different captions written; novel: the share that is no train caption word for word; "
            "words: their mean length)", "",
            *_table(["model", "width", "dev CIDEr-D", *METRICS.values(), "distinct", "novel", "words"], rows)]


def _seed_count(results: dict) -> int:
    spread = results["seeds"][1]["bleu4"]
    return len(spread["values"]) if spread else 0


def _seed_lines(results: dict) -> list[str]:
    seeds, widths = results["seeds"], (*WIDTHS, CHOSEN)
    rows = [[name, *(_seed_cell(seeds[width][key]) for width in widths)] for key, name in METRICS.items()]
    return [f"**Merge over {_seed_count(results)} seeds** (test): mean (min-max, std)", "",
            *_table(["metric", *(_width(w) for w in widths)], rows)]


def _difference_lines(results: dict) -> list[str]:
    alone = " (one seed: no spread, so nothing can be called noise)" if _seed_count(results) == 1 else ""
    rows = [[label, _width(width), *(_diff_cell(diffs.get(key)) for key in METRICS)]
            for label, widths in results["comparisons"].items() for width, diffs in widths.items()]
    return [f"**Differences** (test): difference / the merge seeds' spread (max - min) at that width; smaller than "
            f"the spread: noise{alone}", "", *_table(["comparison", "width", *METRICS.values()], rows)]


def _human_lines(results: dict) -> list[str]:
    n = results["rounds"]
    rows = []
    for name, splits in results["scores"].items():
        s, width = splits["test"][results["chosen_width"][name]], _width(results["chosen_width"][name])
        rows.append([f"{name} ({width}) vs all {n} refs", *(_f(s[k]) for k in METRICS)])
        rows.append([f"{name} ({width}) vs the human's {n - 1}",
                     *(_f(s["vs_the_humans_references"].get(k)) for k in METRICS)])
    for label, scores in ((f"human vs the other {n - 1}", results["human"]),
                          (f"floor vs all {n} refs", results["floor"]),
                          (f"floor vs the human's {n - 1}", results["floor_vs_the_humans_references"])):
        rows.append([label, *(_f(scores.get(k)) for k in METRICS)])
    floor = results["floor"]
    return [f"**Human baseline, like for like** (test; each model at its dev-chosen width; the human: each of an "
            f"image's {n} captions in turn against the other {n - 1}; \"the human's {n - 1}\": the model against "
            f"those same {n - 1} in each round; each averaged over the {n} rounds)", "",
            *_table(["captions", *METRICS.values()], rows), "",
            f"Floor: {floor['caption']!r} ({floor['times_in_train']} times in train), written for every photo."]


def _target_lines(results: dict) -> list[str]:
    rows = [[f"{t['decoder']} ({_width(t['width_used'])}{', mean of the seeds' if t['decoder'] == 'merge' else ''})",
             f"{t['target']:.3f} ({t['source']})", _f(t["figure"]), "yes" if t["met"] else "no"]
            for t in results["targets"]]
    return ["**Targets** (test BLEU-4)", "", *_table(["model", "target", "measured", "met"], rows)]


def _training_lines(results: dict) -> list[str]:
    rows = [[name, str(t["epochs"]), str(t["best_epoch"]), _f(t["best_val_loss"]), _f(t["last_val_loss"]),
             _f(t["train_loss_at_best"]), _f(t["last_train_loss"]),
             f"{t['train_loss_fall_last_epochs']:+.3f} over {t['epochs_in_that_fall']}"]
            for name, t in results["training"].items()]
    base, captions = next(iter(results["scores"])), results["captions"]
    return ["**Training** (the frozen and fine-tuned curves include the epochs of the model they started from)", "",
            *_table(["model", "epochs", "best", "best dev loss", "last dev loss", "train loss at best",
                     "last train loss", "train loss fall, last epochs"], rows), "",
            f"Test references: {captions['test_reference_mean_words']:.1f} words on average, "
            f"{captions['test_unknown_rate']:.1%} of their words out of the vocabulary; {base} greedy writes "
            f"{results['scores'][base]['test'][1]['mean_words']:.1f} words."]


def _seed_cell(spread: dict | None) -> str:
    if spread is None:
        return "–"
    std = "" if spread["std"] is None else f", {spread['std']:.3f}"
    return f"{spread['mean']:.3f} ({spread['min']:.3f}-{spread['max']:.3f}{std})"


def _diff_cell(diff: dict | None) -> str:
    if diff is None:
        return "–"
    return f"{diff['difference']:+.3f} / {diff['seed_spread']:.3f}{' noise' if diff['noise'] else ''}"


def gallery(settings: Settings, results: dict, photos: int = GALLERY_PHOTOS) -> str:
    """An HTML page of test photos (linked where they are in the data folder, never copied), each with every
    model's caption at its dev-chosen width (the second merge seeds left out) and two human captions."""
    work = settings.work
    images = Path(work.read_json("dataset.json")["images_dir"])
    references = work.read_json("captions.json")["test"]
    others = {f"merge_s{seed}" for seed in settings.seeds[1:]}
    shown = [name for name in all_models(settings) if name not in others]
    written = {name: work.read_json(work.model(name).evaluation("test", results["chosen_width"][name]).name)[
        "captions"] for name in shown}
    keys = sorted(written[settings.base])
    count = min(photos, len(keys))
    picked = [keys[i * len(keys) // count] for i in range(count)]  # spread over the split
    cards = []
    for key in picked:
        models = "".join(f"<li><b>{html.escape(name)}</b> ({_width(results['chosen_width'][name])}): "
                         f"{html.escape(written[name][key])}</li>" for name in shown)
        humans = "".join(f"<li><i>human</i>: {html.escape(c)}</li>" for c in references[key][:2])
        cards.append(f'<figure><img src="{(images / key).resolve().as_uri()}" alt="{html.escape(key)}" width="224">'
                     f"<figcaption><code>{html.escape(key)}</code><ul>{models}{humans}</ul></figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:1em}figure{display:inline-block;vertical-align:top;width:300px;"
             "margin:.5em}ul{padding-left:1.2em;font-size:90%}")
    name = html.escape(results["data"]["name"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Captions of {len(picked)} test photos</title>"
            f"<style>{style}</style></head><body><h1>{len(picked)} test photos of {name}</h1>"
            f"<p>Encoder {html.escape(results['encoder']['encoder'])}; each model at its dev-chosen beam width. "
            f"The photos are linked from the data folder, not copied.</p>{''.join(cards)}</body></html>\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
