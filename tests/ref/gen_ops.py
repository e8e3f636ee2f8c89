"""gen_ops.py - PyTorch reference tensors for every layer kernel in include/rvg/ops.h.

Writes OUT_DIR/ops.safetensors (OUT_DIR = argv[1]), read by tests/test_torch_ops.c. For each case it
stores the inputs, the forward outputs, a random upstream gradient and the gradients torch autograd
gives for it. Names are "<op>.<case>.<tensor>"; each case also stores "<op>.<case>.shape" (I64) so
the C test needs no positional knowledge.

Inputs are random float32 values; the references are computed by torch in float64 from exactly those
values and then rounded to float32, so the C test's tolerances measure the kernels' float32 error
only, not PyTorch's. The semantics are torch's own (F.conv2d, F.batch_norm, F.cross_entropy, ...).

Run with /usr/bin/python3 (Debian's python3-torch); exits 77 when torch is missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle import import_torch, out_dir, save  # noqa: E402

torch = import_torch()
F = torch.nn.functional
D = torch.float64

# name: N, C, H, W, K, R, S, stride, pad, groups, bias
CONV_CASES = {
    "c3x3_s1_p1": (2, 3, 9, 7, 5, 3, 3, 1, 1, 1, 1),
    "c3x3_s2_p1_g2_n1": (1, 6, 11, 13, 10, 3, 3, 2, 1, 2, 0),
    "c1x1_s1_p0_g4": (2, 12, 7, 9, 12, 1, 1, 1, 0, 4, 0),
    "c1x1_s2_p0": (3, 5, 8, 6, 7, 1, 1, 2, 0, 1, 1),
    "c3x3_s2_p0_g4_n1": (1, 20, 15, 15, 12, 3, 3, 2, 0, 4, 1),
    "c3x3_s1_p0_g2": (2, 10, 5, 5, 6, 3, 3, 1, 0, 2, 0),
    "c5x3_s2_p1": (2, 4, 10, 9, 8, 5, 3, 2, 1, 1, 1),
    "c3x3_s1_p1_wide": (2, 61, 13, 11, 67, 3, 3, 1, 1, 1, 1),
    "c3x3_s2_p1_g4_wide": (3, 36, 9, 15, 28, 3, 3, 2, 1, 4, 0),
    "c3x3_s1_p1_tiny": (1, 1, 1, 1, 1, 3, 3, 1, 1, 1, 1),
}

# name: N, C, H, W
BN_CASES = {
    "b4x5x6x7": (4, 5, 6, 7),
    "b1x3x5x5": (1, 3, 5, 5),
    "b8x16x1x1": (8, 16, 1, 1),
    "b2x24x17x9": (2, 24, 17, 9),
}

# name: N, C, K
LINEAR_CASES = {
    "l5x37x11": (5, 37, 11),
    "l3x1280x10": (3, 1280, 10),
    "l1x7x1": (1, 7, 1),
}

# name: N, K
XENT_CASES = {
    "x6x10": (6, 10),
    "x1x1000": (1, 1000),
    "x17x3": (17, 3),
}


def randn(*shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape) * scale + shift).float()


def grads(out, inputs, dy):
    """Gradients of sum(out * dy) with respect to inputs (float64 leaves)."""
    return torch.autograd.grad(out, inputs, grad_outputs=dy)


def conv(t, name, case):
    n, c, h, w, k, r, s, st, pad, g, has_bias = case
    x = randn(n, c, h, w)
    wt = randn(k, c // g, r, s, scale=(1.0 / (c // g * r * s)) ** 0.5)
    b = randn(k) if has_bias else None
    xd = x.to(D).requires_grad_()
    wd = wt.to(D).requires_grad_()
    bd = b.to(D).requires_grad_() if has_bias else None
    y = F.conv2d(xd, wd, bd, stride=st, padding=pad, groups=g)
    dy = randn(*y.shape)
    leaves = [xd, wd] + ([bd] if has_bias else [])
    gr = grads(y, leaves, dy.to(D))
    p = "conv.%s." % name
    t[p + "shape"] = torch.tensor(list(case), dtype=torch.int64)
    t[p + "x"] = x
    t[p + "w"] = wt
    if has_bias:
        t[p + "b"] = b
    t[p + "y"] = y.detach().float()
    t[p + "dy"] = dy
    t[p + "dx"] = gr[0].float()
    t[p + "dw"] = gr[1].float()
    if has_bias:
        t[p + "db"] = gr[2].float()


def bn(t, name, case):
    n, c, h, w = case
    momentum, eps = 0.1, 1e-5
    x = randn(n, c, h, w, scale=2.0, shift=0.5)
    gamma = randn(c, scale=0.5, shift=1.0)
    beta = randn(c)
    rm = randn(c, scale=0.3)
    rv = (torch.rand(c) + 0.5).float()
    p = "bn.%s." % name
    t[p + "shape"] = torch.tensor(list(case), dtype=torch.int64)
    t[p + "x"] = x
    t[p + "gamma"] = gamma
    t[p + "beta"] = beta
    t[p + "running_mean_in"] = rm
    t[p + "running_var_in"] = rv

    # Training mode through the module, as a model uses it: updates the running stats in place.
    mod = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum).to(D)
    with torch.no_grad():
        mod.weight.copy_(gamma.to(D))
        mod.bias.copy_(beta.to(D))
        mod.running_mean.copy_(rm.to(D))
        mod.running_var.copy_(rv.to(D))
    mod.train()
    xd = x.to(D).requires_grad_()
    y = mod(xd)
    dy = randn(*y.shape)
    dx, dgamma, dbeta = grads(y, [xd, mod.weight, mod.bias], dy.to(D))
    # The saved statistics torch keeps for backward: batch mean and 1/sqrt(biased var + eps).
    _, save_mean, save_invstd = torch.native_batch_norm(
        x.to(D), gamma.to(D), beta.to(D), None, None, True, momentum, eps)
    t[p + "y"] = y.detach().float()
    t[p + "saved_mean"] = save_mean.float()
    t[p + "saved_invstd"] = save_invstd.float()
    t[p + "running_mean_out"] = mod.running_mean.detach().float()
    t[p + "running_var_out"] = mod.running_var.detach().float()
    t[p + "dy"] = dy
    t[p + "dx"] = dx.float()
    t[p + "dgamma"] = dgamma.float()
    t[p + "dbeta"] = dbeta.float()

    # Eval mode with the (input) running statistics.
    mod.eval()
    with torch.no_grad():
        mod.running_mean.copy_(rm.to(D))
        mod.running_var.copy_(rv.to(D))
        t[p + "y_eval"] = mod(x.to(D)).float()


def pointwise(t):
    # ReLU: no exact zeros in x, where the subgradient convention would matter.
    x = randn(3, 5, 7, 9)
    x[x == 0] = 0.25
    xd = x.to(D).requires_grad_()
    y = F.relu(xd)
    dy = randn(*y.shape)
    t["relu.x"] = x
    t["relu.y"] = y.detach().float()
    t["relu.dy"] = dy
    t["relu.dx"] = grads(y, [xd], dy.to(D))[0].float()

    # Sigmoid over a wide range, saturated ends included.
    x = randn(2, 7, 5, 3, scale=6.0)
    x.view(-1)[:4] = torch.tensor([-100.0, -30.0, 30.0, 100.0])
    xd = x.to(D).requires_grad_()
    y = torch.sigmoid(xd)
    dy = randn(*y.shape)
    t["sigmoid.x"] = x
    t["sigmoid.y"] = y.detach().float()
    t["sigmoid.dy"] = dy
    t["sigmoid.dx"] = grads(y, [xd], dy.to(D))[0].float()

    # Global average pooling, odd spatial size.
    x = randn(3, 11, 7, 5, shift=0.3)
    xd = x.to(D).requires_grad_()
    y = F.adaptive_avg_pool2d(xd, 1).flatten(1)
    dy = randn(*y.shape)
    t["gap.x"] = x
    t["gap.y"] = y.detach().float()
    t["gap.dy"] = dy
    t["gap.dx"] = grads(y, [xd], dy.to(D))[0].float()

    # Channel scaling (SE multiply): y = x * s[:, :, None, None].
    x = randn(2, 13, 6, 5)
    s = torch.rand(2, 13).float()
    xd = x.to(D).requires_grad_()
    sd = s.to(D).requires_grad_()
    y = xd * sd[:, :, None, None]
    dy = randn(*y.shape)
    dx, ds = grads(y, [xd, sd], dy.to(D))
    t["channel_scale.x"] = x
    t["channel_scale.s"] = s
    t["channel_scale.y"] = y.detach().float()
    t["channel_scale.dy"] = dy
    t["channel_scale.dx"] = dx.float()
    t["channel_scale.ds"] = ds.float()


def linear(t, name, case):
    n, c, k = case
    x = randn(n, c)
    w = randn(k, c, scale=c ** -0.5)
    b = randn(k)
    xd, wd, bd = (v.to(D).requires_grad_() for v in (x, w, b))
    y = F.linear(xd, wd, bd)
    dy = randn(*y.shape)
    dx, dw, db = grads(y, [xd, wd, bd], dy.to(D))
    p = "linear.%s." % name
    t[p + "shape"] = torch.tensor(list(case), dtype=torch.int64)
    for key, v in (("x", x), ("w", w), ("b", b), ("y", y.detach()), ("dy", dy), ("dx", dx),
                   ("dw", dw), ("db", db)):
        t[p + key] = v.float()


def xent(t, name, case):
    n, k = case
    logits = randn(n, k, scale=3.0)
    labels = torch.randint(0, k, (n,))
    labels2 = torch.randint(0, k, (n,))
    lam = 0.7
    onehot = F.one_hot(labels, k).to(D)
    onehot2 = F.one_hot(labels2, k).to(D)
    p = "xent.%s." % name
    t[p + "shape"] = torch.tensor([n, k], dtype=torch.int64)
    t[p + "labels"] = labels.to(torch.int32)
    t[p + "logits"] = logits
    # Large logits: the log-sum-exp must not overflow.
    big = logits * 40.0
    t[p + "logits_big"] = big

    def one(tag, z, target_fn, target_tensor):
        zd = z.to(D).requires_grad_()
        loss = target_fn(zd)
        (dz,) = torch.autograd.grad(loss, [zd])
        t[p + tag + ".target"] = target_tensor.float()
        t[p + tag + ".loss"] = loss.detach().float().reshape(1)
        t[p + tag + ".dlogits"] = dz.float()

    # Hard labels: CrossEntropyLoss with class indices.
    one("hard", logits, lambda z: F.cross_entropy(z, labels), onehot)
    one("hard_big", big, lambda z: F.cross_entropy(z, labels), onehot)
    # Label smoothing 0.1: torch's own implementation with class indices; the target written is
    # the equivalent distribution (1 - eps) onehot + eps / K that rvg_targets_from_labels builds.
    eps = 0.1
    one("smooth", logits, lambda z: F.cross_entropy(z, labels, label_smoothing=eps),
        (1.0 - eps) * onehot + eps / k)
    # Mixup: lam * onehot(a) + (1 - lam) * onehot(b), as probability targets.
    mix = lam * onehot + (1.0 - lam) * onehot2
    one("mixup", logits, lambda z: F.cross_entropy(z, mix), mix)
    # Mixup of label-smoothed targets (the heavy recipe uses both).
    mixs = lam * ((1 - eps) * onehot + eps / k) + (1 - lam) * ((1 - eps) * onehot2 + eps / k)
    one("mixup_smooth", logits, lambda z: F.cross_entropy(z, mixs), mixs)


def main():
    d = out_dir()
    torch.manual_seed(20210101)
    t = {}
    for name, case in CONV_CASES.items():
        conv(t, name, case)
    for name, case in BN_CASES.items():
        bn(t, name, case)
    pointwise(t)
    for name, case in LINEAR_CASES.items():
        linear(t, name, case)
    for name, case in XENT_CASES.items():
        xent(t, name, case)
    meta = {"generator": "tests/ref/gen_ops.py", "torch": torch.__version__,
            "conv_cases": ",".join(CONV_CASES), "bn_cases": ",".join(BN_CASES),
            "linear_cases": ",".join(LINEAR_CASES), "xent_cases": ",".join(XENT_CASES)}
    save(os.path.join(d, "ops.safetensors"), t, meta)
    print("wrote %d tensors to %s" % (len(t), os.path.join(d, "ops.safetensors")))


if __name__ == "__main__":
    main()
