"""safetensors F32 read/write without the safetensors package (the machines that run our
references may not have it): an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}} (plus "__metadata__"), then the raw little-endian data."""
import json
import os
import struct

import numpy as np
import torch


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: torch.Tensor}, stored as F32. Written to a temp file, then renamed."""
    header = {"__metadata__": dict(metadata or {})}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).cpu().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header)
    text += " " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text.encode("utf-8"))
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    """{name: float32 torch.Tensor} and the metadata dict; F32 and BF16 entries only."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length).decode("utf-8"))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        raw = data[start:end]
        if entry["dtype"] == "F32":
            array = np.frombuffer(raw, dtype="<f4").copy()
        elif entry["dtype"] == "BF16":
            array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: '{name}' has dtype {entry['dtype']}, expected F32 or BF16")
        out[name] = torch.from_numpy(array.reshape(entry["shape"]))
    return out, metadata
