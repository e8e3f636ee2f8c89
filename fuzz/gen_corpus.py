"""gen_corpus.py - regenerates the fuzz seeds in fuzz/corpus/ (small on purpose: a few KB in all).

Run with /usr/bin/python3 (Debian's python3-torch): /usr/bin/python3 fuzz/gen_corpus.py
The seeds are committed; rerun only to change them. Values are seeded, so reruns are stable apart
from torch.save's zip timestamps.
"""
import collections
import io
import os
import pickle
import sys
import zipfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "ref"))
import bundle  # noqa: E402

torch = bundle.import_torch()


def main():
    pk = os.path.join(here, "corpus", "pickle")
    st = os.path.join(here, "corpus", "safetensors")
    os.makedirs(pk, exist_ok=True)
    os.makedirs(st, exist_ok=True)
    g = torch.Generator().manual_seed(7)

    # A plain state dict: f32, a float16 slice with a storage offset, an int64 scalar.
    small = collections.OrderedDict()
    small["w"] = torch.randn(2, 3, generator=g)
    small["b"] = torch.randn(6, generator=g).half()[2:5]
    small["n"] = torch.tensor(3)
    torch.save(small, os.path.join(pk, "small.pth"))
    with zipfile.ZipFile(os.path.join(pk, "small.pth")) as z:
        raw = z.read([n for n in z.namelist() if n.endswith("data.pkl")][0])
    with open(os.path.join(pk, "small.pkl"), "wb") as f:
        f.write(raw)

    # A wrapped, DDP-prefixed, timm-named checkpoint with a transposed (strided) tensor.
    wrapped = {"epoch": 1, "state_dict": collections.OrderedDict(
        [("module.stem.conv_kxk.conv.weight", torch.randn(3, 2, generator=g).t()),
         ("module.head.fc.bias", torch.randn(2, generator=g).to(torch.bfloat16))])}
    torch.save(wrapped, os.path.join(pk, "wrapped.pth"))

    # Protocol 4 framing and the scalar opcodes, as a bare pickle.
    with open(os.path.join(pk, "proto4.pkl"), "wb") as f:
        f.write(pickle.dumps({"a": [1, -2, 2**40, 2.5, None, True, (1, 2, 3)], "s": "x" * 3},
                             protocol=4))

    bundle.save(os.path.join(st, "two.safetensors"),
                collections.OrderedDict(w=torch.randn(2, 2, generator=g),
                                        i=torch.arange(3, dtype=torch.int64)),
                metadata={"format": "pt"})
    bundle.save(os.path.join(st, "scalar_bf16.safetensors"),
                collections.OrderedDict(s=torch.tensor(1.5),
                                        h=torch.randn(3, generator=g).to(torch.bfloat16),
                                        e=torch.zeros(0, 2)))
    total = sum(os.path.getsize(os.path.join(d, n)) for d in (pk, st) for n in os.listdir(d))
    print("fuzz seeds: %d bytes" % total)


if __name__ == "__main__":
    main()
