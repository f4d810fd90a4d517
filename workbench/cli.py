"""The ``workbench`` command. With no subcommand it opens the window.

Every user mistake ends as one line on stderr and exit status 2 (1 for a failed run), never a
traceback: the core raises WorkbenchError with a message meant for a person.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import unicodedata
from pathlib import Path

from . import __version__
from .core.config import ALL_TARGETS, DEVICES, MODEL_REPOS, PRECISIONS, DataConfig, LoRAConfig, TrainConfig
from .core.errors import WorkbenchError

EXIT_USAGE = 2
EXIT_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from .gui.main_window import run_app  # Qt only when the window is wanted

        return run_app(sys.argv[:1])
    try:
        return args.handler(args)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description="Fine-tune GPT-2 with LoRA as a text classifier. No command opens the window."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an adapter")
    add_model_arg(p)
    add_data_args(p)
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r (default 16)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha; update scaled by alpha/r (default 16)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on the LoRA input (default 0)")
    p.add_argument(
        "--targets",
        nargs="+",
        default=list(ALL_TARGETS),
        choices=ALL_TARGETS,
        metavar="T",
        help=f"layers to adapt: {' '.join(ALL_TARGETS)} (default all)",
    )
    p.add_argument("--top-blocks", type=int, default=None, help="adapt only the last N blocks (default all)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate (default 5e-5)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=50, help="steps between quick evaluations")
    p.add_argument("--eval-batches", type=int, default=5, help="batches per quick evaluation")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps")
    p.add_argument(
        "--length-grouping",
        type=int,
        default=50,
        help="sort by length within chunks of N batches to cut padding (0: off)",
    )
    add_device_args(p)
    p.add_argument("--seed", type=int, default=123)
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
    add_threshold_arg(p)
    add_device_args(p)
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("eval", help="test metrics of an adapter on a dataset")
    p.add_argument("--adapter", required=True)
    p.add_argument("--model", help="base model (default: the one the adapter names)")
    add_data_args(p)
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true")
    add_threshold_arg(p)
    add_device_args(p)
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("download", help="download GPT-2 weights (or the SMS dataset) for offline use")
    p.add_argument("name", choices=[*MODEL_REPOS, "sms-spam"])
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
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--out", required=True, metavar="ADAPTER.safetensors")
    p.set_defaults(handler=cmd_import_peft)

    p = sub.add_parser("runs", help="list past training runs")
    p.add_argument("--json", action="store_true")
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
        default="sms-spam",
        help="sms-spam (the downloaded collection; synthetic lengths like it if absent), synthetic, or a CSV/TSV path",
    )
    p.add_argument(
        "--tokenizer",
        metavar="FOLDER",
        help="GPT-2 tokenizer folder for token lengths "
        "(vocab.json + merges.txt or gpt2.tiktoken; default: the checkpoint's)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--length-grouping", type=int, default=50, help="as for train (0: random-length batches)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--targets", nargs="+", default=list(ALL_TARGETS), choices=ALL_TARGETS, metavar="T")
    p.add_argument("--top-blocks", type=int, default=None)
    p.add_argument("--classify-runs", type=int, default=30, help="single-message runs timed (default 30)")
    add_device_args(p)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also run transformers + PEFT side by side on the same batches and print ratios "
        "(needs the test extra and a source checkout)",
    )
    p.add_argument(
        "--bf16-steps",
        type=int,
        default=None,
        help="timed steps per bf16 variant in --compare (default 2 when bf16 is chosen, else 0)",
    )
    p.set_defaults(handler=cmd_bench)
    add_decision_commands(sub)
    add_data_quality_commands(sub)
    return parser


def add_data_quality_commands(sub) -> None:
    """label-errors and data-report: what in a dataset deserves a second look."""
    p = sub.add_parser(
        "label-errors",
        help="training and validation rows whose given label the model finds least likely",
        description="Ranks rows by the model's probability of their given label, lowest first. Without "
        "--folds the adapter scores every row (validation rows out-of-sample, training rows in-sample); "
        "--folds K trains K adapters so every row is scored by one that never saw it.",
    )
    p.add_argument("--adapter", required=True)
    p.add_argument("--model", help="base model (default: the one the adapter names)")
    add_data_args(p)
    p.add_argument("--folds", type=int, default=0, metavar="K", help="K-fold cross-validation (default 0: none)")
    p.add_argument("--epochs", type=int, help="per fold (default: the run's, when the adapter is in its run folder)")
    p.add_argument("--lr", type=float, help="per fold (default: the run's, else train's default)")
    p.add_argument("--batch-size", type=int, help="per fold (default: the run's, else train's default)")
    p.add_argument("--seed", type=int, default=123, help="data split and folds (default 123, as train)")
    p.add_argument("--top", type=int, default=20, help="rows to print (default 20)")
    p.add_argument("--out", metavar="CSV", help="write every row, ranked, to a CSV/TSV file")
    p.add_argument("--json", action="store_true", help="the printed rows as one JSON list")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(p)
    p.set_defaults(handler=cmd_label_errors)

    p = sub.add_parser(
        "data-report",
        help="a dataset's health: class balance, token lengths, empty rows, duplicates across splits",
        description="What training would see in FILE, split as training splits it: class balance, token "
        "lengths against the max-length cut, empty texts and missing labels, exact and near duplicates "
        "(casefolded, digits and spaces collapsed), and copies that land in different splits.",
    )
    p.add_argument("data", metavar="FILE", help="a CSV/TSV file, or sms-spam")
    p.add_argument("--text-column", help="column holding the texts (default: detected)")
    p.add_argument("--label-column", help="column holding the labels (default: detected)")
    p.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True, help="as for train (default on)")
    p.add_argument("--max-length", type=int, default=None, help="the cut to mark (default: the model's context)")
    p.add_argument("--max-rows", type=int, default=None, help="read only the first N rows")
    p.add_argument("--seed", type=int, default=123, help="as for train (default 123)")
    p.add_argument("--model", default="gpt2", help="whose tokenizer and context to use (default gpt2; never downloads)")
    p.add_argument(
        "--tokenizer", metavar="FOLDER", help="GPT-2 tokenizer folder (vocab.json + merges.txt or gpt2.tiktoken)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_data_report)


def add_decision_commands(sub) -> None:
    """calibrate and threshold: the adapter's decision, chosen on data and saved in its metadata."""
    p = sub.add_parser(
        "calibrate",
        help="fit a temperature on the validation split and save it in the adapter",
        description="Temperature scaling (Guo et al. 2017): one number that divides the logits, fitted "
        "on the validation split to make the probabilities honest. It changes no argmax decision.",
    )
    p.add_argument("adapter")
    p.add_argument("--clear", action="store_true", help="remove a saved temperature instead")
    add_decision_data_args(p)
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser(
        "threshold",
        help="precision and recall at each threshold, or save a threshold in the adapter",
        description="For two-class adapters: the text is the second label (e.g. spam) when its probability "
        "reaches the threshold. Without --set/--best-f1/--clear, prints the choice on --split.",
    )
    p.add_argument("adapter")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--set", type=float, metavar="P", help="save this threshold (a probability, 0-1)")
    choice.add_argument("--best-f1", action="store_true", help="save the threshold with the best F1 on --split")
    choice.add_argument("--clear", action="store_true", help="remove a saved threshold (back to argmax)")
    p.add_argument("--split", choices=("val", "test", "train"), default="val", help="data to choose on (default val)")
    add_decision_data_args(p)
    p.set_defaults(handler=cmd_threshold)


