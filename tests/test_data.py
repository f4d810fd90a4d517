"""Reading CSV/TSV files, splitting, tokenizing and batching; the real SMS file when it is present."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.core import data
from workbench.core.config import DataConfig
from workbench.core.data import SMS_SPAM, Table, encode_texts, iterate_batches, make_splits, read_table
from workbench.core.errors import Cancelled, DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMS_FILE = SHARED_DATA / "sms_spam_collection" / "SMSSpamCollection"
TIKTOKEN_FILE = SHARED_DATA / "gpt2-tokenizer" / "gpt2.tiktoken"


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def table_of(labels: list[str], texts: list[str], source: str = "mine.csv") -> Table:
    frame = pd.DataFrame({"label": labels, "text": texts}, dtype=str)
    return Table(frame, source, "utf-8", "text", "label")


def rows(table: Table) -> list[list[str]]:
    return table.frame.values.tolist()


# --------------------------------------------------------------------------- reading files


def test_csv_with_header_detects_text_and_label(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\nham,see you at six tonight\nspam,WIN a prize now\nham,ok\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["label", "text"]
    assert rows(table)[1] == ["spam", "WIN a prize now"]
    assert (table.text_column, table.label_column) == ("text", "label")
    assert table.encoding == "utf-8" and table.source == str(path) and not table.truncated_rows


def test_headerless_tsv_gets_numbered_columns_and_detection_by_content(tmp_path):
    path = write(
        tmp_path, "d.txt", "ham\tGo until jurong point, crazy\nspam\tFree entry in 2 a wkly comp\nham\tOk lar\n"
    )
    table = read_table(path)
    assert list(table.frame.columns) == ["column 1", "column 2"]
    assert rows(table)[0] == ["ham", "Go until jurong point, crazy"]
    assert (table.text_column, table.label_column) == ("column 2", "column 1")


def test_headerless_file_with_numeric_labels(tmp_path):
    path = write(tmp_path, "d.csv", "1,great film\n0,dull\n1,loved it\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["column 1", "column 2"]
    assert len(table.frame) == 3


def test_header_over_numeric_column(tmp_path):
    path = write(tmp_path, "d.csv", "stars,review\n5,great film\n1,dull\n4,loved it\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["stars", "review"]
    assert (table.text_column, table.label_column) == ("review", "stars")


def test_latin1_file(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\nham,café crème\nspam,Gewinn für Sie\n", encoding="latin-1")
    table = read_table(path)
    assert table.encoding == "latin-1"
    assert rows(table) == [["ham", "café crème"], ["spam", "Gewinn für Sie"]]


def test_windows_1252_curly_quotes(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\nham,“quoted” – 5 €\nspam,x\n", encoding="cp1252")
    table = read_table(path)
    assert table.encoding == "cp1252"
    assert rows(table)[0][1] == "“quoted” – 5 €"


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = write(tmp_path, "d.csv", "\ufefflabel,text\nham,hi there\nspam,buy\nham,yo\n")
    table = read_table(path)
    assert table.encoding == "utf-8-sig"
    assert list(table.frame.columns) == ["label", "text"]


def test_utf16_excel_unicode_text(tmp_path):
    path = write(tmp_path, "d.txt", "label\ttext\r\nham\tnaïve café\r\nspam\tbuy\r\nham\tok\r\n", encoding="utf-16")
    table = read_table(path)
    assert table.encoding == "utf-16"
    assert rows(table)[0] == ["ham", "naïve café"]


def test_non_utf8_byte_after_the_sample_rereads_as_single_byte(tmp_path):
    body = "".join(f"ham,message number {i:06d} with some padding\n" for i in range(8000)).encode()
    path = write(tmp_path, "d.csv", b"label,text\n" + body + b"spam,caf\xe9\n")
    table = read_table(path)
    assert table.encoding == "cp1252"
    assert rows(table)[-1] == ["spam", "café"]


def test_extra_empty_columns_and_blank_rows_are_dropped(tmp_path):
    path = write(tmp_path, "d.csv", "label,text,,\nham,hello,,\n,,,\n\nspam,buy now,,\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["label", "text"]
    assert rows(table) == [["ham", "hello"], ["spam", "buy now"]]


def test_ragged_rows_read_missing_cells_as_empty(tmp_path):
    path = write(tmp_path, "d.csv", "label,text,note\nham,hello\nspam,buy,x\n")
    assert rows(read_table(path)) == [["ham", "hello", ""], ["spam", "buy", "x"]]


def test_a_row_wider_than_the_sample_does_not_abort(tmp_path):
    body = "".join(f"ham,message number {i:06d} with some padding\n" for i in range(8000))
    path = write(tmp_path, "d.csv", "label,text\n" + body + "spam,wide" + "," * 20 + "tail\n")
    table = read_table(path)
    assert len(table.frame) == 8001
    assert table.frame.iloc[-1].tolist()[:2] == ["spam", "wide"]


def test_quoted_fields_with_commas_quotes_and_newlines(tmp_path):
    path = write(tmp_path, "d.csv", 'label,text\nham,"hello, world\nsecond line"\nspam,"say ""hi"""\nham,plain\n')
    assert rows(read_table(path)) == [["ham", "hello, world\nsecond line"], ["spam", 'say "hi"'], ["ham", "plain"]]


