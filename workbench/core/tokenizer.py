"""GPT-2's byte-pair encoding through tiktoken, usable offline.

tiktoken's own ``get_encoding("gpt2")`` downloads its ranks from OpenAI on first use. The Hub
checkpoints carry the same vocabulary as ``vocab.json`` + ``merges.txt``, so a cached checkpoint
is enough to tokenize with no network. A tiktoken ranks file works too.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import tiktoken
import tiktoken.load
from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pre-tokenizer split pattern

from .config import MODEL_REPOS, ModelConfig
from .errors import CheckpointError, WorkbenchError
from .fileio import require_regular_file

EOT = "<|endoftext|>"
EOT_ID = 50256  # also GPT-2's conventional padding token (the book pads with it too)
TIKTOKEN_FILE_ENV = "WORKBENCH_TIKTOKEN_FILE"
MAX_VOCABULARY_BYTES = 64 * 2**20


def load_tokenizer(checkpoint: str | Path | None = None) -> tiktoken.Encoding:
    """The GPT-2 tokenizer, from the first source that exists:

    1. ``vocab.json`` + ``merges.txt`` in the checkpoint folder (what Hub checkpoints ship);
    2. a ``gpt2.tiktoken`` ranks file in that folder, or the file named by WORKBENCH_TIKTOKEN_FILE;
    3. tiktoken's own cached download of "gpt2" (needs the network once).
    """
    folder = Path(checkpoint) if checkpoint else None
    for name in ("vocab.json", "merges.txt", "gpt2.tiktoken"):
        if folder and os.path.lexists(folder / name):
            _check_vocabulary_file(folder / name)
    if folder and (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _from_vocab_and_merges(str(folder / "vocab.json"), str(folder / "merges.txt"))
    for candidate in (folder / "gpt2.tiktoken" if folder else None, os.environ.get(TIKTOKEN_FILE_ENV)):
        if candidate and Path(candidate).is_file():
            return _from_ranks_file(str(candidate))
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:  # tiktoken raises plain network/IO errors here
        where = f"{folder} has no vocab.json + merges.txt; " if folder else ""
        raise CheckpointError(
            f"GPT-2 tokenizer not available offline: {where}set {TIKTOKEN_FILE_ENV} to a gpt2.tiktoken "
            f"file or connect once so it can be cached ({exc.__class__.__name__})"
        ) from exc


def _check_vocabulary_file(path: Path) -> None:
    """A regular file of a plausible size: GPT-2's vocab.json is 1 MB, merges.txt 0.5 MB."""
    size = require_regular_file(path, "The tokenizer file", CheckpointError).st_size
    if size > MAX_VOCABULARY_BYTES:
        raise CheckpointError(f"The tokenizer file {path} is {size / 2**20:.0f} MB, far more than a GPT-2 vocabulary")


@lru_cache(maxsize=4)
def _from_vocab_and_merges(vocab_json: str, merges_txt: str) -> tiktoken.Encoding:
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=merges_txt, encoder_json_file=vocab_json)
    return _encoding(ranks)


@lru_cache(maxsize=4)
def _from_ranks_file(path: str) -> tiktoken.Encoding:
    return _encoding(tiktoken.load.load_tiktoken_bpe(path))


def _encoding(ranks: dict[bytes, int]) -> tiktoken.Encoding:
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={EOT: EOT_ID})


def tokenizer_and_context(model: str, folder: str | None = None):
    """The GPT-2 tokenizer and context length to count a dataset's tokens with, never downloading
    weights: ``folder``, else the model's folder or cached Hub snapshot, else tiktoken's own (see
    load_tokenizer). ``model`` is a size name or a checkpoint folder. The CLI's
    data-report and the window's Data tab both call this, so they count the same tokens."""
    from .hub import is_cached, resolve_checkpoint  # the Hub client only when a report asks

    checkpoint = None
    if Path(model).is_dir():
        checkpoint = Path(model)
    elif model in MODEL_REPOS and is_cached(model):
        checkpoint = resolve_checkpoint(model)
    if model in MODEL_REPOS:
        context = ModelConfig.for_size(model).n_positions
    else:
        try:
            config = json.loads((Path(model) / "config.json").read_text())
            context = ModelConfig.from_hf_dict(config).n_positions
        except (OSError, ValueError, TypeError) as exc:
            raise WorkbenchError(f"--model {model}: not a GPT-2 size or checkpoint folder ({exc})") from exc
    try:
        return load_tokenizer(folder or checkpoint), context
    except WorkbenchError as exc:
        raise WorkbenchError(
            f"no GPT-2 tokenizer to count tokens with: give --tokenizer FOLDER or a checkpoint folder as --model, "
            f"or run `workbench download gpt2` once ({exc})"
        ) from exc