def add_threshold_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="two-class adapters: the second label when its probability is at least P "
        "(default: the adapter's saved threshold, else argmax)",
    )


def add_decision_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="base model (default: the one the adapter names)")
    add_data_args(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true")
    add_device_args(p)


def add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gpt2", help=f"{', '.join(MODEL_REPOS)} or a checkpoint folder (default gpt2)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="sms-spam", help="sms-spam (downloaded on first use) or a CSV/TSV path")
    p.add_argument("--text-column", help="column holding the texts (default: detected)")
    p.add_argument("--label-column", help="column holding the labels (default: detected)")
    p.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="undersample to the smallest class (default on, the book's recipe)",
    )
    p.add_argument("--max-length", type=int, default=None, help="tokens per text (default: the model's context)")
    p.add_argument("--max-rows", type=int, default=None, help="read only the first N rows of a large file")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=f"{'|'.join(DEVICES)} or cuda:N (default auto)")
    p.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="auto: bf16 where the device runs it fast, else fp32"
    )


def data_config(args) -> DataConfig:
    return DataConfig(
        source=args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        balance=args.balance,
        max_length=args.max_length,
        max_rows=args.max_rows,
        seed=getattr(args, "seed", 123),
    )


# --- train ---------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from .core import events as ev
    from .core.adapters import copy_adapter
    from .core.training import train

    cfg = TrainConfig(
        model=args.model,
        data=data_config(args),
        lora=LoRAConfig(
            rank=args.rank,
            alpha=args.alpha,
            dropout=args.dropout,
            targets=tuple(args.targets),
            top_blocks=args.top_blocks,
        ),
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        weight_decay=args.weight_decay,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        max_steps=args.max_steps,
        length_grouping=args.length_grouping,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
    )
    out = Path(args.out)
    if not out.parent.is_dir():
        raise WorkbenchError(f"output folder {out.parent} does not exist")
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl+C: stop cleanly, keep the adapter
    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    try:
        for event in train(cfg, stop=stop, resume=args.resume):
            if isinstance(event, ev.Status):
                bar.status(event)
            elif isinstance(event, ev.RunStarted):
                bar.clear()
                print(
                    f"Training {cfg.model} on {event.device} ({event.precision}): {event.n_train} train / "
                    f"{event.n_val} val / {event.n_test} test, {event.trainable_params:,} trainable of "
                    f"{event.total_params:,} parameters; run folder {event.run_dir}",
                    flush=True,
                )
                if event.truncated:
                    print(f"{event.truncated} texts longer than {event.max_length} tokens were truncated", flush=True)
                if event.dropped_empty or event.dropped_duplicates:
                    print(
                        f"left out: {event.dropped_empty} rows without text or label, "
                        f"{event.dropped_duplicates} duplicate rows",
                        flush=True,
                    )
            elif isinstance(event, ev.StepDone):
                bar.step(event)
            elif isinstance(event, ev.Evaluated):
                bar.clear()
                print(format_evaluation(event), flush=True)
            elif isinstance(event, ev.TrainingFinished):
                bar.clear()
                copy_adapter(event.adapter_path, out)
                print(format_finished(event, out), flush=True)
                return 0
            elif isinstance(event, ev.TrainingFailed):
                bar.clear()
                print(f"workbench: error: {event.message}", file=sys.stderr)
                return EXIT_USAGE if event.kind == "config" else EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    return EXIT_FAILED


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
        f"adapter saved to {out} ({out.stat().st_size / 1e6:.1f} MB)"
    ]
    if e.metrics:
        lines.append(format_metrics(e.metrics))
    return "\n".join(lines)