def test_stray_quotes_in_a_tsv_are_kept_as_text(tmp_path):
    # Like the SMS collection: a message that opens a quote it never closes must not eat lines.
    path = write(tmp_path, "d.tsv", 'ham\t"Hi there\nspam\tWin "big" now\nham\tok "\nham\tbye\n')
    table = read_table(path)
    assert rows(table) == [["ham", '"Hi there'], ["spam", 'Win "big" now'], ["ham", 'ok "'], ["ham", "bye"]]


@pytest.mark.parametrize("sep", [";", "|", "\t"])
def test_other_delimiters_are_sniffed(tmp_path, sep):
    text = f"label{sep}text\nham{sep}hello, you\nspam{sep}buy, now\nham{sep}ok\n"
    assert rows(read_table(write(tmp_path, "d.csv", text))) == [
        ["ham", "hello, you"],
        ["spam", "buy, now"],
        ["ham", "ok"],
    ]


def test_tsv_extension_means_tab(tmp_path):
    table = read_table(write(tmp_path, "d.tsv", "label\ttext\nham\ta, b, c\nspam\td, e\n"))
    assert rows(table) == [["ham", "a, b, c"], ["spam", "d, e"]]


def test_three_or_more_classes(tmp_path):
    lines = [f"{c},text {i} for {c}" for i in range(20) for c in ("pos", "neg", "neutral")]
    table = read_table(write(tmp_path, "d.csv", "sentiment,sentence\n" + "\n".join(lines)))
    splits = make_splits(table, DataConfig(source=table.source, balance=False), seed=123)
    assert splits.label_names == ["neg", "neutral", "pos"]
    assert splits.class_counts == {"neg": 20, "neutral": 20, "pos": 20}
    for split in (splits.train, splits.val, splits.test):
        assert set(split.labels) == {0, 1, 2}


def test_max_rows_reads_a_sample(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\n" + "".join(f"ham,line {i}\n" for i in range(100)))
    preview = read_table(path, max_rows=10)
    assert len(preview.frame) == 10 and preview.truncated_rows
    assert rows(preview)[-1] == ["ham", "line 9"]
    whole = read_table(path, max_rows=100)
    assert len(whole.frame) == 100 and not whole.truncated_rows


def test_progress_is_reported_in_bytes(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\nham,a\nspam,b\n")
    calls = []
    read_table(path, progress=lambda *a: calls.append(a))
    size = path.stat().st_size
    assert calls[0][:2] == (0, size) and calls[-1][:2] == (size, size)
    assert "d.csv" in calls[-1][2]


def test_stop_cancels_reading(tmp_path):
    path = write(tmp_path, "d.csv", "label,text\nham,a\nspam,b\n")
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        read_table(path, stop=stop)


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    with pytest.raises(DataError, match="d.csv is empty"):
        read_table(write(tmp_path, "d.csv", content))


def test_binary_file_named_csv(tmp_path):
    path = write(tmp_path, "d.csv", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)))
    with pytest.raises(DataError, match="d.csv looks like a binary file, not CSV/TSV"):
        read_table(path)


