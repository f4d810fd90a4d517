"""GPT-2 checkpoints from the Hugging Face Hub: fetched once, then found on disk.

Checkpoints live in the shared Hugging Face cache (``HF_HOME``), so a model that ``transformers``
already downloaded is reused and ours is reusable by other tools. A local folder with
``config.json`` + ``model.safetensors`` works wherever a size name does.

Long calls take ``progress(done, total, message)`` (bytes) and a ``stop`` event; setting the event
raises ``Cancelled`` at the next chunk.
"""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Any

from .config import MODEL_REPOS
from .errors import CheckpointError, WorkbenchError
from .fileio import describe_kind, is_pickle_name, require_regular_file
from .paths import ensure_folder
from .progress import Progress, raise_if_stopped
from .text import printable

CHECKPOINT_FILES = ("config.json", "model.safetensors")
TOKENIZER_FILES = ("vocab.json", "merges.txt")

_PROBE_TIMEOUT = 10.0  # seconds to wait for the Hub's first answer


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now.

    huggingface_hub reads HF_HOME / HF_HUB_CACHE once at import, so a variable set later (a test,
    or a setting in the window) would be ignored if we relied on its constant.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline_mode(offline: bool | None) -> bool:
    """The explicit argument, else HF_HUB_OFFLINE (read now, for the same reason as the cache)."""
    if offline is not None:
        return offline
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_file(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir())
    return found if isinstance(found, str) else None  # also rules out the "known missing" marker


def is_cached(model: str) -> bool:
    """Whether ``model`` can be loaded with no network: a complete Hub snapshot or a valid folder."""
    repo = MODEL_REPOS.get(model)
    if repo is None:
        return os.path.isdir(model) and _local_folder_problem(Path(model)) is None
    return all(_cached_file(repo, name) is not None for name in CHECKPOINT_FILES)


def checkpoint_files(model: str, label: str = "the model") -> dict[str, Path]:
    """The files a run reads from ``model`` (a folder, or a size's cached snapshot), named for
    messages: the inputs an output must never replace (``fileio.check_outputs``). A size that
    is not downloaded yet has none; its files arrive in the cache, where no output goes."""
    names = (*CHECKPOINT_FILES, *TOKENIZER_FILES, "gpt2.tiktoken")
    repo = MODEL_REPOS.get(model)
    if repo is None:
        folder = Path(model).expanduser()
        return {f"{label}'s {name}": folder / name for name in names}
    return {f"{label}'s {name}": Path(p) for name in names if (p := _cached_file(repo, name))}


def cached_size_bytes(model: str) -> int | None:
    """Disk size of the model's files (weights, config, tokenizer), or None when not available."""
    if not is_cached(model):
        return None
    repo = MODEL_REPOS.get(model)
    if repo is None:
        paths = [Path(model) / name for name in (*CHECKPOINT_FILES, *TOKENIZER_FILES)]
    else:
        paths = [Path(p) for name in (*CHECKPOINT_FILES, *TOKENIZER_FILES) if (p := _cached_file(repo, name))]
    return sum(p.stat().st_size for p in paths if p.is_file())  # stat follows the cache's symlinks


def resolve_checkpoint(
    model: str,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    endpoint: str | None = None,
    offline: bool | None = None,
) -> Path:
    """A folder holding ``config.json`` + ``model.safetensors`` (and the tokenizer when the repo has it).

    ``model`` is a GPT-2 size name (downloaded into the Hugging Face cache on first use) or a local
    folder. A fully cached size is returned without any request: released GPT-2 weights never
    change, and on a firewalled machine each Hub check would otherwise wait for a timeout.
    ``endpoint`` overrides HF_ENDPOINT (tests point it at a local server).
    """
    repo = MODEL_REPOS.get(model)
    if repo is None:
        return _check_local_folder(model)
    config = _cached_file(repo, CHECKPOINT_FILES[0])
    if config is not None and is_cached(model):
        return Path(config).parent  # the snapshot folder
    if offline_mode(offline):
        raise _not_cached_error(model, repo, "offline mode is on (HF_HUB_OFFLINE)")
    return _download_checkpoint(model, repo, progress=progress, stop=stop, endpoint=endpoint)