def format_metrics(m) -> str:
    width = max(len(n) for n in m.label_names)
    lines = [
        f"Test accuracy {m.accuracy:.2%} (loss {m.loss:.3f}, {sum(m.support)} examples)",
        f"{'label':<{width}}  precision  recall     f1  support",
    ]
    for i, name in enumerate(m.label_names):
        lines.append(f"{name:<{width}}  {m.precision[i]:9.3f}  {m.recall[i]:6.3f}  {m.f1[i]:5.3f}  {m.support[i]:7d}")
    lines.append(
        "confusion (rows: true, columns: predicted): "
        + "; ".join(f"{name}: {list(row)}" for name, row in zip(m.label_names, m.confusion))
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
            sys.stderr.write("\r" + text[:120].ljust(120))
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
            f"epoch {e.epoch} loss {e.loss:.3f} {e.examples_per_s:.1f} ex/s ETA {format_seconds(e.eta_s)}"
        )

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 120 + "\r")
            sys.stderr.flush()
            self.shown = False


def format_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# --- classify / eval -------------------------------------------------------------------------


def cmd_classify(args) -> int:
    from .core.classify import Classifier

    if args.explain and args.input:
        raise WorkbenchError("--explain works on texts given as arguments or on stdin, not on an --input file")
    classifier = Classifier.from_adapter(args.adapter, model=args.model, device=args.device, precision=args.precision)
    use_threshold(classifier, args.threshold)
    if args.input:
        return classify_file(classifier, args)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if args.explain:
        return explain_texts(classifier, texts, args.json)
    for text, p in zip(texts, classifier.predict(texts)):
        if args.json:
            print(
                json.dumps(
                    {"text": text, "label": p.label, "probability": p.probability, "probabilities": p.probabilities}
                )
            )
        else:
            print(f"{p.label}\t{p.probability:.4f}")
    return 0


