"""Model registry, tiny models in diffusers format, missing-weights errors, SDXL conditioning, torchvision compat."""
from __future__ import annotations

import json

import pytest
import torch

from bench.models import MissingWeightsError, encode_text, load_components, make_cond, resolve_model


def test_missing_hub_weights_name_files_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(MissingWeightsError) as err:
        load_components("sdxl")
    msg = str(err.value)
    assert "stabilityai/stable-diffusion-xl-base-1.0" in msg and "unet/diffusion_pytorch_model.safetensors" in msg
    assert "hf download stabilityai/stable-diffusion-xl-base-1.0" in msg and "--model /path" in msg


def test_incomplete_local_folder(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(MissingWeightsError, match="not a diffusers model folder"):
        load_components(str(tmp_path / "m"))
    (tmp_path / "m" / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(MissingWeightsError, match="is incomplete: missing .*unet/config.json"):
        load_components(str(tmp_path / "m"))


def test_tiny_models_are_real_diffusers_folders():
    from diffusers import DiffusionPipeline

    for name, cls, fam in [("tiny-sd15", "StableDiffusionPipeline", "sd15"),
                           ("tiny-sdxl", "StableDiffusionXLPipeline", "sdxl")]:
        _, path, _, _ = resolve_model(name)
        assert type(DiffusionPipeline.from_pretrained(path)).__name__ == cls
        comps = load_components(path)  # a local folder goes through the same path
        assert comps.family == fam


def test_sdxl_conditioning_shapes():
    comps = load_components("tiny-sdxl")
    hidden, pooled = encode_text(comps, ["a red circle", ""])
    assert hidden.shape == (2, 77, 64) and pooled.shape == (2, 32)  # both encoders' hidden_states[-2] concatenated
    cond = make_cond(comps, hidden, pooled)
    assert torch.equal(cond.added["time_ids"][0], torch.tensor([32.0, 32, 0, 0, 32, 32]))
    out = comps.unet(torch.randn(2, 4, 16, 16), torch.tensor([1, 999]), **cond.unet_kwargs()).sample
    assert out.shape == (2, 4, 16, 16)


def test_clip_tokenizer_matches_open_clip():
    import open_clip

    comps = load_components("tiny-sd15")
    text = ["a photo of a Cat, on the mat!", "ünïcödé and numbers 12345"]
    ours = comps.tokenizers[0](text, padding="max_length", max_length=77, truncation=True).input_ids
    theirs = open_clip.get_tokenizer("ViT-B-32")(text).tolist()
    for a, b in zip(ours, theirs):
        n = a.index(49407) + 1
        assert a[:n] == b[:n]


def test_torchvision_and_clip_import_after_bench():
    import open_clip  # noqa: F401
    from transformers import CLIPModel  # noqa: F401
    import torchvision.transforms.functional as F

    assert F.resize(torch.rand(3, 10, 20), [5, 10], antialias=True).shape == (3, 5, 10)


def test_dtype_keyword_follows_the_installed_version(monkeypatch):
    """diffusers >= 0.40 and transformers >= 4.56 take ``dtype`` (and warn on ``torch_dtype``); older ones only
    ``torch_dtype``."""
    import diffusers
    import transformers

    from bench_common import dtype_kwarg
    for module, old, new in ((diffusers, "0.39.0", "0.40.0"), (transformers, "4.55.4", "4.56.0")):
        monkeypatch.setattr(module, "__version__", old)
        assert dtype_kwarg(module.__name__, torch.float16) == {"torch_dtype": torch.float16}
        monkeypatch.setattr(module, "__version__", new)
        assert dtype_kwarg(module.__name__, torch.float16) == {"dtype": torch.float16}


def test_loading_prints_no_dtype_deprecation(capfd):
    """Loading a model and its pipeline passes the dtype under the name the installed libraries expect: no
    ``torch_dtype`` deprecation warning (diffusers warns through ``warnings``, transformers through its logger)."""
    import warnings

    from bench.evaluate import load_pipeline
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_components("tiny-sdxl")
        load_pipeline("tiny-sd15")
    assert not [w for w in caught if "torch_dtype" in str(w.message)]
    assert "torch_dtype" not in capfd.readouterr().err
