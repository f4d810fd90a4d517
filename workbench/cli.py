"""The ``workbench`` command. With no subcommand it opens the window.

Every user mistake ends as one line on stderr and exit status 2 (1 for a failed run), never a
traceback: the core raises WorkbenchError with a message meant for a person.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import threading
import unicodedata
from pathlib import Path

from . import __version__
from .core.config import (
    ALL_TARGETS,
    BOUNDS,
    DEVICES,
    MODEL_REPOS,
    PRECISIONS,
    SCHEDULES,
    SMS_SPAM,
    DataConfig,
    LoRAConfig,
    TrainConfig,
    parse_renames,
)
from .core.errors import ConfigError, WorkbenchError
from .core.progress import format_duration
from .core.text import printable

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl+C'd command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "settings", None):
        try:
            args = with_settings_file(parser, argv, args.settings)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        except WorkbenchError as exc:
            print(f"workbench: error: {one_line_message(exc)}", file=sys.stderr)
            return EXIT_USAGE
    if args.command is None:
        from .gui.qt_platform import window_problem  # asks before Qt, which would abort (exit 134)

        problem = window_problem()
        if problem:
            print(f"workbench: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        from .gui.main_window import run_app  # Qt only when the window is wanted

        return run_app(sys.argv[:1])
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `workbench classify ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise  # a bug: its traceback is what a report needs
        print(f"workbench: error: {one_line_message(exc)}", file=sys.stderr)
        return code


def exit_code(exc: BaseException) -> int | None:
    """The exit status for an error every verb may meet, or None for a bug. README's contract:
    2 for a user's mistake (settings, data, model or adapter files), 1 for a run or write that
    failed (full disk, network, out of memory), 130 for a stop; never a traceback for these."""
    from .core.errors import Cancelled, DownloadError, OutputError, OutputRefused

    if isinstance(exc, Cancelled):
        return EXIT_INTERRUPTED
    if isinstance(exc, OutputRefused):  # the command named an output it must not write
        return EXIT_USAGE
    if isinstance(exc, (DownloadError, OutputError)):
        return EXIT_FAILED
    if isinstance(exc, WorkbenchError):
        return EXIT_USAGE
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and _is_out_of_memory(exc)):
        return EXIT_FAILED
    if isinstance(exc, OSError):  # the file system or the OS refused: name the file and the reason
        return EXIT_FAILED
    return None


def one_line_message(exc: BaseException) -> str:
    if isinstance(exc, WorkbenchError):
        return printable(exc)
    if isinstance(exc, (MemoryError, RuntimeError)):
        return "out of memory. Try a smaller batch size, a shorter max length, a lower rank or a smaller model."
    assert isinstance(exc, OSError)
    where = f"{printable(exc.filename, 200)}: " if exc.filename else ""
    return f"{where}{printable(exc.strerror or exc, 200)}"


def _is_out_of_memory(exc: BaseException) -> bool:
    from .core.device import is_out_of_memory

    return is_out_of_memory(exc)


def print_json(value) -> None:
    """One JSON document on stdout. NaN and infinity are not JSON (strict parsers reject Python's
    ``NaN``), so a non-finite number anywhere, say from a damaged file's metadata, prints as null."""
    print(json.dumps(_finite(value), allow_nan=False))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


class Parser(argparse.ArgumentParser):
    """argparse with the workbench's error contract: one line on stderr, exit status 2 (argparse
    itself prints the whole usage first)."""

    def error(self, message: str):
        hint = f" (see {self.prog} --help)"
        self.exit(EXIT_USAGE, f"workbench: error: {printable(message)}{hint}\n")


def bounded(name: str):
    """An argparse type for the numeric setting ``name``: parsed, then checked by the same
    ``BOUNDS`` entry that validates the settings of a run, whichever verb takes it."""
    bound = BOUNDS[name]

    def convert(text: str):
        try:
            value = int(text) if bound.whole else float(text)
        except ValueError:
            kind = "a whole number" if bound.whole else "a number"
            raise argparse.ArgumentTypeError(f"{bound.label} must be {kind}, not {printable(text, 40)!r}") from None
        problem = bound.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = bound.label
    return convert


