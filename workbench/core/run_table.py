"""The run table, for the window and the CLI alike: a row per run, the name and notes a person
gives a run, which settings differ between runs, and removing a run safely.

Every row's state comes from ``runs.run_outcome`` (the one rule); nothing here decides it again.
The name and notes live in the run folder (about.json), so they travel with it and a second
window, or ``workbench runs``, sees them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import events as ev
from .config import SMS_SPAM, TrainConfig
from .errors import ConfigError, WorkbenchError
from .fileio import read_json, write_atomically
from .runs import DamagedRunError, RunFolder, list_runs, run_outcome

ABOUT_FILE = "about.json"
MAX_NAME_CHARS = 200  # a name is a label in a table row, not a paragraph
MAX_NOTES_CHARS = 100_000
MAX_ABOUT_BYTES = 1 * 2**20  # about.json: the notes, at most ~400 KB in UTF-8, plus the name
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})_(\d{2})-(\d{2})-(\d{2})")  # how RunFolder.create names a run


# --- the name and notes a person gives a run ---------------------------------------------------


@dataclass(frozen=True)
class RunAbout:
    name: str = ""  # shown instead of the folder name; "" shows the folder name
    notes: str = ""  # free text: why the run was made, what was learnt from it


def about_path(run: RunFolder) -> Path:
    return run.path / ABOUT_FILE


def read_about(run: RunFolder) -> RunAbout:
    """The run's name and notes; an absent or damaged about.json reads as none (the run itself is
    fine, and one damaged file must not hide a run from the table)."""
    path = about_path(run)
    if not os.path.lexists(path):
        return RunAbout()
    try:
        values = read_json(path, "The run's name and notes", DamagedRunError, max_bytes=MAX_ABOUT_BYTES)
    except DamagedRunError:
        return RunAbout()
    if not isinstance(values, dict):
        return RunAbout()
    name, notes = values.get("name", ""), values.get("notes", "")
    return RunAbout(
        name=clean_name(name) if isinstance(name, str) else "",
        notes=notes[:MAX_NOTES_CHARS] if isinstance(notes, str) else "",
    )


def clean_name(name: str) -> str:
    """One line, no control characters, bounded: a name is shown in a table cell and a terminal."""
    one_line = "".join(" " if not ch.isprintable() else ch for ch in name)
    return " ".join(one_line.split())[:MAX_NAME_CHARS]


def save_about(run: RunFolder, about: RunAbout) -> RunAbout:
    """Write the run's name and notes atomically (a crash leaves the old ones, never half);
    returns what was stored (the name cleaned). Too long a text is refused, not cut silently."""
    if len(about.notes) > MAX_NOTES_CHARS:
        raise ConfigError(f"The notes are {len(about.notes):,} characters long; at most {MAX_NOTES_CHARS:,} are kept.")
    if len(about.name) > MAX_NAME_CHARS:
        raise ConfigError(f"A run's name is at most {MAX_NAME_CHARS} characters (this one has {len(about.name)}).")
    stored = RunAbout(clean_name(about.name), about.notes)
    payload = json.dumps({"name": stored.name, "notes": stored.notes}, ensure_ascii=False, indent=2)
    write_atomically(about_path(run), payload.encode("utf-8"))
    return stored


def display_name(run: RunFolder, about: RunAbout | None = None) -> str:
    about = read_about(run) if about is None else about
    return about.name or run.path.name


# --- a row of the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """What the run table shows of one run; None where the run does not say (yet)."""

    path: Path
    name: str  # the display name (the folder name unless renamed)
    state: str  # one of runs.RUN_STATES, or "damaged" when its history cannot be read
    started: datetime | None
    model: str | None
    data: str | None
    rank: int | None
    epochs: int | None  # planned (what config.json says; an extension raises it)
    test_accuracy: float | None  # of the latest attempt, when it finished
    f1: float | None  # macro F1 on the test split (the mean over classes: spam is rare)
    duration_s: float | None  # training time over all attempts, the running one included
    adapter_bytes: int | None
    notes: str = ""
    problem: str = ""  # what is damaged in the run folder

    @property
    def folder(self) -> str:
        return self.path.name


def data_label(cfg: TrainConfig) -> str:
    return "SMS Spam Collection" if cfg.data.source == SMS_SPAM else Path(cfg.data.source).name


def macro_f1(metrics: ev.EvaluationMetrics | None) -> float | None:
    """The unweighted mean of the per-class F1 (sklearn's average="macro")."""
    if metrics is None or not metrics.f1:
        return None
    return sum(metrics.f1) / len(metrics.f1)


def training_time(events: list) -> float | None:
    """Seconds spent training over every attempt: each ended attempt's elapsed time, and for one
    still going (its events include the live StepDone), the latest step's elapsed time."""
    total, current, seen = 0.0, None, False
    for event in events:
        if isinstance(event, ev.RunStarted):
            current = None
        elif isinstance(event, ev.StepDone):
            current = event.elapsed_s
        elif isinstance(event, ev.TrainingFinished):
            total += event.elapsed_s
            current, seen = None, True
    if current is not None:
        total, seen = total + current, True
    return total if seen else None


def started_at(run: RunFolder) -> datetime | None:
    """When the run began: the stamp its folder name starts with, else its settings file's time."""
    match = STAMP.match(run.path.name)
    if match:
        with contextlib.suppress(ValueError):
            return datetime.strptime("{}_{}-{}-{}".format(*match.groups()), "%Y-%m-%d_%H-%M-%S")
    try:
        return datetime.fromtimestamp(run.config_path.stat().st_mtime)
    except OSError:
        return None


def _adapter_bytes(run: RunFolder) -> int | None:
    try:
        stat = run.adapter_path.stat()
    except OSError:
        return None
    return stat.st_size if run.adapter_path.is_file() else None


def run_row(run: RunFolder, events: list | None = None, problem: str | None = None) -> RunRow:
    """The row of one run. ``events``: its history when the caller has it (the run training in
    this window passes the live events, StepDone included), else read from metrics.jsonl, with
    ``problem`` what is damaged in it. Nothing damaged raises: it shows in ``state`` or ``problem``."""
    if events is None:
        events, problem = run.read_events()
    try:
        cfg = run.config()
    except (DamagedRunError, OSError) as exc:
        cfg, problem = None, problem or str(exc)
    about = read_about(run)
    state = run_outcome(run, events)
    metrics = getattr(state.ended, "metrics", None) if state.state == "finished" else None
    return RunRow(
        path=run.path,
        name=about.name or run.path.name,
        state="damaged" if problem and not events else state.state,
        started=started_at(run),
        model=Path(cfg.model).name if cfg else None,
        data=data_label(cfg) if cfg else None,
        rank=cfg.lora.rank if cfg else None,
        epochs=cfg.epochs if cfg else None,
        test_accuracy=metrics.accuracy if metrics else None,
        f1=macro_f1(metrics),
        duration_s=training_time(events),
        adapter_bytes=_adapter_bytes(run),
        notes=about.notes,
        problem=problem or "",
    )


def run_rows(parent: Path | None = None) -> list[tuple[RunRow, list]]:
    """Every run's row with the history it was built from, newest first."""
    out = []
    for run in list_runs(parent):
        events, problem = run.read_events()
        out.append((run_row(run, events, problem), events))
    return out


# --- which settings differ --------------------------------------------------------------------


@dataclass(frozen=True)
class SettingDiff:
    setting: str  # dotted, as in config.json: "lora.rank", "lr"
    values: tuple[str, ...]  # one per run compared, in their order


def flat_settings(cfg: TrainConfig) -> dict[str, str]:
    """config.json flattened to dotted names, each value as a person reads it."""
    out: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, (list, tuple)):
            out[prefix] = ", ".join(str(v) for v in value)
        elif value is None:
            out[prefix] = "—"  # not set: the default rule applies (auto column, no step limit)
        elif isinstance(value, float):
            out[prefix] = f"{value:g}"
        else:
            out[prefix] = str(value)

    walk("", cfg.to_dict())
    return out


