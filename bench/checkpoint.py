"""Atomic checkpoints: written into a temporary folder, a manifest (file sizes) written last, then renamed.

A folder without a valid manifest (an interrupted write) is never picked: ``latest()`` returns the newest COMPLETE
checkpoint, so an interruption leaves the previous one loadable.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.json"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def write(root: Path, step: int, save: Callable[[Path], None], extra: dict, keep: int) -> Path:
    """``save(tmp)`` writes the state files; then the manifest; then an atomic rename. Keeps the newest ``keep``, and
    removes the temporary folders that killed writers left behind (gigabytes each at SDXL size)."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save(tmp)
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **extra}))
    files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    with open(tmp / MANIFEST, "w") as fh:
        json.dump({"step": step, "files": files}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in complete(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by processes killed mid-write (only the main process writes here)
        shutil.rmtree(stale, ignore_errors=True)
    return final


def is_complete(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all((folder / f).is_file() and (folder / f).stat().st_size == size
               for f, size in manifest["files"].items())


def complete(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and is_complete(p))


def latest(root: Path) -> Path | None:
    found = complete(root)
    return found[-1] if found else None


def trainer_state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())
