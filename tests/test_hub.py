"""Downloads against a local HTTP server: the SMS zip (cache, resume, fallback) and Hub checkpoints."""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from _http_server import LocalServer, Route
from safetensors.torch import save_file

from workbench.core import hub
from workbench.core.adapters import read_adapter
from workbench.core.data import sms
from workbench.core.errors import AdapterError, Cancelled, CheckpointError, DownloadError
from workbench.core.fileio import PICKLE_SUFFIXES

SMS_LINES = 'ham\tOk lar... Joking wif u oni...\nspam\t"Free entry in 2 a wkly comp\n ham\t trailing space \n'


def make_sms_zip(padding: int = 0) -> bytes:
    """A zip shaped like UCI's: the message file plus the readme (random padding defeats compression)."""
    extra = random.Random(0).randbytes(padding)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("SMSSpamCollection", SMS_LINES)
        zf.writestr("readme", "SMS Spam Collection v.1 \xa9 Almeida".encode("latin-1") + extra)
    return buffer.getvalue()


def closed_port_url() -> str:
    """A localhost address nobody listens on: connecting fails at once with 'connection refused'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/sms.zip"


@pytest.fixture
def server():
    with LocalServer() as local:
        yield local


# --------------------------------------------------------------------------- SMS Spam Collection


def test_first_download_extracts_the_files_and_reports_progress(server, tmp_path):
    data = make_sms_zip(padding=200_000)  # several 64 KB chunks
    server.routes["/sms.zip"] = Route(data)
    calls = []

    path = sms.download_sms_spam(urls=(server.url("/sms.zip"),), cache=tmp_path, progress=lambda *a: calls.append(a))

    assert path == tmp_path / "SMSSpamCollection"
    assert path.read_bytes() == SMS_LINES.encode()
    assert (tmp_path / "readme").is_file()
    assert not list(tmp_path.glob("*.part"))
    done = [c[0] for c in calls]
    assert done == sorted(done) and len(done) > 2
    assert calls[-1][:2] == (len(data), len(data))
    assert "SMS Spam Collection" in calls[-1][2]


def test_default_folder_is_under_the_cache_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    server.routes["/sms.zip"] = Route(make_sms_zip())
    path = sms.download_sms_spam(urls=(server.url("/sms.zip"),))
    assert path == tmp_path / "cache" / "sms_spam_collection" / "SMSSpamCollection"


def test_second_call_uses_the_cache_without_a_request(server, tmp_path):
    server.routes["/sms.zip"] = Route(make_sms_zip())
    urls = (server.url("/sms.zip"),)
    first = sms.download_sms_spam(urls=urls, cache=tmp_path)
    requests_after_first = len(server.requests)

    second = sms.download_sms_spam(urls=urls, cache=tmp_path)

    assert second == first
    assert len(server.requests) == requests_after_first == 1


def test_dropped_connection_fails_then_the_next_call_resumes_with_range(server, tmp_path):
    data = make_sms_zip(padding=150_000)
    half = len(data) // 2
    server.routes["/sms.zip"] = Route(data, drop_after=half)
    urls = (server.url("/sms.zip"),)

    with pytest.raises(DownloadError, match="dropped") as caught:
        sms.download_sms_spam(urls=urls, cache=tmp_path)
    assert "run again to resume" in str(caught.value)
    (part,) = tmp_path.glob("*.part")
    assert part.read_bytes() == data[:half]

    server.routes["/sms.zip"].drop_after = None
    calls = []
    path = sms.download_sms_spam(urls=urls, cache=tmp_path, progress=lambda *a: calls.append(a))

    assert server.requests[-1].headers["range"] == f"bytes={half}-"
    assert calls[0][:2] == (half, len(data))  # progress starts where the partial file ended
    assert path.read_bytes() == SMS_LINES.encode()
    assert not part.exists()


def test_resume_restarts_when_the_server_ignores_range(server, tmp_path):
    data = make_sms_zip()
    part = tmp_path / f"sms_spam_collection.{sms._short_hash(server.url('/sms.zip'))}.zip.part"
    part.write_bytes(b"stale bytes from elsewhere")
    server.routes["/sms.zip"] = Route(data, ranges=False)  # answers 200 with the whole file

    path = sms.download_sms_spam(urls=(server.url("/sms.zip"),), cache=tmp_path)

    assert server.requests[0].headers["range"] == "bytes=26-"
    assert path.read_bytes() == SMS_LINES.encode()


def test_first_url_404_falls_back_to_the_second(server, tmp_path):
    server.routes["/mirror.zip"] = Route(make_sms_zip())
    urls = (server.url("/missing.zip"), server.url("/mirror.zip"))

    path = sms.download_sms_spam(urls=urls, cache=tmp_path)

    assert path.read_bytes() == SMS_LINES.encode()
    assert [r.path for r in server.requests] == ["/missing.zip", "/mirror.zip"]


def test_unreachable_server_raises_download_error_naming_urls_and_manual_route(tmp_path):
    url = closed_port_url()

    with pytest.raises(DownloadError) as caught:
        sms.download_sms_spam(urls=(url,), cache=tmp_path, timeout=5)

    message = str(caught.value)
    assert url in message and "connection refused" in message
    assert str(tmp_path / "SMSSpamCollection") in message  # where to put the file by hand


def test_all_urls_failing_lists_each_reason(server, tmp_path):
    urls = (server.url("/a.zip"), closed_port_url())
    with pytest.raises(DownloadError) as caught:
        sms.download_sms_spam(urls=urls, cache=tmp_path)
    assert "HTTP 404" in str(caught.value) and urls[1] in str(caught.value)


def test_a_file_that_is_not_a_zip_is_rejected_and_removed(server, tmp_path):
    server.routes["/sms.zip"] = Route(b"<html>maintenance</html>")
    with pytest.raises(DownloadError, match="not a valid zip"):
        sms.download_sms_spam(urls=(server.url("/sms.zip"),), cache=tmp_path)
    assert not list(tmp_path.glob("*.part"))


def test_a_zip_without_the_message_file_is_rejected(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("other.txt", "x")
    server.routes["/sms.zip"] = Route(buffer.getvalue())
    with pytest.raises(DownloadError, match="has no SMSSpamCollection"):
        sms.download_sms_spam(urls=(server.url("/sms.zip"),), cache=tmp_path)


def test_stop_cancels_the_download_and_keeps_the_partial_file(server, tmp_path):
    data = make_sms_zip(padding=200_000)
    server.routes["/sms.zip"] = Route(data)
    urls = (server.url("/sms.zip"),)
    stop = threading.Event()

    def progress(done, total, message):
        if done > 0:
            stop.set()

    with pytest.raises(Cancelled):
        sms.download_sms_spam(urls=urls, cache=tmp_path, progress=progress, stop=stop)
    (part,) = tmp_path.glob("*.part")
    kept = part.stat().st_size
    assert 0 < kept < len(data)

    path = sms.download_sms_spam(urls=urls, cache=tmp_path)
    assert server.requests[-1].headers["range"] == f"bytes={kept}-"
    assert path.read_bytes() == SMS_LINES.encode()


def test_stop_set_before_the_call_makes_no_request(server, tmp_path):
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        sms.download_sms_spam(urls=(server.url("/sms.zip"),), cache=tmp_path, stop=stop)
    assert server.requests == []


# --------------------------------------------------------------------------- Hub checkpoints

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "openai-community/gpt2"


def checkpoint_files(tmp_path: Path) -> dict[str, bytes]:
    """A tiny config + safetensors pair and tokenizer stand-ins, as the Hub would serve them."""
    weights = tmp_path / "weights.safetensors"
    save_file({"wte.weight": torch.arange(12, dtype=torch.float32).reshape(4, 3)}, str(weights))
    return {
        "config.json": json.dumps({"model_type": "gpt2", "n_embd": 3, "n_layer": 1, "n_head": 1}).encode(),
        "model.safetensors": weights.read_bytes(),
        "vocab.json": b'{"a": 0}',
        "merges.txt": b"#version: 0.2\n",
    }


def serve_repo(server: LocalServer, files: dict[str, bytes], repo: str = REPO) -> None:
    """The headers huggingface_hub's HEAD/GET on /{repo}/resolve/{revision}/{file} rely on."""
    for name, body in files.items():
        server.routes[f"/{repo}/resolve/main/{name}"] = Route(
            body,
            headers={
                "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                "X-Repo-Commit": COMMIT,
                "Accept-Ranges": "bytes",
            },
        )


