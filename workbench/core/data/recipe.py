"""The data recipe an adapter carries: which dataset (down to its bytes) and how it was split.

With it, ``eval`` rebuilds a run's held-out rows exactly instead of guessing the seed, and it can
tell the file a run was trained on from a file that was edited since (same name, other bytes).
The dataset is named by its file name, size and SHA-256, never by its folder: adapters travel
between machines, and a path would leak a user's home folder into a shared file.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import SMS_SPAM, DataConfig
from ..errors import DataError
from ..fileio import open_regular_file
from ..progress import Progress, raise_if_stopped
from .sms import download_sms_spam
from .splits import DatasetSplits

_HASH_CHUNK = 1024 * 1024  # bytes per read while hashing: bounded memory for any file size


@dataclass(frozen=True)
class DatasetIdentity:
    """One dataset file as bytes: enough to recognise it again, nothing about where it lived."""

    name: str  # "sms-spam" for the built-in collection, else the file's name
    size: int  # bytes
    sha256: str  # hex digest of the file's bytes

    def short_hash(self) -> str:
        return self.sha256[:12]


def identify_dataset(
    source: str | Path, *, progress: Progress | None = None, stop: threading.Event | None = None
) -> DatasetIdentity:
    """Name, size and SHA-256 of a dataset file (``sms-spam``: the downloaded collection), read in
    1 MB chunks so a file of any size hashes in constant memory."""
    built_in = str(source) == SMS_SPAM
    path = download_sms_spam(progress=progress, stop=stop) if built_in else Path(source)  # no-op once there
    if not built_in and not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"Dataset file {path} {what}. Check the path, or choose another file.")
    digest = hashlib.sha256()
    done = 0
    try:
        size = path.stat().st_size
        with open_regular_file(path, "Dataset file", DataError) as f:
            while chunk := f.read(_HASH_CHUNK):
                raise_if_stopped(stop, "Fingerprinting the dataset")
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, size, "Fingerprinting the dataset")
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    return DatasetIdentity(SMS_SPAM if built_in else path.name, done, digest.hexdigest())


@dataclass(frozen=True)
class DataRecipe:
    """Everything that decided which rows a run trained, validated and tested on."""

    dataset: DatasetIdentity
    text_column: str
    label_column: str
    balance: bool  # every class undersampled to the smallest
    drop_duplicates: bool  # exact (text, label) repeats dropped (resolved: never None here)
    train_fraction: float
    val_fraction: float  # the test set got the rest
    seed: int  # shuffling, balancing and splitting
    max_rows: int | None  # only the file's first N rows were read
    max_length: int  # tokens per text the model saw
    label_names: tuple[str, ...]  # class ids in order
    label_values: tuple[tuple[str, ...], ...]  # per class, its spellings in the file (before stripping)
    rename_labels: tuple[tuple[str, str], ...] = ()  # names given to the file's labels (DataConfig)

    def data_config(self, source: str | Path) -> DataConfig:
        """The settings that rebuild this recipe's split from ``source`` (the same bytes)."""
        return DataConfig(
            source=str(source),
            text_column=self.text_column,
            label_column=self.label_column,
            balance=self.balance,
            drop_duplicates=self.drop_duplicates,
            train_fraction=self.train_fraction,
            val_fraction=self.val_fraction,
            max_rows=self.max_rows,
            rename_labels=self.rename_labels,
        )

    def describe_split(self) -> str:
        """ "70/10/20, balanced, seed 7": how the rows were divided, for a person."""
        test = 1 - self.train_fraction - self.val_fraction
        fractions = "/".join(f"{round(f * 100):g}" for f in (self.train_fraction, self.val_fraction, test))
        return f"{fractions}, {'balanced' if self.balance else 'not balanced'}, seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataRecipe:
        dataset = DatasetIdentity(str(d["dataset"]["name"]), int(d["dataset"]["size"]), str(d["dataset"]["sha256"]))
        max_rows = d.get("max_rows")
        return cls(
            dataset=dataset,
            text_column=str(d["text_column"]),
            label_column=str(d["label_column"]),
            balance=bool(d["balance"]),
            drop_duplicates=bool(d["drop_duplicates"]),
            train_fraction=float(d["train_fraction"]),
            val_fraction=float(d["val_fraction"]),
            seed=int(d["seed"]),
            max_rows=None if max_rows is None else int(max_rows),
            max_length=int(d["max_length"]),
            label_names=tuple(str(n) for n in d["label_names"]),
            label_values=tuple(tuple(str(v) for v in values) for values in d.get("label_values", ())),
            rename_labels=tuple((str(old), str(new)) for old, new in d.get("rename_labels", ())),
        )


def recipe_for(
    cfg: DataConfig, splits: DatasetSplits, dataset: DatasetIdentity, max_length: int, *, seed: int
) -> DataRecipe:
    """The recipe of a split just made from ``cfg`` (columns and duplicate rule as resolved)."""
    return DataRecipe(
        dataset=dataset,
        text_column=splits.text_column,
        label_column=splits.label_column,
        balance=cfg.balance,
        drop_duplicates=splits.drop_duplicates,
        train_fraction=cfg.train_fraction,
        val_fraction=cfg.val_fraction,
        seed=seed,
        max_rows=cfg.max_rows,
        max_length=max_length,
        label_names=tuple(splits.label_names),
        label_values=tuple(splits.label_values.get(name, ()) for name in splits.label_names),
        rename_labels=tuple(cfg.rename_labels),
    )