def test_nonexistent_path_and_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_table(tmp_path)


def test_header_only_file_has_no_rows(tmp_path):
    with pytest.raises(DataError, match="no rows of data"):
        read_table(write(tmp_path, "d.csv", "label,text\n,\n"))


def test_read_sms_spam_keeps_text_exactly(tmp_path):
    path = write(tmp_path, "SMSSpamCollection", 'ham\t"Unbalanced quote\nspam\t  spaces kept \t and tabs\n')
    table = data.read_sms_spam(path)
    assert rows(table) == [["ham", '"Unbalanced quote'], ["spam", "  spaces kept \t and tabs"]]
    assert table.source == SMS_SPAM
    assert (table.text_column, table.label_column) == ("text", "label")


def test_read_sms_spam_rejects_a_line_without_tab(tmp_path):
    with pytest.raises(DataError, match="Line 2 .* no TAB"):
        data.read_sms_spam(write(tmp_path, "SMSSpamCollection", "ham\tok\nbroken line\n"))
    with pytest.raises(DataError, match="does not exist"):
        data.read_sms_spam(tmp_path / "nothing")


def test_load_table_reads_a_user_file_and_the_cached_sms_collection(tmp_path, monkeypatch):
    user = write(tmp_path, "d.csv", "label,text\nham,a\nspam,b\n")
    assert data.load_table(DataConfig(source=str(user))).source == str(user)

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))  # a cached file needs no network
    cached = tmp_path / "cache" / "sms_spam_collection" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text("ham\thello\nspam\twin\n")
    table = data.load_table(DataConfig(source=SMS_SPAM))
    assert table.source == SMS_SPAM and len(table.frame) == 2


# --------------------------------------------------------------------------- splits


def test_missing_column_names_the_available_ones():
    table = table_of(["a", "b"], ["x", "y"])
    with pytest.raises(DataError, match=r"'body' is not in mine.csv\. Its columns are: 'label', 'text'"):
        make_splits(table, DataConfig(source="x", text_column="body"), seed=123)


def test_undetectable_column_names_the_available_ones():
    frame = pd.DataFrame({"only": ["a", "b"]}, dtype=str)
    table = Table(frame, "one.csv", "utf-8", "only", None)
    with pytest.raises(DataError, match="holds the label. Its columns are: 'only'"):
        make_splits(table, DataConfig(source="x"), seed=123)


def test_same_column_for_text_and_label_is_refused():
    with pytest.raises(DataError, match="both 'text'"):
        make_splits(table_of(["a", "b"], ["x", "y"]), DataConfig(source="x", label_column="text"), seed=123)


def test_one_class_is_an_error():
    with pytest.raises(DataError, match="only the label 'ham'.*at least two classes"):
        make_splits(table_of(["ham"] * 20, [f"t{i}" for i in range(20)]), DataConfig(source="x"), seed=123)


