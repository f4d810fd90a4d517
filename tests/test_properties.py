"""Property tests: whatever bytes a user hands us, the only failures are the documented ones.

CSV import of any file gives a Table (and then splits) or a DataError; loading an adapter file
that was damaged in any way (bytes flipped, cut short, inserted, metadata edited) either loads or
gives an AdapterError. Anything else escaping would reach the user as a traceback.
"""

from __future__ import annotations

import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from workbench.core.adapters import (
    METADATA_KEY,
    AdapterInfo,
    check_compatible,
    load_adapter_weights,
    read_adapter,
    save_adapter,
)
from workbench.core.config import DataConfig, LoRAConfig, ModelConfig
from workbench.core.data import make_splits, read_table
from workbench.core.errors import AdapterError, DataError
from workbench.core.lora import apply_lora
from workbench.core.model import GPT2Classifier

EXAMPLES = 150  # per property; the whole file runs in well under 30 s

# --------------------------------------------------------------------------- CSV import

# Characters that steer the reader into its corners: every delimiter, quotes, line endings,
# non-ASCII letters, digits (numeric labels and columns); free text also gets control codes.
_CSV_CHARS = list("ab xy01.-,;\t|\"'\n\ré€日")
_CONTROL_CHARS = list("\x00\x01\x0b\x1a\x85")
_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1"]

_cell = st.text(alphabet=st.sampled_from(_CSV_CHARS), max_size=12)
_quoted_cell = _cell.map(lambda c: '"' + c.replace('"', '""') + '"')


@st.composite
def _table_text(draw) -> str:
    """Rows of cells joined by one delimiter: often a real table, sometimes nearly one."""
    delimiter = draw(st.sampled_from([",", "\t", ";", "|"]))
    width = draw(st.integers(1, 4))
    rows = draw(
        st.lists(st.lists(st.one_of(_cell, _quoted_cell), min_size=max(1, width - 1), max_size=width + 1), max_size=40)
    )
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(delimiter.join(row) for row in rows) + draw(st.sampled_from(["", newline]))


@st.composite
def _labelled_table_text(draw) -> str:
    """A text column and a label column with few values (some missing), in any flavour: these
    get past reading, so splitting is exercised too."""
    delimiter = draw(st.sampled_from([",", "\t", ";", "|"]))
    header = draw(st.sampled_from([[], ["text", "label"], ["label", "text"]]))
    labels = st.sampled_from(["spam", "ham", "0", "1", "2", "", "NA", " ham ", "é"])
    rows = draw(st.lists(st.tuples(st.one_of(_cell, _quoted_cell), labels), min_size=20, max_size=80))
    if header[:1] == ["label"]:
        rows = [(label, text) for text, label in rows]
    lines = [delimiter.join(header)] if header else []
    lines += [delimiter.join(row) for row in rows]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"


