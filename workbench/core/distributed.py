"""Training on more than one device: the processes ``torchrun`` starts, one per GPU (or CPU).

PyTorch does the heavy lifting. ``torchrun`` starts the processes and gives each its RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT (across machines too, through its rendezvous);
DistributedDataParallel averages the LoRA and head gradients, over NCCL between GPUs and Gloo
between CPUs. This module holds what the training loop adds on top, so that W processes with
batch B and accumulation A train exactly as one process with batch B and accumulation A×W:

- one step, shared out: a step takes the next A×W batches of the epoch's list (the order fixed by
  seed and epoch, as for one process) and rank r computes the r-th, (r+W)-th, … of them. Each
  rank's loss is its examples' summed loss × W / (examples in the whole step), so DDP's mean over
  the ranks is the one-process sum / total;
- agreement: on the data and settings before the first step (a hash of every encoded split), and
  on Stop before every step (torchrun hands Ctrl+C to each process, but not at the same instant);
- evaluation shared out and gathered;
- rank 0 alone writes the run folder, the resume state and the adapter, and reports progress.

Without torchrun's variables nothing here does anything: one process, no process group. See
PyTorch's "Getting Started with Distributed Data Parallel" and the torchrun documentation.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .config import TrainConfig
from .data import Batch, EncodedSplit
from .device import pick_device as pick_one_device
from .errors import ConfigError, WorkbenchError

# Seconds a process waits in a collective for the others before it gives up: a rank that died or
# hangs must not hold the rest forever (PyTorch's own default is 10 minutes for NCCL, 30 for Gloo).
TIMEOUT_VARIABLE = "WORKBENCH_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
# Tests only: "RANK:STEPS" makes that rank die as a crash would (os._exit) once it has done STEPS steps.
CRASH_VARIABLE = "WORKBENCH_TEST_CRASH"
CRASH_EXIT_CODE = 17

T = TypeVar("T")
F = TypeVar("F")


# --- who this process is -----------------------------------------------------------------------


def launched() -> bool:
    """Whether torchrun (or a launcher that sets the same variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def active() -> bool:
    """Whether this process is in a process group now (inside ``process_group``)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if active():
        return dist.get_rank()
    return _env_int("RANK", 0) if launched() else 0


def world_size() -> int:
    if active():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1) if launched() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files and speaks."""
    return rank() == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"{name}={os.environ[name]!r} is not a whole number (torchrun sets it)") from exc


# --- joining the others ------------------------------------------------------------------------


