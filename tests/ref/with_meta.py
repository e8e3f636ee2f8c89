"""with_meta.py - copies a safetensors file with new metadata, optionally with every tensor once
more under a prefix (as a training checkpoint holds momentum.* beside the weights).

usage: with_meta.py SRC DST KEY=VALUE... [--copy-prefix PREFIX]

Written for tests/cli_onnx.sh, which needs weights that look like `repvgg train`'s output
(repvgg.size recorded, or a checkpoint) without training a model. The format is an 8-byte
little-endian header length, a JSON header and the raw data; nothing but json and struct is
needed, so it runs where the safetensors package is not installed.
"""
import json
import struct
import sys


def main():
    args = sys.argv[1:]
    prefix = None
    if "--copy-prefix" in args:
        i = args.index("--copy-prefix")
        prefix = args[i + 1]
        del args[i:i + 2]
    if len(args) < 2:
        sys.exit(__doc__)
    src, dst, pairs = args[0], args[1], args[2:]
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    tensors = {k: v for k, v in head.items() if k != "__metadata__"}
    out = dict(tensors)
    body = data
    if prefix:
        for k, v in tensors.items():
            a, b = v["data_offsets"]
            out[prefix + k] = dict(v, data_offsets=[len(body), len(body) + b - a])
            body += data[a:b]
    meta = dict(head.get("__metadata__", {}))
    for p in pairs:
        k, _, v = p.partition("=")
        meta[k] = v
    out["__metadata__"] = meta
    js = json.dumps(out).encode()
    js += b" " * (-len(js) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + body)


if __name__ == "__main__":
    main()