def build_parser() -> argparse.ArgumentParser:
    from . import cli_review as review  # explain, threshold, calibrate, label-errors, data-report

    parser = Parser(
        prog="workbench", description="Fine-tune GPT-2 with LoRA as a text classifier. No command opens the window."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an adapter")
    parser.train_parser = p  # main() re-parses with a --settings file's values as the defaults
    p.add_argument(
        "--settings",
        metavar="FILE.json",
        help="start from saved settings (the window's File → Save settings…, or a run's config.json); "
        "options given here override them",
    )
    add_model_arg(p)
    add_data_args(p)
    p.add_argument("--rank", type=bounded("rank"), default=16, help="LoRA rank r (default 16)")
    p.add_argument(
        "--alpha", type=bounded("alpha"), default=16.0, help="LoRA alpha; update scaled by alpha/r (default 16)"
    )
    p.add_argument("--dropout", type=bounded("dropout"), default=0.0, help="dropout on the LoRA input (default 0)")
    p.add_argument(
        "--targets",
        nargs="+",
        default=list(ALL_TARGETS),
        choices=ALL_TARGETS,
        metavar="T",
        help=f"layers to adapt: {' '.join(ALL_TARGETS)} (default all)",
    )
    p.add_argument(
        "--top-blocks", type=bounded("top_blocks"), default=None, help="adapt only the last N blocks (default all)"
    )
    p.add_argument("--epochs", type=bounded("epochs"), default=5)
    p.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    p.add_argument("--grad-accum", type=bounded("grad_accum"), default=1, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=bounded("lr"), default=5e-5, help="AdamW learning rate (default 5e-5)")
    p.add_argument("--weight-decay", type=bounded("weight_decay"), default=0.1)
    p.add_argument("--eval-every", type=bounded("eval_every"), default=50, help="steps between quick evaluations")
    p.add_argument("--eval-batches", type=bounded("eval_batches"), default=5, help="batches per quick evaluation")
    p.add_argument("--max-steps", type=bounded("max_steps"), default=None, help="stop after N optimiser steps")
    p.add_argument(
        "--length-grouping",
        type=bounded("length_grouping"),
        default=50,
        help="sort by length within chunks of N batches to cut padding (0: off)",
    )
    p.add_argument(
        "--warmup-steps", type=bounded("warmup_steps"), default=0, help="raise the learning rate over N steps"
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="constant",
        help="the learning rate after warm-up: constant (default), or decayed to 0 by the last step",
    )
    p.add_argument(
        "--early-stopping",
        type=bounded("early_stopping"),
        default=0,
        metavar="N",
        help="stop when validation loss has not improved for N epochs (default 0: never)",
    )
    p.add_argument(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="finish with the epoch of the lowest validation loss, not the last one",
    )
    add_device_args(p)
    p.add_argument("--seed", type=bounded("seed"), default=123)
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a run's checkpoint.safetensors")
    p.add_argument("--out", required=True, metavar="ADAPTER.safetensors", help="where to save the adapter")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("classify", help="classify texts with an adapter")
    p.add_argument("--adapter", required=True)
    p.add_argument("--model", help="base model (default: the one the adapter names)")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts (default: one per line from stdin)")
    p.add_argument("--input", metavar="CSV", help="classify a CSV/TSV file")
    p.add_argument("--text-column", help="column of --input holding the texts (default: detected)")
    p.add_argument("--output", metavar="CSV", help="write --input with label and probability columns")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also score each piece of the text: how much the label's log-odds drop without it",
    )
    review.add_threshold_arg(p)
    add_device_args(p)
    add_int8_arg(p)
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser(
        "eval",
        help="test metrics of an adapter on a dataset",
        description="On the file an adapter was trained on, score exactly that run's held-out test rows "
        "(its recorded seed and split); on any other file, score every row.",
    )
    p.add_argument("--adapter", required=True)
    p.add_argument("--model", help="base model (default: the one the adapter names)")
    p.add_argument("--data", default="sms-spam", help="sms-spam or a CSV/TSV path (default sms-spam)")
    p.add_argument("--text-column", help="column holding the texts (default: the run's, else detected)")
    p.add_argument("--label-column", help="column holding the labels (default: the run's, else detected)")
    p.add_argument(
        "--max-rows", type=bounded("max_rows"), default=None, help="read only the first N rows (default: as trained)"
    )
    p.add_argument(
        "--split",
        choices=("test", "val", "train", "all"),
        default=None,
        help="which of the run's rows to score (default: test on the training file, all on another file)",
    )
    p.add_argument("--batch-size", type=bounded("batch_size"), default=32)
    p.add_argument("--json", action="store_true")
    review.add_threshold_arg(p)
    add_device_args(p)
    add_int8_arg(p)
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("download", help="download GPT-2 weights (or the SMS dataset) for offline use")
    p.add_argument("name", choices=[*MODEL_REPOS, SMS_SPAM])
    p.set_defaults(handler=cmd_download)

    p = sub.add_parser("info", help="show an adapter's metadata")
    p.add_argument("adapter")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("export-peft", help="write an adapter as a Hugging Face PEFT folder")
    p.add_argument("adapter")
    p.add_argument("--out", required=True, metavar="FOLDER")
    p.set_defaults(handler=cmd_export_peft)

    p = sub.add_parser("import-peft", help="read a Hugging Face PEFT LoRA folder into an adapter file")
    p.add_argument("folder")
    p.add_argument("--model", default=None, help="base model (default: from adapter_config.json)")
    p.add_argument("--labels", nargs="+", help="label names, in class order (default: 0, 1, …)")
    p.add_argument("--max-length", type=bounded("max_length"), default=None)
    p.add_argument("--out", required=True, metavar="ADAPTER.safetensors")
    p.set_defaults(handler=cmd_import_peft)

    p = sub.add_parser("runs", help="list past training runs; name, annotate, compare or delete one")
    p.add_argument("--json", action="store_true")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--rename", nargs=2, metavar=("RUN", "NAME"), help='give a run a name ("" removes it)')
    act.add_argument("--note", nargs=2, metavar=("RUN", "TEXT"), help="replace a run's notes")
    act.add_argument("--diff", nargs="+", metavar="RUN", help="the settings that differ between runs")
    act.add_argument("--delete", metavar="RUN", help="delete a run folder for good (with --yes)")
    p.add_argument("--yes", action="store_true", help="confirm --delete")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser(
        "bench",
        help="measure training, evaluation and classify speed and memory",
        description="Time training steps, evaluation and single-message classification "
        "through the real training code, on the SMS training split's lengths.",
    )
    add_model_arg(p)
    p.add_argument(
        "--random-init",
        action="store_true",
        help="random weights when the size is not downloaded (speed does not depend on them)",
    )
    p.add_argument(
        "--data",
        default=SMS_SPAM,
        help=f"{SMS_SPAM} (the downloaded collection; synthetic lengths like it if absent), synthetic, "
        "or a CSV/TSV path",
    )
    p.add_argument(
        "--tokenizer",
        metavar="FOLDER",
        help="GPT-2 tokenizer folder for token lengths "
        "(vocab.json + merges.txt or gpt2.tiktoken; default: the checkpoint's)",
    )
    p.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    p.add_argument("--steps", type=bounded("steps"), default=20, help="timed training steps (default 20)")
    p.add_argument("--warmup", type=bounded("warmup"), default=3, help="untimed steps first (default 3)")
    p.add_argument(
        "--length-grouping", type=bounded("length_grouping"), default=50, help="as for train (0: random-length batches)"
    )
    p.add_argument("--rank", type=bounded("rank"), default=16)
    p.add_argument("--alpha", type=bounded("alpha"), default=16.0)
    p.add_argument("--targets", nargs="+", default=list(ALL_TARGETS), choices=ALL_TARGETS, metavar="T")
    p.add_argument("--top-blocks", type=bounded("top_blocks"), default=None)
    p.add_argument(
        "--classify-runs", type=bounded("classify_runs"), default=30, help="single-message runs timed (default 30)"
    )
    add_device_args(p)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also run transformers + PEFT side by side on the same batches and print ratios (needs the test extra)",
    )
    p.add_argument(
        "--bf16-steps",
        type=bounded("bf16_steps"),
        default=None,
        help="timed steps per bf16 variant in --compare (default 2 when bf16 is chosen, else 0)",
    )
    p.set_defaults(handler=cmd_bench)
    review.add_decision_commands(sub)
    review.add_data_quality_commands(sub)
    return parser


