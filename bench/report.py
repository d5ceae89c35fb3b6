"""Turn the measurements into rows (course vs baseline, ratio, target) and write them as a table, JSON and Markdown."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

COLUMNS = ("stage", "measure", "course", "baseline", "ratio", "unit", "target", "met")


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "system": platform.platform(terse=True),
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)")}
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return info


def _row(stage, measure, course, baseline=None, unit="", target="", met=None, ratio=None) -> dict:
    if ratio is None and baseline:
        ratio = course / baseline
    return {"stage": stage, "measure": measure, "course": course, "baseline": baseline, "ratio": ratio,
            "unit": unit, "target": target, "met": None if met is None else bool(met)}


def rows(results: dict) -> list[dict]:
    """One row per figure, from the result dict that `bench.__main__` builds (missing stages are left out)."""
    out = []
    if "features" in results:
        peak = results["features"]["matmul_peak"]["gflops"]
        for name, f in results["features"]["encoders"].items():
            label = f"{name} ({f['weights']} weights, {f['image_size']} px)"
            out.append(_row("features", f"{label}, from JPEG files", f["course"]["images_per_s"],
                            f["baseline"]["images_per_s"], "images/s"))
            out.append(_row("features", f"{name}: achieved compute ({f['gmacs']:.2f} GMACs/image)",
                            f["course"]["gflops"], f["baseline"]["gflops"], "GFLOP/s"))
            out.append(_row("features", f"{name}: share of matmul peak ({peak:.0f} GFLOP/s)",
                            f["course"]["share_of_peak"], f["baseline"]["share_of_peak"], "fraction"))
            out.append(_row("features", f"{name}: the 8,000 Flickr8k images of the splits", f["flickr8k_minutes"],
                            f["flickr8k_minutes"] * f["speedup"], "min", ratio=f["speedup"]))
    if "training" in results:
        t = results["training"]
        c, b = t["course"], t["baseline"]
        out.append(_row("training", f"decoder, vocabulary {c['vocab_size']:,}", c["tokens_per_s"], b["tokens_per_s"],
                        "tokens/s", ">= 8x", t["speedup"] >= 8))
        if "flops_per_token" in t:
            mflop = t["flops_per_token"]["training_flops"] / 1e6
            out.append(_row("training", f"share of matmul peak ({t['matmul_peak']['gflops']:.0f} GFLOP/s; "
                            f"{mflop:.1f} MFLOP a token)", c["share_of_peak"], b["share_of_peak"], "fraction"))
        measured = "measured" if c["epoch_measured"] else "extrapolated"
        out.append(_row("training", f"one epoch, {t['captions']:,} captions (course {measured}, "
                        f"baseline extrapolated)", c["epoch_s"], b["epoch_s"], "s", "< 180 s",
                        c["epoch_s"] < 180, ratio=b["epoch_s"] / c["epoch_s"]))
        for label, lever in t.get("levers", {}).items():
            out.append(_row("training", f"lever {label}: vocabulary {lever['vocab_size']:,}, batch "
                            f"{lever['batch_size']} (epoch {lever['epoch_s']:.0f} s)", lever["tokens_per_s"],
                            b["tokens_per_s"], "tokens/s", ">= 8x", lever["tokens_per_s"] / b["tokens_per_s"] >= 8))
    if "decoding" in results:
        d = results["decoding"]
        base = d["predict_loop"]["captions_per_s"]
        out.append(_row("decoding", f"batched greedy ({d['steps']} steps) vs predict per word",
                        d["greedy"]["captions_per_s"], base, "captions/s", ">= 20x", d["speedup_greedy"] >= 20))
        out.append(_row("decoding", f"batched beam, width {d['beam']['beam_width']}, vs predict per word",
                        d["beam"]["captions_per_s"], base, "captions/s"))
        out.append(_row("decoding", "batched greedy vs predict_on_batch per word", d["greedy"]["captions_per_s"],
                        d["predict_on_batch_loop"]["captions_per_s"], "captions/s"))
    if "memory" in results:
        m = results["memory"]
        out.append(_row("memory", f"training peak RSS vs materialised per-word arrays ({m['images']:,} images)",
                        m["course_peak_mb"], m["materialised_mb"], "MiB",
                        ratio=m["materialised_mb"] / m["course_peak_mb"]))
        out.append(_row("memory", "peak RSS of the per-word generator, streamed (course column) vs "
                        "TF + model only (baseline column)", m["generator_peak_mb"], m["floor_peak_mb"], "MiB"))
    if "fine_tune" in results:
        t = results["fine_tune"]
        e, f = t["end_to_end"], t["frozen"]
        what = f"Xception at {t['image_size']} px, last block unfrozen, {t['batch']} images a step"
        out.append(_row("fine-tune", f"training step end to end (course column) vs on cached features ({what})",
                        e["images_per_s"], f["images_per_s"], "images/s", ratio=f["images_per_s"] / e["images_per_s"]))
        out.append(_row("fine-tune", "peak RSS of that step, end to end vs on cached features", e["peak_rss_mb"],
                        f["peak_rss_mb"], "MiB"))
        out.append(_row("fine-tune", "one Flickr8k epoch (6,000 train images) at that rate", e["flickr8k_epoch_min"],
                        f["flickr8k_epoch_min"], "min"))
    if "fixture" in results:
        x = results["fixture"]
        out.append(_row("fixture", "python -m helpers run", x["helpers_run"]["seconds"], unit="s", target="exits 0",
                        met=x["helpers_run"]["returncode"] == 0 or None))
        nb = x["nbval"]
        if "seconds" in nb:
            out.append(_row("fixture", f"nbval, {nb['notebooks']} notebooks", nb["seconds"], unit="s", target="passes",
                            met=nb["returncode"] == 0 or None))
        else:
            out.append(_row("fixture", f"nbval: skipped ({nb['skipped']})", None, unit="s"))
    return out


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _cells(row: dict) -> list[str]:
    cells = [_fmt(row[c]) for c in COLUMNS]
    if row["ratio"] is not None:
        cells[COLUMNS.index("ratio")] = f"{_fmt(row['ratio'])}x"
    return cells


def markdown(table: list[dict], info: dict) -> str:
    """A Markdown table with the machine named above it."""
    head = (f"Measured {info.get('date', '')} on {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
            f"TensorFlow {info.get('tensorflow', '?')}{' (--quick)' if info.get('quick') else ''}.\n\n")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in table]
    return head + "\n".join(lines) + "\n"


def text_table(table: list[dict]) -> str:
    """The same table, aligned for a terminal."""
    grid = [list(COLUMNS)] + [_cells(row) for row in table]
    widths = [max(len(r[i]) for r in grid) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in grid)


def write(results: dict, out_dir: str | Path, info: dict | None = None) -> dict[str, Path]:
    """Write results.json (raw figures, rows, machine) and results.md; return their paths."""
    info = info if info is not None else machine()
    table = rows(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    paths["json"].write_text(json.dumps({"machine": info, "rows": table, "results": results}, indent=1, default=float))
    paths["markdown"].write_text(markdown(table, info))
    return paths