def pick_device(requested: str) -> torch.device:
    """The device of this process: under torchrun the GPU of its LOCAL_RANK (one process per GPU),
    or the CPU; alone, whatever ``device.pick_device`` picks."""
    if not launched():
        return pick_one_device(requested)
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise ConfigError(
            f"--device {requested} cannot be shared by torchrun's processes: use --device cuda (each process "
            "takes the GPU of its LOCAL_RANK) or --device cpu"
        )
    pick_one_device("cuda")  # one line when this PyTorch sees no GPU
    local, count = _env_int("LOCAL_RANK", 0), torch.cuda.device_count()
    if local >= count:
        raise ConfigError(
            f"torchrun started process {local} on a machine with {count} GPU(s): start at most {count} "
            f"(--nproc-per-node {count})"
        )
    return torch.device("cuda", local)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, Gloo between CPUs; one line when this PyTorch build lacks it."""
    name = "nccl" if device.type == "cuda" else "gloo"
    built = dist.is_available() and (dist.is_nccl_available() if name == "nccl" else dist.is_gloo_available())
    if not built:
        raise ConfigError(
            f"This PyTorch build has no {name.upper()} backend, which training on more than one "
            f"{'GPU' if name == 'nccl' else 'CPU process'} needs: install a PyTorch build with torch.distributed"
            + (" and CUDA (Linux)" if name == "nccl" else "")
        )
    return name


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_VARIABLE}={raw!r} must be a number of seconds greater than 0")
    return seconds


@contextlib.contextmanager
def process_group(requested_device: str) -> Iterator[None]:
    """Join torchrun's other processes for as long as the block runs; alone, do nothing.

    The timeout bounds every collective: when a rank dies the others fail their next collective
    (torchrun, which notices the death, also ends them) instead of waiting forever.
    """
    if not launched() or active():
        yield
        return
    device = pick_device(requested_device)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL works on the current device
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
    except (ValueError, RuntimeError) as exc:
        raise WorkbenchError(f"Could not join the other training processes: {_first_line(exc)}") from exc
    try:
        yield
        # Every rank reaches the teardown together: one rank destroying the group while the other
        # still used it ended a finished two-process CPU run with "terminate called without an
        # active exception" (gloo, once in nine full test runs). Skipped after an error, when a
        # peer may be gone.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def stop_signals() -> tuple[str, ...]:
    """The signals that mean Stop: Ctrl+C; under torchrun also SIGTERM, which torchrun (or a cluster
    scheduler through it) sends each process when it shuts the job down."""
    return ("SIGINT", "SIGTERM") if launched() else ("SIGINT",)


def is_lost_peer(exc: BaseException) -> bool:
    """Whether a collective failed because another process died, hung or closed its connection.
    NCCL raises DistError then; Gloo a plain RuntimeError whose message names its source file."""
    return active() and (isinstance(exc, dist.DistError) or "gloo" in str(exc).lower())


def lost_peer_message(exc: BaseException, resume_path: Path) -> str:
    return (
        f"Another training process stopped answering ({_first_line(exc)}); this one stops too. Resume "
        f"from the last resume state, {resume_path}, when every process can run again."
    )


def _first_line(exc: BaseException) -> str:
    """The gist of a library's error: its first sentence, without a leading [source.cc:123]."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip())
    text = text.splitlines()[0] if text else type(exc).__name__
    return text.split(". ")[0].rstrip(".")


# --- rank 0 decides, the others follow ----------------------------------------------------------


class FailedOnRankZero(ConfigError):
    """What the other ranks raise when rank 0 failed at something it does for all (rank 0 reports it)."""


def shared_folder(open_on_main: Callable[[], F], follow: Callable[[Path], F]) -> F:
    """Rank 0 opens a folder (the run's: it creates or reopens it, and locks it); the other ranks
    ``follow`` it by the path rank 0 tells them. A failure on rank 0 is raised on every rank."""
    if not active():
        return open_on_main()
    opened: list = []

    def open_and_name() -> bytes:
        opened.append(open_on_main())
        return str(opened[0].path).encode()

    path = from_main(open_and_name).decode()
    return opened[0] if opened else follow(Path(path))


def load_everywhere(path: Path, load: Callable[[Path], T]) -> T:
    """``load(path)`` on every rank, from rank 0's copy of the file, so the run folder need not be
    on a disk that every machine sees. Rank 0 loads first: a file it cannot use fails everywhere
    with its message."""
    if not active():
        return load(path)
    loaded: list = []

    def load_and_read() -> bytes:
        loaded.append(load(path))
        return path.read_bytes()

    payload = from_main(load_and_read)
    if loaded:
        return loaded[0]
    with tempfile.TemporaryDirectory(prefix="workbench-") as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(payload)
        return load(copy)


def from_main(work: Callable[[], bytes]) -> bytes:
    """``work()`` on rank 0; its bytes, or its failure, on every rank (no pickle travels)."""
    if not active():
        return work()
    failure: BaseException | None = None
    payload = b""
    if is_main():
        try:
            payload = work()
        except (WorkbenchError, OSError) as exc:
            failure = exc
    outcome = json.loads(broadcast_bytes(json.dumps({"failed": str(failure) if failure else None}).encode()))
    if outcome["failed"] is not None:
        if failure is not None:
            raise failure
        raise FailedOnRankZero(outcome["failed"])
    return broadcast_bytes(payload)


