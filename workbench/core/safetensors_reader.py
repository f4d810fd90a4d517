"""Reading tensors from a safetensors file with plain reads, one at a time, no memory map.

The format: 8 bytes of little-endian header length, a JSON header (name -> dtype, shape, byte
offsets), then the raw little-endian tensors. ``safetensors.safe_open`` maps the file instead, and
tensors it returns can point into that mapping, keeping the file's pages counted as the process's
memory for as long as they live.
"""

from __future__ import annotations

import json
import math
import os

import torch

# safetensors dtype codes this loader reads; weights become fp32 once read.
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
# Bytes per element of every code the format defines, to check entries this loader skips
# (an integer causal-mask buffer, say) without refusing the file for them.
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100 * 2**20  # the format's own limit


def read_safetensors_index(f) -> tuple[dict[str, dict], int]:
    """The header of an open safetensors file: name -> {dtype, shape, data_offsets}, and the byte
    where the data starts. The layout is 8 bytes of little-endian header length, a JSON header,
    then the raw tensors; every entry is checked to lie inside the file with the size it claims."""
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(8)
    if len(prefix) < 8:
        raise ValueError("file too short for a safetensors header")
    header_len = int.from_bytes(prefix, "little")
    if header_len > min(MAX_HEADER_BYTES, size - 8):
        raise ValueError("header length runs past the end of the file")
    try:
        header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + header_len
    for name, entry in header.items():
        _check_entry(name, entry, size - data_start)
    return header, data_start


def _check_entry(name: str, entry: object, data_bytes: int) -> None:
    if not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_ITEMSIZE:
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        raise ValueError(f"{name}: unknown or missing dtype {dtype!r}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ValueError(f"{name}: malformed shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)):
        raise ValueError(f"{name}: malformed data offsets {offsets!r}")
    begin, end = offsets
    itemsize = SAFETENSORS_ITEMSIZE[entry["dtype"]]
    if not 0 <= begin <= end <= data_bytes or end - begin != math.prod(shape) * itemsize:
        raise ValueError(f"{name}: data offsets {offsets} do not fit its shape or the file (truncated?)")


class TensorReader:
    """Reads tensors of one open safetensors file into fresh fp32 buffers.

    Tensors that need a transpose or a dtype change pass through one reused scratch buffer, so
    loading allocates exactly the model's weights: a temporary per tensor would leave the freed
    holes in the C heap, resident (about 0.2 GB for GPT-2 small).
    """

    def __init__(self, f, data_start: int):
        self.f, self.data_start = f, data_start
        self.scratch = torch.empty(0, dtype=torch.uint8)

    def read(self, entry: dict, transpose: bool) -> torch.Tensor:
        if entry["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"weights stored as {entry['dtype']}; expected floating point (F32, F16, BF16)")
        dtype, shape = SAFETENSORS_DTYPES[entry["dtype"]], entry["shape"]
        if dtype == torch.float32 and not transpose:
            out = torch.empty(shape)
            self._read_into(out, entry)
            return out
        nbytes = math.prod(shape) * dtype.itemsize
        if self.scratch.numel() < nbytes:
            self.scratch = torch.empty(nbytes, dtype=torch.uint8)
        raw = self.scratch[:nbytes].view(dtype).view(shape)
        self._read_into(raw, entry)
        if transpose:
            raw = raw.t()
        out = torch.empty(raw.shape)
        out.copy_(raw)
        return out

    def _read_into(self, tensor: torch.Tensor, entry: dict) -> None:
        self.f.seek(self.data_start + entry["data_offsets"][0])
        view = memoryview(tensor.view(-1).view(torch.uint8).numpy())
        if self.f.readinto(view) != len(view):
            raise ValueError("file ends inside a tensor (truncated?)")
