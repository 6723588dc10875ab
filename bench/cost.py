"""Cost accounting (DESIGN.md section 8): wall seconds per phase x devices = device-hours, peak memory, pairs seen,
UNet forward-equivalents (a forward = 1, a forward with backward = 3) counted from the actual calls."""
from __future__ import annotations

import json
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

PHASES = ("data", "cache", "inversion", "train_forward_backward", "reference_forward", "optimizer", "checkpoint",
          "sampling", "scoring")


def device_info(device: torch.device, count: int) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda", "name": torch.cuda.get_device_name(device), "count": count}
    import platform
    return {"kind": device.type, "name": platform.processor() or platform.machine(), "count": count,
            "threads": torch.get_num_threads()}


class CostMeter:
    def __init__(self, device: torch.device, num_devices: int = 1):
        self.device, self.num_devices = device, num_devices
        self.seconds: dict[str, float] = {}
        self.forward_equivalents = 0.0
        self.pairs_seen = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase (device-synchronised). Nested phases are subtracted from their parent."""
        self._sync()
        start = time.perf_counter()
        before = dict(self.seconds)
        try:
            yield
        finally:
            self._sync()
            elapsed = time.perf_counter() - start
            nested = sum(self.seconds.get(k, 0.0) - before.get(k, 0.0) for k in self.seconds)
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested

    def count_forward(self, images: int, with_grad: bool) -> None:
        self.forward_equivalents += images * (3 if with_grad else 1)

    def peak_memory_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)

    def state_dict(self) -> dict:
        return {"seconds": self.seconds, "forward_equivalents": self.forward_equivalents, "pairs_seen": self.pairs_seen}

    def load_state_dict(self, state: dict) -> None:
        self.seconds = dict(state["seconds"])
        self.forward_equivalents = float(state["forward_equivalents"])
        self.pairs_seen = int(state["pairs_seen"])

    def record(self) -> dict:
        """The cost.json record (schema version 1). Pairs and forward counts are global (all processes)."""
        phases = {k: {"seconds": v, "device_hours": v * self.num_devices / 3600.0} for k, v in self.seconds.items()}
        per_pair = self.forward_equivalents / self.pairs_seen if self.pairs_seen else None
        return {"schema_version": 1, "device": device_info(self.device, self.num_devices), "phases": phases,
                "device_hours_total": sum(p["device_hours"] for p in phases.values()),
                "peak_memory_bytes": self.peak_memory_bytes(), "pairs_seen": self.pairs_seen,
                "forward_equivalents": self.forward_equivalents, "forward_equivalents_per_pair": per_pair}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.record(), indent=2))