def test_empty_rows_and_duplicates_are_dropped_and_counted():
    labels = ["ham", "ham", "spam", " ", "ham", "spam", "ham "] + ["ham", "spam"] * 20
    texts = ["a", "a", "a", "b", "  ", "c", "a"] + [f"t{i}" for i in range(40)]
    table = table_of(labels, texts)
    splits = make_splits(table, DataConfig(source="x", balance=False), seed=123)
    assert splits.dropped_empty == 2  # the blank label and the blank text
    assert splits.dropped_duplicates == 2  # ("a", "ham") twice more; "ham " strips to "ham"
    assert splits.class_counts == {"ham": 21, "spam": 22}

    kept = make_splits(table, DataConfig(source="x", balance=False, drop_duplicates=False), seed=123)
    assert kept.dropped_duplicates == 0 and kept.class_counts == {"ham": 23, "spam": 22}


def test_duplicates_are_kept_by_default_for_the_sms_collection():
    table = table_of(["ham", "spam"] * 20, ["same", "other"] * 20, source=SMS_SPAM)
    splits = make_splits(table, DataConfig(), seed=123)
    assert splits.dropped_duplicates == 0 and splits.class_counts == {"ham": 20, "spam": 20}


def test_numeric_labels_sort_numerically():
    table = table_of(["10", "2", "-1"] * 10, [f"t{i}" for i in range(30)])
    splits = make_splits(table, DataConfig(source="x"), seed=123)
    assert splits.label_names == ["-1", "2", "10"]


def test_balance_undersamples_to_the_smallest_class():
    table = table_of(["ham"] * 80 + ["spam"] * 20, [f"t{i}" for i in range(100)])
    splits = make_splits(table, DataConfig(source="x", balance=True), seed=123)
    every = splits.train.labels + splits.val.labels + splits.test.labels
    assert collections.Counter(every) == {0: 20, 1: 20}
    assert splits.class_counts == {"ham": 80, "spam": 20}  # before balancing


def test_split_sizes_follow_the_book_and_are_stratified():
    table = table_of(["a"] * 60 + ["b"] * 40, [f"t{i}" for i in range(100)])
    splits = make_splits(table, DataConfig(source="x", balance=False), seed=123)
    sizes = [len(s.texts) for s in (splits.train, splits.val, splits.test)]
    assert sizes == [70, 10, 20]
    assert [collections.Counter(s.labels) for s in (splits.train, splits.val, splits.test)] == [
        {0: 42, 1: 28},
        {0: 6, 1: 4},
        {0: 12, 1: 8},
    ]
    texts = splits.train.texts + splits.val.texts + splits.test.texts
    assert sorted(texts) == sorted(f"t{i}" for i in range(100))
    for split in (splits.train, splits.val, splits.test):  # each text keeps its own label
        assert all((int(t[1:]) >= 60) == bool(label) for t, label in zip(split.texts, split.labels))


def test_splits_are_deterministic_for_a_seed():
    table = table_of(["a", "b"] * 50, [f"t{i}" for i in range(100)])
    first = make_splits(table, DataConfig(source="x"), seed=7)
    again = make_splits(table, DataConfig(source="x"), seed=7)
    other = make_splits(table, DataConfig(source="x"), seed=8)
    assert first == again
    assert first.train.texts != other.train.texts


def test_a_dataset_too_small_to_split_is_explained():
    with pytest.raises(DataError, match="too small to split: 4 usable rows"):
        make_splits(table_of(["a", "b", "a", "b"], ["1", "2", "3", "4"]), DataConfig(source="x"), seed=123)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=10, max_value=60), min_size=2, max_size=5),
    train=st.floats(min_value=0.3, max_value=0.8),
    val=st.floats(min_value=0.05, max_value=0.15),
    balance=st.booleans(),
)
def test_split_totals_and_class_shares_hold_for_any_dataset(counts, train, val, balance):
    labels = [f"c{k}" for k, n in enumerate(counts) for _ in range(n)]
    table = table_of(labels, [f"t{i}" for i in range(len(labels))])
    cfg = DataConfig(source="x", train_fraction=train, val_fraction=val, balance=balance)
    splits = make_splits(table, cfg, seed=123)
    n = min(counts) * len(counts) if balance else sum(counts)
    sizes = [len(s.labels) for s in (splits.train, splits.val, splits.test)]
    assert sizes == [int(n * train), int(n * val), n - int(n * train) - int(n * val)]
    per_class = [min(counts)] * len(counts) if balance else counts
    for split, size in zip((splits.train, splits.val, splits.test), sizes):
        got = collections.Counter(split.labels)
        for class_id, class_size in enumerate(per_class):
            assert abs(got[class_id] - size * class_size / n) < 2  # proportional up to rounding