def explain_texts(classifier, texts: list[str], as_json: bool) -> int:
    """Per text: the label line as without --explain, then each piece of the text in order with its
    score for that label, escaped for a terminal; with ``as_json`` one object per text, every
    class's scores."""
    from .core.explain import explain

    for text in texts:
        e = explain(classifier, text)
        if as_json:
            probability = e.probabilities[e.predicted]
            print(json.dumps({"text": text, "label": e.predicted, "probability": probability, **e.to_dict()}))
            continue
        print(
            f"{terminal_text(e.predicted)}\t{e.probabilities[e.predicted]:.4f}"
            + ("\t(text cut)" if e.truncated else "")
        )
        for piece, score in zip(e.tokens, e.scores_for(e.predicted)):
            print(f'  {score:+8.3f}  "{terminal_text(piece)}"')
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
    from .core.classify import classify_file as classify_into
    from .core.classify import classify_table

    if not args.output:
        classify_table(classifier, args.input, text_column=args.text_column).to_csv(sys.stdout, index=False)
        return 0
    rows = classify_into(classifier, args.input, args.output, text_column=args.text_column)
    print(f"{rows} rows classified; written to {args.output}")
    return 0


def cmd_eval(args) -> int:
    from .core.classify import Classifier
    from .core.data import load_table, make_splits
    from .core.training import metrics_from_probabilities

    classifier = Classifier.from_adapter(args.adapter, model=args.model, device=args.device, precision=args.precision)
    use_threshold(classifier, args.threshold)
    data = data_config(args)
    splits = make_splits(load_table(data), data)
    names = tuple(classifier.info.label_names)
    if tuple(splits.label_names) != names:
        raise WorkbenchError(f"the dataset's labels {list(splits.label_names)} differ from the adapter's {list(names)}")
    parts = [splits.train, splits.val, splits.test] if args.split == "all" else [getattr(splits, args.split)]
    texts = [t for part in parts for t in part.texts]
    labels = [y for part in parts for y in part.labels]
    probs = classifier.probabilities(texts, batch_size=args.batch_size)
    metrics = metrics_from_probabilities(probs, labels, names, threshold=classifier.threshold)
    decision = decision_summary(classifier, probs, labels)
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"split": args.split, **asdict(metrics), **decision}))
    else:
        print(format_metrics(metrics))
        print(format_decision(decision))
    return 0


# --- the decision: threshold and temperature -------------------------------------------------


def use_threshold(classifier, threshold: float | None) -> None:
    """--threshold over the adapter's own, refused where it cannot apply."""
    from .core.thresholds import threshold_problem

    if threshold is None:
        return
    problem = threshold_problem(threshold, len(classifier.info.label_names))
    if problem:
        raise WorkbenchError(f"--threshold: {problem}")
    classifier.threshold = threshold


def decision_summary(classifier, probs, labels: list[int]) -> dict:
    """How the labels were decided, and for two classes the ranking and calibration figures."""
    from .core.thresholds import POSITIVE, precision_recall_curve, reliability, roc_curve

    summary = {
        "threshold": classifier.threshold,
        "temperature": classifier.temperature,
        "ece": reliability(probs, labels).ece,
    }
    if probs.shape[1] == 2 and len(set(labels)) == 2:
        scores = probs[:, POSITIVE].tolist()
        summary["roc_auc"] = roc_curve(scores, labels).auc
        summary["average_precision"] = precision_recall_curve(scores, labels).average_precision
    return summary


def format_decision(d: dict) -> str:
    parts = [
        "decided by argmax" if d["threshold"] is None else f"threshold {d['threshold']:g}",
        "no temperature" if d["temperature"] is None else f"temperature {d['temperature']:.3f}",
    ]
    if "roc_auc" in d:
        parts.append(f"ROC AUC {d['roc_auc']:.4f}, average precision {d['average_precision']:.4f}")
    parts.append(f"expected calibration error {d['ece']:.4f}")
    return "; ".join(parts)


