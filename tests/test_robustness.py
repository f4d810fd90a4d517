"""Bad input and file-system faults: a clear one-line answer, and nothing the user had is lost.

Each case is checked twice: through the core API (the error type and its message) and through
``workbench.cli.main`` (exit status 1 or 2, exactly one line on stderr, no traceback).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import pickle
import random
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_checkpoint

from workbench.cli import main
from workbench.core import events as ev
from workbench.core import training
from workbench.core.adapters import (
    AdapterInfo,
    copy_adapter,
    label_mapping,
    read_adapter,
    save_adapter,
)
from workbench.core.classify import Classifier
from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
from workbench.core.data import make_splits, read_table, save_table
from workbench.core.errors import AdapterError, Cancelled, DataError, WorkbenchError
from workbench.core.lora import build_lora_model
from workbench.core.runs import Position, save_resume_state

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fault simulation reads /proc/self/fd")


# --------------------------------------------------------------------------- helpers


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    """The CLI's contract for every user mistake and fault; returns the message."""
    assert code in (1, 2), (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("workbench: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def train_argv(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """A CLI training run of a couple of steps on the tiny model."""
    return [
        "train",
        "--model",
        str(checkpoint),
        "--data",
        str(data),
        "--rank",
        "2",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--eval-every",
        "100",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def tiny_train_config(checkpoint: Path, data: Path, **changes) -> TrainConfig:
    cfg = TrainConfig(
        model=str(checkpoint),
        data=DataConfig(source=str(data)),
        lora=LoRAConfig(rank=2, alpha=4),
        epochs=1,
        batch_size=8,
        max_steps=2,
        eval_every=100,
    )
    return cfg.with_changes(**changes)


def write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label")) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def two_classes(n: int = 40) -> list[tuple[str, str]]:
    return [(f"message number {i} {'win cash' if i % 2 else 'see you'}", "spam" if i % 2 else "ham") for i in range(n)]


@pytest.fixture(scope="module")
def adapter(tiny_checkpoint, tmp_path_factory) -> Path:
    """A ham/spam adapter for the tiny model (untrained: only loading is tested here)."""
    lora = LoRAConfig(rank=2, alpha=4)
    model = build_lora_model(tiny_checkpoint, lora, 2, seed=0)
    info = AdapterInfo(
        base_model=str(tiny_checkpoint),
        model_config=model.config,
        lora=lora,
        label_names=("ham", "spam"),
        max_length=64,
    )
    return save_adapter(tmp_path_factory.mktemp("adapter") / "adapter.safetensors", model, info)


class FaultyDisk:
    """Simulated file-system faults for paths under chosen folders.

    ``read_only(folder)``: creating, replacing or deleting files there fails with EACCES (by a real
    chmod when not root; root writes through chmod, as in CI, so then by patching ``open``,
    ``os.open``, ``os.mkdir``, ``os.replace`` …). ``fill(folder)``: the disk is full there: files
    still open (and a "w" open still truncates, as on a real disk) but every write, sendfile and
    fsync fails with ENOSPC. Any way of writing a file meets the fault, so a test does not depend
    on how the code under test writes.
    """

    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self, monkeypatch):
        self.mp = monkeypatch
        self.denied: list[Path] = []
        self.full: list[Path] = []
        self.chmodded: list[Path] = []
        self.patched = False

    def read_only(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o500)
            self.chmodded.append(folder)
        else:
            self._patch()
            self.denied.append(folder.resolve())
        return folder

    def fill(self, folder: Path) -> None:
        self._patch()
        self.full.append(folder.resolve())

    def restore(self) -> None:
        for folder in self.chmodded:
            folder.chmod(0o700)

    # ------------------------------------------------------------------ patching

    @staticmethod
    def _path(target) -> Path | None:
        if isinstance(target, int):
            try:
                return Path(os.readlink(f"/proc/self/fd/{target}"))
            except OSError:
                return None
        try:
            return Path(os.path.abspath(os.fsdecode(os.fspath(target))))
        except TypeError:
            return None

    def _under(self, target, roots: list[Path]) -> bool:
        path = self._path(target)
        return path is not None and any(path == root or root in path.parents for root in roots)

    @staticmethod
    def _fail(code: int, target=None):
        raise OSError(code, os.strerror(code), None if isinstance(target, int) else os.fspath(target))

    def _patch(self) -> None:
        if self.patched:
            return
        self.patched = True
        real = {
            name: getattr(os, name)
            for name in ("open", "fdopen", "mkdir", "replace", "rename", "unlink", "write", "fsync", "sendfile")
        }
        real_open = builtins.open
        copy_file_range = getattr(os, "copy_file_range", None)
        disk = self

        def writing(mode) -> bool:
            return any(c in mode for c in "wax+")

        class FullFile:
            """An open file on a full disk: every write fails."""

            def __init__(self, f):
                self._f = f

            def write(self, data):
                disk._fail(errno.ENOSPC, self._f.name)

            def writelines(self, lines):
                disk._fail(errno.ENOSPC, self._f.name)

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

            def __iter__(self):
                return iter(self._f)

        def open_(file, mode="r", *args, **kwargs):
            if writing(mode) and not isinstance(file, int) and disk._under(Path(file).parent, disk.denied):
                disk._fail(errno.EACCES, file)
            f = real_open(file, mode, *args, **kwargs)
            return FullFile(f) if writing(mode) and disk._under(file, disk.full) else f

        def os_open(path, flags, *args, **kwargs):
            if flags & disk._WRITE_FLAGS and disk._under(Path(path).parent, disk.denied):
                disk._fail(errno.EACCES, path)
            return real["open"](path, flags, *args, **kwargs)

        def fdopen(fd, mode="r", *args, **kwargs):
            f = real["fdopen"](fd, mode, *args, **kwargs)
            return FullFile(f) if writing(mode) and disk._under(fd, disk.full) else f

        def in_denied_parent(name):
            def guarded(path, *args, **kwargs):
                if disk._under(Path(path).parent, disk.denied):
                    disk._fail(errno.EACCES, path)
                return real[name](path, *args, **kwargs)

            return guarded

        def moved(name):
            def guarded(src, dst, *args, **kwargs):
                if disk._under(Path(dst).parent, disk.denied) or disk._under(Path(src).parent, disk.denied):
                    disk._fail(errno.EACCES, dst)
                return real[name](src, dst, *args, **kwargs)

            return guarded

        def on_full_fd(name, fd_index=0):
            def guarded(*args, **kwargs):
                if disk._under(args[fd_index], disk.full):
                    disk._fail(errno.ENOSPC, args[fd_index])
                return (real.get(name) or copy_file_range)(*args, **kwargs)

            return guarded

        self.mp.setattr(builtins, "open", open_)
        self.mp.setattr(io, "open", open_)
        self.mp.setattr(os, "open", os_open)
        self.mp.setattr(os, "fdopen", fdopen)
        self.mp.setattr(os, "mkdir", in_denied_parent("mkdir"))
        self.mp.setattr(os, "unlink", in_denied_parent("unlink"))
        self.mp.setattr(os, "replace", moved("replace"))
        self.mp.setattr(os, "rename", moved("rename"))
        self.mp.setattr(os, "write", on_full_fd("write"))
        self.mp.setattr(os, "fsync", on_full_fd("fsync"))
        self.mp.setattr(os, "sendfile", on_full_fd("sendfile"))
        if copy_file_range is not None:
            self.mp.setattr(os, "copy_file_range", on_full_fd("copy_file_range", fd_index=1))


@pytest.fixture
def disk(monkeypatch):
    faults = FaultyDisk(monkeypatch)
    yield faults
    monkeypatch.undo()
    faults.restore()


def test_the_fault_simulation_works(disk, tmp_path):
    """The simulation itself: EACCES for a read-only folder, ENOSPC (after truncating) on a full one."""
    ro = disk.read_only(tmp_path / "ro")
    with pytest.raises(PermissionError):
        (ro / "new.txt").write_text("x")
    with pytest.raises(PermissionError):
        (ro / "sub").mkdir()
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("kept")
    disk.fill(full)
    with pytest.raises(OSError) as error:
        (full / "old.txt").write_text("new")
    assert error.value.errno == errno.ENOSPC and (full / "old.txt").read_text() == ""  # what a naive save does
    (tmp_path / "elsewhere.txt").write_text("fine")  # other folders are untouched


# --------------------------------------------------------------------------- dataset files


def test_empty_file(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.csv is empty"):
        read_table(path)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert_one_line_error(code, err, "empty.csv is empty")


def test_file_with_one_class(tmp_path, tiny_checkpoint, capsys):
    path = write_csv(tmp_path / "one.csv", [(f"text {i}", "ham") for i in range(30)])
    with pytest.raises(DataError, match="only the label 'ham'.*at least two classes"):
        make_splits(read_table(path), DataConfig(source=str(path)), seed=123)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert_one_line_error(code, err, "only the label 'ham'")


def _with_missing_labels(path: Path) -> tuple[Path, int]:
    """Two classes of 40 rows plus 12 rows whose label (or text) is missing in the usual ways."""
    rows = two_classes(80)
    missing = [(f"unlabelled {i}", marker) for i, marker in enumerate(["", "NA", "nan", "NaN", "null", "#N/A"] * 2)]
    missing += [("", "spam"), ("   ", "ham")]
    return write_csv(path, rows + missing), len(missing)


def test_missing_labels_are_dropped_and_counted(tmp_path, tiny_checkpoint, capsys):
    path, n_missing = _with_missing_labels(tmp_path / "gaps.csv")
    splits = make_splits(read_table(path), DataConfig(source=str(path)), seed=123)
    assert splits.dropped_empty == n_missing
    assert splits.label_names == ["ham", "spam"] and splits.class_counts == {"ham": 40, "spam": 40}
    events = list(training.train(tiny_train_config(tiny_checkpoint, path)))
    assert isinstance(events[-1], ev.TrainingFinished), events[-1]
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.n_train + started.n_val + started.n_test == 80

    out = tmp_path / "a.safetensors"
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, out))
    assert code == 0, err
    assert out.is_file()


def test_numbers_as_text_are_accepted_unchanged(tmp_path, tiny_checkpoint, capsys):
    """Decision: a text column of numbers is text (GPT-2 reads digits); nothing is converted."""
    numbers = ["007", "1e3", "3.14159", "-0", "42", "0x1F", "12,5", "1 000"]
    rows = [(f"{numbers[i % len(numbers)]}{i}", "odd" if i % 2 else "even") for i in range(60)]
    path = write_csv(tmp_path / "numbers.csv", rows)
    table = read_table(path)
    assert table.text_column == "text" and table.label_column == "label"
    assert table.frame["text"].tolist() == [text for text, _ in rows]  # "0070" keeps its zeros, "1e30" stays
    splits = make_splits(table, DataConfig(source=str(path)), seed=123)
    assert sorted(splits.train.texts + splits.val.texts + splits.test.texts) == sorted(t for t, _ in rows)

    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert code == 0, err


def test_binary_file_named_csv(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(0).randbytes(4000))
    with pytest.raises(DataError, match="photo.csv looks like a binary file"):
        read_table(path)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert_one_line_error(code, err, "photo.csv looks like a binary file")


def test_random_bytes_are_not_text(tmp_path, tiny_checkpoint, capsys):
    """Bytes with no NUL decode as Latin-1 whatever they are; the control codes give them away."""
    path = tmp_path / "noise.csv"
    path.write_bytes(random.Random(1).randbytes(8000).replace(b"\x00", b"\x01"))
    with pytest.raises(DataError, match="noise.csv does not look like text.*UTF-8"):
        read_table(path)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert_one_line_error(code, err, "does not look like text")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_read(tmp_path, tiny_checkpoint, capsys, encoding):
    rows = two_classes(60)
    text = "text,label\n" + "".join(f"{t} é€,{label}\n" for t, label in rows)
    path = tmp_path / "unicode.csv"
    path.write_bytes(text.encode(encoding))
    table = read_table(path)
    assert table.encoding == encoding
    assert table.frame["text"].tolist() == [f"{t} é€" for t, _ in rows]

    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert code == 0, err


def test_utf32_is_read_with_a_bom_and_refused_without(tmp_path, tiny_checkpoint, capsys):
    text = "text,label\n" + "".join(f"{t},{label}\n" for t, label in two_classes())
    path = tmp_path / "utf32.csv"
    path.write_bytes(text.encode("utf-32"))
    assert read_table(path).frame["text"].tolist() == [t for t, _ in two_classes()]
    path.write_bytes(text.encode("utf-32-le"))
    with pytest.raises(DataError, match="binary file.*save it as UTF-8"):
        read_table(path)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert_one_line_error(code, err, "utf32.csv looks like a binary file")


def test_unclosed_quote_after_the_sample_is_explained(tmp_path):
    """The reader guesses quoting from the first 256 KB; a stray quote later gets a plain answer."""
    rows = "".join(f"message {i},{'ham' if i % 2 else 'spam'}\n" for i in range(30_000))
    path = tmp_path / "stray.csv"
    path.write_text("text,label\n" + rows + '"never closed,ham\nmore,spam\n')
    with pytest.raises(DataError, match=r"quote \(\"\) that opens a field in row \d+ and is never closed"):
        read_table(path)


def test_messages_longer_than_the_context_are_truncated_and_counted(tmp_path, tiny_checkpoint, capsys):
    """The tiny model's context is 256 tokens and its tokenizer is one token per byte."""
    rows = [(("long " * 70 if i % 4 == 0 else "short ") + str(i), "spam" if i % 2 else "ham") for i in range(80)]
    path = write_csv(tmp_path / "long.csv", rows)
    n_long = sum(len(text.encode()) > 256 for text, _ in rows)
    assert n_long == 20
    events = list(training.train(tiny_train_config(tiny_checkpoint, path)))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert (started.truncated, started.max_length) == (n_long, 256)
    assert isinstance(events[-1], ev.TrainingFinished)

    code, out, err = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "a.safetensors"))
    assert code == 0, err
    assert f"{n_long} texts longer than 256 tokens were truncated" in out
    code, out, _ = run_cli(capsys, *train_argv(tiny_checkpoint, path, tmp_path / "b.safetensors", "--max-length", "4"))
    assert code == 0 and "80 texts longer than 4 tokens were truncated" in out