def _download_checkpoint(
    model: str,
    repo: str,
    *,
    progress: Progress | None,
    stop: threading.Event | None,
    endpoint: str | None,
) -> Path:
    """Fetch every file into the HF cache and return the snapshot folder they share.

    The weights come last, so "weights cached" (``is_cached``) implies the tokenizer was attempted.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    try:  # a HOME or HF_HOME that is a file would otherwise read as "the Hub could not be reached"
        ensure_folder(hf_cache_dir(), "The Hugging Face cache", "HF_HOME")
    except WorkbenchError as exc:
        raise CheckpointError(str(exc)) from exc
    _probe_hub(model, repo, endpoint)
    snapshot: Path | None = None
    for filename in (CHECKPOINT_FILES[0], *TOKENIZER_FILES, *CHECKPOINT_FILES[1:]):
        what = f"Downloading {filename} of {model}"
        raise_if_stopped(stop, what)
        bar = _progress_bar_class(progress, stop, what)
        try:
            path = hf_hub_download(repo, filename, cache_dir=hf_cache_dir(), endpoint=endpoint, **_bar_argument(bar))
        except LocalEntryNotFoundError as error:  # first: in huggingface_hub < 1.0 it is an EntryNotFoundError
            raise _not_cached_error(model, repo, "the Hugging Face Hub could not be reached") from error
        except EntryNotFoundError as error:  # the Hub answered: the repo has no such file
            if filename in TOKENIZER_FILES:
                continue  # optional: tokenizer.py falls back to other sources
            raise CheckpointError(
                f"{repo} has no {filename}, so it is not a GPT-2 checkpoint the workbench can load."
            ) from error
        except WorkbenchError:
            raise
        except Exception as error:  # network stacks raise many types (HTTP, OS, protocol); all mean "failed"
            raise CheckpointError(
                f"Downloading {filename} of {model} ({repo}) failed: {error}. Check your connection and try again."
            ) from error
        snapshot = Path(path).parent
    assert snapshot is not None  # the weights are never skipped
    return snapshot


def _probe_hub(model: str, repo: str, endpoint: str | None) -> None:
    """Fail fast when the Hub cannot be reached at all.

    For a file that is not cached, hf_hub_download retries an unreachable Hub with back-off for
    about 25 seconds before giving up; one plain metadata request tells us the same at once.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(repo, CHECKPOINT_FILES[0], endpoint=endpoint), timeout=_PROBE_TIMEOUT)
    except HfHubHTTPError:
        pass  # the Hub answered; hf_hub_download reports what it said
    except Exception as error:  # connection refused, DNS failure, timeout, offline mode
        reason = f"the Hugging Face Hub could not be reached ({error})"
        raise _not_cached_error(model, repo, reason) from error


def _bar_argument(bar: type) -> dict[str, type]:
    """``tqdm_class=bar`` where hf_hub_download accepts it; older versions download without byte progress."""
    from huggingface_hub import hf_hub_download

    return {"tqdm_class": bar} if "tqdm_class" in inspect.signature(hf_hub_download).parameters else {}


def _progress_bar_class(progress: Progress | None, stop: threading.Event | None, what: str) -> type:
    """A stand-in for tqdm that hf_hub_download drives: bytes go to ``progress``, ``stop`` cancels.

    huggingface_hub exposes byte progress only through its ``tqdm_class`` argument; raising from
    ``update`` aborts the transfer (huggingface_hub then deletes its temporary file).
    """

    class ProgressBar:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any) -> None:
            self.n = initial
            self.total = total
            self._report()

        def update(self, n: int | float | None = 1) -> None:
            self.n += int(n or 0)
            self._report()
            raise_if_stopped(stop, what)

        def update_transfer(self, n: int | float | None = 1) -> None:
            """Xet network bytes; we report the bytes written to disk (``update``) instead."""

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None: ...

        def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None: ...

        def refresh(self, *args: Any, **kwargs: Any) -> None: ...

        def close(self) -> None: ...

        def __enter__(self) -> ProgressBar:
            return self

        def __exit__(self, *exc: object) -> None: ...

        def _report(self) -> None:
            if progress is not None:
                progress(int(self.n), int(self.total) if self.total else None, what)

    return ProgressBar


def _not_cached_error(model: str, repo: str, reason: str) -> CheckpointError:
    missing = [name for name in CHECKPOINT_FILES if _cached_file(repo, name) is None]
    return CheckpointError(
        f"GPT-2 model {model!r} ({repo}) is not downloaded yet, and {reason}. "
        f"Missing from the Hugging Face cache ({hf_cache_dir()}): {', '.join(missing)}. "
        f"Either run `workbench download {model}` while online, or use a local folder that holds "
        "config.json and model.safetensors."
    )


def _check_local_folder(model: str) -> Path:
    folder = Path(model).expanduser()
    try:
        exists = folder.exists()
    except OSError as exc:  # a name longer than the file system allows, a loop of links, ...
        raise CheckpointError(f"{printable(model, 80)!r} cannot be a model folder: {exc.strerror or exc}") from exc
    if not exists:
        raise CheckpointError(
            f"{printable(model, 80)!r} is neither a GPT-2 size ({', '.join(MODEL_REPOS)}) nor an existing folder. "
            "Choose a size, or a folder that holds config.json and model.safetensors."
        )
    if not folder.is_dir():
        kind = "a file" if folder.is_file() else describe_kind(folder.stat().st_mode)
        raise CheckpointError(f"{folder} is {kind}. Choose the folder that holds config.json and model.safetensors.")
    problem = _local_folder_problem(folder)
    if problem:
        raise CheckpointError(problem)
    return folder.resolve()


def _local_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a loadable checkpoint, or None when it is."""
    for name in (*CHECKPOINT_FILES, *TOKENIZER_FILES):
        if os.path.lexists(folder / name):
            try:
                require_regular_file(folder / name, "The model file", CheckpointError)
            except CheckpointError as exc:
                return str(exc)
    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if not missing:
        return None
    pickles = sorted(p.name for p in folder.iterdir() if is_pickle_name(p) and p.is_file())
    if "model.safetensors" in missing and pickles:
        return (
            f"{folder} has only pickled PyTorch weights ({', '.join(pickles)}). The workbench does not "
            "load pickle files, because opening one can run arbitrary code. Convert the weights to "
            "safetensors (for example with transformers: "
            "GPT2LMHeadModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)), "
            "or choose a GPT-2 size to download."
        )
    return (
        f"{folder} is missing {', '.join(missing)}. A model folder needs config.json and "
        "model.safetensors, as in a Hugging Face GPT-2 checkpoint."
    )
