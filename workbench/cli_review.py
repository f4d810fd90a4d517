"""The ``workbench`` commands that review a trained adapter and its data (issue 14): why a text
got its label (``classify --explain``), where to cut (``threshold``) and how sure (``calibrate``),
which rows look mislabelled (``label-errors``) and what a dataset holds (``data-report``).

Parse, call the core, print: the figures come from core/explain.py, core/thresholds.py,
core/label_errors.py and core/data/health.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cli import ProgressBar, add_data_args, add_device_args, add_split_args, bounded, data_config, terminal_text
from .core.errors import WorkbenchError


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
    p.add_argument(
        "--folds", type=bounded("folds"), default=0, metavar="K", help="K-fold cross-validation (default 0: none)"
    )
    p.add_argument(
        "--epochs", type=bounded("epochs"), help="per fold (default: the run's, when the adapter is in its run folder)"
    )
    p.add_argument("--lr", type=bounded("lr"), help="per fold (default: the run's, else train's default)")
    p.add_argument(
        "--batch-size", type=bounded("batch_size"), help="per fold (default: the run's, else train's default)"
    )
    p.add_argument("--seed", type=bounded("seed"), default=123, help="data split and folds (default 123, as train)")
    p.add_argument("--top", type=bounded("top"), default=20, help="rows to print (default 20)")
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
    p.add_argument(
        "--max-length", type=bounded("max_length"), default=None, help="the cut to mark (default: the model's context)"
    )
    p.add_argument("--max-rows", type=bounded("max_rows"), default=None, help="read only the first N rows")
    add_split_args(p)
    p.add_argument("--seed", type=bounded("seed"), default=123, help="as for train (default 123)")
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
    choice.add_argument(
        "--set", type=bounded("threshold"), metavar="P", help="save this threshold (a probability, 0-1)"
    )
    choice.add_argument("--best-f1", action="store_true", help="save the threshold with the best F1 on --split")
    choice.add_argument("--clear", action="store_true", help="remove a saved threshold (back to argmax)")
    p.add_argument("--split", choices=("val", "test", "train"), default="val", help="data to choose on (default val)")
    add_decision_data_args(p)
    p.set_defaults(handler=cmd_threshold)


def add_threshold_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=bounded("threshold"),
        metavar="P",
        help="two-class adapters: the second label when its probability is at least P "
        "(default: the adapter's saved threshold, else argmax)",
    )


def add_decision_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="base model (default: the one the adapter names)")
    add_data_args(p)
    p.add_argument("--batch-size", type=bounded("batch_size"), default=32)
    p.add_argument("--json", action="store_true")
    add_device_args(p)


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
    """Texts and class ids of one split of --data: the training run's own split, rebuilt from the
    adapter's data recipe (adapter_eval.rows_to_score), so a threshold or a temperature is never
    fitted on rows the adapter trained on."""
    from .core.adapter_eval import rows_to_score

    rows = rows_to_score(
        args.data, classifier.info, split, text_column=args.text_column, label_column=args.label_column
    )
    return list(rows.texts), list(rows.labels)


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
    seed = info.data.seed if info.data else args.seed  # the run's split when the adapter recorded it
    splits = make_splits(load_table(data), data, seed=seed)
    label_errors.check_labels(splits, info.label_names)
    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())

    def progress(done, total, message=""):
        bar.status(Status(message, done, total))

    if args.folds:
        overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
        cfg = label_errors.fold_recipe(
            args.adapter,
            info,
            data,
            model=args.model,
            device=args.device,
            precision=args.precision,
            seed=args.seed,
            **{k: v for k, v in overrides.items() if v is not None},
        )
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


def cmd_data_report(args) -> int:
    from .core.data import load_table
    from .core.data.health import data_health

    data = data_config(args)
    problems = data.validate()
    if problems:
        raise WorkbenchError("; ".join(problems))
    tokenizer, context = report_tokenizer(args.model, args.tokenizer)
    health = data_health(load_table(data), data, tokenizer, args.max_length or context, seed=args.seed)
    if args.json:
        print(json.dumps(health.to_dict()))
        return 0
    print(format_health(health))
    return 0


def report_tokenizer(model: str, folder: str | None):
    """The GPT-2 tokenizer and context length for a data report (core: tokenizer.tokenizer_and_context)."""
    from .core.tokenizer import tokenizer_and_context

    return tokenizer_and_context(model, folder)


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
