"""GPT-2 BPE through tiktoken, offline: from a checkpoint's vocab.json + merges.txt or a ranks file."""

import shutil

from conftest import TOKENIZER_DIR, require_shared

from workbench.core.tokenizer import EOT_ID, TIKTOKEN_FILE_ENV, load_tokenizer


def test_real_ranks_file_encodes_hello_world(monkeypatch):
    ranks = require_shared(TOKENIZER_DIR / "gpt2.tiktoken")
    monkeypatch.setenv(TIKTOKEN_FILE_ENV, str(ranks))
    enc = load_tokenizer(None)
    assert enc.n_vocab == 50257
    assert enc.encode("Hello, world") == [15496, 11, 995]
    assert enc.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [EOT_ID]


def test_checkpoint_vocab_and_merges_give_the_same_ids(tmp_path):
    require_shared(TOKENIZER_DIR / "encoder.json")
    shutil.copy(TOKENIZER_DIR / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(TOKENIZER_DIR / "vocab.bpe", tmp_path / "merges.txt")
    enc = load_tokenizer(tmp_path)
    assert enc.encode("Hello, world") == [15496, 11, 995]
    text = "WINNER!! As a valued network customer you have been selected to receive a £900 prize reward!"
    assert enc.decode(enc.encode(text)) == text


def test_user_text_with_special_token_is_plain_text(tiny_checkpoint):
    enc = load_tokenizer(tiny_checkpoint)
    ids = enc.encode_ordinary("a <|endoftext|> b")
    assert EOT_ID not in ids and enc.decode(ids) == "a <|endoftext|> b"