def labelled_split(classifier, args, split: str) -> tuple[list[str], list[int]]:
    """Texts and class ids of one split of --data, split as training splits it."""
    from .core.data import load_table, make_splits

    data = data_config(args)
    splits = make_splits(load_table(data), data)
    names = tuple(classifier.info.label_names)
    if tuple(splits.label_names) != names:
        raise WorkbenchError(f"the dataset's labels {list(splits.label_names)} differ from the adapter's {list(names)}")
    part = getattr(splits, split)
    return list(part.texts), list(part.labels)


def cmd_calibrate(args) -> int:
    import torch

    from .core.adapters import update_decision
    from .core.classify import Classifier
    from .core.thresholds import fit_temperature, logits_of, negative_log_likelihood, reliability

    if args.clear:
        update_decision(args.adapter, temperature=None)
        print(f"temperature removed from {args.adapter}")
        return 0
    classifier = Classifier.from_adapter(args.adapter, model=args.model, device=args.device, precision=args.precision)
    classifier.temperature = None  # fit on the model's own logits, not on an earlier fit's
    report = {}
    for split in ("val", "test"):
        texts, labels = labelled_split(classifier, args, split)
        report[split] = (logits_of(classifier.probabilities(texts, batch_size=args.batch_size)), labels)
    temperature = fit_temperature(*report["val"])
    figures = {"temperature": temperature, "n_val": len(report["val"][1])}
    for split, (logits, labels) in report.items():
        for name, t in (("before", 1.0), ("after", temperature)):
            figures[f"{split}_nll_{name}"] = negative_log_likelihood(logits, labels, t)
            figures[f"{split}_ece_{name}"] = reliability(torch.softmax(logits / t, dim=-1), labels).ece
    update_decision(args.adapter, temperature=temperature)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"temperature {temperature:.3f} fitted on {figures['n_val']} validation examples; saved in {args.adapter}")
    for split, name in (("val", "validation"), ("test", "test")):
        print(
            f"{name:<10}  NLL {figures[f'{split}_nll_before']:.4f} -> {figures[f'{split}_nll_after']:.4f}, "
            f"expected calibration error {figures[f'{split}_ece_before']:.4f} -> {figures[f'{split}_ece_after']:.4f}"
        )
    if classifier.info.threshold is not None:
        print(
            f"note: the saved threshold {classifier.info.threshold:g} now applies to the calibrated "
            "probabilities; check it with `workbench threshold`"
        )
    return 0


def cmd_threshold(args) -> int:
    from .core.adapters import read_adapter, update_decision
    from .core.thresholds import threshold_problem

    if args.clear:
        update_decision(args.adapter, threshold=None)
        print(f"threshold removed from {args.adapter}: decisions are argmax again")
        return 0
    if args.set is not None:
        problem = threshold_problem(args.set, len(read_adapter(args.adapter)[1].label_names))
        if problem:
            raise WorkbenchError(problem)
        update_decision(args.adapter, threshold=args.set)
        print(f"threshold {args.set:g} saved in {args.adapter}")
        return 0
    return threshold_report(args)


def threshold_report(args) -> int:
    """Precision, recall and F1 at a range of thresholds on --split (and --best-f1 saves one)."""
    from dataclasses import asdict

    from .core.adapters import update_decision
    from .core.classify import Classifier
    from .core.thresholds import POSITIVE, best_f1_threshold, metrics_at, precision_recall_curve, roc_curve

    classifier = Classifier.from_adapter(args.adapter, model=args.model, device=args.device, precision=args.precision)
    names = classifier.info.label_names
    if len(names) != 2:
        raise WorkbenchError(f"thresholds apply to two-class adapters; this one has {len(names)} classes")
    texts, labels = labelled_split(classifier, args, args.split)
    scores = classifier.probabilities(texts, batch_size=args.batch_size)[:, POSITIVE].tolist()
    best = best_f1_threshold(scores, labels)
    if args.best_f1:
        update_decision(args.adapter, threshold=best)
    cuts = sorted({round(0.1 * i, 1) for i in range(1, 10)} | {best} | {classifier.threshold or 0.5})
    rows = [metrics_at(scores, labels, cut) for cut in cuts]
    report = {
        "split": args.split,
        "positive": names[POSITIVE],
        "saved_threshold": classifier.info.threshold,
        "best_f1_threshold": best,
        "roc_auc": roc_curve(scores, labels).auc,
        "average_precision": precision_recall_curve(scores, labels).average_precision,
        "rows": [asdict(m) for m in rows],
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{names[POSITIVE]} when p({names[POSITIVE]}) >= threshold; {len(labels)} {args.split} examples; "
        f"ROC AUC {report['roc_auc']:.4f}, average precision {report['average_precision']:.4f}"
    )
    print("threshold  precision  recall      f1  false alarms  missed")
    for m in rows:
        marks = (" best F1" if m.threshold == best else "") + (
            " saved" if classifier.info.threshold is not None and m.threshold == classifier.info.threshold else ""
        )
        print(
            f"{m.threshold:9.3f}  {m.precision:9.3f}  {m.recall:6.3f}  {m.f1:6.3f}  "
            f"{m.confusion[0][1]:12d}  {m.confusion[1][0]:6d}{marks}"
        )
    if args.best_f1:
        print(f"threshold {best:g} saved in {args.adapter}")
    return 0


