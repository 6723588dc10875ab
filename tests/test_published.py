"""Published checkpoints (bench/published.py) and ``bench scoreboard``, without downloads.

Stand-ins with the SAME file layouts as the releases are written into a throwaway Hugging Face hub cache (the
layout huggingface_hub itself writes: models--org--name/refs/main + snapshots/<commit>/...): the base models SD1.5
and SDXL (tiny pipelines), SDXL's fp16-fix VAE (a VAE folder at the repository root), a UNet in unet/ (DPO, KTO,
SmPO, InPO), a UNet at the root (MaPO), a full pipeline (SPO) and a LoRA file with the authors' file name (SPO LoRA).
They load through the registry by their real hub ids, exactly as the real files would.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.models import MODELS, MissingWeightsError, _built_path, resolve_model
from bench.published import PUBLISHED, published_of
from evaluators.scorers.registry import SCORERS
from tests.helpers import MeanGreen

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _snapshot(cache: Path, repo: str) -> Path:
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _perturbed_unet(tiny: Path, seed: int):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny / "unet")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return unet


def _lora_file(tiny: Path, folder: Path, weight_name: str, sdxl: bool) -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))  # peft starts B at zero: make the LoRA act
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    cls.save_lora_weights(str(folder), unet_lora_layers=layers, weight_name=weight_name)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A hub cache holding a stand-in of every registered release and of its base model (and the SDXL VAE)."""
    cache = tmp_path_factory.mktemp("hub")
    tiny = {"sd15": _built_path(MODELS.get("tiny-sd15")), "sdxl": _built_path(MODELS.get("tiny-sdxl"))}
    for base in ("sd15", "sdxl"):
        shutil.copytree(tiny[base], _snapshot(cache, MODELS.get(base).source), dirs_exist_ok=True)
    shutil.copytree(tiny["sdxl"] / "vae", _snapshot(cache, MODELS.get("sdxl").vae), dirs_exist_ok=True)
    for i, (name, ckpt, _) in enumerate(PUBLISHED):
        snap = _snapshot(cache, ckpt.repo)
        t = tiny[ckpt.base]
        if ckpt.layout == "unet":
            _perturbed_unet(t, i).save_pretrained(snap / ckpt.subfolder if ckpt.subfolder else snap)
        elif ckpt.layout == "pipeline":
            shutil.copytree(t, snap, dirs_exist_ok=True)
            _perturbed_unet(t, i).save_pretrained(snap / "unet")
            if ckpt.base == "sd15":  # as SPO's SD1.5 pipeline lists them; bench fetches neither folder
                index = json.loads((snap / "model_index.json").read_text())
                index.update(safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
                             feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True)
                (snap / "model_index.json").write_text(json.dumps(index))
        else:
            _lora_file(t, snap, ckpt.weight_name, ckpt.base == "sdxl")
    return cache