def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gpt2", help=f"{', '.join(MODEL_REPOS)} or a checkpoint folder (default gpt2)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=SMS_SPAM, help=f"{SMS_SPAM} (downloaded on first use) or a CSV/TSV path")
    p.add_argument("--text-column", help="column holding the texts (default: detected)")
    p.add_argument("--label-column", help="column holding the labels (default: detected)")
    p.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="undersample to the smallest class (default on, the book's recipe)",
    )
    p.add_argument(
        "--max-length", type=bounded("max_length"), default=None, help="tokens per text (default: the model's context)"
    )
    p.add_argument(
        "--max-rows", type=bounded("max_rows"), default=None, help="read only the first N rows of a large file"
    )
    p.add_argument(
        "--rename-labels",
        nargs="+",
        type=rename_pair,
        default=[],
        metavar="OLD=NEW",
        help="names for the file's labels, e.g. 0=ham 1=spam (the adapter's classes are then called so)",
    )
    add_split_args(p)


def rename_pair(text: str) -> tuple[str, str]:
    """One OLD=NEW argument of --rename-labels."""
    try:
        (pair,) = parse_renames(text) or (None,)
    except (ConfigError, ValueError):
        pair = None
    if pair is None:
        raise argparse.ArgumentTypeError(f"{printable(text, 40)!r} is not OLD=NEW (e.g. 0=ham)")
    return pair


def add_split_args(p: argparse.ArgumentParser) -> None:
    """How the rows are divided: every verb that builds (or reports on) a run's split takes these."""
    p.add_argument(
        "--train-fraction", type=bounded("train_fraction"), default=0.7, help="share of rows for training (default 0.7)"
    )
    p.add_argument(
        "--val-fraction",
        type=bounded("val_fraction"),
        default=0.1,
        help="share of rows for validation (default 0.1); the test split gets the rest",
    )


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=f"{'|'.join(DEVICES)} or cuda:N (default auto)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: whichever ran faster when measured on this device (once, then cached)",
    )


