"""Datasets: reading tables, the built-in SMS collection, splits, and batches.

The submodules are ordered bottom-up (tables <- sms, splits; batches stands alone); this package
re-exports the names the rest of the workbench uses, so callers write ``from .data import ...``.
"""

from .batches import Batch, count_batches, encode_texts, iterate_batches, pad_batch
from .sms import SMS_SPAM_FILE, SMS_SPAM_FOLDER, download_sms_spam, load_table, read_sms_spam, sms_spam_path
from .splits import DatasetSplits, LabeledTexts, looks_like_text_column, make_splits
from .tables import SMS_SPAM, Table, read_table, save_table

__all__ = [
    "SMS_SPAM",
    "SMS_SPAM_FILE",
    "SMS_SPAM_FOLDER",
    "Batch",
    "DatasetSplits",
    "LabeledTexts",
    "Table",
    "count_batches",
    "download_sms_spam",
    "encode_texts",
    "iterate_batches",
    "load_table",
    "looks_like_text_column",
    "make_splits",
    "pad_batch",
    "read_sms_spam",
    "read_table",
    "save_table",
    "sms_spam_path",
]