_file_bytes = st.one_of(
    st.binary(max_size=3000),
    st.tuples(
        st.text(alphabet=st.sampled_from(_CSV_CHARS + _CONTROL_CHARS), max_size=600), st.sampled_from(_ENCODINGS)
    ).map(lambda t: t[0].encode(t[1], errors="replace")),
    st.tuples(_table_text(), st.sampled_from(_ENCODINGS)).map(lambda t: t[0].encode(t[1], errors="replace")),
    st.tuples(_labelled_table_text(), st.sampled_from(_ENCODINGS)).map(lambda t: t[0].encode(t[1], errors="replace")),
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


@settings(max_examples=EXAMPLES, deadline=None)
@given(content=_file_bytes, suffix=st.sampled_from([".csv", ".tsv", ".txt"]), max_rows=st.sampled_from([None, 5]))
def test_any_file_reads_as_a_table_or_a_data_error(scratch, content, suffix, max_rows):
    path = scratch / f"input{suffix}"
    path.write_bytes(content)
    try:
        table = read_table(path, max_rows=max_rows)
    except DataError as error:
        message = str(error)
        assert message
        assert "\n" not in message  # one line for the CLI, one dialog for the window
        return
    assert len(table.frame) >= 1
    assert all(isinstance(c, str) for c in table.frame.columns)
    try:
        splits = make_splits(table, DataConfig(source=str(path), balance=False), seed=123)
    except DataError:
        return
    assert len(splits.label_names) >= 2 and splits.train.texts


# --------------------------------------------------------------------------- adapter files

BASE = ModelConfig(vocab_size=64, n_positions=16, n_embd=8, n_layer=2, n_head=2)
LORA = LoRAConfig(rank=2, alpha=4, targets=("qkv", "mlp_down"))
LABELS = ("ham", "spam")


@pytest.fixture(scope="module")
def adapter_bytes(tmp_path_factory) -> bytes:
    torch.manual_seed(0)
    model = apply_lora(GPT2Classifier(BASE, len(LABELS)), LORA)
    info = AdapterInfo(
        base_model="tiny",
        model_config=BASE,
        lora=LORA,
        label_names=LABELS,
        max_length=16,
        pad_token_id=BASE.vocab_size - 1,
    )
    path = save_adapter(tmp_path_factory.mktemp("adapter") / "a.safetensors", model, info)
    return path.read_bytes()


def _header_end(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


_json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(-2, 100), st.text(max_size=4)), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def _mangling(draw, size: int, header_end: int):
    """One kind of damage; positions lean towards the JSON header, where damage is most varied."""
    where = st.one_of(st.integers(0, header_end - 1), st.integers(0, size - 1))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "edit-metadata", "edit-metadata"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(where, st.integers(1, 255)), min_size=1, max_size=6))
    if kind == "truncate":
        return kind, draw(where)
    if kind == "insert":
        return kind, (draw(where), draw(st.binary(min_size=1, max_size=24)))
    if kind == "overwrite":
        return kind, (draw(where), draw(st.binary(min_size=1, max_size=24)))
    path = draw(
        st.sampled_from(
            [
                ("base_model",),
                ("model_config", "n_layer"),
                ("model_config", "n_embd"),
                ("model_config", "n_head"),
                ("model_config", "vocab_size"),
                ("model_config", "n_positions"),
                ("lora", "rank"),
                ("lora", "alpha"),
                ("lora", "dropout"),
                ("lora", "targets"),
                ("lora", "top_blocks"),
                ("label_names",),
                ("max_length",),
                ("pad_token_id",),
                ("metrics",),
                ("format_version",),
                ("lora",),
                ("model_config",),
            ]
        )
    )
    return kind, (path, draw(_json_value))


def _apply(data: bytes, mangling) -> bytes:
    kind, how = mangling
    if kind == "flip":
        out = bytearray(data)
        for position, mask in how:
            out[position] ^= mask
        return bytes(out)
    if kind == "truncate":
        return data[:how]
    if kind == "insert":
        position, extra = how
        return data[:position] + extra + data[position:]
    if kind == "overwrite":
        position, extra = how
        return data[:position] + extra + data[position + len(extra) :]
    (*parents, key), value = how  # edit one metadata field, keeping the file well-formed
    from safetensors.torch import load

    tensors = load(data)
    header = json.loads(data[8 : _header_end(data)])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    node = meta
    for parent in parents:
        node = node[parent]
    node[key] = value
    return save(tensors, metadata={METADATA_KEY: json.dumps(meta)})


def _load(path) -> None:
    """What Classifier.from_adapter does, minus the checkpoint download."""
    tensors, info = read_adapter(path)
    check_compatible(info, BASE, "tiny")
    model = apply_lora(GPT2Classifier(BASE, len(info.label_names)), info.lora)
    load_adapter_weights(model, tensors, info)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_damaged_adapter_loads_or_gives_an_adapter_error(adapter_bytes, scratch, data):
    mangling = data.draw(_mangling(len(adapter_bytes), _header_end(adapter_bytes)))
    path = scratch / "adapter.safetensors"
    path.write_bytes(_apply(adapter_bytes, mangling))
    try:
        _load(path)
    except AdapterError as error:
        message = str(error)
        assert message


def test_the_undamaged_adapter_loads(adapter_bytes, scratch):
    path = scratch / "intact.safetensors"
    path.write_bytes(adapter_bytes)
    _load(path)
