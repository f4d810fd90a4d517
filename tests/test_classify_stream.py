"""``classify --input``: the file is streamed in chunks (never held whole), the output is written
as it goes into a temp file that replaces the target only at the end, and the result is the same
as classifying the whole table at once."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest
from test_robustness import adapter  # noqa: F401 (a fixture)

from workbench.cli import main
from workbench.core import data as datamod
from workbench.core.classify import Classifier, Prediction, classify_file
from workbench.core.data import read_table, save_table
from workbench.core.errors import Cancelled


@pytest.fixture(scope="module")
def classifier(adapter) -> Classifier:
    return Classifier.from_adapter(adapter, precision="fp32")


def write_rows(path: Path, n: int, delimiter: str = ",", late_extra: bool = False) -> Path:
    """Rows with quotes, commas, blank lines; with ``late_extra``, a row far past the first 256 KB
    has one field more than any row the sniffer saw (a column only the full pass can find)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["id", "message"])
        for i in range(n):
            if i % 50 == 7:
                f.write("\n")  # a blank line: left out, as read_table leaves it out
            text = f'message {i}: "win cash", {"now " * (i % 9)}' if i % 2 else f"see you at {i % 24}h"
            row = [str(i), text] + (["an extra field"] if late_extra and i == n - 3 else [])
            writer.writerow(row)
    return path


class FakeClassifier:
    """Probabilities that depend only on the text, so outputs compare byte for byte whatever the
    batching (a real model's float sums differ in the last digits between batch shapes)."""

    info = type("Info", (), {"label_names": ("ham", "spam")})
    sources: dict = {}  # the files a real classifier reads (adapter, model), which no output may replace

    def __init__(self):
        self.calls: list[int] = []

    def predict(self, texts, stop=None, progress=None):
        self.calls.append(len(texts))
        out = []
        for text in texts:
            p = (sum(map(ord, text)) % 997) / 997
            out.append(Prediction("spam" if p > 0.5 else "ham", {"ham": 1 - p, "spam": p}))
        if progress:
            progress(len(texts), len(texts), "Classifying")
        return out


def reference_output(classifier, source: Path, target: Path) -> bytes:
    """The whole-table way: read_table, predict every row, save_table."""
    frame = read_table(source).frame.copy()
    predictions = classifier.predict(frame["message"].astype(str).tolist())
    frame["predicted_label"] = [p.label for p in predictions]
    frame["probability"] = [round(p.probability, 6) for p in predictions]
    for name in classifier.info.label_names:
        frame[f"p_{name}"] = [round(p.probabilities[name], 6) for p in predictions]
    return save_table(frame, target).read_bytes()


@pytest.mark.parametrize(
    ("name", "n", "late_extra"), [("small.csv", 300, False), ("tabs.tsv", 300, False), ("wide.csv", 9000, True)]
)
def test_chunked_output_equals_the_whole_table(tmp_path, monkeypatch, name, n, late_extra):
    source = write_rows(tmp_path / name, n, "\t" if name.endswith(".tsv") else ",", late_extra)
    expected = reference_output(FakeClassifier(), source, tmp_path / f"reference{source.suffix}")
    for module in (datamod, datamod.tables):
        monkeypatch.setattr(module, "read_table", None)  # streaming never reads the whole table
    classifier = FakeClassifier()
    target = tmp_path / f"out{source.suffix}"
    assert classify_file(classifier, source, target, chunk_rows=97) == n
    assert len(classifier.calls) > 1 and max(classifier.calls) <= 97  # really in chunks
    assert target.read_bytes() == expected
    if late_extra:
        assert b"an extra field" in expected  # the column the sample could not show is kept


def test_progress_counts_rows_up_to_the_total(classifier, tmp_path):
    source = write_rows(tmp_path / "in.csv", 500)
    reports = []
    classify_file(classifier, source, tmp_path / "out.csv", chunk_rows=64, progress=lambda *r: reports.append(r))
    rows = [(done, total) for done, total, message in reports if message == "Classifying"]
    assert rows[-1] == (500, 500) and [d for d, _ in rows] == sorted(d for d, _ in rows)


@pytest.mark.parametrize("how", ["stop", "ctrl-c", "error"])
def test_an_interrupted_run_leaves_the_target_as_it_was(classifier, tmp_path, monkeypatch, how):
    source = write_rows(tmp_path / "in.csv", 600)
    target = tmp_path / "out.csv"
    target.write_bytes(b"yesterday's predictions\n")
    stop = threading.Event()
    real_predict = classifier.predict
    calls = []

    def predict(texts, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two chunks are already in the temp file
            if how == "stop":
                stop.set()
            elif how == "ctrl-c":
                raise KeyboardInterrupt
            else:
                raise OSError(28, "No space left on device")
        return real_predict(texts, **kwargs)

    monkeypatch.setattr(classifier, "predict", predict)
    expected = {"stop": Cancelled, "ctrl-c": KeyboardInterrupt, "error": OSError}[how]
    with pytest.raises(expected):
        classify_file(classifier, source, target, chunk_rows=100, stop=stop)
    assert target.read_bytes() == b"yesterday's predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # no temp file left


def test_cli_streams_to_stdout_and_to_a_file_alike(adapter, tmp_path, capsys):
    source = write_rows(tmp_path / "in.csv", 120)
    target = tmp_path / "out.csv"
    assert main(["classify", "--adapter", str(adapter), "--input", str(source), "--output", str(target)]) == 0
    assert "120 rows classified" in capsys.readouterr().out
    assert main(["classify", "--adapter", str(adapter), "--input", str(source)]) == 0
    assert capsys.readouterr().out.encode("utf-8") == target.read_bytes()