@pytest.fixture
def with_hub(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


def test_every_release_is_registered_with_its_source():
    names = [n for n, _, _ in PUBLISHED]
    assert {"dpo-sd15", "dpo-sdxl", "mapo-sdxl", "smpo-sd15", "smpo-sdxl", "kto-sd15", "inpo-sd15", "spo-sd15",
            "spo-sdxl-lora"} <= set(names)
    for name in names:
        spec = MODELS.get(name)
        c = spec.checkpoint
        assert c.base in ("sd15", "sdxl") and spec.family == c.base and c.layout in ("unet", "lora", "pipeline")
        assert c.paper and c.licence and c.reference and c.method
        assert (c.weight_name is not None) == (c.layout == "lora")
    assert MODELS.get("dpo-sd15").checkpoint.repo == "mhdang/dpo-sd1.5-text2image-v1"
    assert MODELS.get("mapo-sdxl").checkpoint.subfolder == ""  # MaPO's UNet sits at the repository root
    assert published_of("sdxl")[0] == "dpo-sdxl" and "dpo-sd15" not in published_of("sdxl")
    out = CliRunner().invoke(app, ["ls", "models"]).output
    assert "mhdang/dpo-sdxl-text2image-v1" in out and "licence: openrail++" in out and "arXiv 2506.02698" in out


def test_missing_checkpoint_names_files_and_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        resolve_model("mapo-sdxl")
    msg = str(err.value)
    assert "mapo-t2i/mapo-beta" in msg and "diffusion_pytorch_model.safetensors" in msg
    assert "hf download mapo-t2i/mapo-beta config.json diffusion_pytorch_model.safetensors" in msg
    with pytest.raises(MissingWeightsError, match="spo_sdxl_10ep_4k-data_lora_diffusers.safetensors"):
        resolve_model("spo-sdxl-lora")


def _unet_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", [n for n, _, _ in PUBLISHED])
def test_every_release_loads_through_the_registry(with_hub, name):
    """The stand-in of each release, in its real layout, loads into its base pipeline by its registered name: the
    UNet is the release's (not the base's), a LoRA changes the UNet's output, a full pipeline is its own."""
    from diffusers import UNet2DConditionModel

    from bench.evaluate import load_pipeline

    c = MODELS.get(name).checkpoint
    base = load_pipeline(c.base)
    pipe = load_pipeline(name)
    assert type(pipe).__name__ == type(base).__name__
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    snap = _snapshot(with_hub, c.repo)
    if c.layout in ("unet", "pipeline"):
        want = UNet2DConditionModel.from_pretrained(snap / c.subfolder if c.subfolder else snap / "unet"
                                                    if c.layout == "pipeline" else snap)
        assert _unet_equal(pipe.unet, want) and not _unet_equal(pipe.unet, base.unet)
    else:
        x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        ctx = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
        kw = {}
        if c.base == "sdxl":
            proj = pipe.unet.config.projection_class_embeddings_input_dim - 6 * pipe.unet.config.addition_time_embed_dim
            kw = {"added_cond_kwargs": {"text_embeds": torch.zeros(1, proj), "time_ids": torch.zeros(1, 6)}}
        with torch.no_grad():
            assert not torch.allclose(pipe.unet(x, 10, ctx, **kw).sample, base.unet(x, 10, ctx, **kw).sample)
    if c.base == "sdxl":  # the protocol's VAE loads from its own repository layout (config.json at the root)
        vae = load_pipeline(name, vae=MODELS.get("sdxl").vae).vae
        assert vae.config.latent_channels == 4


def test_training_starts_from_a_release(with_hub):
    """``--model dpo-sd15`` trains from the published UNet; a LoRA release is fused into the model's weights."""
    from bench.models import load_components

    base = load_components("sd15")
    dpo = load_components("dpo-sd15")
    assert not _unet_equal(dpo.unet, base.unet) and dpo.identity != base.identity
    lora = load_components("spo-sd15-lora")
    assert not _unet_equal(lora.unet, base.unet)
    assert not any("lora" in k for k in lora.unet.state_dict())  # fused, no adapter left


def _prompts(tmp_path: Path) -> Path:
    f = tmp_path / "prompts.txt"
    f.write_text("a red circle\na blue square\na cat on a mat\n")
    return f


def test_scoreboard_end_to_end_and_reuse(with_hub, tmp_path, monkeypatch):
    """Base and every SD1.5 release under one protocol: the table (with the papers' rows), win rates against the
    base, every model against every other and report.html; a rerun reuses every evaluation, even with the weights
    gone."""
    monkeypatch.setattr(SCORERS, "_items", {**SCORERS._items, "mean-green": MeanGreen})
    args = ["scoreboard", "--base", "sd15", "--prompts", str(_prompts(tmp_path)), "--metrics", "mean-green",
            "--steps", "2", "--resolution", "32", "--images-per-prompt", "2", "--output-dir", str(tmp_path / "sb"),
            "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = tmp_path / "sb" / "scoreboard-sd15"
    readme = (out / "README.md").read_text()
    models = ["sd15", *published_of("sd15")]
    for m in models:
        assert f"| {m} |" in readme
    assert "paper: SmPO-SD1.5" in readme and "ddim 2 steps, CFG 7.5, 32 px" in readme
    wins = __import__("pandas").read_csv(out / "win_rates.csv")
    assert sorted(wins.run) == sorted(models[1:]) and set(wins.baseline) == {"sd15"} and set(wins.n) == {6}
    assert (out / "pairwise.csv").is_file() and (out / "report.html").stat().st_size > 10_000
    folders = sorted(p for p in (tmp_path / "sb").iterdir() if p.name.startswith("base-"))
    assert len(folders) == len(models)
    for f in folders:  # the same seeds and generation spec for every model
        s = json.loads((f / "eval" / "prompts" / "summary.json").read_text())
        assert s["generation"]["steps"] == 2 and s["generation"]["cfg"] == 7.5
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # no weights at all: rendered from the cache
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "== " not in again.output


def test_scoreboard_refuses_missing_weights_unless_told(with_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(SCORERS, "_items", {**SCORERS._items, "mean-green": MeanGreen})
    snap = _snapshot(with_hub, "mapo-t2i/mapo-beta")
    moved = tmp_path / "moved"
    shutil.move(str(snap), moved)
    try:
        args = ["scoreboard", "--base", "sdxl", "--models", "mapo-sdxl,dpo-sdxl", "--prompts",
                str(_prompts(tmp_path)), "--metrics", "mean-green", "--steps", "1", "--resolution", "32",
                "--images-per-prompt", "1", "--output-dir", str(tmp_path / "sb"), "--quiet"]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "mapo-sdxl" in res.output and "hf download mapo-t2i/mapo-beta" in res.output
        assert "--skip-missing" in res.output
        res = CliRunner().invoke(app, [*args, "--skip-missing"])
        assert res.exit_code == 0, res.output
        readme = (tmp_path / "sb" / "scoreboard-sdxl" / "README.md").read_text()
        assert "| dpo-sdxl |" in readme and "Not scored" in readme and "mapo-sdxl:" in readme
        assert "madebyollin/sdxl-vae-fp16-fix" in readme
    finally:
        shutil.move(str(moved), snap)


def test_download_fetches_only_what_a_model_lacks(hub, tmp_path, monkeypatch):
    """``--download`` asks the hub for a release's own files, its base model's pipeline files and the VAE; then the
    scoreboard runs. (The hub is the stand-in cache: "downloading" copies a repository from it.)"""
    import huggingface_hub

    from bench.models import PIPELINE_PATTERNS

    calls = []

    def fake_snapshot_download(repo, allow_patterns=None, cache_dir=None):
        calls.append((repo, list(allow_patterns)))
        name = f"models--{repo.replace('/', '--')}"
        shutil.copytree(hub / name, Path(cache_dir) / name, dirs_exist_ok=True)
        return str(Path(cache_dir) / name / "snapshots" / COMMIT)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(SCORERS, "_items", {**SCORERS._items, "mean-green": MeanGreen})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    args = ["scoreboard", "--base", "sdxl", "--models", "mapo-sdxl", "--prompts", str(_prompts(tmp_path)),
            "--metrics", "mean-green", "--steps", "1", "--resolution", "32", "--images-per-prompt", "1",
            "--output-dir", str(tmp_path / "sb"), "--quiet"]
    assert CliRunner().invoke(app, args).exit_code == 2 and not calls  # nothing fetched unless asked
    res = CliRunner().invoke(app, [*args, "--download"])
    assert res.exit_code == 0, res.output
    assert ("stabilityai/stable-diffusion-xl-base-1.0", PIPELINE_PATTERNS) in calls
    assert ("mapo-t2i/mapo-beta", ["config.json", "diffusion_pytorch_model.safetensors"]) in calls
    assert ("madebyollin/sdxl-vae-fp16-fix", ["config.json", "diffusion_pytorch_model.safetensors"]) in calls