# --------------------------------------------------------------------------- tokens and batches


class CharTokenizer:
    """Stands in for tiktoken: one id per character."""

    eot_token = 0

    def encode_ordinary(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_encode_texts_keeps_the_first_tokens_and_counts_truncations():
    ids, truncated = encode_texts(["abcdef", "ab", ""], CharTokenizer(), max_length=4)
    assert ids == [[97, 98, 99, 100], [97, 98], [0]]
    assert truncated == 1


def test_encode_texts_with_gpt2_treats_special_text_as_plain():
    if not TIKTOKEN_FILE.exists():
        pytest.skip(f"GPT-2 ranks not present at {TIKTOKEN_FILE} (shared/data is optional)")
    import tiktoken
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str

    enc = tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(TIKTOKEN_FILE)),
        special_tokens={"<|endoftext|>": 50256},
    )
    ids, truncated = encode_texts(["Hello, world", "<|endoftext|>", ""], enc, max_length=2)
    assert ids[0] == [15496, 11] and 50256 not in ids[1] and ids[2] == [50256]
    assert truncated == 2


def test_batches_pad_to_their_own_longest_row():
    token_ids = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10, 11]]
    batches = list(iterate_batches(token_ids, [0, 1, 0, 1], 2, pad_id=99))
    assert [tuple(b.input_ids.shape) for b in batches] == [(2, 3), (2, 5)]
    assert batches[0].input_ids.tolist() == [[1, 2, 3], [4, 99, 99]]
    assert batches[0].lengths.tolist() == [3, 1] and batches[1].labels.tolist() == [0, 1]
    assert all(b.input_ids.dtype == b.lengths.dtype == b.labels.dtype == torch.int64 for b in batches)


def test_pad_batch_builds_one_batch():
    batch = data.pad_batch([[5], [6, 7]], [1, 0], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 0], [6, 7]] and batch.lengths.tolist() == [1, 2]
    assert batch.labels.tolist() == [1, 0]


def test_drop_last_and_count_batches_agree():
    token_ids = [[i] for i in range(10)]
    for drop_last in (False, True):
        batches = list(iterate_batches(token_ids, [0] * 10, 4, pad_id=0, drop_last=drop_last))
        assert len(batches) == data.count_batches(10, 4, drop_last)
    assert data.count_batches(10, 4) == 3 and data.count_batches(10, 4, drop_last=True) == 2


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=80),
    batch_size=st.integers(min_value=1, max_value=9),
    sort_chunk=st.integers(min_value=0, max_value=4),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_every_example_appears_once_per_epoch(lengths, batch_size, sort_chunk, seed):
    token_ids = [[i] * n for i, n in enumerate(lengths)]  # each row's tokens name the row
    generator = torch.Generator().manual_seed(seed)
    batches = list(
        iterate_batches(
            token_ids,
            list(range(len(lengths))),
            batch_size,
            pad_id=-1,
            shuffle=True,
            generator=generator,
            sort_chunk=sort_chunk,
        )
    )
    seen = [label for b in batches for label in b.labels.tolist()]
    assert sorted(seen) == list(range(len(lengths)))
    for b in batches:
        for row, length, label in zip(b.input_ids.tolist(), b.lengths.tolist(), b.labels.tolist()):
            assert length == lengths[label] and row[:length] == [label] * length
            assert all(t == -1 for t in row[length:])


