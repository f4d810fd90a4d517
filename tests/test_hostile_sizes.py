"""Property: crafted adapter metadata and model configs with extreme sizes are refused cleanly,
under a memory cap, with nothing allocated from the sizes they claim.

A 130 KB adapter claiming ``n_layer = 10**9`` once grew the process to 20.9 GB before the kernel
killed it. Here hypothesis draws every size field from GPT-2's values, the limits (limits.py) and
far beyond, writes a small file that claims them, and loads it in a child process whose address
space is capped a few GB above what it already uses: the load must succeed (the sizes happen to
fit the file) or raise the file kind's error; a MemoryError, any other exception or a killed
child fails. Speed is asserted only through the child's generous timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and Path("/proc/self/status").exists()),
    reason="the memory cap uses RLIMIT_AS and /proc",
)

HEADROOM_BYTES = 3 * 2**30  # over what the child uses once torch and the files are loaded
EXAMPLES = 60  # per property
EXAMPLE_TIMEOUT_S = 20  # generous: a refusal takes well under a second; a huge allocation never ends
CHILD_TIMEOUT_S = 600
TESTS_DIR = Path(__file__).resolve().parent


def test_extreme_sizes_are_refused_under_a_memory_cap(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    code = f"import test_hostile_sizes as t; t.child({str(tmp_path)!r})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "properties held" in result.stdout


# --------------------------------------------------------------------------- the child


class TooSlow(BaseException):
    """Raised by the child's alarm; a BaseException, so no ``except OSError`` (TimeoutError is one)
    or ``except Exception`` in the code under test can turn it into a refusal."""


def _cap_memory() -> None:
    import resource

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            in_use = int(line.split()[1]) * 1024
            break
    limit = in_use + HEADROOM_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(f"address space capped at {limit / 2**30:.1f} GB ({in_use / 2**30:.1f} GB in use)", flush=True)


def child(folder: str) -> None:
    import signal

    from conftest import write_tiny_checkpoint
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from safetensors.torch import load, save

    from workbench.core.adapters import METADATA_KEY, AdapterInfo, read_adapter, save_adapter
    from workbench.core.config import LoRAConfig
    from workbench.core.errors import AdapterError, CheckpointError
    from workbench.core.limits import MAX_HEADS, MAX_LAYERS, MAX_POSITIONS, MAX_RANK, MAX_VOCABULARY, MAX_WIDTH
    from workbench.core.lora import build_lora_model
    from workbench.core.model import GPT2Classifier

    root = Path(folder)
    model = write_tiny_checkpoint(root / "ckpt", n_layer=1, n_embd=16, n_head=2, n_positions=32)
    lora = LoRAConfig(rank=2, alpha=4)
    gpt = build_lora_model(model, lora, 2, seed=0)
    adapter = save_adapter(root / "a.safetensors", gpt, AdapterInfo(str(model), gpt.config, lora, ("a", "b"), 16))
    data = adapter.read_bytes()
    tensors = load(data)
    metadata = json.loads(json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"][METADATA_KEY])
    config = json.loads((model / "config.json").read_text())
    del gpt

    limits = [MAX_LAYERS, MAX_WIDTH, MAX_HEADS, MAX_POSITIONS, MAX_VOCABULARY, MAX_RANK]
    gpt2 = [1, 2, 12, 16, 25, 48, 768, 1024, 1600, 50257]
    huge = [10**6, 10**9, 2**31, 2**63, 10**18, 10**30]
    size = st.one_of(
        st.sampled_from(gpt2 + limits + [n + 1 for n in limits] + huge + [0, -1]),
        st.integers(-(2**64), 2**64),
        st.sampled_from([16.0, 1e300, float("inf"), "16", True, None, [16], {"n": 16}]),
    )
    labels = st.one_of(
        st.sampled_from([2, 3, 1000, 1001, 100_000]).map(lambda n: [f"label {i}" for i in range(n)]),
        st.integers(0, 10_000).map(lambda n: ["a", "b" * n]),
    )
    settings_ = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failing example may take EXAMPLE_TIMEOUT_S
    )

    def too_slow(*_):
        raise TooSlow(f"no answer within {EXAMPLE_TIMEOUT_S} s: something was built from the claimed sizes")

    signal.signal(signal.SIGALRM, too_slow)
    _cap_memory()

    # One or two fields changed at a time, so an extreme value is often the only thing wrong.
    model_field = st.sampled_from(["n_layer", "n_embd", "n_head", "n_positions", "vocab_size"])
    adapter_edit = st.one_of(
        st.tuples(st.just("model_config"), model_field, size),
        st.tuples(st.just("lora"), st.sampled_from(["rank", "top_blocks"]), size),
        st.tuples(st.just("label_names"), labels),
        st.tuples(st.just("max_length"), size),
    )

    @settings_
    @given(edits=st.lists(adapter_edit, min_size=1, max_size=2))
    def adapter_metadata(edits):
        meta = json.loads(json.dumps(metadata))
        for *where, value in edits:
            node = meta
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = value
        path = root / "edited.safetensors"
        path.write_bytes(save(tensors, metadata={METADATA_KEY: json.dumps(meta)}))
        signal.alarm(EXAMPLE_TIMEOUT_S)
        message = "loaded"
        try:
            read_adapter(path)
        except AdapterError as error:
            message = str(error)
        finally:
            signal.alarm(0)
        assert message and "\n" not in message

    @settings_
    @given(
        changes=st.dictionaries(
            st.sampled_from(["n_layer", "n_embd", "n_head", "n_positions", "n_ctx", "vocab_size"]),
            size,
            min_size=1,
            max_size=2,
        ),
        epsilon=st.one_of(st.none(), st.sampled_from([1e-5, 0.0, -1.0, 1e300, float("nan"), "1e-5", [1e-5]])),
    )
    def model_config(changes, epsilon):
        values = {**config, **changes}
        if epsilon is not None:
            values["layer_norm_epsilon"] = epsilon
        (model / "config.json").write_text(json.dumps(values))
        signal.alarm(EXAMPLE_TIMEOUT_S)
        message = "loaded"
        try:
            GPT2Classifier.from_checkpoint(model, 2)
        except CheckpointError as error:
            message = str(error)
        finally:
            signal.alarm(0)
        assert message and "\n" not in message

    model_config()
    adapter_metadata()
    print("properties held", flush=True)
