"""Reading CSV/TSV files: encoding, delimiter, quoting and header are detected, columns guessed.

Numbers in the text column are accepted as text: GPT-2 reads digits like any other characters,
and codes, prices or ratings are legitimate inputs. A file that is not text at all (binary, or an
encoding we cannot tell) is refused with a message instead of being read as garbage.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, WorkbenchError
from ..fileio import open_regular_file, write_atomically
from ..progress import Progress, raise_if_stopped

_SAMPLE_BYTES = 256 * 1024  # enough lines to sniff the delimiter, quoting and header
_CHUNK_ROWS = 50_000  # rows per pandas chunk: progress and cancellation granularity
_EXTRA_FIELDS = 8  # slack for rows with more separators than the sample showed
_DELIMITERS = ("\t", ",", ";", "|")
_WANTED = "Choose a CSV or TSV file with a text column and a label column."
_DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
# Column names that say what a column holds; statistics decide only when no name matches.
_TEXT_NAMES = (
    "text",
    "message",
    "messages",
    "sms",
    "sentence",
    "review",
    "content",
    "body",
    "tweet",
    "comment",
    "document",
    "v2",
)
_LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y", "v1")
# Label cells that mean "no label": what pandas, R, SQL and Excel write for a missing value.
_MISSING_LABELS = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "<NA>", "#N/A"})
_CONTROL_SHARE = 0.02  # more control characters than this in the sample: not text we can read
# Unicode's control characters (category Cc) except tab, LF, VT (Excel's line break inside a
# cell), FF, CR and SUB (the DOS end-of-file mark).
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x19\x1b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames with == is element-wise
class Table:
    """A dataset file as read, before any column is chosen."""

    frame: pd.DataFrame  # every column as str; missing cells ""
    source: str  # the file's path, or SMS_SPAM for the built-in collection
    encoding: str  # "utf-8", "utf-8-sig", "utf-16" (-le/-be without a BOM), "utf-32", "cp1252", "latin-1"
    text_column: str | None  # detected guess: the column with the longest average text
    label_column: str | None  # detected guess: few distinct values, not the text column
    truncated_rows: bool = False  # True when only the first max_rows rows were read


# --------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class _Dialect:
    delimiter: str
    quoting: int  # csv.QUOTE_MINIMAL, or csv.QUOTE_NONE for files with stray quotes (see _quoting)
    header: bool
    width: int  # fields per row seen in the sample


def read_table(
    path: str | Path,
    *,
    max_rows: int | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Table:
    """Read a CSV or TSV file of any common flavour into a table of strings.

    The delimiter, quoting, header row and encoding are guessed from the first 256 KB, because
    files come from Excel, pandas and hand-written scripts alike. ``max_rows`` reads only the
    start (for a preview); progress is reported in bytes.
    """
    path = Path(path)
    encoding, dialect = _sniffed(path)
    read, encoding = _read_any_encoding(path, encoding, dialect, max_rows, progress, stop)
    frame = _tidy(read, max_rows)
    raise_if_stopped(stop, f"Reading {path.name}")  # joining a million rows' chunks takes a moment
    if frame.empty:
        raise DataError(f"{path.name} has no rows of data. {_WANTED}")
    text_column, label_column = _detect_columns(frame)
    truncated = max_rows is not None and read.rows > max_rows
    return Table(frame, str(path), encoding, text_column, label_column, truncated)


def _sniffed(path: Path) -> tuple[str, _Dialect]:
    """The encoding guess and the dialect, from the first 256 KB; refuses empty and non-text files."""
    head, complete = _read_head(path)
    encoding = _guess_encoding(head)
    sample = _decode_sample(head, encoding, complete)
    if not sample.strip():
        raise _empty_file(path)
    _refuse_non_text(sample, path)
    return encoding, _sniff_dialect(sample, path, complete)


def _read_head(path: Path) -> tuple[bytes, bool]:
    """The first bytes of the file, and whether they are the whole file; rejects unusable paths."""
    if not path.exists():
        raise DataError(f"Dataset file {path} does not exist. Check the path, or choose another file.")
    if path.is_dir():
        raise DataError(f"{path} is a folder. Choose a CSV or TSV file inside it.")
    try:
        with open_regular_file(path, "Dataset file", DataError) as f:
            head = f.read(_SAMPLE_BYTES + 1)
    except OSError as error:
        raise DataError(f"Cannot read {path}: {error.strerror or error}.") from error
    if not head:
        raise _empty_file(path)
    wide = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _bomless_utf16(head) is not None
    if b"\x00" in head[:1024] and not wide:  # UTF-16/32 text has NUL bytes; other text never does
        raise DataError(
            f"{path.name} looks like a binary file, not CSV/TSV text. If it is a spreadsheet, "
            "export it as CSV (comma- or tab-separated text) first; if it is text, save it as UTF-8."
        )
    return head[:_SAMPLE_BYTES], len(head) <= _SAMPLE_BYTES


def _empty_file(path: Path) -> DataError:
    return DataError(f"{path.name} is empty. {_WANTED}")


def _refuse_non_text(sample: str, path: Path) -> None:
    """Random bytes, or text in an encoding we cannot tell (Shift-JIS, UTF-32, ...), decode as
    Latin-1 into a soup of control characters; real CSV files have almost none besides tab and
    newline. Refusing here beats a split error that quotes garbage "labels"."""
    controls = len(_CONTROL_CHARS.findall(sample))
    if controls > max(2, _CONTROL_SHARE * len(sample)):
        raise DataError(
            f"{path.name} does not look like text: {controls} of its first {len(sample):,} characters "
            "are control codes, so it is not a CSV/TSV file or its encoding is not one we can read "
            "(UTF-8, UTF-16, UTF-32, Windows-1252, Latin-1). Save it as UTF-8 CSV and try again."
        )


def _bomless_utf16(head: bytes) -> str | None:
    """ "utf-16-le"/"utf-16-be" for UTF-16 text written without a byte-order mark, else None.

    Text in the Latin range has a zero in every other byte, always on the same side; binary
    files have zeros anywhere. The check must come before UTF-8's, because such bytes are valid
    UTF-8 (full of NUL characters)."""
    sample = head[: 4096 & ~1]
    half = len(sample) // 2
    if half < 2:
        return None
    even_zeros, odd_zeros = sample[0::2].count(0), sample[1::2].count(0)
    for encoding, zeros, other in (("utf-16-le", odd_zeros, even_zeros), ("utf-16-be", even_zeros, odd_zeros)):
        if zeros >= 0.5 * half and other == 0:
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
            except UnicodeDecodeError:
                continue
            if "\n" in text or len(sample) == len(head):  # a line break, or the whole (short) file
                return encoding
    return None


def _guess_encoding(head: bytes) -> str:
    """UTF-8 when the bytes decode as such, else the Windows code page Excel writes, else Latin-1."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # Excel's "Unicode text" export
    bomless = _bomless_utf16(head)
    if bomless:
        return bomless  # "Unicode text" saved by tools that skip the BOM
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # tolerates a cut character
        return "utf-8"
    except UnicodeDecodeError:
        return _single_byte_encoding(head)


