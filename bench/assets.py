"""Shipped assets checked against their manifest: the toy world's and the exact world's built folders.

A build writes ``manifest.json`` with ``files``: the sha256 of every file it wrote (relative paths); ``verify`` lists
what no longer matches.
"""
from __future__ import annotations

import json
from pathlib import Path

from evaluators.scorers._weights import file_sha256


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest and the toy build's report."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): file_sha256(str(p)) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "report.json")}


def verify(folder: Path) -> list[str]:
    """Problems of a built folder against its manifest (no manifest; missing, extra or changed files); empty when
    intact."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        return [f"{folder / 'manifest.json'} is missing: rebuild the assets"]
    manifest = json.loads((folder / "manifest.json").read_text())
    have = file_hashes(folder)
    problems = [f"missing {f}" for f in manifest["files"] if f not in have]
    problems += [f"unexpected {f}" for f in have if f not in manifest["files"]]
    problems += [f"changed {f}" for f, h in manifest["files"].items() if f in have and have[f] != h]
    return problems
