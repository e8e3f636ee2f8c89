"""gen_pth.py - PyTorch checkpoints (torch.save) for test_torch_pth.c, each with a safetensors twin.

Writes OUT/pth/*.pth and, for every checkpoint the C loader must accept, a safetensors file with the
same tensors under official RepVGG names (SPEC section 4), contiguous, written by bundle.save. The C
test loads the .pth, normalises names and compares every tensor bit for bit with the twin.

Checkpoints: a tiny RepVGG-like network (few channels, SE on some blocks) in train and deploy form;
with a `module.` prefix; wrapped as {"state_dict": ...} and {"model": ...} next to epoch counters
and optimizer state; in timm's naming (byobnet.py RepVggBlock: stem / stages.J.i / conv_kxk /
conv_1x1 / identity / attn.fc1 / reparam_conv / head.fc, without num_batches_tracked); in float16;
and a dict of strided views (transposes, slices with storage offsets, shared storages, bf16/f64/int
dtypes, 0-d and empty tensors). Then the inputs that must fail cleanly: disallowed globals
(os.system, torch.storage._load_from_bytes), a missing or short storage, a tensor running past its
storage, an expanded view, no tensors, the legacy format, and every single-byte corruption of a
small data.pkl (flips.bin, CRCs recomputed so the unpickler itself sees the damage).
"""
import collections
import io
import os
import pickle
import struct
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundle  # noqa: E402

torch = bundle.import_torch()
nn = torch.nn


# ---- a tiny RepVGG in the official repository's naming -----------------------------------------

def conv_bn(cin, cout, k, s, p, g):
    m = nn.Sequential()
    m.add_module("conv", nn.Conv2d(cin, cout, k, s, p, groups=g, bias=False))
    m.add_module("bn", nn.BatchNorm2d(cout))
    return m


class SEBlock(nn.Module):
    def __init__(self, c, internal):
        super().__init__()
        self.down = nn.Conv2d(c, internal, 1, bias=True)
        self.up = nn.Conv2d(internal, c, 1, bias=True)


class OfficialBlock(nn.Module):
    """Attribute order as in DingXiaoH/RepVGG repvgg.py: se, then the branches."""

    def __init__(self, cin, cout, s, g=1, deploy=False, se=False):
        super().__init__()
        if se:
            self.se = SEBlock(cout, max(1, cout // 4))
        if deploy:
            self.rbr_reparam = nn.Conv2d(cin, cout, 3, s, 1, groups=g, bias=True)
        else:
            self.rbr_identity = nn.BatchNorm2d(cin) if cin == cout and s == 1 else None
            self.rbr_dense = conv_bn(cin, cout, 3, s, 1, g)
            self.rbr_1x1 = conv_bn(cin, cout, 1, s, 0, g)


# (cin, cout, stride, groups, se) per stage; stage0 is a single block, the rest Sequentials.
PLAN = [
    [(3, 4, 2, 1, False)],
    [(4, 4, 2, 1, False), (4, 4, 1, 1, True)],
    [(4, 8, 2, 1, False), (8, 8, 1, 2, True), (8, 8, 1, 1, False)],
]
CLASSES = 5


class OfficialNet(nn.Module):
    def __init__(self, deploy):
        super().__init__()
        self.stage0 = OfficialBlock(*PLAN[0][0][:4], deploy=deploy, se=PLAN[0][0][4])
        for k, stage in enumerate(PLAN[1:], start=1):
            setattr(self, "stage%d" % k, nn.Sequential(
                *[OfficialBlock(*b[:4], deploy=deploy, se=b[4]) for b in stage]))
        self.linear = nn.Linear(PLAN[-1][-1][1], CLASSES)


# ---- the same network in timm's naming (timm/models/byobnet.py) ----------------------------------

class ConvNormAct(nn.Module):
    def __init__(self, cin, cout, k, s, p, g):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class SEModule(nn.Module):
    def __init__(self, c, internal):
        super().__init__()
        self.fc1 = nn.Conv2d(c, internal, 1, bias=True)
        self.fc2 = nn.Conv2d(internal, c, 1, bias=True)


class TimmBlock(nn.Module):
    """timm RepVggBlock: identity, conv_kxk, conv_1x1, attn; reparam_conv once fused."""

    def __init__(self, cin, cout, s, g=1, deploy=False, se=False):
        super().__init__()
        if deploy:
            self.reparam_conv = nn.Conv2d(cin, cout, 3, s, 1, groups=g, bias=True)
        else:
            self.identity = nn.BatchNorm2d(cout) if cin == cout and s == 1 else None
            self.conv_kxk = ConvNormAct(cin, cout, 3, s, 1, g)
            self.conv_1x1 = ConvNormAct(cin, cout, 1, s, 0, g)
        if se:
            self.attn = SEModule(cout, max(1, cout // 4))


class Head(nn.Module):
    def __init__(self, cin, n):
        super().__init__()
        self.fc = nn.Linear(cin, n)


class TimmNet(nn.Module):
    def __init__(self, deploy):
        super().__init__()
        self.stem = TimmBlock(*PLAN[0][0][:4], deploy=deploy, se=PLAN[0][0][4])
        self.stages = nn.Sequential(*[
            nn.Sequential(*[TimmBlock(*b[:4], deploy=deploy, se=b[4]) for b in stage])
            for stage in PLAN[1:]])
        self.head = Head(PLAN[-1][-1][1], CLASSES)


def timm_to_official(name):
    """Independent Python statement of SPEC section 4's timm -> official map."""
    import re
    if name.startswith("stem."):
        name = "stage0." + name[5:]
    m = re.match(r"stages\.(\d+)\.(.*)$", name)
    if m:
        name = "stage%d.%s" % (int(m.group(1)) + 1, m.group(2))
    if name.startswith("head.fc."):
        return "linear." + name[8:]
    parts = name.split(".")
    table = {"conv_kxk": "rbr_dense", "conv_1x1": "rbr_1x1", "identity": "rbr_identity",
             "reparam_conv": "rbr_reparam"}
    out = ".".join(table.get(p, p) for p in parts)
    return out.replace(".attn.fc1.", ".se.down.").replace(".attn.fc2.", ".se.up.")


def randomise(model, gen):
    """Fills every parameter and buffer with distinct random values (BN stats included)."""
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 10000, (1,), generator=gen)))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen))
    return model.state_dict()


