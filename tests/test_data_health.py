"""Data health on crafted files: every finding counted by hand, and the real SMS collection's
published figures."""

import csv
import json

import pytest
from conftest import SMS_FILE, TOKENIZER_DIR, require_shared

from workbench.cli import main
from workbench.core.config import DataConfig
from workbench.core.data import load_table, make_splits, read_sms_spam
from workbench.core.data.health import data_health, normalise
from workbench.core.tokenizer import load_tokenizer


def write_rows(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def crafted(tmp_path):
    rows = [(f"plain message number {chr(97 + i)}{chr(97 + i)}", "ham") for i in range(20)]
    rows += [(f"buy now offer {chr(97 + i)}", "spam") for i in range(10)]
    rows += [("", "ham"), ("   ", "spam")]  # 2 empty texts: rows 31 and 32
    rows += [("no label here", "")]  # row 33
    rows += [("exact copy", "ham")] * 3  # 2 exact repeats (dropped from a user's file before splitting)
    rows += [("same words", "ham"), ("same words", "spam")]  # conflicting labels: 1 text, 1 repeat
    rows += [("Call 0906 NOW", "spam"), ("call 0712   now", "spam")]  # near duplicates: 1
    rows += [("x" * 200, "ham")]  # 200 bytes: beyond a cut of 64
    return write_rows(tmp_path / "crafted.csv", rows)


@pytest.fixture(scope="module")
def byte_tokenizer(tiny_checkpoint):
    return load_tokenizer(tiny_checkpoint)  # one token per byte: lengths are byte counts


def test_normalise_rule():
    assert normalise("  Call 0906 NOW\t") == normalise("call 0712   now") == "call 0 now"
    assert normalise("abc") != normalise("abd")


def test_crafted_file_counts(tmp_path, byte_tokenizer):
    data = DataConfig(source=str(crafted(tmp_path)), balance=False)
    h = data_health(load_table(data), data, byte_tokenizer, 64)
    assert h.rows == 41
    assert (h.empty_texts, h.empty_examples) == (2, (31, 32))
    assert (h.missing_labels, h.missing_examples) == (1, (33,))
    assert h.class_counts == {"ham": 25, "spam": 13}
    assert h.exact_duplicates == 3  # two repeats of "exact copy", one of "same words"
    assert h.exact_groups[0].count == 3 and h.exact_groups[0].texts == ("exact copy",)
    assert h.conflicting_labels == 1 and h.conflict_groups[0].labels == ("ham", "spam")
    assert h.near_duplicates == 1
    assert set(h.near_groups[0].texts) == {"Call 0906 NOW", "call 0712   now"}
    assert h.lengths.over_max == 1 and h.lengths.longest == 200 and h.lengths.max_length == 64
    assert sum(h.lengths.counts) == 38
    assert h.lengths.edges[0] == 0 and h.lengths.edges[-1] > 200
    assert any("longer than 64" in note for note in h.notes)
    assert any("different labels" in note for note in h.notes)
    json.dumps(h.to_dict())  # plain values all the way down


def test_cross_split_copies_match_a_brute_force_count(tmp_path, byte_tokenizer):
    """Many template messages: their variants land in different splits, as training splits them."""
    rows = [(f"Claim prize {i} call {1000 + i}", "spam") for i in range(40)]
    rows += [(f"see you at {i} o clock", "ham") for i in range(40)]
    rows += [(f"unique note {chr(97 + i % 26)}{chr(97 + i // 26)}", "ham") for i in range(30)]
    data = DataConfig(source=str(write_rows(tmp_path / "templates.csv", rows)), balance=False)
    table = load_table(data)
    h = data_health(table, data, byte_tokenizer, 64)
    splits = make_splits(table, data, seed=123)
    train_keys = {normalise(t) for t in splits.train.texts}
    val_keys = {normalise(t) for t in splits.val.texts}
    assert h.cross_split["test in train"] == sum(normalise(t) in train_keys for t in splits.test.texts) > 0
    assert h.cross_split["val in train"] == sum(normalise(t) in train_keys for t in splits.val.texts) > 0
    assert h.cross_split["test in val"] == sum(normalise(t) in val_keys for t in splits.test.texts)
    assert h.cross_split_exact == {"val in train": 0, "test in train": 0, "test in val": 0}
    assert h.split_sizes == {"train": len(splits.train.texts), "val": len(splits.val.texts), "test": 22}
    assert any("test accuracy will overstate" in note for note in h.notes)
    assert len(h.cross_split_groups[0].splits) >= 2


def test_balance_setting_changes_the_splits_reported(tmp_path, byte_tokenizer):
    data = DataConfig(source=str(crafted(tmp_path)))
    balanced = data_health(load_table(data), data, byte_tokenizer, 64)
    unbalanced = data_health(load_table(data), DataConfig(source=data.source, balance=False), byte_tokenizer, 64)
    assert sum(balanced.split_sizes.values()) < sum(unbalanced.split_sizes.values())


def test_real_sms_collection_figures():
    """The figures shared/data/README.md publishes for this file."""
    require_shared(SMS_FILE)
    tokenizer = load_tokenizer(require_shared(TOKENIZER_DIR))
    table = read_sms_spam(SMS_FILE)  # as `--data sms-spam` reads it: the book's repeats kept
    data = DataConfig(source="sms-spam", balance=False)
    h = data_health(table, data, tokenizer, 128)
    assert h.rows == 5574 and h.class_counts == {"ham": 4827, "spam": 747}
    assert h.exact_duplicates == 403 and h.conflicting_labels == 0 and h.empty_texts == 0
    assert h.lengths.median == 17 and h.lengths.longest == 257 and h.lengths.over_max == 12
    assert h.cross_split_exact["test in train"] > 0  # the kept repeats cross the splits


# --- the command line ------------------------------------------------------------------------


def test_cli_report_and_json(tmp_path, tiny_checkpoint, capsys):
    path = crafted(tmp_path)
    assert main(["data-report", str(path), "--model", str(tiny_checkpoint), "--max-length", "64"]) == 0
    out = capsys.readouterr().out
    assert "empty texts: 2 (rows 31, 32…)" in out and "<- cut at 64" in out and "note:" in out
    assert main(["data-report", str(path), "--model", str(tiny_checkpoint), "--json", "--no-balance"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_counts"] == {"ham": 25, "spam": 13} and report["lengths"]["max_length"] == 256


def test_cli_escapes_control_characters(tmp_path, tiny_checkpoint, capsys):
    rows = [(f"msg {i}", "ham" if i % 2 else "spam") for i in range(30)] + [("evil\x1b[2J text", "ham")] * 2
    path = write_rows(tmp_path / "evil.csv", rows)
    assert main(["data-report", str(path), "--model", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["data-report", "missing.csv"], "missing.csv"),
        (["data-report", "FILE", "--text-column", "nope", "--model", "TINY"], "nope"),
        (["data-report", "FILE", "--model", "nowhere"], "nowhere"),
    ],
)
def test_cli_mistakes_exit_2(tmp_path, tiny_checkpoint, argv, fragment, capsys):
    path = crafted(tmp_path)
    assert main([{"FILE": str(path), "TINY": str(tiny_checkpoint)}.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err


def test_cli_without_any_tokenizer_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setattr("tiktoken.get_encoding", offline)  # a machine with no cached GPT-2 anywhere
    monkeypatch.delenv("WORKBENCH_TIKTOKEN_FILE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["data-report", str(crafted(tmp_path))]) == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_a_report_can_be_stopped_and_says_how_far_it_got(tmp_path, byte_tokenizer):
    import threading

    from workbench.core.errors import Cancelled

    data = DataConfig(source=str(crafted(tmp_path)), balance=False)
    table = load_table(data)
    seen = []
    data_health(table, data, byte_tokenizer, 64, progress=lambda done, total, what: seen.append((done, total, what)))
    assert seen and seen[-1] == (38, 38, "Tokenizing")  # every usable text counted
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        data_health(table, data, byte_tokenizer, 64, stop=stop)