# --- label errors and data health ------------------------------------------------------------


def cmd_label_errors(args) -> int:
    from dataclasses import asdict

    from .core import label_errors
    from .core.adapters import read_adapter
    from .core.data import load_table, make_splits
    from .core.events import Status

    if args.folds < 0 or args.folds == 1:
        raise WorkbenchError(f"--folds must be 0 (no cross-validation) or at least 2, got {args.folds}")
    if args.top < 0:
        raise WorkbenchError(f"--top must be 0 or more, got {args.top}")
    _, info = read_adapter(args.adapter)
    data = data_config(args)
    splits = make_splits(load_table(data), data)
    label_errors.check_labels(splits, info.label_names)
    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())

    def progress(done, total, message=""):
        bar.status(Status(message, done, total))

    if args.folds:
        cfg = fold_recipe(args, info, data)
        rows = label_errors.suspects_by_cross_validation(
            cfg, splits, args.folds, max_length=info.max_length, threshold=info.threshold, progress=progress
        )
    else:
        from .core.classify import Classifier

        classifier = Classifier.from_adapter(
            args.adapter, model=args.model, device=args.device, precision=args.precision
        )
        rows = label_errors.suspects_from_adapter(classifier, splits, progress=progress)
    bar.clear()
    if args.out:
        label_errors.save_suspects(rows, args.out)
    shown = rows[: args.top]
    if args.json:
        print(json.dumps([asdict(r) for r in shown]))
        return 0
    how = (
        f"{args.folds}-fold cross-validation: every row out-of-sample"
        if args.folds
        else "the adapter alone: validation rows out-of-sample, training rows (*) in-sample; "
        "--folds K scores every row out-of-sample"
    )
    print(f"{len(rows)} training and validation rows, least likely given label first ({how})")
    print(f"{'p(given)':>8}  {'given':<10} {'predicted':<10} {'split':<6} text")
    for r in shown:
        split = r.split + ("" if r.out_of_sample else "*")
        given, predicted = short(r.given, 10), short(r.predicted, 10)
        print(f"{r.confidence:8.4f}  {given:<10} {predicted:<10} {split:<6} {short(r.text, 90)}")
    if args.out:
        print(f"all {len(rows)} rows written to {args.out}")
    return 0


def short(text: str, width: int) -> str:
    """``text`` escaped for a terminal and cut to ``width`` characters."""
    text = terminal_text(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def fold_recipe(args, info, data: DataConfig) -> TrainConfig:
    """The training settings for cross-validation folds: the run's own when the adapter sits in its
    run folder (config.json beside it), else train's defaults; the adapter's model and LoRA;
    --epochs/--lr/--batch-size over either."""
    base = TrainConfig()
    recorded = Path(args.adapter).with_name("config.json")
    if recorded.is_file():
        try:
            base = TrainConfig.from_dict(json.loads(recorded.read_text(encoding="utf-8")))
        except (ValueError, TypeError, OSError):
            pass  # not a run's config: the defaults will do
    changes = {
        "model": args.model or info.base_model,
        "data": data,
        "lora": info.lora,
        "device": args.device,
        "precision": args.precision,
        "seed": args.seed,
        **{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size)) if v},
    }
    cfg = base.with_changes(**changes)
    cfg.check()
    return cfg


