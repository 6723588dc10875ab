"""Configs: presets, overrides, did-you-mean errors, effective batch."""
from __future__ import annotations

import pytest

from bench.config import ConfigError, RunConfig, grad_accum_for, preset_path, resolve
from methods import get_method

DPO = get_method("dpo")


def test_typo_gets_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr'\. Did you mean 'lr'\?"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["train.lrr=1e-5"])
    with pytest.raises(ConfigError, match=r"Did you mean 'steps'\?"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["stepz=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'method.betta' for method 'dpo'\. Did you mean 'beta'\?"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["method.betta=1"])
    with pytest.raises(ConfigError, match=r"train.optimizer='adamm' is not one of .* Did you mean 'adamw'\?"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["optimizer=adamm"])
    with pytest.raises(ConfigError, match=r"train.lr_scheduler='cosin' is not one of .* Did you mean 'cosine'\?"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["lr_scheduler=cosin"])


def test_precedence_defaults_preset_file_overrides(tmp_path):
    cfg, sources = resolve("dpo", "sd15", "sd15", DPO, None, [])
    assert cfg.train.lr == 2.048e-5 and cfg.train.effective_batch == 2048 and cfg.method_args["beta"] == 5000.0
    f = tmp_path / "mine.toml"
    f.write_text("[train]\nlr = 1e-6\nsteps = 7\n[method]\nbeta = 2000\n")
    cfg, sources = resolve("dpo", "sd15", "sd15", DPO, str(f), ["steps=9", "data.keep_ties=true"])
    assert (cfg.train.lr, cfg.train.steps, cfg.method_args["beta"], cfg.data.keep_ties) == (1e-6, 9, 2000.0, True)
    assert sources[:4] == ["defaults", "preset sd15/family", "preset sd15/dpo", f"file {f}"]
    assert cfg.eval.prompts == "hpdv2" and cfg.data.source == "yuvalkirstain/pickapic_v2"


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match="train.steps: expected int, got 'ten'"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["steps=ten"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["steps"])
    with pytest.raises(ConfigError, match=r"train.noise_offset must be >= 0"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["noise_offset=-0.1"])
    with pytest.raises(ConfigError, match="lora-disabled needs a LoRA run"):
        resolve("dpo", "tiny-sd15", None, DPO, None, ["train.reference=lora-disabled"])


def test_free_form_strategy_arguments():
    cfg, _ = resolve("dpo", "tiny-sd15", None, DPO, None, ["train.ref_update_args.alpha=0.1", "ref_update=stable"])
    assert cfg.train.ref_update == "stable" and cfg.train.ref_update_args == {"alpha": 0.1}


def test_effective_batch_sets_accumulation():
    cfg = RunConfig()
    cfg.train.batch_size, cfg.train.effective_batch = 1, 2048
    assert grad_accum_for(cfg, 16) == 128 and grad_accum_for(cfg, 8) == 256
    cfg.train.batch_size = 3
    with pytest.raises(ConfigError, match="not a multiple"):
        grad_accum_for(cfg, 1)


def test_every_preset_parses():
    from bench.config import PRESET_DIR
    from methods import METHODS

    for f in PRESET_DIR.glob("*/*.toml"):
        if f.parent.name == "ablation":
            resolve("smpo", "tiny-sd15", "tiny", get_method("smpo"), f"ablation/{f.stem}", [])
            continue
        if f.stem == "family":
            continue
        method = f.stem
        assert method in METHODS, f"preset {f} names an unregistered method"
        cfg, _ = resolve(method, "tiny-sd15", f.parent.name, get_method(method), None, [])
        assert preset_path(f.parent.name, method) == f
    for family in ("sd15", "sdxl", "tiny"):  # every registered method has a preset for every family
        assert all(preset_path(family, m).is_file() for m in METHODS.names()), family


def test_toy_fine_tunes_with_the_toy_base_models_training_noise():
    """The toy family preset's noise_offset is the toy base model's own training offset noise."""
    from bench.toy.basemodel import BaseModelConfig

    cfg, _ = resolve("dpo", "toy", "toy", DPO, None, [])
    assert cfg.train.noise_offset == BaseModelConfig().offset_noise > 0
    assert resolve("dpo", "sd15", "sd15", DPO, None, [])[0].train.noise_offset == 0.0


def test_ablation_rows_reduce_to_their_definition():
    smpo = get_method("smpo")
    rows = {}
    for row in ("smpo-dpo", "smpo-ddim", "smpo-renoise", "smpo-full"):
        cfg, _ = resolve("smpo", "sd15", "sd15", smpo, f"ablation/{row}", [])
        rows[row] = (cfg.method_args["inversion"], cfg.method_args["smooth_labels"], cfg.method_args["gamma"],
                     cfg.method_args["beta"], cfg.method_args["inversion_steps"])
    assert rows == {"smpo-dpo": ("none", False, 1.0, 2000.0, 5), "smpo-ddim": ("ddim", False, 1.0, 2000.0, 5),
                    "smpo-renoise": ("renoise", False, 1.0, 2000.0, 5), "smpo-full": ("renoise", True, 10.0, 2000.0, 5)}


def test_a_decaying_schedule_fixes_the_steps_on_resume():
    """train.steps may change on resume under the constant schedule (the run just goes on); under a decaying one
    the schedule is a function of train.steps, so changing them is refused like any other training setting."""
    from bench.config import resume_changes

    for schedule, refused in (("constant_with_warmup", []), ("cosine", ["train.steps: 4 -> 8"])):
        saved, _ = resolve("dpo", "tiny-sd15", None, DPO, None, ["steps=4", f"lr_scheduler={schedule}"])
        new, _ = resolve("dpo", "tiny-sd15", None, DPO, None, ["steps=8", f"lr_scheduler={schedule}"])
        assert resume_changes(saved, new)[0] == refused