def broadcast_bytes(payload: bytes) -> bytes:
    """Rank 0's ``payload`` on every rank (the others' argument is ignored)."""
    where = collective_device()
    size = torch.tensor([len(payload) if is_main() else 0], dtype=torch.long, device=where)
    dist.broadcast(size, src=0)
    if not int(size):
        return b""
    if is_main():
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(where)
    else:
        data = torch.empty(int(size), dtype=torch.uint8, device=where)
    dist.broadcast(data, src=0)
    return data.cpu().numpy().tobytes()


def collective_device() -> torch.device:
    """Where tensors for a collective live: NCCL moves GPU memory only, Gloo CPU memory."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# --- agreeing before the first step --------------------------------------------------------------


def check_agreement(cfg: TrainConfig, splits: Sequence[EncodedSplit], label_names: Sequence[str], precision: str):
    """Stop before the first step, with one line naming them, when ranks read other data or were
    started with other settings: their gradients would be averaged into nonsense without a sign."""
    if not active():
        return
    digests = torch.tensor(
        [_digest(data_fingerprint(splits, label_names)), _digest(settings_fingerprint(cfg, precision))],
        dtype=torch.long,
        device=collective_device(),
    )
    gathered = [torch.empty_like(digests) for _ in range(world_size())]
    dist.all_gather(gathered, digests)
    for column, what, fix in (
        (0, "data", "give every machine the same --data file"),
        (1, "settings", "start every process with the same workbench train options"),
    ):
        differ = [r for r, d in enumerate(gathered) if int(d[column]) != int(gathered[0][column])]
        if differ:
            ranks = ", ".join(map(str, differ))
            raise ConfigError(
                f"The training processes disagree on the {what}: rank{'s' if len(differ) > 1 else ''} {ranks} "
                f"{'differ' if len(differ) > 1 else 'differs'} from rank 0; {fix}"
            )


def data_fingerprint(splits: Sequence[EncodedSplit], label_names: Sequence[str]) -> bytes:
    """SHA-256 of the encoded splits (token ids and labels, in order) and the label names."""
    h = hashlib.sha256(json.dumps(list(label_names)).encode())
    for split in splits:
        h.update(len(split.token_ids).to_bytes(8, "little"))
        for ids in split.token_ids:
            h.update(len(ids).to_bytes(4, "little"))
            h.update(array("i", ids).tobytes())
        h.update(array("i", split.labels).tobytes())
    return h.digest()


def settings_fingerprint(cfg: TrainConfig, precision: str) -> bytes:
    """SHA-256 of the settings that shape training. Paths may differ between machines (the data
    itself is compared above), and so may --device, as long as the precision it gives agrees."""
    settings = cfg.to_dict()
    settings["data"].pop("source")
    for name in ("model", "device", "precision"):
        settings.pop(name)
    settings["precision"] = precision
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).digest()


def _digest(fingerprint: bytes) -> int:
    return int.from_bytes(fingerprint[:8], "little", signed=True)


# --- the steps -----------------------------------------------------------------------------------


def wrap(model: torch.nn.Module, device: torch.device, seed: int) -> torch.nn.Module:
    """The model as training steps see it: inside DDP between processes, as it is when alone.

    DDP starts by copying rank 0's weights to every rank. The model's buffers are constants (there
    is no batch norm), so they are not broadcast at every forward: that would be waste, and ranks
    with unequal shares of a step run unequal numbers of forwards. Each rank draws its own dropout
    masks; rank 0 the same as a single process.
    """
    if not active():
        return model
    if rank():
        torch.manual_seed(seed + 7919 * rank())
    device_ids = [device.index] if device.type == "cuda" else None
    # The option's name changed in PyTorch 2.13 (broadcast_buffers is deprecated there).
    options = inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = {"forward_sync_buffers" if "forward_sync_buffers" in options else "broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=device_ids, **no_buffer_sync)


@dataclass(frozen=True)
class StepShare:
    """This process's part of one optimiser step."""

    batches: list[Batch]  # the micro-batches it computes (a stand-in when it has none)
    examples: int  # examples in the whole step, on every rank: the loss's denominator
    loss_scale: float  # world size (DDP averages the ranks' gradients); 0 for a stand-in


