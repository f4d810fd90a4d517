"""Training under torchrun: W processes train exactly as one, resume across world sizes, stop
together, and fail in one line.

Three kinds of test: the pieces alone (no process group), the collectives between two processes
started here with Gloo (torch.multiprocessing), and whole runs of ``python -m torch.distributed.run
-m workbench train`` against one process trained in this one. With CUDA the last ones also run on
one rank with NCCL (benchmarks/gpu_session.sh runs this file on a lent GPU machine).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from test_training import write_separable_csv

from workbench.core import distributed
from workbench.core import events as ev
from workbench.core.adapters import read_adapter
from workbench.core.config import DataConfig, LoRAConfig, TrainConfig
from workbench.core.data import Batch, EncodedSplit
from workbench.core.errors import ConfigError, WorkbenchError
from workbench.core.runs import RunFolder, list_runs, load_resume_state, outcome
from workbench.core.training import train

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")


@pytest.fixture(autouse=True)
def _not_under_torchrun(monkeypatch):
    """Each test starts as a plain process, whatever launched pytest."""
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def launched_as(monkeypatch, rank: int, world_size: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


def batch(n: int, length: int = 3) -> Batch:
    return Batch(torch.ones(n, length, dtype=torch.long), torch.full((n,), length), torch.zeros(n, dtype=torch.long))


# --- the pieces, alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 9])
def test_the_ranks_shares_cover_a_step_once_and_differ_by_one_at_most(n, world_size):
    items = list(range(n))
    shares = [distributed.ranks_share(items, r, world_size) for r in range(world_size)]
    assert sorted(i for share in shares for i in share) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_alone_nothing_changes():
    assert not distributed.launched() and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    batches = [batch(2), batch(3)]
    share = distributed.share_of_step(batches)
    assert share.batches == batches and share.examples == 5 and share.loss_scale == 1.0
    assert distributed.step_totals(share, 0.5, 7) == (0.5, 7)
    assert distributed.agree_to_stop(True, 3) and not distributed.agree_to_stop(False, 3)
    assert distributed.stop_signals() == ("SIGINT",)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu"), seed=1) is model
    assert distributed.pick_device("cpu") == torch.device("cpu")
    with distributed.process_group("cpu"):
        assert not distributed.active()


def test_under_torchrun_each_process_takes_its_device(monkeypatch):
    launched_as(monkeypatch, 1, 2)
    assert distributed.launched() and distributed.rank() == 1 and not distributed.is_main()
    assert distributed.stop_signals() == ("SIGINT", "SIGTERM")
    assert distributed.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert distributed.pick_device("auto") == torch.device("cpu")
    for requested in ("cuda:1", "mps"):
        with pytest.raises(ConfigError) as failure:
            distributed.pick_device(requested)
        assert len(str(failure.value).splitlines()) == 1 and "--device cuda" in str(failure.value)


@pytest.mark.parametrize(("device", "missing"), [("cuda", "is_nccl_available"), ("cpu", "is_gloo_available")])
def test_a_missing_backend_is_one_line(monkeypatch, device, missing):
    monkeypatch.setattr(distributed.dist, missing, lambda: False)
    with pytest.raises(ConfigError) as failure:
        distributed.backend_for(torch.device(device))
    message = str(failure.value)
    assert len(message.splitlines()) == 1 and ("NCCL" if device == "cuda" else "GLOO") in message


def test_the_backend_follows_the_device(monkeypatch):
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: True)
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan"])
def test_a_bad_timeout_is_one_line(monkeypatch, value):
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, value)
    with pytest.raises(ConfigError, match=distributed.TIMEOUT_VARIABLE):
        distributed.timeout_s()


def test_the_timeout_comes_from_the_environment(monkeypatch):
    assert distributed.timeout_s() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "12.5")
    assert distributed.timeout_s() == 12.5


def test_the_data_fingerprint_sees_every_token_label_and_name():
    base = [EncodedSplit([[1, 2], [3]], [0, 1], ["a", "b"])]
    fingerprint = distributed.data_fingerprint(base, ("ham", "spam"))
    changed = [
        [EncodedSplit([[1, 2], [4]], [0, 1], [])],  # one token
        [EncodedSplit([[1, 2], [3]], [1, 1], [])],  # one label
        [EncodedSplit([[3], [1, 2]], [1, 0], [])],  # the order
        [EncodedSplit([[1], [2, 3]], [0, 1], [])],  # where a text ends
        [EncodedSplit([[1, 2]], [0], []), EncodedSplit([[3]], [1], [])],  # which split
    ]
    assert all(distributed.data_fingerprint(c, ("ham", "spam")) != fingerprint for c in changed)
    assert distributed.data_fingerprint(base, ("spam", "ham")) != fingerprint
    texts_aside = [EncodedSplit([[1, 2], [3]], [0, 1], [])]  # the raw texts are not what trains
    assert distributed.data_fingerprint(texts_aside, ("ham", "spam")) == fingerprint


def test_the_settings_fingerprint_ignores_paths_and_devices_only():
    cfg = TrainConfig(model="gpt2", data=DataConfig(source="/data/a.csv"))
    fingerprint = distributed.settings_fingerprint(cfg, "fp32")
    elsewhere = dataclasses.replace(cfg, model="/models/gpt2", device="cuda", data=DataConfig(source="/mnt/a.csv"))
    assert distributed.settings_fingerprint(elsewhere, "fp32") == fingerprint
    assert distributed.settings_fingerprint(cfg, "bf16") != fingerprint
    for change in ({"lr": 1e-4}, {"batch_size": 4}, {"seed": 1}, {"lora": LoRAConfig(rank=8)}):
        assert distributed.settings_fingerprint(dataclasses.replace(cfg, **change), "fp32") != fingerprint


def test_a_process_that_cannot_join_says_so_in_one_line(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Rank 0 reports it; another rank stays quiet (every rank meets the same failure)."""
    from workbench.cli import main

    data = write_separable_csv(tmp_path / "data.csv", n=40)
    argv = ["train", "--model", str(tiny_checkpoint), "--data", str(data), "--out", str(tmp_path / "a.safetensors")]
    for rank in (0, 1):
        launched_as(monkeypatch, rank, 2)  # no MASTER_ADDR: no rendezvous to join
        assert main(argv) == 2
        captured = capsys.readouterr()
        if rank == 0:
            assert len(captured.err.strip().splitlines()) == 1 and "join the other training processes" in captured.err
        else:
            assert captured.out == captured.err == ""
    assert not (tmp_path / "a.safetensors").exists()


