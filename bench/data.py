"""Preference data in the Pick-a-Pic v2 schema (``jpg_0``, ``jpg_1``, ``label_0``, ``caption``).

Sources: an HF dataset id, a ``save_to_disk`` folder, parquet file(s) or a folder of them, ``toy`` (the toy world's
shipped panel-labelled pairs, ``bench/toy/assets/pairs.parquet``) or ``embedded`` (a small procedural set the suite
writes itself, for dry runs of the tiny random models). Preparation, done once per (source, options) and cached:

1. rows with ties (``label_0 == 0.5``) are dropped unless ``keep_ties``;
2. every image is decoded; a corrupt or undecodable image drops its WHOLE pair (counted, reported), so winners and
   losers never misalign;
3. pairs are stored winner first (``label_0 == 0`` swaps them; kept ties keep jpg_0 first).

What does not depend on trainable weights is cached (``data.cache``): VAE posterior mean/logvar per image and flip
variant, and the text conditioning per unique caption (plus ""). What is random per step (flip, caption dropout,
posterior sample) is drawn per sample slot from ``bench.rng`` in the SAME order with and without the cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from bench import rng
from bench.config import DataConfig
from bench.models import Components, cache_root, encode_text, make_cond
from bench_common import atomic_write_text
from methods.base import Cond, ImageBatch, PairBatch

REQUIRED_COLUMNS = ("jpg_0", "jpg_1", "label_0", "caption")


class DataError(ValueError):
    """Unusable preference data (missing column, empty after filtering, unknown source). Names the fix."""


# ----------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------

def open_source(source: str, split: str = "train", cache_dir: Path | None = None):
    """An HF ``datasets.Dataset`` for a source string, with image columns left as raw bytes."""
    import datasets

    if source == "embedded":
        from bench.embedded import embedded_parquet
        return open_source(str(embedded_parquet(cache_dir or data_cache_dir())), split)
    if source == "toy":
        from bench.toy import pairs_file
        return open_source(str(pairs_file()), split)
    p = Path(source).expanduser()
    if p.is_dir() and ((p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{p} has splits {list(ds)}, not {split!r}: set data.split")
            ds = ds[split]
    elif p.is_dir() or p.suffix == ".parquet" or "*" in source:
        if p.suffix == ".parquet" and "*" not in source and not p.is_file():
            raise DataError(f"data file {p} does not exist; check the path (--data / data.source)")
        files = sorted(str(f) for f in p.glob("**/*.parquet")) if p.is_dir() else [source]
        if not files:
            raise DataError(f"no parquet files under {p}")
        rows = 0
        for f in files if "*" not in source else []:  # checked here: datasets fails on these with log noise
            try:
                rows += pq.ParquetFile(f).metadata.num_rows
            except Exception as err:  # noqa: BLE001 - unreadable or not parquet at all
                raise DataError(f"could not read {f} as parquet ({type(err).__name__}: "
                                f"{(str(err).splitlines() or [''])[0][:200]}); pass Pick-a-Pic v2 parquet file(s) "
                                f"with columns {list(REQUIRED_COLUMNS)}") from None
        if files and "*" not in source and rows == 0:
            raise DataError(f"data source {source!r} is empty (0 rows)")
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    elif p.exists():
        raise DataError(f"{p}: expected a save_to_disk folder, parquet file(s) or a folder of parquet files")
    elif source.count("/") == 1:
        try:
            ds = datasets.load_dataset(source, split=split)
        except Exception as err:  # offline, missing, gated
            raise DataError(f"could not load dataset {source!r} split {split!r} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200]}). Download it first (`hf download {source} "
                            f"--repo-type dataset`), or pass a local save_to_disk folder or parquet files.") from None
    else:
        raise DataError(f"data source {source!r} is not 'embedded', 'toy', an existing path, or an HF dataset id "
                        "(org/name)")
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise DataError(f"data source {source!r} lacks column(s) {missing}; the Pick-a-Pic v2 schema needs "
                        f"{list(REQUIRED_COLUMNS)} (found {ds.column_names})")
    for col in ("jpg_0", "jpg_1"):
        feat = ds.features[col]
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
    return ds


def data_cache_dir(cfg: DataConfig | None = None) -> Path:
    return Path(cfg.cache_dir) if cfg is not None and cfg.cache_dir else cache_root()


def dataset_fingerprint(ds) -> str:
    """Identity of the source rows (HF datasets' content fingerprint and length)."""
    return hashlib.sha256(f"{getattr(ds, '_fingerprint', None)}|{len(ds)}".encode()).hexdigest()[:16]


def _fingerprint(ds, cfg: DataConfig) -> str:
    """Identity of the usable pair list: the rows and the options that select among them."""
    key = json.dumps({"ds": dataset_fingerprint(ds), "keep_ties": cfg.keep_ties, "max_pairs": cfg.max_pairs, "v": 1})
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def image_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected image bytes, got {type(value).__name__}")


def decode_image(value: Any) -> Image.Image:
    img = Image.open(io.BytesIO(image_bytes(value)))
    img.load()
    return img.convert("RGB")


# ----------------------------------------------------------------------------------------------------------------
# Validated pairs
# ----------------------------------------------------------------------------------------------------------------

def pairs_report(n: int, dropped: dict[str, int]) -> str:
    """"N pairs, K dropped (reason), ..." for the trainer's banner."""
    return ", ".join([f"{n} pairs"] + [f"{v} dropped ({k})" for k, v in dropped.items() if v])


@dataclass
class PairStore:
    """Usable pairs, winner first. ``rows[i]`` is the source row of pair i; ``swap[i]`` means jpg_1 won."""

    ds: Any
    rows: np.ndarray
    swap: np.ndarray
    captions: list[str]
    fingerprint: str  # the usable pair list (caches are keyed by it)
    data_fingerprint: str  # the source rows (labels are keyed by it)
    dropped: dict[str, int] = field(default_factory=dict)
    rewards: np.ndarray | None = None  # (N, 2) raw reward scores, winner first (reward_0 / reward_1 columns)

    def __len__(self) -> int:
        return len(self.rows)

    def images(self, i: int) -> tuple[Image.Image, Image.Image]:
        row = self.ds[int(self.rows[i])]
        a, b = decode_image(row["jpg_0"]), decode_image(row["jpg_1"])
        return (b, a) if self.swap[i] else (a, b)

    def report(self) -> str:
        return pairs_report(len(self), self.dropped)


def prepare_pairs(cfg: DataConfig, show_progress: bool = True) -> PairStore:
    """Filter ties, decode every image once (corrupt image -> whole pair dropped), cache the result."""
    from tqdm.auto import tqdm

    ds = open_source(cfg.source, cfg.split, data_cache_dir(cfg))
    if len(ds) == 0:
        raise DataError(f"data source {cfg.source!r} is empty")
    fp = _fingerprint(ds, cfg)
    index_file = data_cache_dir(cfg) / "pairs" / fp / "pairs.json"
    labels = np.asarray(ds.select_columns(["label_0"])["label_0"], dtype=np.float64)
    captions_all = ds.select_columns(["caption"])["caption"]
    if index_file.is_file():
        saved = json.loads(index_file.read_text())
        rows, dropped = np.asarray(saved["rows"], dtype=np.int64), saved["dropped"]
    else:
        dropped = {"tie": 0, "corrupt image": 0, "bad label": 0, "empty caption column": 0}
        keep = []
        for i in tqdm(range(len(ds)), desc="checking pairs", disable=not show_progress, leave=False):
            lab = labels[i]
            if lab == 0.5 and not cfg.keep_ties:
                dropped["tie"] += 1
                continue
            if lab not in (0.0, 0.5, 1.0):
                dropped["bad label"] += 1
                continue
            if captions_all[i] is None:
                dropped["empty caption column"] += 1
                continue
            row = ds[i]
            try:
                decode_image(row["jpg_0"])
                decode_image(row["jpg_1"])
            except Exception:  # noqa: BLE001 - any decode failure drops the whole pair
                dropped["corrupt image"] += 1
                continue
            keep.append(i)
            if cfg.max_pairs is not None and len(keep) >= cfg.max_pairs:
                break
        rows = np.asarray(keep, dtype=np.int64)
        atomic_write_text(index_file, json.dumps({"rows": rows.tolist(), "dropped": dropped}))
    if len(rows) == 0:
        raise DataError(f"no usable pairs in {cfg.source!r} ({dropped}); check label_0 values or set "
                        "data.keep_ties=true")
    swap = labels[rows] == 0.0
    raw = None
    if cfg.labels:
        raw = load_labels(Path(cfg.labels), rows, dataset_fingerprint(ds))
    elif "reward_0" in ds.column_names and "reward_1" in ds.column_names:
        raw = np.stack([np.asarray(ds.select_columns([c])[c], dtype=np.float64)[rows] for c in ("reward_0", "reward_1")], 1)
    rewards = None if raw is None else np.where(swap[:, None], raw[:, ::-1], raw)
    return PairStore(ds, rows, swap, [captions_all[int(r)] for r in rows], fp, dataset_fingerprint(ds), dropped,
                     rewards)


def load_labels(path: Path, rows: np.ndarray, fingerprint: str) -> np.ndarray:
    """(N, 2) raw reward scores in source-column order (jpg_0, jpg_1) for ``rows``, from a ``bench label`` file."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"labels file {path} does not exist: run `bench label --data SRC --out {path}`")
    header_file = path.with_suffix(".json")
    if header_file.is_file():
        header = json.loads(header_file.read_text())
        if header.get("data_fingerprint") != fingerprint:
            raise DataError(f"labels {path} were computed for other data (fingerprint "
                            f"{header.get('data_fingerprint')} != {fingerprint}); rerun `bench label`")
    df = pd.read_parquet(path).set_index("row")
    missing = [int(r) for r in rows if int(r) not in df.index]
    if missing:
        raise DataError(f"labels {path} lack {len(missing)} of the training rows (e.g. row {missing[0]}); "
                        "rerun `bench label` on this data")
    return df.loc[[int(r) for r in rows], ["reward_0", "reward_1"]].to_numpy(dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Pixels, latents, text
# ----------------------------------------------------------------------------------------------------------------

def to_pixels(img: Image.Image, resolution: int) -> torch.Tensor:
    """Resize (shorter side, bilinear), centre crop, to [-1, 1] (ToTensor + Normalize(0.5, 0.5)). (3, r, r)."""
    w, h = img.size
    scale = resolution / min(w, h)
    img = img.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - resolution) // 2, (h - resolution) // 2
    img = img.crop((left, top, left + resolution, top + resolution))
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return arr * 2.0 - 1.0


@torch.no_grad()
def vae_posterior(comps: Components, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, logvar) of the VAE posterior, float32, logvar clamped as diffusers does."""
    vae = comps.vae
    dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    return dist.mean.float(), dist.logvar.float().clamp(-30.0, 20.0)


def latent_shape(comps: Components) -> tuple[int, int, int]:
    f = 2 ** (len(comps.vae.config.block_out_channels) - 1)
    return comps.vae.config.latent_channels, comps.resolution // f, comps.resolution // f


@dataclass
class LatentCache:
    """Memory-mapped VAE posteriors (N, 2 images, 2 flips, 2C, h, w) and text conditioning per caption id."""

    posterior: np.ndarray
    hidden: np.ndarray
    pooled: np.ndarray | None
    caption_id: np.ndarray  # (N,) index into hidden; 0 is the empty prompt


def build_cache(store: PairStore, comps: Components, cfg: DataConfig, batch_size: int = 16,
                show_progress: bool = True) -> LatentCache:
    from tqdm.auto import tqdm

    key = hashlib.sha256(f"{comps.identity}|{store.fingerprint}|{comps.resolution}|v1".encode()).hexdigest()[:16]
    folder = data_cache_dir(cfg) / "latents" / key
    if not (folder / "done").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        c, h, w = latent_shape(comps)
        post = np.lib.format.open_memmap(tmp / "posterior.npy", "w+", np.float32, (len(store), 2, 2, 2 * c, h, w))
        for start in tqdm(range(0, len(store), batch_size), desc="caching latents", disable=not show_progress,
                          leave=False):
            idx = range(start, min(start + batch_size, len(store)))
            pix = torch.stack([to_pixels(im, comps.resolution) for i in idx for im in store.images(i)])
            for flip in (0, 1):
                mean, logvar = vae_posterior(comps, pix.flip(-1) if flip else pix)
                both = torch.cat([mean, logvar], 1).cpu().numpy().reshape(len(idx), 2, 2 * c, h, w)
                post[start:start + len(idx), :, flip] = both
        post.flush()
        unique = [""] + sorted(set(store.captions) - {""})
        hid, pooled = [], []
        for start in range(0, len(unique), 64):
            hs, ps = encode_text(comps, unique[start:start + 64])
            hid.append(hs.cpu())
            pooled.append(ps.cpu() if ps is not None else None)
        np.save(tmp / "hidden.npy", torch.cat(hid).numpy())
        if pooled[0] is not None:
            np.save(tmp / "pooled.npy", torch.cat(pooled).numpy())
        lookup = {cap: i for i, cap in enumerate(unique)}
        np.save(tmp / "caption_id.npy", np.asarray([lookup[cap] for cap in store.captions], dtype=np.int64))
        (tmp / "done").write_text("ok")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    pooled_file = folder / "pooled.npy"
    return LatentCache(np.load(folder / "posterior.npy", mmap_mode="r"), np.load(folder / "hidden.npy"),
                       np.load(pooled_file) if pooled_file.is_file() else None, np.load(folder / "caption_id.npy"))


# ----------------------------------------------------------------------------------------------------------------
# Sampling schedule and batches
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Draw:
    """The per-item randomness of one sample slot, drawn in a fixed order from its "data" stream."""

    flips: tuple[bool, ...]
    drop_caption: bool


def draw_item(seed: int, step: int, slot: int, n_images: int, flip_mode: str, cfg: DataConfig) -> Draw:
    u = rng.uniform(seed, step, [slot], "data", n=3)[0]
    flips = [bool(u[0] < 0.5), bool(u[1] < 0.5)][:n_images] if cfg.random_flip else [False] * n_images
    if flip_mode == "joint":
        flips = [flips[0]] * n_images
    elif flip_mode != "independent":
        raise ValueError(f"flip mode {flip_mode!r} is not 'independent' or 'joint'")
    return Draw(tuple(flips), bool(u[2] < cfg.caption_dropout))


class Schedule:
    """Which item each sample slot of each optimizer step uses. Pairs: an epoch-wise seeded permutation (no state,
    so resuming needs nothing). Unpaired images: a weighted draw with replacement (``desirable_fraction``)."""

    def __init__(self, n_pairs: int, seed: int, global_batch: int, unpaired: bool, desirable_fraction: float = 0.8):
        self.n, self.seed, self.global_batch, self.unpaired = n_pairs, seed, global_batch, unpaired
        self.desirable_fraction = desirable_fraction
        self._perm: dict[int, np.ndarray] = {}

    def item(self, step: int, slot: int) -> int:
        if self.unpaired:  # image j = 2 * pair + (0 winner | 1 loser)
            u = rng.uniform(self.seed, step, [slot], "sample", n=2)[0]
            loser = int(u[0] >= self.desirable_fraction)
            return 2 * min(int(u[1] * self.n), self.n - 1) + loser
        k = step * self.global_batch + slot
        epoch, pos = divmod(k, self.n)
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._perm[epoch][pos])