# ---- hand-made archives (for inputs torch.save would never write) --------------------------------

def write_archive(path, pkl, storages, prefix="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", pkl)
        for key, raw in storages.items():
            z.writestr(prefix + "/data/" + key, raw)
        z.writestr(prefix + "/version", b"3\n")


def read_archive(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_entries(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, raw in entries:
            z.writestr(name, raw)


class FakeStorage:
    def __init__(self, key, numel, storage_type=None):
        self.key, self.numel = key, numel
        self.storage_type = storage_type or torch.FloatStorage


class FakeTensor:
    """Pickles exactly like a tensor, with whatever offset, size and stride we choose."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False,
                     collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def torch_like_pickle(obj):
    buf = io.BytesIO()
    TorchLikePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


class RunsSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main():
    out = os.path.join(bundle.out_dir(), "pth")
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)

    def save_pair(stem, obj, expect):
        torch.save(obj, os.path.join(out, stem + ".pth"))
        if expect is not None:
            bundle.save(os.path.join(out, stem + ".safetensors"), expect)

    train = randomise(OfficialNet(deploy=False), gen)
    deploy = randomise(OfficialNet(deploy=True), gen)
    opt = torch.optim.SGD(OfficialNet(deploy=False).parameters(), lr=0.1, momentum=0.9)
    for g in opt.param_groups:
        for p in g["params"]:
            opt.state[p]["momentum_buffer"] = torch.randn(p.shape, generator=gen)

    save_pair("official_train", train, train)
    save_pair("official_deploy", deploy, deploy)
    module_train = collections.OrderedDict(("module." + k, v) for k, v in train.items())
    save_pair("module_train", module_train, train)
    save_pair("wrapped_state_dict",
              {"epoch": 7, "arch": "RepVGG-tiny", "best_acc1": 71.25, "state_dict": module_train,
               "optimizer": opt.state_dict(), "flags": [True, None, -3, 2**40]}, train)
    save_pair("wrapped_model",
              {"model": deploy, "optimizer": opt.state_dict(), "epoch": 3, "config": None},
              deploy)

    for form in ("train", "deploy"):
        sd = randomise(TimmNet(deploy=form == "deploy"), gen)
        sd = collections.OrderedDict(
            (k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
        expect = collections.OrderedDict((timm_to_official(k), v) for k, v in sd.items())
        if form == "deploy":  # timm weights re-saved from a DDP run
            sd = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
        save_pair("timm_" + form, sd, expect)
        # The same weights as safetensors under timm's names: normalising must not care where a
        # dictionary came from.
        bundle.save(os.path.join(out, "timm_%s_timmnames.safetensors" % form), sd)

    half = collections.OrderedDict(
        (k, v.half() if v.is_floating_point() else v) for k, v in train.items())
    save_pair("half", half, half)

    # Strided views: what torch.save writes is the storage plus (offset, size, stride).
    base = torch.randn(6, 10, generator=gen)
    b4 = torch.randn(2, 3, 4, 5, generator=gen)
    views = collections.OrderedDict()
    views["transposed"] = base.t()
    views["rows_2_5"] = base[2:5]
    views["every_other_col"] = base[:, ::2]
    views["block"] = base[1:4, 3:9:3]
    views["permuted4d"] = b4.permute(0, 2, 3, 1)
    views["narrow3d"] = b4[1, :, 1:3]
    views["unsqueezed"] = base[2].unsqueeze(0).unsqueeze(2)
    views["bf16_t"] = torch.randn(3, 5, generator=gen).to(torch.bfloat16).t()
    views["f64"] = torch.randn(4, 2, generator=gen, dtype=torch.float64)[:, 1]
    views["i32"] = torch.arange(-6, 6, dtype=torch.int32).reshape(3, 4).t()
    views["i64_scalar"] = torch.tensor(123456789012, dtype=torch.int64)
    views["f16_slice"] = torch.randn(9, generator=gen).half()[3:7]
    views["param"] = nn.Parameter(torch.randn(2, 3, generator=gen))
    views["empty"] = torch.zeros(0, 3)
    views["note"] = "strings, ints and lists next to tensors are skipped"
    expect = collections.OrderedDict(
        (k, v.detach().contiguous()) for k, v in views.items() if torch.is_tensor(v))
    save_pair("views", views, expect)

    # ---- inputs that must be refused -----------------------------------------------------------
    write_archive(os.path.join(out, "bad_os_system.pth"),
                  b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.", {})
    write_archive(os.path.join(out, "bad_reduce_system.pth"),
                  pickle.dumps({"x": RunsSystem()}, protocol=2), {})
    write_archive(os.path.join(out, "bad_load_from_bytes.pth"),
                  b"\x80\x02ctorch.storage\n_load_from_bytes\nq\x00C\x01\x00\x85R.", {})

    small = collections.OrderedDict(w=torch.randn(2, 3, generator=gen),
                                     b=torch.randn(3, generator=gen))
    torch.save(small, os.path.join(out, "small.pth"))
    entries = read_archive(os.path.join(out, "small.pth"))
    write_entries(os.path.join(out, "bad_missing_storage.pth"),
                  [(n, r) for n, r in entries if not n.endswith("/data/0")])
    write_entries(os.path.join(out, "bad_short_storage.pth"),
                  [(n, r[:len(r) // 2] if n.endswith("/data/1") else r) for n, r in entries])
    write_archive(os.path.join(out, "bad_past_storage.pth"),
                  torch_like_pickle(collections.OrderedDict(
                      w=FakeTensor(FakeStorage("0", 6), 0, (4, 4), (4, 1)))),
                  {"0": struct.pack("<6f", *range(6))})
    write_archive(os.path.join(out, "bad_offset_past_storage.pth"),
                  torch_like_pickle(collections.OrderedDict(
                      w=FakeTensor(FakeStorage("0", 6), 5, (2,), (1,)))),
                  {"0": struct.pack("<6f", *range(6))})
    torch.save({"x": torch.zeros(3).expand(4, 3)}, os.path.join(out, "bad_expanded.pth"))
    torch.save({"epoch": 3, "arch": "RepVGG-A0"}, os.path.join(out, "bad_no_tensors.pth"))
    torch.save(small, os.path.join(out, "bad_legacy.pth"), _use_new_zipfile_serialization=False)

    # Every byte of small.pth's data.pkl flipped (two ways), re-zipped with a valid CRC, as
    # records of (u32 length, archive bytes).
    pkl_name = [n for n, _ in entries if n.endswith("data.pkl")][0]
    pkl = dict(entries)[pkl_name]
    with open(os.path.join(out, "flips.bin.tmp"), "wb") as f:
        for pos in range(len(pkl)):
            for mask in (0x01, 0x80):
                bad = bytearray(pkl)
                bad[pos] ^= mask
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
                    for n, r in entries:
                        z.writestr(n, bytes(bad) if n == pkl_name else r)
                f.write(struct.pack("<I", len(buf.getvalue())))
                f.write(buf.getvalue())
    os.replace(os.path.join(out, "flips.bin.tmp"), os.path.join(out, "flips.bin"))
    with open(os.path.join(out, "small.pkl"), "wb") as f:
        f.write(pkl)
    print("wrote %s" % out)


if __name__ == "__main__":
    main()
