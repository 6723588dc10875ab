"""Regenerate the golden fixtures: tiny run directories under ``rundirs/`` and the expected tables.

    python tests/golden/make_golden.py            # rewrite rundirs/ and the expected *.md/*.csv/*.tex
    python tests/golden/make_golden.py --runs     # rewrite rundirs/ only

Everything is deterministic (fixed seeds, fixed timestamps). The test (tests/test_tables.py) compares the tables
rendered from the committed runs with the committed text files; regenerate only on purpose and review the diff.
No images are stored: tables never need them (the plot tests draw their own).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from evaluators.prompts import PromptSet
from evaluators.rundir import SCHEMA_VERSION, write_eval

HERE = Path(__file__).resolve().parent
RUNS = HERE / "rundirs"  # not "runs": .gitignore ignores every runs/ folder
PROMPTS = PromptSet("golden", ["a red circle on a white background", "a blue square in the snow",
                               "an astronaut riding a horse, oil painting", "a cat wearing sunglasses",
                               "a watercolor lighthouse at dusk", "two green triangles on a black background"],
                    ["photo", "photo", "paintings", "anime", "paintings", "concept-art"], "tests/golden")
IMAGES_PER_PROMPT = 2
GENERATION = {"sampler": "ddim", "steps": 25, "cfg": 5.0, "resolution": 1024, "seed": 0}
METRICS = {"pickscore": ("pickscore-v1", True), "hpsv21": ("hpsv2.1", True), "imagereward": ("imagereward-1.0", True),
           "aesthetic": ("laion-aesthetic-v2", True), "artifacts": ("toy-artifacts-1", False)}
# (name, kind, method, devices, per-metric shift over the base, cost phases in seconds, pairs, forward-equivalents)
RUN_SPECS = [
    ("sdxl-base", "eval", None, 1, dict(pickscore=0, hpsv21=0, imagereward=0, aesthetic=0, artifacts=0),
     {"sampling": 240.0, "scoring": 60.0}, 0, 0.0, 13_421_772_800),
    ("dpo-sdxl", "train", "dpo", 8, dict(pickscore=0.3, hpsv21=1.2, imagereward=0.2, aesthetic=0.0, artifacts=-0.02),
     {"data": 360.0, "cache": 1800.0, "train_forward_backward": 30600.0, "reference_forward": 7200.0,
      "optimizer": 900.0, "sampling": 240.0, "scoring": 60.0}, 409_600, 3_276_800.0, 64_424_509_440),
    ("smpo-sdxl", "train", "smpo", 8, dict(pickscore=0.7, hpsv21=3.5, imagereward=0.4, aesthetic=0.1, artifacts=-0.05),
     {"data": 360.0, "cache": 1800.0, "inversion": 12600.0, "train_forward_backward": 7650.0,
      "reference_forward": 1800.0, "optimizer": 450.0, "sampling": 240.0, "scoring": 60.0},
     204_800, 6_860_800.0, 70_866_960_384),
]
BASE = {"pickscore": (22.75, 0.6, 2), "hpsv21": (28.45, 2.0, 2), "imagereward": (0.881, 0.5, 3),
        "aesthetic": (6.114, 0.3, 3), "artifacts": (0.2, 0.05, 2)}  # mean, sd, decimals (rounding makes ties)


def _scores(shift: dict, rng: np.random.Generator, base_draw: dict) -> pd.DataFrame:
    rows = []
    for pid, prompt in enumerate(PROMPTS.prompts):
        for k in range(IMAGES_PER_PROMPT):
            seed = 1000 * pid + k
            row = {"prompt_id": pid, "prompt": prompt, "image_index": k, "seed": seed,
                   "image_sha256": f"{pid:02d}{k:02d}" + "0" * 60, "image_path": f"images/{pid:05d}_{k:02d}.png"}
            for m, (_, sd, dec) in BASE.items():
                noise = 0.0 if not any(shift.values()) else rng.normal(0, sd * 0.5)
                if pid == 0 and k == 0:  # the same image as the base's: an exact tie on every metric
                    noise, delta = 0.0, 0.0
                else:
                    delta = shift[m]
                row[m] = round(float(base_draw[m][pid, k] + delta + noise), dec)
            rows.append(row)
    return pd.DataFrame(rows)


def write_runs(root: Path = RUNS) -> list[Path]:
    rng = np.random.default_rng(20250601)
    base_draw = {m: rng.normal(mu, sd, size=(len(PROMPTS), IMAGES_PER_PROMPT)) for m, (mu, sd, _) in BASE.items()}
    paths = []
    for name, kind, method, devices, shift, phases, pairs, fwd, peak in RUN_SPECS:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        device = {"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "count": devices}
        run = {"schema_version": SCHEMA_VERSION, "name": name, "kind": kind, "method": method, "model": "sdxl",
               "created": "2025-06-01T00:00:00+00:00"}
        cost = {"schema_version": SCHEMA_VERSION, "device": device,
                "phases": {k: {"seconds": s, "device_hours": s * devices / 3600.0} for k, s in phases.items()},
                "device_hours_total": sum(phases.values()) * devices / 3600.0, "peak_memory_bytes": peak,
                "pairs_seen": pairs, "forward_equivalents": fwd,
                "forward_equivalents_per_pair": fwd / pairs if pairs else None}
        env = {"versions": {"bench-align": "0.1.0"}, "git": {"commit": "0" * 40, "dirty": False},
               "devices": device, "seed": 0}
        for file, obj in (("run.json", run), ("config.json", {"method": method, "model": "sdxl"}),
                          ("env.json", env), ("cost.json", cost)):
            (d / file).write_text(json.dumps(obj, indent=2) + "\n")
        scores = _scores(shift, rng, base_draw)
        write_eval(d, PROMPTS.name, PROMPTS.hash, scores,
                   {m: {"scorer_version": v, "higher_is_better": h} for m, (v, h) in METRICS.items()}, GENERATION)
        paths.append(d)
    return paths


def expected_tables(root: Path = RUNS) -> dict[str, str]:
    """File name -> rendered text, exactly what the golden test compares."""
    from evaluators.tables import render, results_table, win_rate_table

    runs = [root / n for n, *_ in RUN_SPECS]
    table = results_table(runs)
    wins = win_rate_table(runs[1:], runs[0])
    return {"table.md": render(table, "md"), "table.csv": render(table, "csv"),
            "table_reference.md": render(results_table(runs, with_reference=True), "md"),
            "winrate.md": render(wins, "md"), "winrate.tex": render(wins, "latex")}


if __name__ == "__main__":
    write_runs()
    if "--runs" not in sys.argv:
        for name, text in expected_tables().items():
            (HERE / name).write_text(text)
    print(f"wrote {RUNS}" + ("" if "--runs" in sys.argv else f" and the expected tables in {HERE}"))