def describe_merges(merged) -> str:
    from .core.data import describe_merges as describe

    return describe(merged)


def add_int8_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the blocks' attention-output and MLP layers in int8 on the CPU (default: only with "
        "--precision auto choosing fp32 and where int8 measured clearly faster here); the adapter stays fp32",
    )


def quantize_choice(args) -> str:
    """--int8 / --no-int8 / neither, as ``Classifier.from_adapter``'s ``quantize``."""
    return "auto" if args.int8 is None else "int8" if args.int8 else "off"


# Every option of `workbench train` that sets a TrainConfig field: (argparse dest, the option,
# the field in config.json's dotted form). One table for reading options into settings
# (train_config, data_config), settings into option defaults (--settings) and settings into a
# command line (train_command), so the three can never disagree.
TRAIN_OPTIONS = (
    ("model", "--model", "model"),
    ("data", "--data", "data.source"),
    ("text_column", "--text-column", "data.text_column"),
    ("label_column", "--label-column", "data.label_column"),
    ("balance", "--balance", "data.balance"),
    ("max_length", "--max-length", "data.max_length"),
    ("max_rows", "--max-rows", "data.max_rows"),
    ("train_fraction", "--train-fraction", "data.train_fraction"),
    ("val_fraction", "--val-fraction", "data.val_fraction"),
    ("rename_labels", "--rename-labels", "data.rename_labels"),
    ("rank", "--rank", "lora.rank"),
    ("alpha", "--alpha", "lora.alpha"),
    ("dropout", "--dropout", "lora.dropout"),
    ("targets", "--targets", "lora.targets"),
    ("top_blocks", "--top-blocks", "lora.top_blocks"),
    ("epochs", "--epochs", "epochs"),
    ("batch_size", "--batch-size", "batch_size"),
    ("grad_accum", "--grad-accum", "grad_accum"),
    ("lr", "--lr", "lr"),
    ("weight_decay", "--weight-decay", "weight_decay"),
    ("eval_every", "--eval-every", "eval_every"),
    ("eval_batches", "--eval-batches", "eval_batches"),
    ("max_steps", "--max-steps", "max_steps"),
    ("length_grouping", "--length-grouping", "length_grouping"),
    ("device", "--device", "device"),
    ("precision", "--precision", "precision"),
    ("seed", "--seed", "seed"),
    ("warmup_steps", "--warmup-steps", "warmup_steps"),
    ("schedule", "--schedule", "schedule"),
    ("early_stopping", "--early-stopping", "early_stopping"),
    ("keep_best", "--keep-best", "keep_best"),
)


def settings_from_options(args) -> TrainConfig:
    """The TrainConfig the parsed options describe; options a verb does not take keep the default."""
    values: dict = {}
    for dest, _flag, field in TRAIN_OPTIONS:
        if hasattr(args, dest):
            *group, name = field.split(".")
            (values.setdefault(group[0], {}) if group else values)[name] = getattr(args, dest)
    return TrainConfig.from_dict(values)  # lists back to tuples, as from config.json


def setting(cfg: TrainConfig, field: str):
    """``cfg``'s value of a dotted field ("lora.rank")."""
    value = cfg
    for name in field.split("."):
        value = getattr(value, name)
    return value


def data_config(args) -> DataConfig:
    return settings_from_options(args).data


# --- train ---------------------------------------------------------------------------------


def train_config(args) -> TrainConfig:
    """The run ``workbench train``'s options describe (the inverse of ``train_command``)."""
    return settings_from_options(args)


def with_settings_file(parser, argv: list[str] | None, path: str):
    """``train --settings FILE``: the file's settings become the defaults, then the command line is
    parsed again, so an option written out still wins (``--epochs 5`` over a file's 3)."""
    from .core.runs import load_settings

    cfg = load_settings(path)
    defaults = {dest: setting(cfg, field) for dest, _flag, field in TRAIN_OPTIONS}
    # As argparse gives them: lists for the options that take several values.
    defaults["targets"], defaults["rename_labels"] = list(cfg.lora.targets), list(cfg.data.rename_labels)
    parser.train_parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def train_command(cfg: TrainConfig, out: str = "adapter.safetensors") -> str:
    """The ``workbench train`` line that runs ``cfg`` (the window's "Copy as command"): every
    setting that differs from the command's defaults, so the line is short and exact; a test
    parses it back into the same TrainConfig."""
    default = train_config(build_parser().parse_args(["train", "--out", out]))
    words = ["workbench", "train"]
    for _dest, flag, field in TRAIN_OPTIONS:
        value = setting(cfg, field)
        if value is None or value == setting(default, field):
            continue
        if isinstance(value, bool):  # --balance/--no-balance, --keep-best/--no-keep-best
            words.append(flag if value else flag.replace("--", "--no-", 1))
        elif field == "data.rename_labels":
            words += [flag, *(f"{old}={new}" for old, new in value)]
        elif isinstance(value, tuple):
            words += [flag, *value]
        else:
            words += [flag, repr(value) if isinstance(value, float) else str(value)]
    words += ["--out", out]
    return shlex.join(words)