def _single_byte_encoding(data: bytes) -> str:
    """cp1252 only matters for bytes 0x80-0x9F (curly quotes, €); elsewhere it equals Latin-1."""
    if any(0x80 <= b <= 0x9F for b in data):
        try:
            data.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            pass
    return "latin-1"


def _read_any_encoding(
    path: Path,
    guess: str,
    dialect: _Dialect,
    max_rows: int | None,
    progress: Progress | None,
    stop: threading.Event | None,
    keep_rows: bool = True,
) -> tuple[_Read, str]:
    """Read with the guessed encoding; a non-UTF-8 byte after the sample means reading again.
    Returns what was read and the encoding that worked."""
    if guess.startswith(("utf-16", "utf-32")):  # no single-byte fallback: it would read NULs
        try:
            return _read_frame(path, guess, dialect, max_rows, progress, stop, keep_rows), guess
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path.name} is {guess[:6].upper()} text with a damaged character. "
                "Save it again as UTF-8 CSV and try again."
            ) from error
    for encoding in dict.fromkeys([guess, "cp1252"]):
        try:
            return _read_frame(path, encoding, dialect, max_rows, progress, stop, keep_rows), encoding
        except UnicodeDecodeError:
            continue
    return _read_frame(path, "latin-1", dialect, max_rows, progress, stop, keep_rows), "latin-1"  # any byte


