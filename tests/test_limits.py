"""Every size and type read from a file is bounded before anything is built from it (limits.py),
by the one validation function of each kind of file:

- a model's config.json: ``ModelConfig.validate`` (through ``load_model_config``);
- an adapter's metadata: ``adapters._metadata_problems`` (through ``read_adapter`` and PEFT import);
- a PEFT ``adapter_config.json``: ``peft_io._check_supported``;
- a dataset's label column: ``limits.label_names_problem`` (through ``make_splits``).

Each table below holds wrong types, absurd sizes and deep nesting; each must give that file
kind's error in one line (and exit 2 from the CLI), never a traceback or a large allocation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_tiny_checkpoint
from safetensors.torch import load, save
from test_robustness import assert_one_line_error, run_cli, write_csv

from workbench.core.adapters import (
    METADATA_KEY,
    AdapterInfo,
    check_compatible,
    read_adapter,
    save_adapter,
)
from workbench.core.config import DataConfig, LoRAConfig, ModelConfig
from workbench.core.data import make_splits, read_table
from workbench.core.errors import AdapterError, CheckpointError, DataError
from workbench.core.limits import MAX_LABEL_CHARS, MAX_LABELS
from workbench.core.lora import build_lora_model
from workbench.core.model import GPT2Classifier, load_model_config
from workbench.core.peft_io import export_peft, import_peft

DEEP = 100_000  # levels of nesting: far past Python's recursion limit


def deep_json(levels: int = DEEP) -> str:
    return "[" * levels + "]" * levels


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    model = write_tiny_checkpoint(root / "ckpt", n_layer=2, n_embd=16, n_head=2, n_positions=64)
    lora = LoRAConfig(rank=2, alpha=4)
    gpt = build_lora_model(model, lora, 2, seed=0)
    info = AdapterInfo(str(model), gpt.config, lora, ("ham", "spam"), 32)
    adapter = save_adapter(root / "adapter.safetensors", gpt, info)
    return {"model": model, "adapter": adapter, "peft": export_peft(adapter, root / "peft")}


# --------------------------------------------------------------------------- model config.json

CONFIG_CASES = {
    "width as a float": ({"n_embd": 64.0}, "n_embd must be a whole number"),
    "width as text": ({"n_embd": "64"}, "n_embd must be a whole number"),
    "layers as true": ({"n_layer": True}, "n_layer must be a whole number"),
    "a billion layers": ({"n_layer": 10**9}, "n_layer must be from 1 to 128"),
    "a huge width": ({"n_embd": 10**6}, "n_embd must be from 1 to 8,192"),
    "heads zero": ({"n_head": 0}, "n_head must be from 1"),
    "a trillion tokens": ({"vocab_size": 10**12}, "vocab_size must be from 1"),
    "a 5000-digit context": ({"n_positions": "<5000 digits>"}, "not valid JSON"),  # Python's own int limit
    "epsilon as text": ({"layer_norm_epsilon": "1e-5"}, "layer_norm_epsilon must be a number"),
    "epsilon negative": ({"layer_norm_epsilon": -1e-5}, "layer_norm_epsilon must be above 0"),
    "epsilon infinite": ({"layer_norm_epsilon": float("inf")}, "layer_norm_epsilon must be a finite number"),
    "width as a list": ({"n_embd": [64]}, "n_embd must be a whole number"),
}


def write_config(folder: Path, text: str) -> Path:
    (folder / "config.json").write_text(text)
    return folder


@pytest.fixture
def model_copy(pieces, tmp_path) -> Path:
    return Path(shutil.copytree(pieces["model"], tmp_path / "model"))


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_model_config_with_bad_sizes_or_types(model_copy, case, capsys):
    changes, fragment = CONFIG_CASES[case]
    config = json.loads((model_copy / "config.json").read_text())
    write_config(model_copy, json.dumps({**config, **changes}).replace('"<5000 digits>"', "9" * 5000))
    for load_it in (lambda: load_model_config(model_copy), lambda: GPT2Classifier.from_checkpoint(model_copy, 2)):
        with pytest.raises(CheckpointError) as err:
            load_it()
        assert fragment in str(err.value) and len(str(err.value).splitlines()) == 1
    code, _, err = run_cli(capsys, "classify", "--adapter", "nowhere.safetensors", "--model", model_copy, "x")
    assert code == 2  # the adapter is read first; the model path below
    code, _, err = run_cli(capsys, "eval", "--adapter", model_copy / "x", "--model", model_copy)
    assert code == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (deep_json(), "nests its JSON too deeply"),
        ("[1, 2]", "expected a JSON object"),
        ('{"n_embd": 16', "not valid JSON"),
        (b"\xff\xfe{}".decode("latin-1"), "not valid JSON"),
    ],
    ids=["deep", "a list", "cut short", "not UTF-8"],
)
def test_model_config_that_is_not_a_config(model_copy, text, fragment):
    (model_copy / "config.json").write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    with pytest.raises(CheckpointError, match=fragment):
        load_model_config(model_copy)


def test_model_config_that_is_huge(model_copy):
    with open(model_copy / "config.json", "wb") as f:
        f.truncate(17 * 2**20)  # sparse: no disk used
    with pytest.raises(CheckpointError, match="larger than 16 MB"):
        load_model_config(model_copy)


# --------------------------------------------------------------------------- adapter metadata

METADATA_CASES = {
    "a billion layers": (("model_config", "n_layer"), 10**9, "n_layer must be from 1 to 128"),
    "width as a float": (("model_config", "n_embd"), 16.0, "n_embd must be a whole number"),
    "epsilon as text": (("model_config", "layer_norm_epsilon"), "1e-5", "layer_norm_epsilon must be a number"),
    "a billion rank": (("lora", "rank"), 10**9, "rank must be a whole number from 1 to 1,600"),
    "rank above the width": (("lora", "rank"), 17, "rank 17 is above 16, the model's width"),
    "rank as true": (("lora", "rank"), True, "rank must be a whole number"),
    "alpha as text": (("lora", "alpha"), "4", "alpha must be a number"),
    "alpha infinite": (("lora", "alpha"), float("inf"), "alpha must be a number in (0, 4096]"),
    "targets as text": (("lora", "targets"), "qkv", "targets must be a list"),
    "top blocks as true": (("lora", "top_blocks"), True, "top blocks must be a whole number"),
    "top blocks huge": (("lora", "top_blocks"), 10**12, "top blocks 1,000,000,000,000 exceeds"),
    "labels as text": (("label_names",), "hamspam", "label names must be a list"),
    "ten thousand labels": (("label_names",), [f"l{i}" for i in range(10_000)], "2 to 1,000 labels, not 10,000"),
    "a long label": (("label_names",), ["ham", "s" * 5000], "5,000 characters long"),
    "labels as numbers": (("label_names",), [0, 1], "must all be texts"),
    "max length huge": (("max_length",), 10**12, "max length must be from 1 to 64"),
    "max length float": (("max_length",), 32.0, "max length must be a whole number"),
    "pad token outside": (("pad_token_id",), -1, "pad token must be from 0"),
    "base model 10 KB": (("base_model",), "x" * 10_000, "base model is 10,000 characters long"),
    "base model a list": (("base_model",), ["gpt2"], "base model must be text"),
    "metrics a list": (("metrics",), [1, 2], "metrics must be a JSON object"),
    "version as text": (("format_version",), "1", "format version must be a whole number"),
}


def with_metadata(adapter: Path, target: Path, edit) -> Path:
    data = adapter.read_bytes()
    tensors = load(data)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    text = edit(header["__metadata__"][METADATA_KEY])
    target.write_bytes(save(tensors, metadata={METADATA_KEY: text}))
    return target


def set_field(text: str, path: tuple[str, ...], value) -> str:
    meta = json.loads(text)
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(meta)


@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_adapter_metadata_with_bad_sizes_or_types(pieces, tmp_path, case, capsys):
    path, value, fragment = METADATA_CASES[case]
    target = with_metadata(pieces["adapter"], tmp_path / "edited.safetensors", lambda t: set_field(t, path, value))
    with pytest.raises(AdapterError) as err:
        read_adapter(target)
    message = str(err.value)
    assert fragment in message and "invalid adapter metadata" in message and len(message.splitlines()) == 1
    code, _, err_text = run_cli(capsys, "info", target)
    assert code == 2 and assert_one_line_error(code, err_text, fragment)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda t: deep_json(), "unreadable adapter metadata"),
        (lambda t: "x" * (5 * 2**20), "far more than an adapter's metadata"),
        (lambda t: "[]", "unreadable adapter metadata"),
        (lambda t: set_field(t, ("lora",), [1]), "unreadable adapter metadata"),
    ],
    ids=["deep", "5 MB", "a list", "lora a list"],
)
def test_adapter_metadata_that_is_not_metadata(pieces, tmp_path, edit, fragment, capsys):
    target = with_metadata(pieces["adapter"], tmp_path / "edited.safetensors", edit)
    with pytest.raises(AdapterError, match=fragment):
        read_adapter(target)
    code, _, err = run_cli(capsys, "info", target)
    assert_one_line_error(code, err, fragment)


def test_a_mismatch_names_the_field_that_differs(pieces):
    _, info = read_adapter(pieces["adapter"])
    other = ModelConfig(**{**info.model_config.__dict__, "layer_norm_epsilon": 1e-6})
    with pytest.raises(AdapterError) as err:
        check_compatible(info, other, "other-model")
    message = str(err.value)
    assert "layer_norm_epsilon 1e-05" in message and "layer_norm_epsilon 1e-06" in message
    assert "n_head" not in message  # only the fields that differ


# --------------------------------------------------------------------------- PEFT adapter_config.json

PEFT_CASES = {
    "r as text": ({"r": "8"}, "r must be a whole number"),
    "r as true": ({"r": True}, "r must be a whole number"),
    "r a billion": ({"r": 10**9}, "r must be from 1 to 1,600"),
    "alpha as a list": ({"lora_alpha": [8]}, "lora_alpha must be a number"),
    "dropout as text": ({"lora_dropout": "0.1"}, "lora_dropout must be a number"),
    "targets a number": ({"target_modules": 5}, "target_modules must be a list of module names"),
    "targets an object": ({"target_modules": {"c_attn": 1}}, "target_modules must be a list of module names"),
    "targets missing": ({"target_modules": None}, "target_modules is missing"),
    "targets numbers": ({"target_modules": [1, 2]}, "target_modules must hold module names"),
    "many targets": ({"target_modules": ["c_attn"] * 5000}, "target_modules must be a list of module names"),
    "layers as text": ({"layers_to_transform": "0"}, "layers_to_transform must be a block number"),
    "layers huge": ({"layers_to_transform": [10**9]}, "layers_to_transform entry must be from 0 to 127"),
    "layers pattern a regex": ({"layers_pattern": "h|(a+)+"}, "layers_pattern must be a plain module name"),
    "saved modules as text": ({"modules_to_save": "score"}, "modules_to_save must be a list"),
    "saved modules a regex": ({"modules_to_save": ["sc.*"]}, "modules_to_save must hold plain module names"),
    "peft type a list": ({"peft_type": ["LORA"]}, "peft_type must be text"),
    "base a number": ({"base_model_name_or_path": 5}, "base_model_name_or_path must be text"),
}


@pytest.fixture
def peft_copy(pieces, tmp_path) -> Path:
    return Path(shutil.copytree(pieces["peft"], tmp_path / "peft"))


def edit_peft_config(folder: Path, **changes) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("case", list(PEFT_CASES))
def test_peft_config_with_bad_types_or_sizes(pieces, peft_copy, tmp_path, case, capsys):
    changes, fragment = PEFT_CASES[case]
    edit_peft_config(peft_copy, **changes)
    out = tmp_path / "out.safetensors"
    with pytest.raises(AdapterError) as err:
        import_peft(peft_copy, out, model=str(pieces["model"]))
    assert fragment in str(err.value) and len(str(err.value).splitlines()) == 1
    code, _, err_text = run_cli(capsys, "import-peft", peft_copy, "--model", pieces["model"], "--out", out)
    assert code == 2 and assert_one_line_error(code, err_text, fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("adapter_config.json", deep_json(), "nests its JSON too deeply"),
        ("adapter_config.json", "[]", "expected a JSON object"),
        ("workbench.json", deep_json(), "nests its JSON too deeply"),
        ("workbench.json", json.dumps({"label_names": "ham"}), "label names must be a list"),
        ("workbench.json", json.dumps({"label_names": ["a"] * 2}), "must differ"),
    ],
    ids=["config deep", "config a list", "labels deep", "labels as text", "labels repeated"],
)
def test_peft_json_files_that_are_not_what_they_claim(pieces, peft_copy, tmp_path, name, text, fragment, capsys):
    (peft_copy / name).write_text(text)
    out = tmp_path / "out.safetensors"
    code, _, err = run_cli(capsys, "import-peft", peft_copy, "--model", pieces["model"], "--out", out)
    assert code == 2 and assert_one_line_error(code, err, fragment)


# --------------------------------------------------------------------------- dataset labels


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ([f"label {i}" for i in range(MAX_LABELS + 1)] * 2, f"at most {MAX_LABELS:,} classes"),
        (["ham", "x" * (MAX_LABEL_CHARS + 1)] * 4, f"at most {MAX_LABEL_CHARS:,} are allowed"),
    ],
    ids=["too many", "too long"],
)
def test_dataset_labels_beyond_what_an_adapter_may_hold(tmp_path, labels, fragment):
    """Training must never write an adapter its own reader would refuse."""
    path = write_csv(tmp_path / "d.csv", [(f"text {i}", label) for i, label in enumerate(labels)])
    with pytest.raises(DataError, match="looks like a text column") as err:
        make_splits(read_table(path), DataConfig(source=str(path), label_column="label", text_column="text"), seed=123)
    assert fragment in str(err.value)
