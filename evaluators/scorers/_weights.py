"""Finding and safely loading the ORIGINAL weight files of the scorers.

A ``source`` is either a local path (a file, or a folder holding the named files) or a Hugging Face repository id.
Repository files go through huggingface_hub's cache only: with ``HF_HUB_OFFLINE`` set nothing is downloaded
(``local_files_only``), otherwise huggingface_hub may download on a user's machine. A file that cannot be found
raises one :class:`MissingWeightsError` naming every missing file and how to get it.

Loading is safe: safetensors, or ``torch.load(weights_only=True)``; never ``trust_remote_code``.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench_common import dtype_kwarg

# sha256 of the original files (Git LFS oids published on the Hub / computed from the authors' GitHub copy).
KNOWN_SHA256 = {
    "HPS_v2.1_compressed.pt": "c57a38fb4a2f7e7c15bf00da2ea377cdf165448b4dd1052a484c215a998c9837",
    "HPS_v2_compressed.pt": "07cb0d20626232204ca3a6ec53ff5984e7e53212a8a7b0e0ec2bac1bdaf125a1",
    "ImageReward.pt": "d71dc8d4912bc633c06ab8ef1ef6a81e8199d4369f14b47b29baf1d19de561f6",
    "sac+logos+ava1-l14-linearMSE.pth": "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0",
}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class MissingWeightsError(FileNotFoundError):
    """Weight or tokenizer files of a scorer are not on this machine (and may not be downloaded)."""

    def __init__(self, scorer: str, missing: list[tuple[str, str]], detail: str = ""):
        self.scorer, self.missing, self.detail = scorer, list(missing), detail
        by_source: dict[str, list[str]] = {}
        for src, name in self.missing:
            by_source.setdefault(str(src), []).append(name)
        what = "; ".join(f"{src}: {', '.join(names)}" for src, names in by_source.items())
        msg = f"scorer {scorer!r} is missing {what}."
        repos = {s: n for s, n in by_source.items() if not _looks_local(s)}
        if repos:
            cmds = " and ".join(f"`hf download {s} {' '.join(n)}`" for s, n in repos.items())
            msg += f" Get them with {cmds} (Hub cache under HF_HOME), or pass a local path."
        else:
            msg += " Check the local path."
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Checkpoint:
    """Identity of one weight file: where it came from and its sha256 (None when unknown)."""

    source: str
    filename: str
    sha256: str | None = None
    path: str | None = None

    @property
    def matches_original(self) -> bool | None:
        expected = KNOWN_SHA256.get(self.filename)
        return None if expected is None or self.sha256 is None else expected == self.sha256

    def as_dict(self) -> dict:
        return {**asdict(self), "expected_sha256": KNOWN_SHA256.get(self.filename)}


def hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _looks_local(source: str) -> bool:
    """A path, not a repo id: it exists, or it is absolute / relative-explicit / has more than one slash."""
    s = str(source)
    return os.path.exists(os.path.expanduser(s)) or s.startswith(("/", ".", "~")) or s.count("/") > 1 or "\\" in s


def resolve_files(scorer: str, source: str, filenames: list[str], optional: tuple[str, ...] = ()) -> dict[str, str]:
    """Local paths of ``filenames`` (+ those of ``optional`` that exist) from a local file/folder or an HF repo.

    A local FILE source stands for the single required file. All required files that are missing are reported
    together in one :class:`MissingWeightsError`.
    """
    found: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    detail = ""
    if _looks_local(source):
        root = Path(os.path.expanduser(str(source)))
        if root.is_file():
            if len(filenames) != 1:
                raise ValueError(f"scorer {scorer!r}: {source!r} is a file, but {filenames} are needed; pass a folder")
            return {filenames[0]: str(root)}
        for name in list(filenames) + list(optional):
            if (root / name).is_file():
                found[name] = str(root / name)
            elif name in filenames:
                missing.append((str(source), name))
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

        for name in list(filenames) + list(optional):
            try:
                found[name] = hf_hub_download(repo_id=source, filename=name, local_files_only=hub_offline())
            except (LocalEntryNotFoundError, EntryNotFoundError, RepositoryNotFoundError) as err:
                if name in filenames:
                    missing.append((source, name))
                    detail = type(err).__name__
    if missing:
        if not _looks_local(source) and hub_offline():
            detail = "HF_HUB_OFFLINE is set: nothing was downloaded"
        raise MissingWeightsError(scorer, missing, detail)
    return found


def resolve_first(scorer: str, source: str, alternatives: list[str]) -> tuple[str, str]:
    """(name, path) of the first of ``alternatives`` that can be found (e.g. safetensors before a .bin)."""
    for name in alternatives:
        try:
            return name, resolve_files(scorer, source, [name])[name]
        except MissingWeightsError as err:
            detail = err.detail
    raise MissingWeightsError(scorer, [(str(source), alternatives[0])], detail)


def resolve_all(scorer: str, *requests):
    """Run every resolution thunk; report ALL missing files of a scorer in one :class:`MissingWeightsError`."""
    results, missing, details = [], [], []
    for request in requests:
        try:
            results.append(request())
        except MissingWeightsError as err:
            missing += err.missing
            details += [d for d in err.detail.split("; ") if d and d not in details]
    if missing:
        raise MissingWeightsError(scorer, missing, "; ".join(details))
    return results


def file_sha256(path: str) -> str:
    """sha256 of a file; free for Hub-cache files (their blob is named by it), otherwise streamed."""
    real = os.path.realpath(path)
    if _HEX64.fullmatch(os.path.basename(real)):
        return os.path.basename(real)
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint(source: str, filename: str, path: str) -> Checkpoint:
    return Checkpoint(source=str(source), filename=filename, sha256=file_sha256(path), path=path)


def load_torch_file(path: str) -> dict:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``), memory-mapped if possible."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:  # legacy (non-zip) serialisation cannot be memory-mapped
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict_file(path: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix`` from a safetensors file (read lazily) or a torch file."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    return {k: v for k, v in load_torch_file(path).items() if k.startswith(prefix)}


def resolve_clip_files(scorer: str, source: str) -> tuple[str, str]:
    """(weights file name, its path) of a transformers CLIP folder / repo; ``config.json`` lies beside it."""
    cfg_path, (name, path) = resolve_all(
        scorer, lambda: resolve_files(scorer, source, ["config.json"])["config.json"],
        lambda: resolve_first(scorer, source, ["model.safetensors", "pytorch_model.bin"]))
    if os.path.dirname(cfg_path) != os.path.dirname(path):
        raise ValueError(f"scorer {scorer!r}: config.json and {name} are in different folders")
    return name, path


def load_clip_model(scorer: str, source: str, files: tuple[str, str], dtype: torch.dtype = torch.float32):
    """A transformers ``CLIPModel`` from the folder of ``files`` (from :func:`resolve_clip_files`), strictly.

    Only the ``position_ids`` buffers (persistent in old transformers, non-persistent now) may be unexpected; any
    missing or mismatched key raises.
    """
    from transformers import CLIPModel

    name, path = files
    model, info = CLIPModel.from_pretrained(os.path.dirname(path), output_loading_info=True,
                                            use_safetensors=name.endswith(".safetensors"),
                                            **dtype_kwarg("transformers", torch.float32))
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.endswith("position_ids")]
    bad = {"missing": list(info.get("missing_keys", [])), "unexpected": unexpected,
           "mismatched": [str(m) for m in info.get("mismatched_keys", [])]}
    if any(bad.values()):
        raise RuntimeError(f"scorer {scorer!r}: {source!r} does not match CLIPModel strictly: {bad}")
    return model.eval().to(dtype), checkpoint(source, name, path)