def test_path_that_does_not_exist(tmp_path, tiny_checkpoint, adapter, capsys):
    missing = tmp_path / "nowhere" / "data.csv"
    with pytest.raises(DataError, match="does not exist"):
        read_table(missing)
    with pytest.raises(AdapterError, match="does not exist"):
        read_adapter(tmp_path / "nowhere.safetensors")
    with pytest.raises(WorkbenchError, match="does not exist"):
        tiny_train_config(tiny_checkpoint, missing).check()

    for argv in (
        train_argv(tiny_checkpoint, missing, tmp_path / "a.safetensors"),
        ["eval", "--adapter", adapter, "--data", missing],
        ["classify", "--adapter", adapter, "--input", missing],
        ["classify", "--adapter", tmp_path / "nowhere.safetensors", "hello"],
        ["info", tmp_path / "nowhere.safetensors"],
        train_argv(
            tiny_checkpoint, write_csv(tmp_path / "ok.csv", two_classes()), tmp_path / "nowhere" / "a.safetensors"
        ),
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2
        assert_one_line_error(code, err, "does not exist")


# --------------------------------------------------------------------------- a very large CSV

# About 80 MB, so the suite stays fast; a 1 GB file takes the same code path (pandas' C parser in
# 50,000-row chunks, progress and the stop check between chunks), only for longer.
_LARGE_BYTES = 80_000_000


@pytest.fixture(scope="module")
def large_csv(tmp_path_factory) -> tuple[Path, int]:
    rng = random.Random(0)
    words = "win cash prize free claim now see you at lunch tomorrow ok thanks mum home later love".split()
    block = "".join(
        f'{"spam" if i % 2 else "ham"},"{" ".join(rng.choices(words, k=rng.randint(5, 25)))}, msg {i}"\n'
        for i in range(10_000)
    ).encode()
    repeats = _LARGE_BYTES // len(block)
    path = tmp_path_factory.mktemp("large") / "large.csv"
    with open(path, "wb") as f:
        f.write(b"label,text\n")
        for _ in range(repeats):
            f.write(block)
    return path, repeats * 10_000


@pytest.mark.slow
def test_large_csv_reports_growing_progress(large_csv):
    path, n_rows = large_csv
    size = path.stat().st_size
    reports = []
    table = read_table(path, progress=lambda done, total, message: reports.append((done, total)))
    assert len(table.frame) == n_rows and (table.text_column, table.label_column) == ("text", "label")
    done = [d for d, _ in reports]
    assert done == sorted(done) and done[0] == 0 and done[-1] == size
    assert len(set(done)) >= 10  # many steps in between, not just start and end
    assert {total for _, total in reports} == {size}


@pytest.mark.slow
def test_large_csv_stops_promptly(large_csv):
    path, _ = large_csv
    stop = threading.Event()
    stopped_at = []

    def progress(done, total, message):
        if done > 0 and not stop.is_set():
            stop.set()
            stopped_at.append((time.perf_counter(), done))

    with pytest.raises(Cancelled, match="large.csv"):
        read_table(path, progress=progress, stop=stop)
    took = time.perf_counter() - stopped_at[0][0]
    assert took < 1.0, f"{took:.2f} s from stop to Cancelled"
    assert stopped_at[0][1] < path.stat().st_size / 4


@pytest.mark.slow
def test_large_csv_max_rows_gives_a_sample(large_csv):
    path, _ = large_csv
    start = time.perf_counter()
    sample = read_table(path, max_rows=1000)
    assert len(sample.frame) == 1000 and sample.truncated_rows
    assert time.perf_counter() - start < 2.0  # reads the start of the file, not all of it


# --------------------------------------------------------------------------- adapter files


def test_truncated_or_corrupt_adapter(adapter, tmp_path, capsys):
    data = adapter.read_bytes()
    cases = {
        "cut.safetensors": data[: len(data) // 2],
        "stub.safetensors": data[:5],
        "empty.safetensors": b"",
        "flipped.safetensors": data[:12] + bytes([data[12] ^ 0x55]) + data[13:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(AdapterError, match=f"{name} is corrupt or truncated"):
            read_adapter(path)
        for argv in (["info", path], ["classify", "--adapter", path, "hello"]):
            code, _, err = run_cli(capsys, *argv)
            assert_one_line_error(code, err, f"{name} is corrupt or truncated")


def test_adapter_with_damaged_metadata_or_tensors(adapter, tmp_path, capsys):
    """A well-formed file whose settings do not fit its tensors (edited by hand, or a bad tool)."""
    from safetensors.torch import load, save

    from workbench.core.adapters import METADATA_KEY

    tensors = load(adapter.read_bytes())
    _, info = read_adapter(adapter)
    bad_rank = info.to_json().replace('"rank": 2', '"rank": 3')
    path = tmp_path / "edited.safetensors"
    path.write_bytes(save(tensors, metadata={METADATA_KEY: bad_rank}))
    with pytest.raises(AdapterError, match="edited.safetensors is damaged.*shape"):
        read_adapter(path)
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "edited.safetensors is damaged")

    path.write_bytes(save(tensors, metadata={METADATA_KEY: info.to_json().replace('"rank": 2', '"rank": 0')}))
    with pytest.raises(AdapterError, match="invalid adapter metadata: rank"):
        read_adapter(path)


def test_adapter_whose_first_byte_looks_like_a_pickle_loads(tiny_checkpoint, tmp_path, capsys):
    """A safetensors file starts with its header length; when that length's low byte is 0x80 (one
    adapter in 256) the file starts like a pickle, and used to be refused as one."""
    lora = LoRAConfig(rank=2, alpha=4)
    model = build_lora_model(tiny_checkpoint, lora, 2, seed=0)
    path = tmp_path / "adapter.safetensors"
    for pad in range(256):  # the base model's name is in the header: lengthen it until the byte is 0x80
        info = AdapterInfo(
            base_model=str(tiny_checkpoint) + "/" * pad,
            model_config=model.config,
            lora=lora,
            label_names=("ham", "spam"),
            max_length=64,
        )
        save_adapter(path, model, info)
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert read_adapter(path)[1].label_names == ("ham", "spam")
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err


class _LeavesMarker:
    """Unpickling this creates a file: proof that a loader ran pickle code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["adapter.pth", "adapter.bin", "renamed.safetensors"])
def test_pickled_adapter_is_refused_unopened(tmp_path, capsys, name):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    if name.endswith(".pth"):
        torch.save({"lora_A": torch.zeros(2, 2), "trap": _LeavesMarker(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"trap": _LeavesMarker(marker)}))
    with pytest.raises(AdapterError, match="pickle"):
        read_adapter(path)
    for argv in (
        ["info", path],
        ["classify", "--adapter", path, "hello"],
        ["export-peft", path, "--out", tmp_path / "p"],
    ):
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, "pickle")
    assert not marker.exists()


def test_adapter_for_another_base(adapter, tmp_path, capsys):
    other = write_tiny_checkpoint(tmp_path / "other-base", n_layer=3)
    with pytest.raises(AdapterError, match=r"made for .*\(2 layers, width 64\), not for .*other-base \(3 layers"):
        Classifier.from_adapter(adapter, model=str(other))
    code, _, err = run_cli(capsys, "classify", "--adapter", adapter, "--model", other, "hello")
    assert_one_line_error(code, err, "2 layers, width 64", "3 layers, width 64")


def test_adapter_for_another_label_set(adapter, tmp_path, capsys):
    _, info = read_adapter(adapter)
    with pytest.raises(
        AdapterError, match=r"\(a, b, c\) do not match the adapter's \(ham, spam\).*never learned a, b, c"
    ):
        label_mapping(info, ["a", "b", "c"], "three.csv")
    assert label_mapping(info, ["spam"]) == [1]  # a subset is fine: each name keeps the adapter's id

    rows = [(f"text {i}", "abc"[i % 3]) for i in range(90)]
    code, _, err = run_cli(capsys, "eval", "--adapter", adapter, "--data", write_csv(tmp_path / "three.csv", rows))
    assert_one_line_error(code, err, "ham", "spam", "a", "b", "c")


# --------------------------------------------------------------------------- read-only folders


@pytest.mark.parametrize("name", ["out.csv", "out.tsv"])
def test_save_table_round_trips(tmp_path, name):
    frame = read_table(write_csv(tmp_path / "in.csv", [('say "hi", then\nleave', "ham"), ("007", "spam")])).frame
    assert read_table(save_table(frame, tmp_path / name)).frame.equals(frame)


def test_saving_into_a_read_only_folder_keeps_the_source(adapter, disk, tmp_path):
    folder = disk.read_only(tmp_path / "ro")
    with pytest.raises(AdapterError, match=f"Permission denied.*unchanged.*kept at {adapter}"):
        copy_adapter(adapter, folder / "copy.safetensors")
    with pytest.raises(DataError, match="Permission denied"):
        save_table(read_table(write_csv(tmp_path / "t.csv", two_classes())).frame, folder / "out.csv")
    assert list(folder.iterdir()) == []


def test_cli_train_into_a_read_only_folder(tiny_checkpoint, disk, tmp_path, capsys):
    folder = disk.read_only(tmp_path / "ro")
    data = write_csv(tmp_path / "d.csv", two_classes())
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, data, folder / "a.safetensors"))
    assert_one_line_error(code, err, "Permission denied")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("where", ["read-only", "missing"])
def test_cli_classify_output_into_an_unwritable_folder(adapter, disk, tmp_path, capsys, where):
    folder = disk.read_only(tmp_path / "ro") if where == "read-only" else tmp_path / "missing"
    data = write_csv(tmp_path / "d.csv", two_classes(10))
    code, _, err = run_cli(capsys, "classify", "--adapter", adapter, "--input", data, "--output", folder / "p.csv")
    assert_one_line_error(code, err, str(folder))


def test_read_only_data_folder_fails_cleanly(tiny_checkpoint, disk, tmp_path, monkeypatch, capsys):
    data_dir = disk.read_only(tmp_path / "ro-data")
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data_dir))
    data = write_csv(tmp_path / "d.csv", two_classes())
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, data, tmp_path / "a.safetensors"))
    assert_one_line_error(code, err, "Permission denied", str(data_dir))


# --------------------------------------------------------------------------- a full disk


def test_full_disk_keeps_existing_files_byte_identical(tiny_checkpoint, adapter, disk, tmp_path):
    """Adapters, checkpoints, copies and CSV outputs: all written by temp file + rename."""
    folder = tmp_path / "full"
    folder.mkdir()
    target = folder / "adapter.safetensors"
    target.write_bytes(adapter.read_bytes())
    checkpoint, table = folder / "checkpoint.safetensors", folder / "predictions.csv"
    model = build_lora_model(tiny_checkpoint, LoRAConfig(rank=2, alpha=4), 2, seed=1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    save_resume_state(checkpoint, model, optimizer, Position(1, 0, 1, 8))
    table.write_text("text,label\nold,ham\n")
    before = {p: p.read_bytes() for p in (target, checkpoint, table)}
    _, info = read_adapter(adapter)

    disk.fill(folder)
    with pytest.raises(AdapterError, match="No space left on device.*unchanged"):
        save_adapter(target, model, info)
    with pytest.raises(AdapterError, match="No space left on device.*kept at"):
        copy_adapter(adapter, target)
    with pytest.raises(WorkbenchError, match="No space left on device"):
        save_resume_state(checkpoint, model, optimizer, Position(2, 0, 2, 16))
    with pytest.raises(DataError, match="No space left on device"):
        save_table(read_table(write_csv(tmp_path / "t.csv", two_classes())).frame, table)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in before)  # no temp files left


def _fill_disk_when(monkeypatch, disk, folder: Path, event_type: type) -> None:
    """Let training run, and make the disk under ``folder`` full once ``event_type`` is emitted."""
    real_train = training.train

    def train_then_fill(*args, **kwargs):
        for event in real_train(*args, **kwargs):
            if isinstance(event, event_type):
                disk.fill(folder)
            yield event

    monkeypatch.setattr(training, "train", train_then_fill)


def test_cli_full_disk_when_saving_keeps_the_existing_adapter(
    tiny_checkpoint, adapter, disk, tmp_path, monkeypatch, capsys
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "adapter.safetensors"
    out.write_bytes(adapter.read_bytes())
    before = out.read_bytes()
    _fill_disk_when(monkeypatch, disk, out_dir, ev.TrainingFinished)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, write_csv(tmp_path / "d.csv", two_classes()), out))
    assert_one_line_error(code, err, "No space left on device")
    assert out.read_bytes() == before


def test_cli_full_disk_during_training(tiny_checkpoint, adapter, disk, tmp_path, monkeypatch, capsys):
    out = tmp_path / "adapter.safetensors"
    out.write_bytes(adapter.read_bytes())
    before = out.read_bytes()
    _fill_disk_when(monkeypatch, disk, tmp_path, ev.RunStarted)
    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, write_csv(tmp_path / "d.csv", two_classes()), out))
    assert_one_line_error(code, err, "No space left on device")
    assert out.read_bytes() == before


def test_full_disk_at_a_checkpoint_fails_the_run_cleanly(tiny_checkpoint, adapter, disk, tmp_path, monkeypatch, capsys):
    """Checkpoints are saved atomically, so the save itself fails cleanly; the run must then
    report it without writing more to the same full disk."""
    out = tmp_path / "adapter.safetensors"
    out.write_bytes(adapter.read_bytes())
    before = out.read_bytes()
    real_save = training.save_resume_state

    def save_on_a_full_disk(path, *args, **kwargs):
        disk.fill(Path(path).parent)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(training, "save_resume_state", save_on_a_full_disk)
    data = write_csv(tmp_path / "d.csv", two_classes())
    failed = list(training.train(tiny_train_config(tiny_checkpoint, data)))[-1]
    assert isinstance(failed, ev.TrainingFailed) and "No space left on device" in failed.message

    code, _, err = run_cli(capsys, *train_argv(tiny_checkpoint, data, out))
    assert_one_line_error(code, err, "No space left on device", "checkpoint.safetensors")
    assert out.read_bytes() == before