def _decode_sample(head: bytes, encoding: str, complete: bool) -> str:
    """The sample as text, cut after its last full line when the file goes on."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=complete)
    if not complete and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text


def _sniff_dialect(sample: str, path: Path, complete: bool) -> _Dialect:
    """Delimiter, quoting and header, judged on parsed rows rather than csv.Sniffer alone.

    csv.Sniffer often picks a letter or a space as the delimiter on free text, so each candidate
    is scored by how consistently it splits rows into the same number (> 1) of fields.
    """
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        candidates: tuple[str, ...] = ("\t",)
    elif suffix == ".csv":
        candidates = (",", ";", "\t", "|")
    else:
        candidates = _DELIMITERS
    delimiter = max(candidates, key=lambda d: _delimiter_score(sample, d, complete))
    quoting = _quoting(sample, delimiter, complete)
    rows = _sample_rows(sample, delimiter, quoting, complete)
    width = max((len(r) for r in rows), default=1)
    return _Dialect(delimiter, quoting, _looks_like_header(rows, sample), width)


def _sample_rows(sample: str, delimiter: str, quoting: int, complete: bool) -> list[list[str]]:
    """Non-blank rows of the sample; the last one is dropped when the file goes on (it may be cut)."""
    reader = csv.reader(io.StringIO(sample, newline=None), delimiter=delimiter, quoting=quoting)
    try:
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error:  # e.g. a field over csv's size limit: this reading is implausible
        return []
    return rows if complete or len(rows) < 2 else rows[:-1]


def _delimiter_score(sample: str, delimiter: str, complete: bool) -> tuple[float, int]:
    """(share of rows with the most common field count, that count); one field scores zero."""
    rows = _sample_rows(sample, delimiter, csv.QUOTE_MINIMAL, complete)
    widths = Counter(len(_trim_trailing_empty(row)) for row in rows)
    if not widths:
        return (0.0, 0)
    width, hits = widths.most_common(1)[0]
    return (hits / len(rows), width) if width > 1 else (0.0, 1)


def _trim_trailing_empty(row: list[str]) -> list[str]:
    end = len(row)
    while end and not row[end - 1].strip():
        end -= 1
    return row[:end]


def _quoting(sample: str, delimiter: str, complete: bool) -> int:
    """QUOTE_NONE for files that use '"' as a plain character, like the SMS Spam Collection.

    There a message that starts with an unbalanced quote makes a CSV reader swallow the following
    lines (5,572 messages instead of 5,574). The tell: every physical line splits into the same
    number of fields (so no field spans lines or hides a separator in quotes), and yet some field
    is not a well-formed quoted field, or honouring quotes changes the number of rows.
    """
    lines = [line.rstrip("\n") for line in io.StringIO(sample, newline=None) if line.strip()]
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    fields = [line.split(delimiter) for line in lines]
    widths = {len(row) for row in fields}
    if len(widths) != 1 or widths.pop() < 2:
        return csv.QUOTE_MINIMAL
    if any(_badly_quoted(cell) for row in fields for cell in row):
        return csv.QUOTE_NONE
    quoted_rows = _sample_rows(sample, delimiter, csv.QUOTE_MINIMAL, complete)
    return csv.QUOTE_NONE if len(quoted_rows) != len(lines) else csv.QUOTE_MINIMAL


def _badly_quoted(cell: str) -> bool:
    """A field that opens a quote but is not ``"..."`` with inner quotes doubled."""
    if not cell.startswith('"'):
        return False
    return len(cell) < 2 or not cell.endswith('"') or '"' in cell[1:-1].replace('""', "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_header(rows: list[list[str]], sample: str) -> bool:
    """Whether the first row names the columns.

    A header's cells are short, non-numeric, unique, and never occur as values of their own column.
    Beyond that we need evidence: a usual column name ("text", "label", ...), a word above a numeric
    column, a word above a repeating (label-like) column that it is not one of, or csv.Sniffer's
    type/length test.
    """
    if not rows:
        return False
    first = [cell.strip() for cell in rows[0]]
    named = [(j, name) for j, name in enumerate(first) if name]
    if not named or len({name for _, name in named}) < len(named):
        return False
    if any(_is_number(name) or len(name) > 64 for _, name in named):
        return False
    usual_name = any(name.casefold() in _TEXT_NAMES + _LABEL_NAMES for _, name in named)
    if len(rows) == 1:
        return usual_name
    evidence = usual_name
    for j, name in named:
        values = [row[j].strip() for row in rows[1:] if j < len(row) and row[j].strip()]
        if name in values:
            return False
        if values and all(_is_number(v) for v in values):
            evidence = True
        elif len(set(values)) < len(values):
            evidence = True
    return evidence or _sniffer_has_header(sample)


def _sniffer_has_header(sample: str) -> bool:
    try:
        return csv.Sniffer().has_header(sample[:20_000])
    except csv.Error:
        return False


def _read_frame(
    path: Path,
    encoding: str,
    dialect: _Dialect,
    max_rows: int | None,
    progress: Progress | None,
    stop: threading.Event | None,
    keep_rows: bool = True,
) -> _Read:
    """The whole file in chunks, with as many columns as its widest row (``keep_rows`` False:
    only the header, the counts and which columns hold anything)."""
    width = dialect.width + _EXTRA_FIELDS
    while True:
        try:
            return _read_chunks(path, encoding, dialect, width, max_rows, progress, stop, keep_rows)
        except pd.errors.ParserError as error:
            # A row with more fields than we allowed for: widen and read again; anything else is fatal.
            found = re.search(r"Expected \d+ fields in line \d+, saw (\d+)", str(error))
            if found is None or int(found[1]) < width:
                raise _parser_error(path, dialect, error) from error
            width = int(found[1]) + _EXTRA_FIELDS


def _parser_error(path: Path, dialect: _Dialect, error: Exception) -> DataError:
    how = _DELIMITER_NAMES[dialect.delimiter]
    unclosed = re.search(r"EOF inside string starting at row (\d+)", str(error))
    if unclosed:
        return DataError(
            f'{path.name} has a quote (") that opens a field in row {int(unclosed[1]) + 1} and is never '
            f"closed, so the rest of the file would be one field. Close or remove that quote, or save "
            f"the file again from a spreadsheet as {how}-separated text."
        )
    detail = " ".join(str(error).split())  # pandas' messages may span lines; the CLI shows one
    return DataError(f"{path.name} could not be read as {how}-separated text: {detail}")


@dataclass
class _Read:
    """What the chunked reader gathered: non-blank rows, the header row, and counts."""

    chunks: list[pd.DataFrame]  # rows with at least one non-blank cell, columns 0..width-1
    header: list[str] | None
    rows: int  # data rows read (blank ones included), to tell whether max_rows cut the file
    filled: dict[int, bool]  # per column: whether any cell holds more than whitespace
    kept_rows: int = 0  # rows with at least one non-blank cell (those in chunks, when kept)


def _read_chunks(
    path: Path,
    encoding: str,
    dialect: _Dialect,
    width: int,
    max_rows: int | None,
    progress: Progress | None,
    stop: threading.Event | None,
    keep_rows: bool = True,
) -> _Read:
    """pandas' C parser in chunks, so big files report progress (bytes) and can be cancelled.

    Blank rows are dropped chunk by chunk, so the work left after the last byte is small (a 1 GB
    file would otherwise sit at 100 % for half a minute, deaf to Stop).
    """
    # One row more than asked shows whether the file goes on; the header takes one more.
    nrows = None if max_rows is None else max_rows + 1 + int(dialect.header)
    read = _Read(chunks=[], header=None, rows=0, filled=dict.fromkeys(range(width), False))
    for header, rows, chunk, filled in _parsed_chunks(path, encoding, dialect, width, nrows, progress, stop):
        read.header = header
        read.rows += rows
        read.kept_rows += len(chunk)
        for col, any_filled in filled.items():
            read.filled[col] = read.filled[col] or any_filled
        if keep_rows:
            read.chunks.append(chunk)
    return read


def _parsed_chunks(
    path: Path,
    encoding: str,
    dialect: _Dialect,
    width: int,
    nrows: int | None,
    progress: Progress | None,
    stop: threading.Event | None,
    chunk_rows: int | None = None,
) -> Iterator[tuple[list[str] | None, int, pd.DataFrame, dict[int, bool]]]:
    """(header, data rows parsed, the chunk's non-blank rows, per column whether any cell of the
    chunk holds more than whitespace), chunk by chunk, checking ``stop`` after each.

    Columns are numbered 0..width-1 up front: rows with missing trailing fields then read as "",
    and rows with extra separators don't abort the read.
    """
    size = path.stat().st_size
    message = f"Reading {path.name}"
    header: list[str] | None = None
    with open_regular_file(path, "Dataset file", DataError) as fh:
        if progress is not None:
            progress(0, size, message)
        reader = pd.read_csv(
            fh,
            sep=dialect.delimiter,
            quoting=dialect.quoting,
            header=None,
            names=list(range(width)),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding=encoding,
            chunksize=chunk_rows or _CHUNK_ROWS,
            nrows=nrows,
            engine="c",
        )
        with reader:
            header_pending = dialect.header
            for chunk in reader:
                if header_pending and len(chunk):
                    header = [str(cell).strip() for cell in chunk.iloc[0]]
                    chunk = chunk.iloc[1:]
                    header_pending = False
                row_filled = np.zeros(len(chunk), dtype=bool)
                filled: dict[int, bool] = {}
                for col in chunk.columns:
                    cells = _filled_cells(chunk[col])
                    if cells is not None:
                        filled[col] = bool(cells.any())
                        row_filled |= cells
                yield header, len(chunk), chunk[row_filled], filled
                raise_if_stopped(stop, message)
                if progress is not None:
                    progress(min(fh.tell(), size), size, message)
    if progress is not None:
        progress(size, size, message)


def _filled_cells(column: pd.Series) -> np.ndarray | None:
    """Which cells hold more than whitespace; None when every cell is "" (the padding columns,
    told apart by one fast pass). str.strip mapped in C beats pandas' .str methods here."""
    values = column.to_numpy(dtype=object, na_value="")
    if not any(values):
        return None
    return np.fromiter(map(bool, map(str.strip, values)), dtype=bool, count=len(values))