def test_sort_chunk_cuts_padding_and_keeps_a_seeded_random_order():
    lengths = [int(x) for x in torch.randint(1, 120, (512,), generator=torch.Generator().manual_seed(0))]
    token_ids = [[1] * n for n in lengths]

    def padding(sort_chunk: int, seed: int = 0) -> tuple[int, list[int]]:
        generator = torch.Generator().manual_seed(seed)
        batches = list(
            iterate_batches(
                token_ids, list(range(512)), 8, pad_id=0, shuffle=True, generator=generator, sort_chunk=sort_chunk
            )
        )
        pads = sum(b.input_ids.numel() - int(b.lengths.sum()) for b in batches)
        return pads, [label for b in batches for label in b.labels.tolist()]

    plain, _ = padding(0)
    sorted_pads, order = padding(50)
    assert sorted_pads < plain / 5
    assert padding(50) == (sorted_pads, order)  # same seed, same epoch
    assert padding(50, seed=1)[1] != order


def test_unshuffled_batches_keep_the_input_order():
    batches = list(iterate_batches([[1]] * 5, [0, 1, 2, 3, 4], 2, pad_id=0))
    assert [b.labels.tolist() for b in batches] == [[0, 1], [2, 3], [4]]


# --------------------------------------------------------------------------- the real SMS file


@pytest.fixture(scope="module")
def sms_file() -> Path:
    if not SMS_FILE.exists():
        pytest.skip(f"real SMS Spam Collection not present at {SMS_FILE} (shared/data is optional)")
    return SMS_FILE


def test_real_sms_file_has_every_message(sms_file):
    table = data.read_sms_spam(sms_file)
    assert len(table.frame) == 5574
    assert table.frame["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}


def test_real_sms_balanced_split_is_the_books_1045_149_300(sms_file):
    splits = make_splits(data.read_sms_spam(sms_file), DataConfig(), seed=123)
    assert splits.label_names == ["ham", "spam"]
    assert splits.class_counts == {"ham": 4827, "spam": 747}
    assert (splits.dropped_empty, splits.dropped_duplicates) == (0, 0)
    assert [len(s.texts) for s in (splits.train, splits.val, splits.test)] == [1045, 149, 300]
    for split in (splits.train, splits.val, splits.test):
        assert set(split.labels) == {0, 1}


def test_real_sms_file_read_as_a_plain_tsv_loses_no_line(sms_file):
    # Its stray quotes make a default CSV reader merge two lines (5,572 rows); ours must not.
    table = read_table(sms_file)
    assert rows(table) == rows(data.read_sms_spam(sms_file))
    assert (table.text_column, table.label_column) == ("column 2", "column 1")


def test_load_table_reads_only_a_sample_when_asked(tmp_path):
    from workbench.core.config import DataConfig
    from workbench.core.data import load_table

    path = tmp_path / "big.csv"
    path.write_text("text,label\n" + "".join(f"message {i},{'ab'[i % 2]}\n" for i in range(500)), encoding="utf-8")
    table = load_table(DataConfig(source=str(path), max_rows=120))
    assert len(table.frame) == 120 and table.truncated_rows
    assert len(load_table(DataConfig(source=str(path))).frame) == 500
    assert DataConfig(source=str(path), max_rows=0).validate()


def test_a_column_of_mostly_unique_values_looks_like_text_not_labels():
    from workbench.core.data import looks_like_text_column

    assert not looks_like_text_column({"ham": 4827, "spam": 747})
    assert not looks_like_text_column({str(i): 30 for i in range(20)})  # many classes, each repeated
    assert not looks_like_text_column({"a": 1, "b": 1, "c": 1})  # too few values to tell
    assert not looks_like_text_column({})
    texts = {f"message {i}": 1 for i in range(5000)} | {"Sorry, I'll call later": 30}
    assert looks_like_text_column(texts)  # the SMS text column chosen as the label
    assert looks_like_text_column({f"row {i}": 1 for i in range(24)} | {"x": 2})
