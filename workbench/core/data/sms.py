"""The SMS Spam Collection (UCI dataset 228): downloaded once, read line by line.

The zip is fetched with plain ``urllib`` into a ``.part`` file that the next call resumes with an
HTTP Range request, because the UCI server is slow and connections drop; the book's mirror is the
fallback.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import SMS_SPAM, DataConfig
from ..errors import DataError, DownloadError
from ..fileio import open_regular_file
from ..paths import cache_dir
from ..progress import Progress, raise_if_stopped
from .tables import Table, read_table

_CHUNK = 64 * 1024
_USER_AGENT = "lora-workbench (python-urllib)"
SMS_SPAM_URLS = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)
SMS_SPAM_FOLDER = "sms_spam_collection"  # under paths.cache_dir()
SMS_SPAM_FILE = "SMSSpamCollection"
_SMS_EXTRA_FILES = ("readme",)  # the authors' licence notice travels with the data


def sms_spam_path(cache: str | Path | None = None) -> Path:
    """Where the extracted collection lives (or will, once downloaded): the one place that says so."""
    folder = Path(cache) if cache is not None else cache_dir() / SMS_SPAM_FOLDER
    return folder / SMS_SPAM_FILE


class _FetchFailed(Exception):
    """One URL did not work; the reason goes into the DownloadError that lists every URL tried."""


def download_sms_spam(
    *,
    urls: Sequence[str] = SMS_SPAM_URLS,
    cache: str | Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    timeout: float = 30.0,
) -> Path:
    """The extracted ``SMSSpamCollection`` file, downloading the UCI zip on first use.

    ``cache`` is the folder that receives the files (default ``cache_dir()/sms_spam_collection``).
    A file already there is returned without touching the network. Each URL is tried in turn; a
    dropped connection leaves a ``.part`` file that the next call resumes.
    """
    target = sms_spam_path(cache)
    folder = target.parent
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        raise_if_stopped(stop, "Downloading the SMS Spam Collection")
        # One partial file per URL, so a resume never splices bytes from two different servers.
        part = folder / f"sms_spam_collection.{_short_hash(url)}.zip.part"
        try:
            _fetch(url, part, timeout=timeout, progress=progress, stop=stop)
            _extract_sms(part, folder)
        except _FetchFailed as failure:
            failures.append(f"{url} ({failure})")
            continue
        part.unlink(missing_ok=True)
        return target
    raise DownloadError(_sms_failure_message(failures, target))


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _fetch(
    url: str,
    part: Path,
    *,
    timeout: float,
    progress: Progress | None,
    stop: threading.Event | None,
) -> None:
    """Download ``url`` into ``part``, continuing from the bytes a previous attempt left there."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and have:  # our partial file no longer matches the server's: start over
            part.unlink()
            return _fetch(url, part, timeout=timeout, progress=progress, stop=stop)
        raise _FetchFailed(f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise _FetchFailed(_network_reason(error)) from error

    with response:
        resume = _resume_point(response, have)
        if resume is None:  # a range we did not ask for: drop the partial file and start over
            if not have:
                raise _FetchFailed("the server sent part of the file without being asked to")
            response.close()
            part.unlink()
            return _fetch(url, part, timeout=timeout, progress=progress, stop=stop)
        start, total = resume
        message = f"Downloading the SMS Spam Collection from {urllib.parse.urlsplit(url).hostname}"
        done = start
        with part.open("ab" if start else "wb") as out:
            if progress is not None:
                progress(done, total, message)
            while True:
                raise_if_stopped(stop, "Downloading the SMS Spam Collection")
                try:
                    chunk = response.read(_CHUNK)
                except (http.client.HTTPException, OSError) as error:
                    raise _FetchFailed(_dropped(done, total)) from error
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total, message)
    if total is not None and done < total:
        raise _FetchFailed(_dropped(done, total))