def cmd_data_report(args) -> int:
    from .core.data import load_table
    from .core.data.health import data_health

    data = data_config(args)
    problems = data.validate()
    if problems:
        raise WorkbenchError("; ".join(problems))
    tokenizer, context = report_tokenizer(args.model, args.tokenizer)
    health = data_health(load_table(data), data, tokenizer, args.max_length or context)
    if args.json:
        print(json.dumps(health.to_dict()))
        return 0
    print(format_health(health))
    return 0


def report_tokenizer(model: str, folder: str | None):
    """The GPT-2 tokenizer and context length for a data report, without downloading weights: the
    given folder, the model's folder or cached snapshot, else tiktoken's own (see load_tokenizer)."""
    from .core import hub
    from .core.config import ModelConfig
    from .core.tokenizer import load_tokenizer

    checkpoint = None
    if Path(model).is_dir():
        checkpoint = Path(model)
    elif model in MODEL_REPOS and hub.is_cached(model):
        checkpoint = hub.resolve_checkpoint(model)
    if model in MODEL_REPOS:
        context = ModelConfig.for_size(model).n_positions
    else:
        try:
            context = ModelConfig.from_hf_dict(json.loads((Path(model) / "config.json").read_text())).n_positions
        except (OSError, ValueError, TypeError) as exc:
            raise WorkbenchError(f"--model {model}: not a GPT-2 size or checkpoint folder ({exc})") from exc
    try:
        return load_tokenizer(folder or checkpoint), context
    except WorkbenchError as exc:
        raise WorkbenchError(
            f"no GPT-2 tokenizer to count tokens with: give --tokenizer FOLDER or a checkpoint folder as --model, "
            f"or run `workbench download gpt2` once ({exc})"
        ) from exc


def format_health(h) -> str:
    lines = [f"{h.source}: {h.rows} rows; text column {h.text_column!r}, label column {h.label_column!r}"]
    total = sum(h.class_counts.values()) or 1
    lines.append("classes: " + ", ".join(f"{short(k, 24)} {v} ({v / total:.1%})" for k, v in h.class_counts.items()))
    sizes = h.split_sizes
    lines.append(f"splits as training makes them: train {sizes['train']}, val {sizes['val']}, test {sizes['test']}")
    lines.append(
        f"empty texts: {h.empty_texts}" + (f" (rows {', '.join(map(str, h.empty_examples))}…)" if h.empty_texts else "")
    )
    lines.append(
        f"missing labels: {h.missing_labels}"
        + (f" (rows {', '.join(map(str, h.missing_examples))}…)" if h.missing_labels else "")
    )
    lines.append(f"exact duplicates: {h.exact_duplicates} rows repeat an earlier text")
    for g in h.exact_groups[:3]:
        lines.append(f"  {g.count}x {short(g.texts[0], 80)}")
    lines.append(f"texts with conflicting labels: {h.conflicting_labels}")
    for g in h.conflict_groups[:3]:
        lines.append(f"  {'/'.join(g.labels)} {g.count}x {short(g.texts[0], 80)}")
    lines.append(f"near duplicates (casefolded, digit runs as 0, spaces collapsed): {h.near_duplicates} more rows")
    for g in h.near_groups[:3]:
        lines.append(f"  {g.count}x {short(g.texts[0], 60)} | {short(g.texts[1], 60)}")
    lines.append(
        "copies across splits (near, of which exact): "
        + ", ".join(f"{k} {v} ({h.cross_split_exact[k]})" for k, v in h.cross_split.items())
    )
    for g in h.cross_split_groups[:3]:
        lines.append(f"  {'+'.join(g.splits)} {g.count}x {short(g.texts[0], 80)}")
    lines.extend(format_histogram(h.lengths))
    lines.extend(f"note: {note}" for note in h.notes)
    return "\n".join(lines)


def format_histogram(hist, width: int = 40) -> list[str]:
    """Token lengths as rows of bars; the bin holding the cut is marked."""
    lines = [
        f"token lengths: median {hist.median:g}, longest {hist.longest}; "
        f"{hist.over_max} longer than the cut at {hist.max_length}"
    ]
    peak = max(hist.counts) or 1
    for i, count in enumerate(hist.counts):
        low, high = hist.edges[i], hist.edges[i + 1]
        cut = f"  <- cut at {hist.max_length}" if low <= hist.max_length < high else ""
        bar = "#" * round(width * count / peak)
        lines.append(f"  {low:5d}-{high - 1:<5d} {count:6d} {bar}{cut}")
    return lines