def _tidy(read: _Read, max_rows: int | None) -> pd.DataFrame:
    """Join the chunks, drop blank columns (trailing separators) and name the columns."""
    width = len(read.filled)
    raw = pd.concat(read.chunks, ignore_index=True) if read.chunks else pd.DataFrame(columns=list(range(width)))
    filled = read.filled
    if max_rows is not None:  # the extra row read to detect truncation must not keep a column
        raw = raw.iloc[:max_rows]
        filled = {col: (cells := _filled_cells(raw[col])) is not None and bool(cells.any()) for col in raw.columns}
    names = read.header or []
    keep = [col for i, col in enumerate(raw.columns) if filled[col] or (i < len(names) and names[i])]
    frame = raw[keep].fillna("").reset_index(drop=True)  # every row has a filled cell, in a kept column
    frame.columns = _column_names(keep, names)
    return frame


def _column_names(positions: Sequence[Any], header: list[str]) -> list[str]:
    """Header names made unique, or "column N" (N = position in the file) where there is none."""
    result: list[str] = []
    for pos in positions:
        name = header[pos] if pos < len(header) and header[pos] else f"column {pos + 1}"
        unique, n = name, 2
        while unique in result:
            unique, n = f"{name} {n}", n + 1
        result.append(unique)
    return result


