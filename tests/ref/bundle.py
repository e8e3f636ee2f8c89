"""bundle.py - writes reference-tensor bundles for the C tests, and reads safetensors back.

A bundle is a plain safetensors file: an 8-byte little-endian header length, a JSON header naming
every tensor's dtype, shape and byte range, then the raw little-endian data. It is self-describing
(no positional blobs) and the C side reads it with the same loader it uses for model weights.
Written by hand here (a dozen lines) so that the tests need only Debian's python3-torch and no
safetensors package.

Run the generators with /usr/bin/python3 (Debian's interpreter, where `import torch` works).
A generator that cannot import torch exits 77 so ctest reports the test as skipped, not passed.
"""
import json
import os
import struct
import sys

_DTYPES = {}


def import_torch():
    """Imports torch or exits 77 (ctest: skipped) with a reason."""
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the machine
        print("SKIPPED: cannot import torch (%s); install Debian's python3-torch and run under "
              "/usr/bin/python3" % e)
        sys.exit(77)
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # the plain CPU kernels are the reference
    return torch


def _dtype_name(t):
    import torch
    names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
    return names[t.dtype]


def save(path, tensors, metadata=None):
    """Writes an ordered dict name -> torch tensor as safetensors, atomically."""
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes() if t.dtype != _bf16() else t.view(_i16()).numpy().tobytes()
        header[name] = {"dtype": _dtype_name(t), "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load(path):
    """Reads a safetensors file into (ordered dict name -> torch tensor, metadata dict)."""
    import numpy as np
    import torch
    np_types = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
                "I32": np.int32, "U8": np.uint8}
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[base + a:base + b], dtype=np_types[info["dtype"]])
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"])
    return out, meta


def _bf16():
    import torch
    return torch.bfloat16


def _i16():
    import torch
    return torch.int16


def out_dir():
    """The directory given as argv[1] (created), where bundles go."""
    if len(sys.argv) < 2:
        print("usage: %s OUT_DIR" % sys.argv[0])
        sys.exit(2)
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    return d