def cmd_train(args) -> int:
    from .core import distributed
    from .core import events as ev
    from .core.adapters import copy_adapter
    from .core.training import global_batch, train

    cfg = train_config(args)
    out = Path(args.out)
    follower = not distributed.is_main()  # one of torchrun's other processes: rank 0 speaks and writes
    stop = threading.Event()
    # Ctrl+C (and torchrun's SIGTERM): stop cleanly, keep the adapter.
    previous = {sig: signal.signal(getattr(signal, sig), lambda *_: stop.set()) for sig in distributed.stop_signals()}
    bar = ProgressBar(enabled=not (args.quiet or follower) and sys.stderr.isatty())
    try:
        for event in train(cfg, stop=stop, resume=args.resume, out=out):
            if follower:
                if isinstance(event, (ev.TrainingFinished, ev.TrainingFailed)):
                    return follower_exit(event, distributed.rank())
            elif isinstance(event, ev.Status):
                bar.status(event)
            elif isinstance(event, ev.RunStarted):
                bar.clear()
                print(
                    f"Training {printable(cfg.model)} on {event.device} ({event.precision}): {event.n_train} train / "
                    f"{event.n_val} val / {event.n_test} test, {event.trainable_params:,} trainable of "
                    f"{event.total_params:,} parameters; run folder {printable(event.run_dir)}",
                    flush=True,
                )
                if cfg.precision == "auto" and event.precision_reason:
                    print(f"precision: {event.precision_reason}", flush=True)
                if event.processes > 1:
                    print(f"{event.processes} processes (torchrun): {global_batch(cfg, event.processes)}", flush=True)
                if event.truncated:
                    print(f"{event.truncated} texts longer than {event.max_length} tokens were truncated", flush=True)
                if event.dropped_empty or event.dropped_duplicates:
                    print(
                        f"left out: {event.dropped_empty} rows without text or label, "
                        f"{event.dropped_duplicates} duplicate rows",
                        flush=True,
                    )
                if event.merged_labels:
                    print(f"labels written several ways, merged: {describe_merges(event.merged_labels)}", flush=True)
            elif isinstance(event, ev.StepDone):
                bar.step(event)
            elif isinstance(event, ev.Evaluated):
                bar.clear()
                print(format_evaluation(event), flush=True)
            elif isinstance(event, ev.TrainingFinished):
                bar.clear()
                copy_adapter(event.adapter_path, out)
                print(format_finished(event, out), flush=True)
                return EXIT_INTERRUPTED if event.stopped else 0
            elif isinstance(event, ev.TrainingFailed):
                bar.clear()
                prefix = "workbench: " if event.kind == "cancelled" else "workbench: error: "
                print(prefix + printable(event.message), file=sys.stderr)
                return {"config": EXIT_USAGE, "input": EXIT_USAGE, "cancelled": EXIT_INTERRUPTED}.get(
                    event.kind, EXIT_FAILED
                )
    finally:
        for sig, handler in previous.items():
            signal.signal(getattr(signal, sig), handler)
    return EXIT_FAILED


def follower_exit(event, rank: int) -> int:
    """How one of torchrun's other processes ends. It prints only failures of its own (its GPU's
    memory, its disk): rank 0 reports those that every rank meets alike (settings, data, Stop)."""
    from .core.events import TrainingFailed

    if not isinstance(event, TrainingFailed):
        return EXIT_INTERRUPTED if event.stopped else 0
    if event.kind in ("error", "oom"):
        print(f"workbench: error (rank {rank}): {printable(event.message)}", file=sys.stderr)
    # The same exit statuses as rank 0's (cmd_train).
    return {"config": EXIT_USAGE, "input": EXIT_USAGE, "cancelled": EXIT_INTERRUPTED}.get(event.kind, EXIT_FAILED)


def format_evaluation(e) -> str:
    if e.full:
        return f"Epoch {e.epoch} done (step {e.step}): val loss {e.val_loss:.3f}, val accuracy {e.val_accuracy:.1%}"
    return (
        f"Ep {e.epoch} step {e.step}: train loss {e.train_loss:.3f}, val loss {e.val_loss:.3f}, "
        f"train acc {e.train_accuracy:.1%}, val acc {e.val_accuracy:.1%}"
    )


def format_finished(e, out: Path) -> str:
    lines = [
        ("Stopped" if e.stopped else "Finished") + f" after {e.step} steps in {e.elapsed_s:.1f} s; "
        f"adapter saved to {printable(out)} ({out.stat().st_size / 1e6:.1f} MB)"
    ]
    if e.metrics:
        lines.append(format_metrics(e.metrics))
    return "\n".join(lines)


MAX_PRINTED_CLASSES = 20  # per-class rows printed (the largest classes); --json has them all