def settings_diff(configs: Sequence[TrainConfig]) -> list[SettingDiff]:
    """The settings whose values are not all the same, in config.json's order."""
    flat = [flat_settings(cfg) for cfg in configs]
    keys = list(dict.fromkeys(key for settings in flat for key in settings))
    diffs = []
    for key in keys:
        values = tuple(settings.get(key, "—") for settings in flat)
        if len(set(values)) > 1:
            diffs.append(SettingDiff(key, values))
    return diffs


# --- removing a run ----------------------------------------------------------------------------


def removal_problem(run: RunFolder) -> str | None:
    """Why the run may not be removed now (None: it may)."""
    if run.is_training():
        return f"{run.path.name} is training now; stop it first."
    return None


@contextlib.contextmanager
def held_for_removal(run: RunFolder) -> Iterator[None]:
    """Hold the run so that nothing starts training it while it is moved or deleted. On POSIX its
    training lock is held for the move (a trainer that comes second is refused); Windows cannot
    move a folder with an open file, so there the check comes just before."""
    problem = removal_problem(run)
    if problem:
        raise ConfigError(problem)
    if os.name == "nt":
        yield
        return
    try:
        with run.training_lock():
            yield
    except ConfigError:
        raise
    except OSError as exc:
        raise WorkbenchError(f"Cannot remove {run.path.name}: {exc.strerror or exc}") from exc


def delete_permanently(run: RunFolder) -> None:
    """Delete the run folder for good (what the window offers, asking twice, where there is no trash)."""
    if not (run.path / "config.json").is_file():
        raise ConfigError(f"{run.path} is not a run folder; nothing was deleted.")
    with held_for_removal(run):
        try:
            shutil.rmtree(run.path)
        except OSError as exc:
            raise WorkbenchError(f"Could not delete {run.path.name} completely: {exc.strerror or exc}") from exc
