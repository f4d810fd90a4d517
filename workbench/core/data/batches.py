"""Tokens and padded batches.

Batches are padded only to their own longest sequence ("dynamic padding") instead of the book's
fixed 120 tokens; a classifier that reads the last real token (``lengths - 1``) gets the same
result at a fraction of the compute.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..progress import Progress, checked_chunks

# Texts per tokenizer call: a stop check and a progress report between calls. 1,024 SMS-sized
# texts take about 25 ms with GPT-2's BPE and 0.25 s with the tests' byte-level vocabulary.
ENCODE_CHUNK = 1024

# --------------------------------------------------------------------------- tokens and batches


def encode_texts(
    texts: list[str],
    tokenizer: Any,
    max_length: int,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> tuple[list[list[int]], int]:
    """Token ids per text (the first ``max_length``), and how many texts were cut.

    ``encode_ordinary`` treats "<|endoftext|>" in user text as plain text instead of raising.
    An empty text becomes the end-of-text token, so every example has a last token to classify.
    Texts go to the tokenizer ``ENCODE_CHUNK`` at a time, checking ``stop`` in between.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    batch_encode = getattr(tokenizer, "encode_ordinary_batch", None)
    token_ids: list[list[int]] = []
    truncated = 0
    for chunk in checked_chunks(texts, stop, "Tokenizing", ENCODE_CHUNK):
        encoded = batch_encode(list(chunk)) if batch_encode else [tokenizer.encode_ordinary(t) for t in chunk]
        for ids in encoded:
            if len(ids) > max_length:
                truncated += 1
                ids = ids[:max_length]
            token_ids.append(ids or [tokenizer.eot_token])
        if progress is not None:
            progress(len(token_ids), len(texts), "Tokenizing")
    return token_ids, truncated


@dataclass
class EncodedSplit:
    """One split, tokenized: what training, evaluation and the benchmark iterate over."""

    token_ids: list[list[int]]
    labels: list[int]
    texts: list[str]  # the texts themselves, for listing misclassified ones (may be empty)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) int64, right-padded with pad_id to this batch's longest row
    lengths: torch.Tensor  # (B,) int64, real tokens per row
    labels: torch.Tensor  # (B,) int64 class ids


def count_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    token_ids: list[list[int]],
    labels: list[int],
    batch_size: int,
    *,
    pad_id: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    sort_chunk: int = 0,
    drop_last: bool = False,
    multiple: int = 1,
    limit: int | None = None,
) -> Iterator[Batch]:
    """Batches padded only to their own longest row (rounded up as ``pad_batch`` says).

    With ``sort_chunk`` > 0, examples are sorted by length within windows of
    ``sort_chunk * batch_size`` (after shuffling), so each batch holds similar lengths and padding
    nearly vanishes; when shuffling, the batch order is then shuffled too, so training still sees
    a random order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(token_ids) != len(labels):
        raise ValueError(f"{len(token_ids)} token sequences but {len(labels)} labels")
    n = len(token_ids)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    if sort_chunk > 0:
        span = sort_chunk * batch_size
        order = [
            i
            for start in range(0, n, span)
            for i in sorted(order[start : start + span], key=lambda i: len(token_ids[i]))
        ]
    batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if sort_chunk > 0 and shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    for indices in batches:
        yield pad_batch([token_ids[i] for i in indices], [labels[i] for i in indices], pad_id, multiple, limit)


def pad_batch(
    rows: list[list[int]], labels: list[int], pad_id: int, multiple: int = 1, limit: int | None = None
) -> Batch:
    """One batch, right-padded with ``pad_id`` to its longest row (also used by classification).

    With ``multiple`` > 1 the width is rounded up to a multiple of it (never past ``limit``, the
    model's context), so a GPU sees a few repeating shapes instead of one per length (see
    ``device.padding_multiple``). Right padding changes no real token's result: the model reads
    each row's last real token and a causal mask keeps later (padding) positions out.
    """
    longest = max(len(row) for row in rows)
    if multiple > 1:
        rounded = -(-longest // multiple) * multiple
        longest = max(longest, min(rounded, limit)) if limit is not None else rounded
    padded = [row + [pad_id] * (longest - len(row)) for row in rows]
    return Batch(
        input_ids=torch.tensor(padded, dtype=torch.long),  # (B, T)
        lengths=torch.tensor([len(row) for row in rows], dtype=torch.long),  # (B,)
        labels=torch.tensor(labels, dtype=torch.long),  # (B,)
    )