@pytest.fixture
def hub_server(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    # What the Hub answers for a file a repo does not have.
    with LocalServer(not_found_headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}) as local:
        yield local


def test_resolve_downloads_into_hf_home_and_reports_bytes(hub_server, tmp_path):
    files = checkpoint_files(tmp_path)
    serve_repo(hub_server, files)
    calls = []
    assert not hub.is_cached("gpt2")
    assert hub.cached_size_bytes("gpt2") is None

    folder = hub.resolve_checkpoint("gpt2", endpoint=hub_server.base, progress=lambda *a: calls.append(a))

    assert folder == tmp_path / "hf-home" / "hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT
    for name, body in files.items():
        assert (folder / name).read_bytes() == body
    weights = [c for c in calls if "model.safetensors" in c[2]]
    assert weights[-1][:2] == (len(files["model.safetensors"]),) * 2
    assert hub.is_cached("gpt2")
    assert hub.cached_size_bytes("gpt2") == sum(len(b) for b in files.values())


def test_a_cached_model_resolves_without_any_request(hub_server, tmp_path):
    serve_repo(hub_server, checkpoint_files(tmp_path))
    first = hub.resolve_checkpoint("gpt2", endpoint=hub_server.base)
    seen = len(hub_server.requests)

    assert hub.resolve_checkpoint("gpt2", endpoint=hub_server.base) == first
    assert hub.resolve_checkpoint("gpt2", offline=True) == first
    assert len(hub_server.requests) == seen