def slots_for(micro: int, process: int, batch_size: int, num_processes: int) -> list[int]:
    start = micro * batch_size * num_processes + process * batch_size
    return list(range(start, start + batch_size))


class VaeLatents:
    """The latent source of diffusers models: VAE posterior samples (cached posteriors or on-the-fly encoding) x the
    VAE's scaling factor, and text conditioning (cached per caption or encoded on the fly)."""

    def __init__(self, store: PairStore, comps: Components, cache: LatentCache | None, seed: int):
        self.store, self.comps, self.cache, self.seed = store, comps, cache, seed
        self.shape = latent_shape(comps)

    def x0(self, step: int, slots: list[int], pairs: list[int], which: list[list[int]],
           flips: list[tuple[bool, ...]]) -> torch.Tensor:
        n_img, c = len(which[0]), self.shape[0]
        if self.cache is not None:
            post = torch.from_numpy(np.stack([
                np.stack([self.cache.posterior[p, w, int(f)] for w, f in zip(ws, fs)])
                for p, ws, fs in zip(pairs, which, flips)]))
            mean, logvar = post[:, :, :c], post[:, :, c:]
        else:
            pix = []
            for p, ws, fs in zip(pairs, which, flips):
                imgs = self.store.images(p)
                for w, f in zip(ws, fs):
                    x = to_pixels(imgs[w], self.comps.resolution)
                    pix.append(x.flip(-1) if f else x)
            m, lv = vae_posterior(self.comps, torch.stack(pix))
            mean, logvar = m.cpu().view(len(pairs), n_img, *self.shape), lv.cpu().view(len(pairs), n_img, *self.shape)
        noise = torch.stack([rng.randn(self.seed, step, slots, self.shape, f"posterior{k}")
                             for k in range(n_img)], 1)
        return (mean + (0.5 * logvar).exp() * noise) * self.comps.vae_scale

    def cond(self, pairs: list[int], dropped: list[bool], device: torch.device) -> Cond:
        if self.cache is not None:
            ids = [0 if d else int(self.cache.caption_id[p]) for p, d in zip(pairs, dropped)]
            hidden = torch.from_numpy(self.cache.hidden[ids])
            pooled = None if self.cache.pooled is None else torch.from_numpy(self.cache.pooled[ids])
        else:
            hidden, pooled = encode_text(self.comps, ["" if d else self.store.captions[p]
                                                      for p, d in zip(pairs, dropped)])
        return make_cond(self.comps, hidden.to(device), None if pooled is None else pooled.to(device))


