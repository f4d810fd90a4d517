"""Datasets: reading tables, the built-in SMS collection, splits, and batches.

The submodules are ordered bottom-up (tables <- sms, splits; batches stands alone); this package
re-exports the names the rest of the workbench uses, so callers write ``from .data import ...``.
"""

from .batches import Batch, count_batches, encode_texts, iterate_batches, pad_batch
from .sms import SMS_SPAM_FILE, SMS_SPAM_FOLDER, download_sms_spam, load_table, read_sms_spam, sms_spam_path
from .splits import (
    DatasetSplits,
    LabelClasses,
    LabeledTexts,
    canonical_labels,
    clean_label,
    describe_merges,
    label_key,
    make_splits,
)
from .tables import SMS_SPAM, Table, TableStream, read_table, save_table, stream_table, table_bytes

__all__ = [
    "SMS_SPAM",
    "SMS_SPAM_FILE",
    "SMS_SPAM_FOLDER",
    "Batch",
    "DatasetSplits",
    "LabelClasses",
    "LabeledTexts",
    "Table",
    "TableStream",
    "canonical_labels",
    "clean_label",
    "count_batches",
    "describe_merges",
    "download_sms_spam",
    "encode_texts",
    "iterate_batches",
    "label_key",
    "load_table",
    "make_splits",
    "pad_batch",
    "read_sms_spam",
    "read_table",
    "save_table",
    "sms_spam_path",
    "stream_table",
    "table_bytes",
]
