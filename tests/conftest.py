"""Shared test setup: a session-wide cache (tiny models are built once), quiet libraries, helpers."""
from __future__ import annotations

import os
import tempfile

# Before anything imports bench: tiny models, embedded data and latent caches go to one throwaway folder.
os.environ.setdefault("BENCH_CACHE", tempfile.mkdtemp(prefix="bench-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import bench  # noqa: E402,F401  (torchvision compat first)
from bench.cli import _quiet_libraries  # noqa: E402

_quiet_libraries()