def _detect_columns(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    """Best guesses for the text and label columns, so the common two-column file needs no choice."""
    columns = [str(c) for c in frame.columns]
    if not columns:
        return None, None
    text = _by_name(columns, _TEXT_NAMES)
    if text is None:
        text = max(columns, key=lambda c: frame[c].str.len().mean())
    others = [c for c in columns if c != text]
    label = _by_name(others, _LABEL_NAMES)
    if label is None and others:
        distinct = {c: frame[c].str.strip().nunique() for c in others}
        label = min(others, key=lambda c: (distinct[c] < 2, distinct[c]))  # fewest values, but not one
    return text, label


def _by_name(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.strip().casefold(): c for c in reversed(columns)}  # the leftmost match wins
    return next((lowered[n] for n in names if n in lowered), None)


def save_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as UTF-8 CSV (TSV for a .tsv/.tab name) atomically, temp file + rename like
    adapters, so a full disk or a read-only folder gives a DataError and leaves any file already
    at ``path`` as it was."""
    path = Path(path)
    try:
        write_atomically(path, table_bytes(frame, path))
    except WorkbenchError as error:
        raise DataError(str(error)) from error
    return path


def table_bytes(frame: pd.DataFrame, path: Path, header: bool = True) -> bytes:
    """Rows as the workbench writes tables: UTF-8, comma-separated (tab for a .tsv/.tab name),
    quoted where needed, "\n" line ends. Without ``header``, rows to append to a file so written."""
    sep = "\t" if Path(path).suffix.lower() in (".tsv", ".tab") else ","
    text = frame.to_csv(index=False, header=header, sep=sep, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return text.encode("utf-8")


@dataclass(frozen=True)
class TableStream:
    """A CSV/TSV file read chunk by chunk, with the columns ``read_table`` would give it, for
    files too large to hold at once (classifying a million rows). ``stream_table`` made it with
    a first pass that keeps no rows: the encoding that works, the widest row, the header, and
    which columns hold anything."""

    path: Path
    encoding: str
    dialect: _Dialect
    width: int  # fields per row, the widest row's
    positions: tuple[int, ...]  # the file's columns that are kept, in order
    columns: tuple[str, ...]  # their names, as read_table names them
    rows: int  # rows with at least one non-blank cell
    text_column: str | None  # read_table's guess, made on the first chunk

    def chunks(self, *, chunk_rows: int | None = None, stop: threading.Event | None = None) -> Iterator[pd.DataFrame]:
        """The non-blank rows, ``chunk_rows`` at a time (about: blank rows are left out)."""
        for _, _, chunk, _ in _parsed_chunks(
            self.path, self.encoding, self.dialect, self.width, None, None, stop, chunk_rows
        ):
            frame = chunk[list(self.positions)].fillna("").reset_index(drop=True)
            frame.columns = list(self.columns)
            yield frame


def stream_table(
    path: str | Path, *, progress: Progress | None = None, stop: threading.Event | None = None
) -> TableStream:
    """Open ``path`` for reading in chunks (see TableStream); the first pass reports progress in
    bytes and honours ``stop`` like ``read_table``."""
    path = Path(path)
    guess, dialect = _sniffed(path)
    scan, encoding = _read_any_encoding(path, guess, dialect, None, progress, stop, keep_rows=False)
    if not scan.kept_rows:
        raise DataError(f"{path.name} has no rows of data. {_WANTED}")
    names = scan.header or []
    positions = tuple(col for col in range(len(scan.filled)) if scan.filled[col] or (col < len(names) and names[col]))
    columns = tuple(_column_names(positions, names))
    stream = TableStream(path, encoding, dialect, len(scan.filled), positions, columns, scan.kept_rows, None)
    first = next(stream.chunks(stop=stop), None)
    text_column = _detect_columns(first)[0] if first is not None else None
    return replace(stream, text_column=text_column)
