"""Run-directory files written at the start of every run (schema version 1; read by ``evaluators.rundir``).

run.json (what the run is), config.json (the resolved config), env.json (package versions, git commit and dirty
flag, devices, seed, command line). Training adds metrics.jsonl, cost.json, checkpoints/ and weights/.
"""
from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "open_clip_torch", "bench-align", "numpy")


def git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def environment(device, num_processes: int, seed: int) -> dict[str, Any]:
    from bench.cost import device_info

    return {"versions": versions(), "git": git_state(), "devices": device_info(device, num_processes),
            "seed": seed, "platform": platform.platform(), "argv": sys.argv}


def write_eval_run_json(folder: Path, model: str, model_path: str, vae: str | None, label: str | None = None) -> None:
    """The small run.json of a base-model evaluation folder (``kind: eval``, no method), unless it has one.
    ``label``: the row name tables and reports show (default: the folder's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "run.json").is_file():
        (folder / "run.json").write_text(json.dumps({
            "schema_version": SCHEMA_VERSION, "name": folder.name, "kind": "eval", "method": None, "model": model,
            "model_path": model_path, "vae": vae, **({"label": label} if label else {}),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, indent=2))


def write_run_files(run_dir: Path, cfg, comps, accelerator, kind: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    run = {"schema_version": SCHEMA_VERSION, "name": run_dir.name, "kind": kind, "method": cfg.method,
           "model": comps.name, "model_path": comps.path, "family": comps.family,
           "lora": bool(cfg.model.lora_rank), "vae": cfg.model.vae,
           "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    env = environment(accelerator.device, accelerator.num_processes, cfg.train.seed)
    (run_dir / "env.json").write_text(json.dumps(env, indent=2))