def _resume_point(response: Any, have: int) -> tuple[int, int | None] | None:
    """Where the body starts in the file and the file's full size, from the response headers.

    A 206 continues our partial file; a 200 means the server ignored the Range header (or there
    was none), so the body is the whole file from byte 0. None: a 206 for some other range.
    """
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # "bytes 100-999/1000"
        try:
            first, _, size = content_range.removeprefix("bytes ").replace("-", "/", 1).split("/")
            if int(first) == have:
                return have, None if size == "*" else int(size)
        except ValueError:
            pass
        return None
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _dropped(done: int, total: int | None) -> str:
    of_total = f" of {total:,}" if total is not None else ""
    return f"the connection dropped after {done:,}{of_total} bytes; run again to resume"


def _network_reason(error: BaseException) -> str:
    """A one-line reason a person can act on (urllib wraps the useful part in ``reason``)."""
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, TimeoutError):
        return "the server did not answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(reason) or reason.__class__.__name__


def _extract_sms(archive: Path, folder: Path) -> None:
    """Take the message file (and its readme) out of the zip, the message file last and atomically.

    Only members with the expected base names are written, so a hostile archive cannot place
    files outside ``folder``; the message file's presence therefore means a complete extraction.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(name).name: name for name in zf.namelist() if not name.endswith("/")}
            if SMS_SPAM_FILE not in members:
                archive.unlink()
                raise _FetchFailed(f"the archive has no {SMS_SPAM_FILE} file")
            for name in (*_SMS_EXTRA_FILES, SMS_SPAM_FILE):
                if name in members:
                    tmp = folder / f"{name}.tmp"
                    tmp.write_bytes(zf.read(members[name]))
                    os.replace(tmp, folder / name)
    except (zipfile.BadZipFile, EOFError) as error:
        archive.unlink(missing_ok=True)
        raise _FetchFailed("the downloaded file is not a valid zip archive (deleted; run again)") from error


def _sms_failure_message(failures: list[str], target: Path) -> str:
    tried = "\n".join(f"  - {line}" for line in failures) or "  (no addresses given)"
    return (
        "Could not download the SMS Spam Collection. Tried:\n"
        f"{tried}\n"
        "Check your internet connection and try again (an interrupted download resumes where it "
        "stopped). Or download the zip yourself from "
        f"{SMS_SPAM_URLS[0]}, extract it, and put its {SMS_SPAM_FILE} file at {target}."
    )


def read_sms_spam(path: str | Path) -> Table:
    """The UCI SMS Spam Collection: one ``label<TAB>message`` per line, kept byte for byte.

    Read line by line and split at the first TAB, because its messages contain unbalanced '"'
    that make CSV readers merge lines (5,572 rows instead of 5,574).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"The SMS Spam Collection file {path} does not exist. Download it again.")
    raw = open_regular_file(path, "The SMS Spam Collection file", DataError)
    labels: list[str] = []
    texts: list[str] = []
    try:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as f:  # only LF ends a line
            for number, line in enumerate(f, start=1):
                line = line.removesuffix("\n").removesuffix("\r")  # tolerate a CRLF copy
                if not line:
                    continue
                label, tab, text = line.partition("\t")
                if not tab:
                    raise DataError(
                        f"Line {number} of {path} has no TAB between label and message, so the file "
                        "is not the SMS Spam Collection (or is damaged). Delete it and download it again."
                    )
                labels.append(label)
                texts.append(text)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not UTF-8 text, so it is not the SMS Spam Collection. Delete it and download it again."
        ) from error
    frame = pd.DataFrame({"label": labels, "text": texts}, dtype=str)
    return Table(frame, SMS_SPAM, "utf-8", text_column="text", label_column="label")


def load_table(
    cfg: DataConfig,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Table:
    """The configured dataset: the SMS collection (downloaded once) or the user's file."""
    if cfg.source == SMS_SPAM:
        return read_sms_spam(download_sms_spam(progress=progress, stop=stop))
    return read_table(cfg.source, max_rows=cfg.max_rows, progress=progress, stop=stop)