# --- small commands --------------------------------------------------------------------------


def cmd_download(args) -> int:
    from .core import hub
    from .core.data import download_sms_spam

    bar = ProgressBar(enabled=sys.stderr.isatty())

    def progress(done, total, message=""):
        text = message or f"Downloading {args.name}"
        bar._show(f"{text}: {done / total:.0%}" if total else f"{text}: {done / 1e6:.1f} MB")

    if args.name == "sms-spam":
        path = download_sms_spam(progress=progress)
    else:
        path = hub.resolve_checkpoint(args.name, progress=progress)
    bar.clear()
    print(f"{args.name} is at {path}")
    return 0


def cmd_info(args) -> int:
    from dataclasses import asdict

    from .core.adapters import read_adapter

    tensors, info = read_adapter(args.adapter)
    if args.json:
        print(
            json.dumps(
                {**asdict(info), "tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values())}
            )
        )
        return 0
    c = info.model_config
    print(f"adapter      {args.adapter} ({Path(args.adapter).stat().st_size / 1e6:.1f} MB)")
    print(f"base model   {info.base_model} ({c.n_layer} layers, {c.n_embd} wide)")
    print(
        f"LoRA         rank {info.lora.rank}, alpha {info.lora.alpha:g}, targets {' '.join(info.lora.targets)}"
        + (f", top {info.lora.top_blocks} blocks" if info.lora.top_blocks else "")
    )
    print(f"labels       {', '.join(info.label_names)}")
    print(f"max length   {info.max_length} tokens")
    if info.threshold is not None or info.temperature is not None:
        cut = "argmax" if info.threshold is None else f"{info.label_names[1]} when p >= {info.threshold:g}"
        scale = "" if info.temperature is None else f", temperature {info.temperature:.3f}"
        print(f"decision     {cut}{scale}")
    print(f"parameters   {sum(t.numel() for t in tensors.values()):,}")
    if info.metrics:
        print(f"metrics      {json.dumps(info.metrics)}")
    print(f"created      {info.created} (workbench {info.package_version}, format {info.format_version})")
    return 0


def cmd_export_peft(args) -> int:
    from .core.peft_io import export_peft

    folder = export_peft(args.adapter, args.out)
    print(f"PEFT adapter written to {folder}")
    return 0


def cmd_import_peft(args) -> int:
    from .core.peft_io import import_peft

    path = import_peft(args.folder, args.out, model=args.model, labels=args.labels, max_length=args.max_length)
    print(f"adapter written to {path}")
    return 0


def cmd_runs(args) -> int:
    from .core.runs import list_runs

    rows = []
    for run in list_runs():
        finished = next(
            (e for e in reversed(run.events()) if type(e).__name__ in ("TrainingFinished", "TrainingFailed")), None
        )
        accuracy = getattr(getattr(finished, "metrics", None), "accuracy", None)
        state = (
            "running or crashed"
            if finished is None
            else (
                "failed"
                if type(finished).__name__ == "TrainingFailed"
                else "stopped"
                if finished.stopped
                else "finished"
            )
        )
        rows.append({"run": run.path.name, "path": str(run.path), "state": state, "test_accuracy": accuracy})
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no runs yet")
    for r in rows if not args.json else []:
        acc = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else "-"
        print(f"{r['run']:<50} {r['state']:<18} {acc}")
    return 0


# --- bench -----------------------------------------------------------------------------------


def cmd_bench(args) -> int:
    from .core import events as ev
    from .core.bench import BenchConfig, format_result, run_bench
    from .core.device import pick_device, pick_precision

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
        print(json.dumps(output))
        return 0
    print(format_result(result))
    if driver is not None:
        print()
        print(driver.format_comparison(output["compare"]))
    return 0


def comparison_driver():
    """benchmarks/compare_hf_peft.py of a source checkout, loaded as a module."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_hf_peft.py"
    if not script.is_file():
        raise WorkbenchError(
            f"--compare needs the benchmark driver {script}, which ships with a source "
            "checkout only; run it from a clone of the repository"
        )
    spec = importlib.util.spec_from_file_location("workbench_compare_hf_peft", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    problem = module.missing_reference()
    if problem:
        raise WorkbenchError(f"--compare: {problem}")
    return module


if __name__ == "__main__":
    sys.exit(main())
