"""st_roundtrip.py - safetensors across the language boundary, driven by tests/cli_safetensors.sh.

  make DIR   writes DIR/train.safetensors (a random train-form state dict as PyTorch code would
             save it: official names, no metadata), DIR/x.npy (an input batch) and
             DIR/expect.npy (PyTorch's eval-mode logits of the train form); and the same weights
             as torch.save checkpoints: official train form (train.pth), with `module.` inside a
             {"state_dict": ...} wrapper (train_module.pth), deploy form with `module.`
             (deploy_module.pth), and timm names, train form (timm.pth)
  logits DIR FILE.npy   checks that FILE.npy (C's logits) equals DIR/expect.npy
  check DIR  reads DIR/deploy.safetensors written by `repvgg convert` (C), checks its tensors
             against PyTorch's own conversion of the same weights, loads them into a deploy-form
             PyTorch model and checks its logits against DIR/expect.npy; also checks that
             DIR/pred.npy (from `repvgg predict`) matches.
Exits 0 when everything agrees, 1 otherwise (printing what differs).
"""
import os
import sys

import numpy as np

import bundle

torch = bundle.import_torch()
import gen_model  # noqa: E402  (the RepVGG re-statement used by the parity tests)

ARCH = ([1, 2, 2, 1], [0.25, 0.5, 0.5, 0.5], {2: 2}, True)


def build():
    blocks, width, gmap, se = ARCH
    torch.manual_seed(11)
    m = gen_model.RepVGG(blocks, width, gmap, se, 3, 6)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def to_timm(name):
    """Official RepVGG name -> timm's byobnet name (SPEC §4)."""
    parts = name.split(".")
    if parts[0] == "stage0":
        parts = ["stem"] + parts[1:]
    elif parts[0].startswith("stage"):
        parts = ["stages", str(int(parts[0][5:]) - 1)] + parts[1:]
    elif parts[0] == "linear":
        parts = ["head", "fc"] + parts[1:]
    out = ".".join(parts)
    for a, b in (("rbr_dense", "conv_kxk"), ("rbr_1x1", "conv_1x1"), ("rbr_identity", "identity"),
                 ("rbr_reparam", "reparam_conv"), ("se.down", "attn.fc1"), ("se.up", "attn.fc2")):
        out = out.replace(a, b)
    return out


def check_logits(d, path):
    expect = np.load(os.path.join(d, "expect.npy"))
    got = np.load(path)
    err = np.abs(got - expect).max()
    tol = 1e-5 * np.abs(expect).max()
    print("%s: max |C - PyTorch| %.3g (tol %.3g)" % (os.path.basename(path), err, tol))
    return 0 if got.shape == expect.shape and err <= tol else 1


def main():
    mode, d = sys.argv[1], sys.argv[2]
    model = build()
    if mode == "make":
        bundle.save(os.path.join(d, "train.safetensors"), model.state_dict())
        x = torch.randn(3, 3, 40, 40)
        np.save(os.path.join(d, "x.npy"), x.numpy())
        with torch.no_grad():
            np.save(os.path.join(d, "expect.npy"), model(x).numpy())
        sd = model.state_dict()
        torch.save(sd, os.path.join(d, "train.pth"))
        torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}},
                   os.path.join(d, "train_module.pth"))
        deploy = {}
        with torch.no_grad():
            for pre, b in model.blocks():
                k, bias = b.fused()
                for n_, t in ((".se.down.weight", None), (".se.down.bias", None),
                              (".se.up.weight", None), (".se.up.bias", None)):
                    if (pre + n_) in sd:
                        deploy["module." + pre + n_] = sd[pre + n_]
                deploy["module." + pre + ".rbr_reparam.weight"] = k
                deploy["module." + pre + ".rbr_reparam.bias"] = bias
        deploy["module.linear.weight"] = sd["linear.weight"]
        deploy["module.linear.bias"] = sd["linear.bias"]
        torch.save(deploy, os.path.join(d, "deploy_module.pth"))
        torch.save({to_timm(k): v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
                   os.path.join(d, "timm.pth"))
        return 0
    if mode == "logits":
        return check_logits(d, sys.argv[3])
    tensors, meta = bundle.load(os.path.join(d, "deploy.safetensors"))
    ok = True
    if meta.get("repvgg.form") != "deploy":
        print("metadata repvgg.form is %r, expected 'deploy'" % meta.get("repvgg.form"))
        ok = False
    with torch.no_grad():
        for pre, b in model.blocks():
            k, bias = b.fused()
            for name, want in ((pre + ".rbr_reparam.weight", k), (pre + ".rbr_reparam.bias", bias)):
                got = tensors.get(name)
                if got is None or got.shape != want.shape:
                    print("missing or misshapen:", name)
                    ok = False
                    continue
                err = (got - want).abs().max().item()
                if err > 1e-5 * max(1.0, want.abs().max().item()):
                    print("%s differs from PyTorch's conversion by %g" % (name, err))
                    ok = False
    expect = np.load(os.path.join(d, "expect.npy"))
    pred = np.load(os.path.join(d, "pred.npy"))
    err = np.abs(pred - expect).max()
    tol = 1e-5 * np.abs(expect).max()
    print("C deploy-form logits vs PyTorch train-form logits: max |diff| %.3g (tol %.3g)" % (err, tol))
    ok = ok and err <= tol
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
