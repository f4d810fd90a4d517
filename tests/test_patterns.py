"""PEFT ``target_modules`` patterns are matched without backtracking (``core/patterns.py``).

Catastrophic patterns must answer at once (the tests carry a timeout, not a timing assertion),
and on every pattern ``re`` can run quickly the answer must equal ``re.fullmatch``'s.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import write_tiny_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.core.adapters import AdapterInfo, save_adapter
from workbench.core.config import LoRAConfig
from workbench.core.errors import AdapterError
from workbench.core.lora import build_lora_model
from workbench.core.patterns import PatternError, fullmatch
from workbench.core.peft_io import export_peft, hf_module_names, import_peft

CATASTROPHIC = [
    (r"(([a-z._0-9])+)+!", "transformer.h.11.attn.c_attn" * 3),
    (r"(a|a)*b", "a" * 60),
    (r"(a*)*b", "a" * 60),
    (r"(x+x+)+y", "x" * 60),
    (r"(.*a){25}", "a" * 60 + "b"),
    (r"(\w+\.?)+\(", "transformer.h.0.mlp.c_fc.lora_A.weight" * 2),
    (r"((a?){40})a{40}", "a" * 39),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_catastrophic_patterns_answer_at_once(pattern, text):
    assert fullmatch(pattern, text) is False
    assert fullmatch(pattern, text[:-1] + "!") in (True, False)


def test_the_catastrophic_patterns_still_match_what_they_should():
    assert fullmatch(r"(([a-z._0-9])+)+!", "transformer.h.0.attn!")
    assert fullmatch(r"(a|a)*b", "aaab")
    assert fullmatch(r"((a?){40})a{40}", "a" * 40)
    assert not fullmatch(r"((a?){40})a{40}", "a" * 81)


REALISTIC = [
    r".*\.(c_attn|c_proj)",
    r"transformer\.h\.\d+\.attn\.c_attn",
    r".*h\.(10|11)\.mlp\.c_fc",
    r"^transformer\.h\.[0-3]\.attn\.c_(attn|proj)$",
    r".*(?:attn|mlp)\.c_proj",
    r"[^.]+\.h\.1\..*",
    r".*\bc_fc",
    r"transformer\.h\.\d{1,2}\.mlp\.c_proj\Z",
    r"(?x) transformer \. h \. 0 \. attn \. c_attn",
    r"(?s).*c_attn",
    r"(?a)\w+\.\w+\.\d\.attn\.c_attn",
    r".*?\.attn\..+?",
]


@pytest.mark.parametrize("pattern", REALISTIC)
def test_realistic_targets_match_as_re_does(pattern):
    for name in hf_module_names(12):
        assert fullmatch(pattern, name) == (re.fullmatch(pattern, name) is not None), (pattern, name)


_ATOMS = ["a", "b", ".", r"\.", "[ab]", "[^a]", r"\d", r"\w", "x", "1", "^", "$", r"\b"]


@st.composite
def _regex(draw, depth: int = 0) -> str:
    """Small patterns from an alphabet of atoms, groups, alternation and every kind of repeat."""
    kind = draw(st.sampled_from(["atom", "atom", "concat", "alt", "repeat", "group"] if depth < 3 else ["atom"]))
    if kind == "atom":
        return draw(st.sampled_from(_ATOMS))
    if kind == "concat":
        return "".join(draw(st.lists(_regex(depth + 1), min_size=2, max_size=3)))
    if kind == "alt":
        return "(" + "|".join(draw(st.lists(_regex(depth + 1), min_size=2, max_size=3))) + ")"
    if kind == "group":
        return "(?:" + draw(_regex(depth + 1)) + ")"
    quantifier = draw(st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}", "*?", "+?", "??"]))
    return "(" + draw(_regex(depth + 1)) + ")" + quantifier


@settings(max_examples=400, deadline=None)
@given(pattern=_regex(), text=st.text(alphabet="ab.x1\n", max_size=7))
def test_matches_as_re_does(pattern, text):
    assert fullmatch(pattern, text) == (re.fullmatch(pattern, text) is not None)


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", r"(?=a)a", r"(?!b)a", r"(?<=a)b", r"(?i)c_attn", r"(?m)^a$", r"(?i:a)", r"(?>a+)b", r"a++", "a" * 600],
)
def test_what_cannot_be_decided_safely_is_refused(pattern):
    with pytest.raises(PatternError):
        fullmatch(pattern, "a")


def test_malformed_patterns_raise_re_error():
    with pytest.raises(re.error):
        fullmatch("[unclosed", "a")


# --------------------------------------------------------------------------- through import-peft


@pytest.fixture(scope="module")
def peft_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("patterns")
    model = write_tiny_checkpoint(root / "ckpt", n_layer=2, n_embd=16, n_head=2, n_positions=64)
    lora = LoRAConfig(rank=2, alpha=4, targets=("qkv",))
    gpt = build_lora_model(model, lora, 2, seed=0)
    adapter = save_adapter(root / "a.safetensors", gpt, AdapterInfo(str(model), gpt.config, lora, ("ham", "spam"), 32))
    return model, export_peft(adapter, root / "peft")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (r"(([a-z._0-9])+)+!", "matches no layer"),
        (r"(a|a)*b", "matches no layer"),
        (r"(x)\1", "does not match: back-references"),
        ("x" * 600, "at most 512"),
    ],
)
def test_import_peft_with_a_hostile_target_pattern(peft_folder, tmp_path, target, fragment):
    model, folder = peft_folder
    copy = shutil.copytree(folder, tmp_path / "peft")
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "target_modules": target}))
    with pytest.raises(AdapterError, match=re.escape(fragment)):
        import_peft(copy, tmp_path / "out.safetensors", model=str(model))


def test_import_peft_with_a_pattern_target_still_works(peft_folder, tmp_path):
    model, folder = peft_folder
    copy = shutil.copytree(folder, tmp_path / "peft")
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "target_modules": r".*\.attn\.c_attn"}))
    import_peft(copy, tmp_path / "out.safetensors", model=str(model))