class BatchMaker:
    """Builds PairBatch / ImageBatch for given slots. The per-slot randomness (flips, caption dropout), the pairing,
    the labels and the batch layout are shared by every world; the world's latent source (``VaeLatents`` for
    diffusers models) turns (pair, image, flip) into latents and captions into conditioning:

        source.x0(step, slots, pairs, which, flips) -> (B, n_images, *latent shape) float32
        source.cond(pairs, dropped, device) -> Cond          (dropped[i]: the caption is replaced by "")
    """

    def __init__(self, store, source, cfg: DataConfig, seed: int, flip_mode: str, unpaired: bool,
                 labels: np.ndarray | None = None):
        self.store, self.source, self.cfg, self.seed = store, source, cfg, seed
        self.flip_mode, self.unpaired, self.labels = flip_mode, unpaired, labels

    def __call__(self, step: int, slots: list[int], items: list[int], device: torch.device) -> PairBatch | ImageBatch:
        n_img = 1 if self.unpaired else 2
        pairs = [i // 2 for i in items] if self.unpaired else items
        which = [[i % 2] for i in items] if self.unpaired else [[0, 1]] * len(items)
        draws = [draw_item(self.seed, step, s, n_img, self.flip_mode, self.cfg) for s in slots]
        x0 = self.source.x0(step, slots, pairs, which, [d.flips for d in draws]).to(device)
        cond = self.source.cond(pairs, [d.drop_caption for d in draws], device)
        slot_t = torch.tensor(slots, dtype=torch.int64, device=device)
        if self.unpaired:
            y = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in items], device=device)
            return ImageBatch(x0[:, 0], cond, y, slot_t)
        label = torch.ones(len(items), device=device) if self.labels is None else \
            torch.tensor(self.labels[pairs], dtype=torch.float32, device=device)
        return PairBatch(x0[:, 0], x0[:, 1], cond, label, slot_t)