def share_of_step(micro_batches: list[Batch]) -> StepShare:
    """This rank's micro-batches of a step: the r-th, (r+W)-th, … (``ranks_share``)."""
    examples = sum(len(b.labels) for b in micro_batches)
    mine = ranks_share(micro_batches, rank(), world_size())
    if not mine:  # fewer batches than ranks at an epoch's end: DDP still needs this rank's backward
        return StepShare(micro_batches[:1], examples, 0.0)
    return StepShare(mine, examples, float(world_size()))


def ranks_share(items: list, rank: int, world_size: int) -> list:
    """Rank r's items: r, r+W, r+2W, …; uneven counts differ by one at most."""
    return items[rank::world_size]


def accumulating(model: torch.nn.Module, last: bool):
    """DDP's ``no_sync`` for all but a step's last micro-batch: gradients add up locally and the
    ranks average them once per step, so every rank takes part in exactly one all-reduce per step
    however many micro-batches it has."""
    if last or not isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def step_totals(share: StepShare, loss: float, tokens: int) -> tuple[float, int]:
    """The whole step's loss and real tokens, from each rank's part (a stand-in counts for nothing)."""
    if share.loss_scale == 0:
        loss, tokens = 0.0, 0
    if not active():
        return loss, tokens
    totals = torch.tensor([loss, float(tokens)], dtype=torch.float64, device=collective_device())
    dist.all_reduce(totals)
    return totals[0].item(), int(totals[1].item())


def agree_to_stop(requested: bool, steps_done: int) -> bool:
    """Whether any rank was asked to stop. Every rank asks before every step, so all stop after
    the same step and the adapter is written once, by rank 0."""
    _crash_if_told(steps_done)
    return any_rank(requested)


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank: one decision for all, so no rank waits in a collective
    the others skip (early stopping, reloading the best epoch: computed on each rank's own
    validation loss, which a GPU may round differently)."""
    if not active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _crash_if_told(steps_done: int) -> None:
    told = os.environ.get(CRASH_VARIABLE, "")
    if told and told == f"{rank()}:{steps_done}":
        os._exit(CRASH_EXIT_CODE)


# --- evaluation ----------------------------------------------------------------------------------


def sharded(predict: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``predict`` (``evaluate.predict_probabilities``, passed in so that this module stays below
    ``evaluate`` and the core's import chain stays short) shared out: rank r scores texts r, r+W, …;
    every rank gets all the probabilities (N, C) in input order. Under torchrun ``stop`` is not
    looked at: a rank leaving the evaluation alone would leave the others waiting in
    ``all_gather``; the ranks agree to stop at the next step instead (``agree_to_stop``)."""

    def shared_out(
        model: torch.nn.Module,
        token_ids: list[list[int]],
        batch_size: int,
        device: torch.device,
        precision: str,
        stop: threading.Event | None = None,
    ) -> torch.Tensor:
        if not active():
            return predict(model, token_ids, batch_size, device, precision, stop=stop)
        size = world_size()
        mine = predict(model, ranks_share(token_ids, rank(), size), batch_size, device, precision)
        rows = -(-len(token_ids) // size)
        padded = torch.zeros(rows, mine.shape[1], device=collective_device())
        padded[: len(mine)] = mine.to(padded.device)
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded)
        # parts[r][j] is text j·W + r: interleave them back into input order.
        return torch.stack(parts, dim=1).reshape(rows * size, mine.shape[1])[: len(token_ids)].cpu()

    return shared_out