def format_metrics(m) -> str:
    """Accuracy, a row per class (the largest ``MAX_PRINTED_CLASSES``) and, for few classes, the
    confusion matrix; label names escaped and cut, so a file cannot forge or flood the output."""
    names = [printable(name, 40) for name in m.label_names]
    shown = sorted(range(len(names)), key=lambda i: (-m.support[i], i))[:MAX_PRINTED_CLASSES]
    width = max(len("label"), *(len(names[i]) for i in shown))
    lines = [
        f"Test accuracy {m.accuracy:.2%} (loss {m.loss:.3f}, {sum(m.support)} examples)",
        f"{'label':<{width}}  precision  recall     f1  support",
    ]
    for i in sorted(shown):
        lines.append(
            f"{names[i]:<{width}}  {m.precision[i]:9.3f}  {m.recall[i]:6.3f}  {m.f1[i]:5.3f}  {m.support[i]:7d}"
        )
    if len(names) > len(shown):
        lines.append(f"… and {len(names) - len(shown)} more classes (--json lists every class)")
    if m.confusion and len(names) <= MAX_PRINTED_CLASSES:
        lines.append(
            "confusion (rows: true, columns: predicted): "
            + "; ".join(f"{name}: {list(row)}" for name, row in zip(names, m.confusion))
        )
    return "\n".join(lines)


class ProgressBar:
    """A one-line progress bar on stderr (only on a terminal, so logs stay clean)."""

    def __init__(self, enabled: bool, width: int = 30):
        self.enabled = enabled
        self.width = width
        self.shown = False

    def _show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r" + printable(text, 120).ljust(120))
            sys.stderr.flush()
            self.shown = True

    def status(self, e) -> None:
        if e.total:
            self._show(f"{e.message}: {e.done / e.total:.0%}")
        else:
            self._show(e.message)

    def step(self, e) -> None:
        filled = int(self.width * e.step / max(1, e.total_steps))
        self._show(
            f"[{'#' * filled}{'.' * (self.width - filled)}] step {e.step}/{e.total_steps} "
            f"epoch {e.epoch} loss {e.loss:.3f} {e.examples_per_s:.1f} ex/s ETA {format_duration(e.eta_s)}"
        )

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 120 + "\r")
            sys.stderr.flush()
            self.shown = False


# --- classify / eval -------------------------------------------------------------------------


def cmd_classify(args) -> int:
    from .cli_review import explain_texts, use_threshold
    from .core import hub
    from .core.classify import Classifier
    from .core.fileio import check_outputs

    if args.explain and args.input:
        raise WorkbenchError("--explain works on texts given as arguments or on stdin, not on an --input file")
    if args.output:  # before the model loads; classify_file checks again against the model it used
        inputs = {"--input": args.input, "--adapter": args.adapter}
        if args.model:
            inputs |= hub.checkpoint_files(args.model, "--model")
        check_outputs({"--output": args.output}, inputs)
    classifier = Classifier.from_adapter(
        args.adapter, model=args.model, device=args.device, precision=args.precision, quantize=quantize_choice(args)
    )
    use_threshold(classifier, args.threshold)
    if args.input:
        return classify_file(classifier, args)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if args.explain:
        return explain_texts(classifier, texts, args.json)
    for text, p in zip(texts, classifier.predict(texts)):
        if args.json:
            print_json({"text": text, "label": p.label, "probability": p.probability, "probabilities": p.probabilities})
        else:
            print(f"{printable(p.label)}\t{p.probability:.4f}")  # a tab or newline in a label cannot forge a row
    return 0