# --- collectives between two processes (Gloo) ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_two_processes(scenario, *args) -> None:
    """Run ``scenario(rank, *args)`` on ranks 0 and 1 of a Gloo group; a failed assertion in
    either fails the test with its traceback."""
    import torch.multiprocessing as mp

    mp.spawn(_joined, args=(free_port(), scenario, args), nprocs=2, join=True)


def _joined(rank: int, port: int, scenario, args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    os.environ[distributed.TIMEOUT_VARIABLE] = "60"
    torch.set_num_threads(1)
    with distributed.process_group("cpu"):
        assert distributed.active() and distributed.rank() == rank and distributed.world_size() == 2
        scenario(rank, *args)
    assert not distributed.active()


def _collectives(rank: int, folder: str) -> None:
    # Stop: one rank asked is every rank stopping.
    assert distributed.agree_to_stop(False, 0) is False
    assert distributed.agree_to_stop(rank == 1, 1) is True

    # A step of three batches: rank 0 takes the 1st and 3rd, rank 1 the 2nd; one batch: rank 1 a stand-in.
    batches = [batch(2), batch(3), batch(4)]
    share = distributed.share_of_step(batches)
    assert share.batches == ([batches[0], batches[2]] if rank == 0 else [batches[1]])
    assert share.examples == 9 and share.loss_scale == 2.0
    assert distributed.step_totals(share, loss=rank + 1.0, tokens=10 * (rank + 1)) == (3.0, 30)
    alone = distributed.share_of_step(batches[:1])
    assert alone.batches == batches[:1] and alone.loss_scale == (2.0 if rank == 0 else 0.0)
    assert distributed.step_totals(alone, loss=0.25, tokens=6) == (0.25, 6)  # the stand-in adds nothing

    # Data and settings checked before the first step: one line naming the rank that differs.
    cfg = TrainConfig(model="gpt2", data=DataConfig(source="x.csv"))
    same = EncodedSplit([[1, 2], [3]], [0, 1], [])
    distributed.check_agreement(cfg, [same], ("ham", "spam"), "fp32")
    other = EncodedSplit([[1, 2], [4]], [0, 1], []) if rank == 1 else same
    with pytest.raises(ConfigError) as failure:
        distributed.check_agreement(cfg, [other], ("ham", "spam"), "fp32")
    assert str(failure.value) == (
        "The training processes disagree on the data: rank 1 differs from rank 0; give every machine the same "
        "--data file"
    )
    faster = dataclasses.replace(cfg, lr=1e-3) if rank == 1 else cfg
    with pytest.raises(ConfigError, match="disagree on the settings: rank 1 differs from rank 0"):
        distributed.check_agreement(faster, [same], ("ham", "spam"), "fp32")

    # Rank 0 decides, the others follow: its bytes, or its failure, everywhere.
    assert distributed.from_main(lambda: f"rank {rank}".encode()) == b"rank 0"
    assert distributed.from_main(lambda: b"") == b""

    def refuse() -> bytes:
        raise WorkbenchError("rank 0 cannot")

    with pytest.raises(WorkbenchError, match="^rank 0 cannot$") as failure:
        distributed.from_main(refuse)
    assert isinstance(failure.value, distributed.FailedOnRankZero) == (rank == 1)

    # A file only rank 0 has is loaded on both from its bytes.
    mine = Path(folder) / f"only-rank-{rank}.bin"
    mine.write_bytes(b"state of rank %d" % rank)
    path = Path(folder) / "only-rank-0.bin"
    read, content = distributed.load_everywhere(path, lambda p: (p, p.read_bytes()))
    assert content == b"state of rank 0" and (read == path) == (rank == 0)
    with pytest.raises((WorkbenchError, OSError), match="No such file"):
        distributed.load_everywhere(Path(folder) / "missing.bin", lambda p: p.read_bytes())


def _evaluation(rank: int, checkpoint: str) -> None:
    from workbench.core.evaluate import predict_probabilities
    from workbench.core.lora import build_lora_model

    model = build_lora_model(Path(checkpoint), LoRAConfig(rank=4), num_classes=3, seed=1)
    texts = [[(7 * i + j) % 250 for j in range(1 + (5 * i) % 11)] for i in range(9)]
    cpu = torch.device("cpu")
    for token_ids in (texts, texts[:1], []):
        alone = predict_probabilities(model, token_ids, 4, cpu, "fp32")
        shared = distributed.sharded(predict_probabilities)(model, token_ids, 4, cpu, "fp32")
        assert shared.shape == alone.shape and torch.allclose(shared, alone, atol=1e-6)


def _collectives_and_evaluation(rank: int, folder: str, checkpoint: str) -> None:
    _collectives(rank, folder)
    _evaluation(rank, checkpoint)


@pytest.mark.slow  # two processes that import torch: ~10 s on an idle 2-core machine, more on a busy one
def test_collectives_and_shared_evaluation_between_two_processes(tmp_path, tiny_checkpoint):
    in_two_processes(_collectives_and_evaluation, str(tmp_path), str(tiny_checkpoint))


# --- whole runs under torchrun -------------------------------------------------------------------

# Small batches so a step spans several of them: 140 training texts are 35 batches of 4, which
# leaves uneven shares and a stand-in at the end of each epoch.
SETTINGS = {"rank": 4, "alpha": 8.0, "batch_size": 4, "lr": 3e-3, "epochs": 2, "seed": 5}


def single_config(checkpoint, data, **changes) -> TrainConfig:
    s = {**SETTINGS, **changes}
    cfg = TrainConfig(
        model=str(checkpoint),
        data=DataConfig(source=str(data)),
        lora=LoRAConfig(rank=s.pop("rank"), alpha=s.pop("alpha")),
        eval_every=1000,
        precision="fp32",  # numbers compared: never what "auto" picks on this machine
        **s,
    )
    return cfg


def train_alone(checkpoint, data, resume=None, **changes) -> ev.TrainingFinished:
    finished = list(train(single_config(checkpoint, data, **changes), resume=resume))[-1]
    assert isinstance(finished, ev.TrainingFinished), finished
    return finished


def torchrun(tmp_path, checkpoint, data, out, *, processes=2, device="cpu", extra_env=None, wait=True, **changes):
    """``python -m torch.distributed.run --nproc-per-node N -m workbench train …``, its run folder
    under its own data dir. Returns the finished process (or the running one with wait=False)."""
    s = {**SETTINGS, **changes}
    argv = ["--model", str(checkpoint), "--data", str(data), "--eval-every", "1000", "--precision", "fp32"]
    for key, value in s.items():
        if key == "resume":
            argv += ["--resume", str(value)]
        elif value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "WORKBENCH_DATA_DIR": str(tmp_path / "torchrun-data"),
        distributed.TIMEOUT_VARIABLE: "60",
        **(extra_env or {}),
    }
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [*launcher, "-m", "workbench", "train", *argv, "--device", device, "--quiet", "--out", str(out)]
    if not wait:  # in a session of its own, so that a failed test can end the launcher and its workers
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)


