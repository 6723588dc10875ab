"""``bench toy build``: train the toy base model, sample and label the preference pairs, write the shipped assets.

``build(out_dir)`` writes, atomically (a temporary sibling folder renamed at the end):

* ``model/``        the toy base model in diffusers format (``StableDiffusionPipeline.from_pretrained``);
* ``pairs.parquet`` the panel-labelled preference pairs (Pick-a-Pic v2 schema + reward_0/reward_1), sampled from a
  zoo of generators (:data:`ZOO`: the base model, a weaker and a stronger one, trained by the build, not shipped);
* ``manifest.json`` the build parameters, the package versions and thread count, and the sha256 of every file;
* ``report.json``   what the build measured: timings, the base model's prompt fidelity on the held-out prompts, the
  label statistics (not hashed: timings differ between runs).

``verify(dir)`` checks the files against the manifest (integrity); ``compare(a, b)`` lists the files whose hashes
differ between two builds; ``check_rebuild(dir)`` rebuilds with the manifest's parameters into a temporary folder
and compares. Rebuilds reproduce the files bit for bit on the same machine type and package versions (fixed seeds,
fixed thread count); on another CPU, float summation order can change the trained weights slightly, which
``check_rebuild`` reports file by file. Also runnable as ``python -m bench.toy.build [--out DIR] [--check]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

from bench.rundir import PACKAGES, versions
from bench.toy import ASSETS
from bench.toy.basemodel import BaseModelConfig, fidelity_report, generate, load_pipeline, train_base_model
from bench.toy.preferences import PairsConfig, make_pairs, summary
from bench.toy.world import heldout_prompts
from bench.assets import file_hashes
from bench.assets import verify as verify_assets

MANIFEST_VERSION = 2
EVAL_STEPS, EVAL_CFG, EVAL_IMAGES_PER_PROMPT = 20, 4.0, 4  # the base-model fidelity measurement of the report

#: The generator zoo whose samples make the preference pairs, as Pick-a-Pic's images come from several models of
#: different quality: name -> overrides of the base model's :class:`BaseModelConfig`. ``toy-base`` is the model to
#: align (shipped as ``model/``); the others are trained by the build, sample the pairs and are not shipped. They
#: share the base model's VAE and differ in UNet size, training length and training data (degraded and
#: mis-captioned fractions), the ways real generators differ.
BASE_GENERATOR = "toy-base"
ZOO: dict[str, dict] = {
    BASE_GENERATOR: {},
    "toy-mid": {"unet_channels": [24, 48, 96], "unet_steps": 3000, "degrade": 0.1, "caption_noise": 0.05,
                "position_noise": 0.25},
    "toy-large": {"unet_channels": [32, 64, 128], "unet_steps": 4000, "degrade": 0.05, "caption_noise": 0.02,
                  "position_noise": 0.1},
}


def environment() -> dict:
    """Package versions (the run directories' list plus what the build's files depend on) and the machine."""
    return {**versions(PACKAGES + ("pandas", "pyarrow", "pillow")), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def _config(cls, params: dict | None):
    names = {f.name for f in fields(cls)}
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in (params or {}).items() if k in names}
    return cls(**params)


def heldout_fidelity(model_dir: Path, steps: int = EVAL_STEPS, cfg: float = EVAL_CFG,
                     images_per_prompt: int = EVAL_IMAGES_PER_PROMPT, seed: int = 0) -> dict:
    """Prompt fidelity of a toy model on the held-out prompts (seeds 1000 * seed + image index per prompt)."""
    pipe = load_pipeline(model_dir)
    prompts = [p for p in heldout_prompts() for _ in range(images_per_prompt)]
    seeds = [1000 * seed + i % images_per_prompt for i in range(len(prompts))]
    report = fidelity_report(generate(pipe, prompts, seeds, steps=steps, cfg=cfg), prompts)
    return {"steps": steps, "cfg": cfg, "images_per_prompt": images_per_prompt, **report}


def build(out_dir: Path = ASSETS, seed: int = 0, model: dict | None = None, pairs: dict | None = None,
          zoo: dict | None = None, log: Callable[[str], None] = print, keep_zoo: Path | None = None) -> dict:
    """Build the toy assets into ``out_dir`` (replacing it) and return the report.

    ``model`` / ``pairs`` override fields of :class:`BaseModelConfig` / :class:`PairsConfig` (e.g.
    ``pairs={"n_pairs": 500}``); ``zoo`` replaces :data:`ZOO` (each generator's overrides apply on top of
    ``model``); ``seed`` seeds everything. ``keep_zoo``: also copy the other generators' model folders there (for
    diagnostics; they are not part of the assets).
    """
    out_dir = Path(out_dir)
    zoo = {k: dict(v) for k, v in (ZOO if zoo is None else zoo).items()}
    if BASE_GENERATOR not in zoo:
        raise ValueError(f"the zoo must contain the base model {BASE_GENERATOR!r}; got {sorted(zoo)}")
    model_cfg = _config(BaseModelConfig, {**(model or {}), "seed": seed})
    zoo_cfgs = {name: _config(BaseModelConfig, {**model_cfg.params(), **over, "seed": seed})
                for name, over in zoo.items()}
    pairs_cfg = _config(PairsConfig, {**(pairs or {}), "seed": seed})
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-build-", dir=out_dir.parent))
    t_start = time.time()
    try:
        dirs = {name: tmp / "model" if name == BASE_GENERATOR else tmp / ".zoo" / name for name in zoo}
        infos, fids, seconds = {}, {}, {}
        for name in sorted(zoo, key=lambda n: n != BASE_GENERATOR):  # the base model first: the others reuse its VAE
            log(f"toy build: generator {name} -> {dirs[name]}")
            t = time.time()
            infos[name] = train_base_model(dirs[name], zoo_cfgs[name], log,
                                           None if name == BASE_GENERATOR else dirs[BASE_GENERATOR] / "vae")
            seconds[f"train {name}"] = time.time() - t
            t = time.time()
            fids[name] = heldout_fidelity(dirs[name])
            seconds[f"fidelity {name}"] = time.time() - t
            log(f"{name}: held-out fidelity " + ", ".join(f"{a} {fids[name][a]:.2f}" for a in
                ("colour", "shape", "size", "position", "background", "all_attributes")))
        t = time.time()
        df = make_pairs(dirs, pairs_cfg, log)
        df.to_parquet(tmp / "pairs.parquet", index=False, compression="zstd")
        seconds["pairs"] = time.time() - t
        if keep_zoo is not None and (tmp / ".zoo").is_dir():
            shutil.copytree(tmp / ".zoo", keep_zoo, dirs_exist_ok=True)
        shutil.rmtree(tmp / ".zoo", ignore_errors=True)  # the other generators are not shipped
        labels = summary(df)
        log(f"pairs: {labels}")
        manifest = {"manifest_version": MANIFEST_VERSION, "seed": seed, "model_config": model_cfg.params(),
                    "zoo": zoo, "pairs_config": pairs_cfg.params(), "environment": environment(),
                    "files": file_hashes(tmp)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        report = {"seconds": {"total": round(time.time() - t_start, 1), **{k: round(v, 1) for k, v in seconds.items()},
                              **{f"{name} {k}": round(v, 1) for name, info in infos.items()
                                 for k, v in info["times"].items()}},
                  "base_model": {k: v for k, v in infos[BASE_GENERATOR].items() if k != "times"},
                  "heldout_fidelity": fids[BASE_GENERATOR],
                  "generators": {name: {"config": zoo[name], "heldout_fidelity": fids[name],
                                        "parameters": infos[name]["parameters"]} for name in zoo},
                  "pairs": labels,
                  "sizes_bytes": {k: (tmp / k).stat().st_size for k in manifest["files"]}}
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"toy build done in {time.time() - t_start:.0f}s: {out_dir}")
    return report


def verify(folder: Path = ASSETS) -> list[str]:
    """Problems of the toy assets against their manifest (:func:`bench.assets.verify`); empty when intact."""
    return verify_assets(folder)


def compare(a: Path, b: Path) -> list[str]:
    """Files whose sha256 differ between two builds' manifests (and differing build parameters)."""
    ma, mb = (json.loads((Path(x) / "manifest.json").read_text()) for x in (a, b))
    out = [f"parameter {k} differs" for k in ("seed", "model_config", "zoo", "pairs_config") if ma.get(k) != mb.get(k)]
    for f in sorted(set(ma["files"]) | set(mb["files"])):
        if ma["files"].get(f) != mb["files"].get(f):
            out.append(f"file {f} differs")
    return out


def check_rebuild(folder: Path = ASSETS, work_dir: Path | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Rebuild with the manifest's parameters and compare with ``folder`` (minutes). Empty list: identical."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    work = Path(work_dir or tempfile.mkdtemp(prefix="toy-rebuild-"))
    build(work / "assets", manifest["seed"], manifest["model_config"], manifest["pairs_config"], manifest.get("zoo"),
          log)
    return verify(folder) + compare(folder, work / "assets")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.toy.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ASSETS, help="output folder (default: the shipped assets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare with --out")
    ap.add_argument("--verify", action="store_true", help="only check --out against its manifest")
    ap.add_argument("--keep-zoo", type=Path, default=None, help="also keep the zoo's generators in this folder")
    args = ap.parse_args(argv)
    import bench  # noqa: F401  (torchvision compat before transformers)

    if args.verify or args.check:
        problems = verify(args.out) if args.verify else check_rebuild(args.out)
        print("\n".join(problems) or "identical")
        return 1 if problems else 0
    build(args.out, args.seed, keep_zoo=args.keep_zoo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