def terminal_text(text: str) -> str:
    """``text`` safe to print: control, format and separator characters (a terminal escape, a
    bidi override, a line break) as \\xNN or \\uNNNN, and backslashes and quotes escaped."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def classify_file(classifier, args) -> int:
    """--input: to --output (written as it goes, in place only at the end), or to stdout."""
    from .core import events as ev
    from .core.classify import classify_file as classify_into
    from .core.classify import classify_rows
    from .core.data import table_bytes

    bar = ProgressBar(enabled=sys.stderr.isatty())

    def progress(done, total, message=""):
        bar.status(ev.Status(message, done, total))

    if not args.output:
        for i, chunk in enumerate(classify_rows(classifier, args.input, text_column=args.text_column)):
            sys.stdout.write(table_bytes(chunk, Path("stdout.csv"), header=i == 0).decode("utf-8"))
            sys.stdout.flush()
        return 0
    rows = classify_into(classifier, args.input, args.output, text_column=args.text_column, progress=progress)
    bar.clear()
    print(f"{rows} rows classified; written to {printable(args.output)}")
    return 0


def cmd_eval(args) -> int:
    from dataclasses import asdict

    from .cli_review import format_decision, use_threshold
    from .core.adapter_eval import evaluate_adapter_on
    from .core.classify import Classifier

    classifier = Classifier.from_adapter(
        args.adapter, model=args.model, device=args.device, precision=args.precision, quantize=quantize_choice(args)
    )
    use_threshold(classifier, args.threshold)
    result = evaluate_adapter_on(
        args.data,
        classifier,
        args.split,
        text_column=args.text_column,
        label_column=args.label_column,
        max_rows=args.max_rows,
        batch_size=args.batch_size,
    )
    if args.json:
        scored = {"split": result.split, "rows": result.rows, "scored": result.description}
        print_json({**scored, **asdict(result.metrics), **result.decision})
    else:
        print(f"Scored {result.description}")
        print(format_metrics(result.metrics))
        print(format_decision(result.decision))
    return 0


# --- small commands --------------------------------------------------------------------------


def cmd_download(args) -> int:
    from .core import hub
    from .core.data import download_sms_spam

    bar = ProgressBar(enabled=sys.stderr.isatty())

    def progress(done, total, message=""):
        text = message or f"Downloading {args.name}"
        bar._show(f"{text}: {done / total:.0%}" if total else f"{text}: {done / 1e6:.1f} MB")

    if args.name == SMS_SPAM:
        path = download_sms_spam(progress=progress)
    else:
        path = hub.resolve_checkpoint(args.name, progress=progress)
    bar.clear()
    print(f"{args.name} is at {printable(path)}")
    return 0


def cmd_info(args) -> int:
    from dataclasses import asdict

    from .core.adapters import read_adapter

    tensors, info = read_adapter(args.adapter)
    if args.json:
        print_json({**asdict(info), "tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values())})
        return 0
    c = info.model_config
    print(f"adapter      {printable(args.adapter)} ({Path(args.adapter).stat().st_size / 1e6:.1f} MB)")
    print(f"base model   {printable(info.base_model)} ({c.n_layer} layers, {c.n_embd} wide)")
    print(
        f"LoRA         rank {info.lora.rank}, alpha {info.lora.alpha:g}, targets {' '.join(info.lora.targets)}"
        + (f", top {info.lora.top_blocks} blocks" if info.lora.top_blocks else "")
    )
    print(f"labels       {', '.join(printable(name) for name in info.label_names)}")
    print(f"max length   {info.max_length} tokens")
    for name, value in format_recipe(info.data):
        print(f"{name:<12} {value}")
    if info.threshold is not None or info.temperature is not None:
        cut = "argmax" if info.threshold is None else f"{info.label_names[1]} when p >= {info.threshold:g}"
        scale = "" if info.temperature is None else f", temperature {info.temperature:.3f}"
        print(f"decision     {cut}{scale}")
    print(f"parameters   {sum(t.numel() for t in tensors.values()):,}")
    if info.metrics:
        print(f"metrics      {json.dumps(_finite(info.metrics), allow_nan=False)}")
    print(
        f"created      {printable(info.created)} (workbench {printable(info.package_version)}, "
        f"format {info.format_version})"
    )
    return 0


def format_recipe(recipe) -> list[tuple[str, str]]:
    """``info``'s lines about the training data (adapters from before it was recorded say so)."""
    if recipe is None:
        return [("data", "not recorded (adapter saved before data recipes, or imported from PEFT)")]
    d = recipe.dataset
    spellings = [
        f"{name} = {', '.join(repr(v) for v in values)}"
        for name, values in zip(recipe.label_names, recipe.label_values)
        if list(values) != [name]
    ]
    return [
        ("data", f"{d.name} ({d.size:,} bytes, sha256 {d.short_hash()}…)"),
        ("columns", f"text {recipe.text_column!r}, label {recipe.label_column!r}"),
        (
            "split",
            recipe.describe_split()
            + ("; duplicates dropped" if recipe.drop_duplicates else "; duplicates kept")
            + (f"; first {recipe.max_rows:,} rows" if recipe.max_rows else ""),
        ),
        *([("label values", "; ".join(spellings))] if spellings else []),
    ]


def cmd_export_peft(args) -> int:
    from .core.peft_io import export_peft

    folder = export_peft(args.adapter, args.out)
    print(f"PEFT adapter written to {printable(folder)}")
    return 0


def cmd_import_peft(args) -> int:
    from .core.peft_io import import_peft

    path = import_peft(args.folder, args.out, model=args.model, labels=args.labels, max_length=args.max_length)
    print(f"adapter written to {printable(path)}")
    return 0


def find_run(name: str):
    """A run by its folder name (as `workbench runs` lists it in brackets, or its only name), its
    given name, or its folder's path; ConfigError naming what was looked for otherwise."""
    from .core.run_table import read_about
    from .core.runs import RunFolder, list_runs

    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return RunFolder(path)
    runs = list_runs()
    by_folder = [run for run in runs if run.path.name == name]
    by_name = [run for run in runs if read_about(run).name == name]
    found = by_folder or by_name
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(f"{len(found)} runs are named {printable(name, 60)!r}; give the run's folder name")
    raise ConfigError(f"no run named {printable(name, 60)!r}; `workbench runs` lists them")