def torchrun_runs(tmp_path) -> list[RunFolder]:
    runs = tmp_path / "torchrun-data" / "runs"
    return list_runs(runs) if runs.is_dir() else []


def max_difference(adapter_a, adapter_b) -> float:
    a, _ = read_adapter(adapter_a)
    b, _ = read_adapter(adapter_b)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture
def data(tmp_path):
    return write_separable_csv(tmp_path / "separable.csv", n=200)


@pytest.mark.slow
def test_two_processes_train_as_one_with_twice_the_accumulation(tiny_checkpoint, data, tmp_path):
    """Same global batch (4 × 1 × 2 processes = 4 × 2 alone), same data order: the same adapter,
    and the same test scores from the evaluation shared out between the processes."""
    alone = train_alone(tiny_checkpoint, data, grad_accum=2)
    done = torchrun(tmp_path, tiny_checkpoint, data, tmp_path / "two.safetensors", grad_accum=1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert max_difference(alone.adapter_path, tmp_path / "two.safetensors") < 1e-5
    assert "global batch 4 x 1 accumulated x 2 processes = 8 examples per step" in done.stdout
    (run,) = torchrun_runs(tmp_path)
    events = run.events()
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    finished = events[-1]
    assert started.processes == 2 and started.steps_per_epoch == 18  # 35 batches, 2 per step
    assert (finished.step, finished.examples_seen) == (alone.step, alone.examples_seen)
    assert finished.metrics.loss == pytest.approx(alone.metrics.loss, abs=1e-5)
    assert finished.metrics.confusion == alone.metrics.confusion
    assert [m.text for m in finished.metrics.misclassified] == [m.text for m in alone.metrics.misclassified]
    assert sorted(p.name for p in run.path.iterdir()) == sorted(
        ["adapter.safetensors", "checkpoint.safetensors", "config.json", "log.txt", "metrics.jsonl", "training.lock"]
    )


@pytest.mark.slow
def test_a_two_process_resume_state_resumes_in_one_process(tiny_checkpoint, data, tmp_path):
    straight = train_alone(tiny_checkpoint, data, grad_accum=4, max_steps=12)
    first = torchrun(tmp_path, tiny_checkpoint, data, tmp_path / "first.safetensors", grad_accum=2, max_steps=5)
    assert first.returncode == 0, first.stdout + first.stderr
    (run,) = torchrun_runs(tmp_path)
    resumed = train_alone(tiny_checkpoint, data, resume=run.resume_path, grad_accum=4, max_steps=12)
    assert resumed.step == straight.step == 12
    assert max_difference(straight.adapter_path, resumed.adapter_path) < 1e-5


@pytest.mark.slow
def test_a_one_process_resume_state_resumes_in_two(tiny_checkpoint, data, tmp_path):
    straight = train_alone(tiny_checkpoint, data, grad_accum=4, max_steps=12)
    first = train_alone(tiny_checkpoint, data, grad_accum=4, max_steps=5)
    out = tmp_path / "resumed.safetensors"
    done = torchrun(tmp_path, tiny_checkpoint, data, out, grad_accum=2, max_steps=12, resume=first.resume_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert max_difference(straight.adapter_path, out) < 1e-5
    events = RunFolder(Path(first.run_dir)).events()  # the resumed run continues in its folder
    assert [e.processes for e in events if isinstance(e, ev.RunStarted)] == [1, 2]
    assert events[-1].step == 12


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_run_and_leaves_the_resume_state_intact(tiny_checkpoint, data, tmp_path):
    """Rank 1 dies in the second epoch (as a crash would); rank 0 fails its next collective and
    says so, the launcher fails without waiting out a hang, and the resume state written at the
    first epoch's end still loads."""
    out = tmp_path / "never.safetensors"
    crash = {distributed.CRASH_VARIABLE: "1:20", distributed.TIMEOUT_VARIABLE: "30"}
    done = torchrun(tmp_path, tiny_checkpoint, data, out, grad_accum=1, extra_env=crash)
    assert done.returncode != 0
    assert not out.exists()
    (run,) = torchrun_runs(tmp_path)
    from workbench.core.lora import build_lora_model

    model = build_lora_model(tiny_checkpoint, LoRAConfig(rank=4, alpha=8.0), num_classes=2, seed=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    position = load_resume_state(run.resume_path, model, optimizer)
    assert (position.step, position.epoch, position.batch_in_epoch) == (18, 1, 0)
    ended = outcome(run.events())  # rank 0 saw its peer go (Gloo: at once) and said so in one line
    assert ended.state == "failed" and "Another training process stopped answering" in ended.ended.message
    assert "workbench: error: Another training process stopped answering" in done.stderr


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_stops_every_rank_at_one_step(tiny_checkpoint, data, tmp_path):
    """torchrun passes SIGINT on to each process; they agree on the step to stop after, rank 0
    writes the adapter once, and the run reads 'stopped'."""
    out = tmp_path / "stopped.safetensors"
    launcher = torchrun(tmp_path, tiny_checkpoint, data, out, grad_accum=1, epochs=500, wait=False)
    try:
        while not any(isinstance(e, ev.EpochEnded) for run in torchrun_runs(tmp_path) for e in run.events()):
            assert launcher.poll() is None, launcher.communicate()[0]
            time.sleep(0.2)
        launcher.send_signal(signal.SIGINT)  # the launcher alone, as `kill -INT`; a terminal signals all
        output, _ = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    assert launcher.returncode != 0  # torchrun re-raises the signal it was stopped by
    assert output.count("Traceback") == 1 and "SignalException" in output  # torchrun's own, no worker's
    assert "workbench: error" not in output
    assert out.exists() and output.count("Stopped after") == 1
    (run,) = torchrun_runs(tmp_path)
    finished = [e for e in run.events() if isinstance(e, ev.TrainingFinished)]
    assert len(finished) == 1 and finished[0].stopped and 18 <= finished[0].step < 500 * 18
    assert outcome(run.events()).state == "stopped"
    assert run.log_path.read_text().count("Stopped after") == 1


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_one_rank_under_torchrun_trains_as_a_plain_process(tiny_checkpoint, data, tmp_path, device):
    """DDP over one rank: Gloo on the CPU, NCCL on a GPU."""
    alone = train_alone(tiny_checkpoint, data, grad_accum=2, max_steps=6, device=device)
    out = tmp_path / "one.safetensors"
    done = torchrun(tmp_path, tiny_checkpoint, data, out, processes=1, device=device, grad_accum=2, max_steps=6)
    assert done.returncode == 0, done.stdout + done.stderr
    assert max_difference(alone.adapter_path, out) < 1e-5
