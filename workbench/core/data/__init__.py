"""Datasets: reading tables, the built-in SMS collection, splits, and batches.

The submodules are ordered bottom-up (tables <- sms, splits <- recipe; batches stands alone); this package
re-exports the names the rest of the workbench uses, so callers write ``from .data import ...``.
"""

from ..config import SMS_SPAM
from .batches import Batch, EncodedSplit, count_batches, encode_texts, iterate_batches, pad_batch
from .recipe import DataRecipe, DatasetIdentity, identify_dataset, recipe_for
from .sms import SMS_SPAM_FILE, SMS_SPAM_FOLDER, download_sms_spam, load_table, read_sms_spam, sms_spam_path
from .splits import (
    DatasetSplits,
    LabelClasses,
    LabeledTexts,
    UsableRows,
    canonical_labels,
    clean_label,
    count_classes,
    describe_merges,
    label_key,
    looks_like_text_column,
    make_splits,
    usable_rows,
)
from .tables import Table, TableStream, read_table, save_table, stream_table, table_bytes

__all__ = [
    "SMS_SPAM",
    "SMS_SPAM_FILE",
    "SMS_SPAM_FOLDER",
    "Batch",
    "DataRecipe",
    "DatasetIdentity",
    "DatasetSplits",
    "EncodedSplit",
    "LabelClasses",
    "LabeledTexts",
    "Table",
    "TableStream",
    "UsableRows",
    "canonical_labels",
    "clean_label",
    "count_batches",
    "count_classes",
    "describe_merges",
    "download_sms_spam",
    "encode_texts",
    "identify_dataset",
    "iterate_batches",
    "label_key",
    "load_table",
    "looks_like_text_column",
    "make_splits",
    "pad_batch",
    "read_sms_spam",
    "read_table",
    "recipe_for",
    "save_table",
    "sms_spam_path",
    "stream_table",
    "table_bytes",
    "usable_rows",
]