def cmd_runs(args) -> int:
    if args.rename or args.note:
        return annotate_run(args)
    if args.diff:
        return diff_runs(args)
    if args.delete:
        return delete_run(args)
    return list_runs_table(args)


def annotate_run(args) -> int:
    from dataclasses import replace

    from .core.run_table import read_about, save_about

    name, value = args.rename or args.note
    run = find_run(name)
    change = {"name": value} if args.rename else {"notes": value}
    stored = save_about(run, replace(read_about(run), **change))
    if args.note:
        what = "notes saved"
    else:
        what = f"named {printable(stored.name)!r}" if stored.name else "name removed"
    print(f"{printable(run.path.name)}: {what}")
    return 0


def diff_runs(args) -> int:
    from .core.run_table import settings_diff

    runs = [find_run(name) for name in args.diff]
    if len(runs) < 2:
        raise ConfigError("--diff compares two runs or more")
    diffs = settings_diff([run.config() for run in runs])
    if args.json:
        print_json({"runs": [run.path.name for run in runs], "differ": {d.setting: d.values for d in diffs}})
        return 0
    if not diffs:
        print("the runs have the same settings")
    for d in diffs:
        print(f"{d.setting:<24} " + "  |  ".join(printable(v, 40) for v in d.values))
    return 0


def delete_run(args) -> int:
    from .core.run_table import delete_permanently, removal_problem

    run = find_run(args.delete)
    problem = removal_problem(run)
    if problem:
        raise ConfigError(problem)
    if not args.yes:
        print(f"would delete {run.path} for good; add --yes to do it")
        return EXIT_USAGE
    delete_permanently(run)
    print(f"deleted {run.path}")
    return 0


def list_runs_table(args) -> int:
    from .core.run_table import read_about
    from .core.runs import list_runs, summarize

    rows = []
    for run in list_runs():
        s, about = summarize(run), read_about(run)
        rows.append(
            {
                "run": s.name,
                "name": about.name or s.name,  # the name given in the window, else the folder's
                "notes": about.notes,
                "path": str(s.path),
                "state": s.state,
                "test_accuracy": s.test_accuracy,
                "problem": s.problem,
            }
        )
    if args.json:
        print_json(rows)
    elif not rows:
        print("no runs yet")
    for r in rows if not args.json else []:
        acc = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else "-"
        named = f"  [{printable(r['run'])}]" if r["name"] != r["run"] else ""
        print(
            f"{printable(r['name']):<50} {r['state']:<18} {acc}"
            + named
            + (f"  ({printable(r['problem'])})" if r["problem"] else "")
        )
    return 0


# --- bench -----------------------------------------------------------------------------------


def cmd_bench(args) -> int:
    from .bench import BenchConfig, format_result, run_bench
    from .core import events as ev
    from .core.device import pick_device, pick_precision
    from .core.precision import choose_precision

    cfg = BenchConfig(
        model=args.model,
        random_init=args.random_init,
        data=args.data,
        tokenizer=args.tokenizer,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        classify_runs=args.classify_runs,
        device=args.device,
        precision=args.precision,
        length_grouping=args.length_grouping,
        lora=LoRAConfig(rank=args.rank, alpha=args.alpha, targets=tuple(args.targets), top_blocks=args.top_blocks),
    )
    driver = comparison_driver() if args.compare else None  # fail before the minutes of measuring
    bar = ProgressBar(enabled=sys.stderr.isatty())
    result = run_bench(cfg, progress=lambda done, total, message="": bar.status(ev.Status(message, done, total)))
    bar.clear()
    output = result.to_dict()
    # Why this precision, as run_bench chose it (the verdict is cached: this does not measure again).
    output["precision_reason"] = choose_precision(args.precision, pick_device(args.device)).reason
    if driver is not None:
        bf16_steps = args.bf16_steps
        if bf16_steps is None:
            bf16_steps = 2 if pick_precision(args.precision, pick_device(args.device)) == "bf16" else 0
        try:
            comparison = driver.compare(
                cfg, bf16_steps=bf16_steps, say=lambda message: bar._show(f"compare: {message}")
            )
        except RuntimeError as exc:  # a worker failed; its traceback is the message
            raise WorkbenchError(f"the comparison failed: {exc}") from exc
        bar.clear()
        output["compare"] = comparison
    if args.json:
        print_json(output)
        return 0
    print(format_result(result))
    print(f"precision: {output['precision_reason']}")
    if driver is not None:
        print()
        print(driver.format_comparison(output["compare"]))
    return 0


def comparison_driver():
    """The transformers + PEFT comparison, once it is known that both libraries are there."""
    from .bench import compare_hf_peft

    problem = compare_hf_peft.missing_reference()
    if problem:
        raise WorkbenchError(f"--compare: {problem}")
    return compare_hf_peft


if __name__ == "__main__":
    sys.exit(main())
