"""Prompt sets (DESIGN.md section 7): a registry of loaders, and user prompt files.

``load_prompts(spec)`` takes a registered name (``hpdv2``, ``pickapic-test``, ``partiprompts``, ``toy``;
``bench ls prompts``), a name with a source (``hpdv2:/data/hpdv2-benchmark``, ``pickapic-test:/data/pickapic_v2``,
``partiprompts:PartiPrompts.tsv``), or a file: ``.txt`` (one prompt per line, blank lines skipped), ``.csv``
(a ``prompt`` or ``caption`` column), ``.jsonl`` (a ``prompt`` or ``caption`` key) or ``.json`` (a list).

Hub sources are read through huggingface_hub (only from its cache when ``HF_HUB_OFFLINE=1``). Missing files
give one line naming what is missing and how to get it. Nothing here is downloaded silently in tests.

HPDv2 strictness: the benchmark is 4 styles x 800 prompts. Loaded with ``strict=True`` (the default), any other
count is an error, since numbers on a partial set are not comparable with the papers'. ``strict=False`` (or the spec
``hpdv2:FOLDER?strict=0``) accepts other counts, e.g. for small test folders.

A prompt set's ``hash`` (sha256 of the prompts joined by newlines, 16 hex digits) is stored with every evaluation;
win rates refuse to pair evaluations whose hashes differ. Registering a set is one line::

    PROMPT_SETS.register("toy", "evaluators.toy:toy_prompt_set")   # a function (source=None, **kw) -> PromptSet
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bench_common import Registry

HPDV2_REPO = "zhwang/HPDv2"
HPDV2_STYLES = ("anime", "concept-art", "paintings", "photo")
HPDV2_PER_STYLE = 800
PICKAPIC_REPO = "yuvalkirstain/pickapic_v2"
PARTI_REPO = "nateraw/parti-prompts"
PARTI_FILE = "PartiPrompts.tsv"
PARTI_COUNT = 1632

PROMPT_SETS = Registry("prompt set", entry_point_group="bench.prompts")


class PromptSetError(ValueError):
    """A prompt set that cannot be loaded; the message says how to fix it."""


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: list[str]
    styles: list[str] | None
    source: str

    def __post_init__(self) -> None:
        if not self.prompts:
            raise PromptSetError(f"prompt set {self.name!r} from {self.source} is empty")
        if self.styles is not None and len(self.styles) != len(self.prompts):
            raise PromptSetError(f"prompt set {self.name!r}: {len(self.styles)} styles for {len(self.prompts)} prompts")

    @cached_property
    def hash(self) -> str:
        return hashlib.sha256("\n".join(self.prompts).encode("utf-8")).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, limit: int) -> "PromptSet":
        """The first ``limit`` prompts; with styles, the first ``limit / n_styles`` of each style (balanced),
        in the set's order. Named ``NAME-nLIMIT`` so its evaluation folder differs from the full set's."""
        if limit <= 0:
            raise PromptSetError(f"limit must be positive, got {limit}")
        if limit >= len(self.prompts):
            return self
        if self.styles is None:
            idx = list(range(limit))
        else:
            by_style: dict[str, list[int]] = {}
            for i, s in enumerate(self.styles):
                by_style.setdefault(s, []).append(i)
            queues, idx = list(by_style.values()), []
            for rank in range(max(len(q) for q in queues)):
                idx.extend(q[rank] for q in queues if rank < len(q))
            idx = sorted(idx[:limit])
        return PromptSet(f"{self.name}-n{limit}", [self.prompts[i] for i in idx],
                         None if self.styles is None else [self.styles[i] for i in idx], self.source)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _clean(prompts: list, where: str) -> list[str]:
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise PromptSetError(f"{where}: entry {i} is {type(p).__name__}, not a prompt string")
        out.append(p)
    return out


# ---------------------------------------------------------------- user files

def _column(names: list[str], where: str) -> str:
    for c in ("prompt", "Prompt", "caption", "Caption"):
        if c in names:
            return c
    raise PromptSetError(f"{where} has no 'prompt' or 'caption' column (columns: {', '.join(names)})")


def load_prompt_file(path: str | os.PathLike, name: str | None = None) -> PromptSet:
    """Prompts from a .txt, .csv, .tsv, .jsonl or .json file."""
    path = Path(path)
    if not path.is_file():
        raise PromptSetError(f"prompt file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        col = _column(list(rows[0].keys()) if rows else [], str(path))
        prompts = [r[col] for r in rows]
    elif suffix == ".jsonl":
        prompts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if isinstance(obj, str):
                prompts.append(obj)
                continue
            prompts.append(obj[_column(list(obj), f"{path} line {n}")])
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise PromptSetError(f"{path}: expected a JSON list of prompts")
        prompts = [d if isinstance(d, str) else d[_column(list(d), str(path))] for d in data]
    else:
        raise PromptSetError(f"unsupported prompt file {path}: use .txt (one prompt per line), .csv/.tsv "
                             "(a 'prompt' or 'caption' column), .jsonl or .json")
    return PromptSet(name or path.stem, _clean(prompts, str(path)), None, str(path))


# ---------------------------------------------------------------- HPDv2

def load_hpdv2(source: str | os.PathLike | None = None, strict: bool = True) -> PromptSet:
    """HPDv2 test prompts: ``{anime,concept-art,paintings,photo}.json`` (JSON lists of strings) from a folder,
    or ``benchmark/{style}.json`` of the HF dataset ``zhwang/HPDv2`` (``source`` None or that id)."""
    files = [f"{s}.json" for s in HPDV2_STYLES]
    paths: list[Path] = []
    if source is not None and Path(source).is_dir():
        folder = Path(source)
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise PromptSetError(f"HPDv2 folder {folder} lacks {', '.join(missing)} (needs {', '.join(files)}); "
                                 f"get them with `hf download {HPDV2_REPO} --repo-type dataset --include "
                                 f"'benchmark/*.json' --local-dir DIR` and pass DIR/benchmark")
        paths = [folder / f for f in files]
        where = str(folder)
    else:
        repo = str(source or HPDV2_REPO)
        from huggingface_hub import hf_hub_download
        try:
            paths = [Path(hf_hub_download(repo, f"benchmark/{f}", repo_type="dataset",
                                          local_files_only=_offline())) for f in files]
        except Exception as err:  # noqa: BLE001 - hub errors have many types; all mean "not available"
            raise PromptSetError(
                f"HPDv2 prompt files benchmark/{{{','.join(HPDV2_STYLES)}}}.json of the dataset {repo} are not "
                f"available{' offline' if _offline() else ''} ({type(err).__name__}). Get them with "
                f"`hf download {repo} --repo-type dataset --include 'benchmark/*.json'`, or pass a folder holding "
                f"{', '.join(files)} (prompts 'hpdv2:FOLDER')") from None
        where = f"hf://datasets/{repo}/benchmark"
    prompts, styles = [], []
    for style, p in zip(HPDV2_STYLES, paths):
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise PromptSetError(f"{p}: expected a JSON list of prompts")
        if strict and len(data) != HPDV2_PER_STYLE:
            raise PromptSetError(f"{p} has {len(data)} prompts, the HPDv2 benchmark has {HPDV2_PER_STYLE} per style;"
                                 " pass strict=False (prompts 'hpdv2:FOLDER?strict=0') to use it anyway")
        prompts += _clean(data, str(p))
        styles += [style] * len(data)
    return PromptSet("hpdv2", prompts, styles, where)


# ---------------------------------------------------------------- Pick-a-Pic v2 test

def _unique(captions) -> list[str]:
    return list(dict.fromkeys(str(c) for c in captions))


def _parquet_captions(files: list[Path]) -> list[str]:
    import pyarrow.parquet as pq

    captions: list[str] = []
    for f in files:
        captions += pq.read_table(f, columns=["caption"]).column("caption").to_pylist()
    return captions


def _split_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.parquet"))
    for split in ("test_unique", "test"):
        chosen = [f for f in files if f.name.startswith(f"{split}-") or f.parent.name == split]
        if chosen:
            return chosen
    return files


def load_pickapic_test(source: str | os.PathLike | None = None, split: str | None = None) -> PromptSet:
    """Unique captions (first-appearance order) of Pick-a-Pic v2's test split (``test_unique`` if present, else
    ``test``): from a ``save_to_disk`` folder, a folder of parquet files, one parquet file, or an HF dataset id
    (only the test parquet files are fetched, and only their caption column is read)."""
    src = str(source or PICKAPIC_REPO)
    p = Path(src)
    name = "pickapic-test"
    if p.is_file() and p.suffix == ".parquet":
        return PromptSet(name, _unique(_parquet_captions([p])), None, str(p))
    if p.is_dir():
        if (p / "dataset_dict.json").is_file() or (p / "dataset_info.json").is_file():
            from datasets import load_from_disk
            ds = load_from_disk(str(p))
            if hasattr(ds, "keys"):  # DatasetDict
                split = split or next((s for s in ("test_unique", "test") if s in ds), None)
                if split not in ds:
                    raise PromptSetError(f"{p} has no split {split or 'test_unique/test'} (has: {', '.join(ds)})")
                ds = ds[split]
            return PromptSet(name, _unique(ds["caption"]), None, str(p))
        files = _split_files(p) if split is None else sorted(p.rglob(f"{split}-*.parquet"))
        if not files:
            raise PromptSetError(f"{p} holds no parquet files of Pick-a-Pic's test split")
        return PromptSet(name, _unique(_parquet_captions(files)), None, str(p))
    if src.count("/") != 1 or src.startswith((".", "/")):
        raise PromptSetError(f"Pick-a-Pic source {src!r} is neither an existing folder/parquet file nor an HF id")
    from huggingface_hub import snapshot_download
    splits = [split] if split else ["test_unique", "test"]
    for s in splits:
        try:
            root = Path(snapshot_download(src, repo_type="dataset", allow_patterns=[f"data/{s}-*.parquet"],
                                          local_files_only=_offline()))
        except Exception:  # noqa: BLE001
            continue
        files = sorted((root / "data").glob(f"{s}-*.parquet"))
        if files:
            return PromptSet(name, _unique(_parquet_captions(files)), None, f"hf://datasets/{src}:{s}")
    raise PromptSetError(f"the test split of {src} is not available{' offline' if _offline() else ''}. Get it with "
                         f"`hf download {src} --repo-type dataset --include 'data/test_unique-*'` or pass a "
                         "save_to_disk folder or parquet files (prompts 'pickapic-test:PATH')")


# ---------------------------------------------------------------- PartiPrompts

def load_partiprompts(source: str | os.PathLike | None = None, strict: bool = True) -> PromptSet:
    """PartiPrompts (1632): a local .tsv/.csv/.jsonl with a ``Prompt``/``prompt`` column, or ``PartiPrompts.tsv``
    of the HF dataset ``nateraw/parti-prompts``."""
    if source is not None and Path(source).is_file():
        ps = load_prompt_file(source, "partiprompts")
    else:
        repo = str(source or PARTI_REPO)
        from huggingface_hub import hf_hub_download
        try:
            path = hf_hub_download(repo, PARTI_FILE, repo_type="dataset", local_files_only=_offline())
        except Exception as err:  # noqa: BLE001
            raise PromptSetError(f"{PARTI_FILE} of the dataset {repo} is not available"
                                 f"{' offline' if _offline() else ''} ({type(err).__name__}). Get it with "
                                 f"`hf download {repo} {PARTI_FILE} --repo-type dataset`, or pass the file "
                                 "(prompts 'partiprompts:FILE')") from None
        ps = load_prompt_file(path, "partiprompts")
    if strict and len(ps) != PARTI_COUNT:
        raise PromptSetError(f"{ps.source} has {len(ps)} prompts, PartiPrompts has {PARTI_COUNT}; "
                             "pass strict=False to use it anyway")
    return PromptSet("partiprompts", ps.prompts, None, ps.source)


PROMPT_SETS.register("hpdv2", load_hpdv2)
PROMPT_SETS.register("pickapic-test", load_pickapic_test)
PROMPT_SETS.register("partiprompts", load_partiprompts)
PROMPT_SETS.register("toy", "evaluators.toy:toy_prompt_set")  # the toy world's 64 held-out prompts


# ---------------------------------------------------------------- resolution

def _parse_options(text: str) -> dict:
    opts = {}
    for item in filter(None, text.split("&")):
        key, _, value = item.partition("=")
        low = value.lower()
        opts[key] = False if low in ("0", "false", "no") else True if low in ("1", "true", "yes") else value
    return opts


def load_prompts(spec: str, limit: int | None = None, **kwargs) -> PromptSet:
    """Resolve ``spec``: ``NAME``, ``NAME:SOURCE[?key=value&...]`` or an existing prompt file; keep ``limit``."""
    name, sep, rest = spec.partition(":")
    if sep and name in PROMPT_SETS and not Path(spec).exists():
        source, _, query = rest.partition("?")
        ps = PROMPT_SETS.get(name)(source or None, **{**_parse_options(query), **kwargs})
    elif spec in PROMPT_SETS:
        ps = PROMPT_SETS.get(spec)(**kwargs)
    elif Path(spec).expanduser().is_file():
        ps = load_prompt_file(Path(spec).expanduser())
    else:
        msg = PROMPT_SETS.unknown_message(spec)
        raise PromptSetError(f"{msg} Or pass a prompt file (.txt, .csv, .jsonl) that exists.")
    return ps.subset(limit) if limit is not None else ps
