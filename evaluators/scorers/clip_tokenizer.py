"""A full HF ``CLIPTokenizer`` built offline from the BPE vocabulary that open_clip ships.

transformers ships no tokenizer files; open_clip ships ``bpe_simple_vocab_16e6.txt.gz``. The vocabulary is the
256 byte-level characters, the same with ``</w>``, the first 49152 - 256 - 2 merges joined, then
``<|startoftext|>`` and ``<|endoftext|>``: 49408 ids, equal to open_clip's ``SimpleTokenizer`` and to the
``vocab.json`` of the OpenAI / LAION CLIP repositories. :func:`write_clip_tokenizer_files` writes the
``vocab.json`` + ``merges.txt`` pair those repositories hold. Used by the tests (tiny CLIP models, no downloads)
and by anyone who wants a CLIP tokenizer without the Hub.
"""
from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path


def clip_vocab_and_merges(bpe_path: str | None = None) -> tuple[dict[str, int], list[str]]:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(bpe_path or default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer_files(folder: str | Path, bpe_path: str | None = None) -> Path:
    """``vocab.json`` + ``merges.txt`` in the layout of the HF CLIP repositories."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(bpe_path)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def build_clip_tokenizer(bpe_path: str | None = None):
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer_files(tmp, bpe_path), model_max_length=77)
