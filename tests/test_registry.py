"""Registries: lazy lookup, did-you-mean, and a third-party method registered through the entry point group."""
from __future__ import annotations

import json
import sys

import pytest

from bench_common import Registry, UnknownNameError
from methods import METHODS

PLUGIN = '''
from dataclasses import dataclass
from methods.base import Method
from methods.diffusion import forward_noise, per_sample_error
from methods.losses import dpo_margin, sigmoid_loss
import torch

class HalfDPO(Method):
    """A third-party method living outside this repository (DPO with half the beta)."""
    paper = "plugin test"

    @dataclass
    class Config:
        beta: float = 10.0

    def loss(self, batch, ctx):
        n = len(batch)
        t = ctx.timesteps(batch.slots)
        eps = ctx.randn(batch.slots, tuple(batch.x0_w.shape[1:]), "noise")
        x_t, target = forward_noise(torch.cat([batch.x0_w, batch.x0_l]), torch.cat([t, t]), torch.cat([eps, eps]),
                                    ctx.alphas_cumprod)
        cond = batch.cond.repeat(2)
        err = per_sample_error(ctx.policy(x_t, torch.cat([t, t]), cond), target)
        ref = per_sample_error(ctx.reference(x_t, torch.cat([t, t]), cond), target)
        z = dpo_margin(err[:n], err[n:], ref[:n], ref[n:], self.config.beta / 2)
        return sigmoid_loss(z), {"acc": (z > 0).float()}
'''


def test_did_you_mean_and_lazy():
    reg = Registry("widget")
    reg.register("alpha", "json:dumps")  # lazy: imported on first get
    assert reg.get("alpha") is json.dumps
    with pytest.raises(UnknownNameError, match=r"unknown widget 'alpah'\. Did you mean 'alpha'\? Registered widgets: alpha"):
        reg.get("alpah")


def test_third_party_method_via_entry_point(tmp_path, monkeypatch):
    """A package installed elsewhere declares [project.entry-points."bench.methods"]; bench finds and trains it."""
    (tmp_path / "half_dpo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "half_dpo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: half-dpo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bench.methods]\nhalf-dpo = half_dpo_plugin:HalfDPO\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    assert "half-dpo" in METHODS.names()
    from bench.trainer import train
    from tests.helpers import tiny_config

    out = train(tiny_config("half-dpo", "tiny-sd15", "steps=1"), tmp_path / "run", show_progress=False)
    assert json.loads((out / "run.json").read_text())["method"] == "half-dpo"
    sys.modules.pop("half_dpo_plugin", None)