def test_tokenizer_files_are_optional(hub_server, tmp_path):
    files = checkpoint_files(tmp_path)
    serve_repo(hub_server, {k: files[k] for k in hub.CHECKPOINT_FILES})

    folder = hub.resolve_checkpoint("gpt2", endpoint=hub_server.base)

    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_a_repo_without_weights_is_a_checkpoint_error(hub_server, tmp_path):
    serve_repo(hub_server, {"config.json": b"{}"})
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        hub.resolve_checkpoint("gpt2", endpoint=hub_server.base)


def test_offline_and_not_cached_names_repo_files_and_both_remedies(hub_server):
    with pytest.raises(CheckpointError) as caught:
        hub.resolve_checkpoint("gpt2-medium", endpoint=hub_server.base, offline=True)
    message = str(caught.value)
    assert "openai-community/gpt2-medium" in message
    assert "config.json, model.safetensors" in message
    assert "`workbench download gpt2-medium`" in message
    assert "local folder that holds config.json and model.safetensors" in message
    assert hub_server.requests == []


def test_hf_hub_offline_variable_is_honoured(hub_server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline"):
        hub.resolve_checkpoint("gpt2", endpoint=hub_server.base)
    assert hub_server.requests == []


def test_stop_during_the_weights_download_cancels(hub_server, tmp_path):
    serve_repo(hub_server, checkpoint_files(tmp_path))
    stop = threading.Event()

    def progress(done, total, message):
        if "model.safetensors" in message and done:
            stop.set()

    with pytest.raises(Cancelled):
        hub.resolve_checkpoint("gpt2", endpoint=hub_server.base, progress=progress, stop=stop)
    assert not hub.is_cached("gpt2")


def test_local_folder_with_config_and_safetensors_is_returned(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))

    assert hub.resolve_checkpoint(str(tmp_path)) == tmp_path.resolve()
    assert hub.is_cached(str(tmp_path))
    assert hub.cached_size_bytes(str(tmp_path)) == sum(p.stat().st_size for p in tmp_path.iterdir())


def test_folder_with_only_pickled_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")

    with pytest.raises(CheckpointError) as caught:
        hub.resolve_checkpoint(str(tmp_path))
    message = str(caught.value)
    assert "pytorch_model.bin" in message and "pickle" in message and "safetensors" in message
    assert not hub.is_cached(str(tmp_path))


@pytest.mark.parametrize("suffix", sorted(PICKLE_SUFFIXES | {".PTH", ".Pickle"}))
def test_every_pickle_suffix_is_named_as_a_pickle(tmp_path, suffix):
    """One list of pickle suffixes for the model folder and the adapter file, in any case."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / f"weights{suffix}").write_bytes(b"not even a pickle")
    with pytest.raises(CheckpointError, match=f"only pickled PyTorch weights \\(weights{suffix}\\)"):
        hub.resolve_checkpoint(str(tmp_path))
    with pytest.raises(AdapterError, match="looks like a PyTorch pickle"):
        read_adapter(tmp_path / f"weights{suffix}")


def test_folder_missing_files_lists_them(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        hub.resolve_checkpoint(str(tmp_path))


def test_unknown_name_or_missing_folder_is_explained(tmp_path):
    with pytest.raises(CheckpointError, match="neither a GPT-2 size"):
        hub.resolve_checkpoint(str(tmp_path / "nowhere"))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file"):
        hub.resolve_checkpoint(str(tmp_path / "model.safetensors"))
    assert hub.cached_size_bytes("gpt2-xxl") is None


def test_unreachable_hub_fails_fast_with_the_remedies(hub_server):
    endpoint = closed_port_url().rsplit("/", 1)[0]
    with pytest.raises(CheckpointError) as caught:
        hub.resolve_checkpoint("gpt2", endpoint=endpoint)
    message = str(caught.value)
    assert "could not be reached" in message and "`workbench download gpt2`" in message


def test_a_partial_file_the_server_cannot_continue_is_restarted(server, tmp_path):
    data = make_sms_zip()
    part = tmp_path / f"sms_spam_collection.{sms._short_hash(server.url('/sms.zip'))}.zip.part"
    part.write_bytes(b"x" * (len(data) + 10))  # longer than the file: the server answers 416
    server.routes["/sms.zip"] = Route(data)

    path = sms.download_sms_spam(urls=(server.url("/sms.zip"),), cache=tmp_path)

    assert path.read_bytes() == SMS_LINES.encode()
    assert [r.headers.get("range") for r in server.requests] == [f"bytes={len(data) + 10}-", None]
