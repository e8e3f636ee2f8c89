"""gen_model.py - PyTorch reference for whole RepVGG networks: forward, loss, backward, BN running
statistics, several SGD steps with the paper's recipe, and the conversion to the deploy form.

The model below is a compact re-statement of the official RepVGG code (DingXiaoH/RepVGG, repvgg.py)
with the same state_dict names; its conversion follows get_equivalent_kernel_bias. The reference
computation runs in float64 on float32 initial weights, so the C side (float32) is compared with
an answer free of float32 rounding of its own. Writes one bundle per case into argv[1]:
model_<case>.safetensors.
"""
import math
import sys

import bundle

torch = bundle.import_torch()
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

PRESETS = {
    "A0": ([2, 4, 14, 1], [0.75, 0.75, 0.75, 2.5], 1, False),
    "B1g4": ([4, 6, 16, 1], [2, 2, 2, 4], 4, False),
    "D2se": ([8, 14, 24, 1], [2.5, 2.5, 2.5, 5], 1, True),
}


def conv_bn(cin, cout, k, stride, pad, groups):
    m = nn.Sequential()
    m.add_module("conv", nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False))
    m.add_module("bn", nn.BatchNorm2d(cout))
    return m


class SE(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.name = ""
        self.down = nn.Conv2d(c, hidden, 1, bias=True)
        self.up = nn.Conv2d(hidden, c, 1, bias=True)

    def forward(self, x):
        s = F.avg_pool2d(x, kernel_size=x.size(3))
        h = self.down(s).flatten(1)
        if PRE_RELU is not None:
            PRE_RELU[self.name + ".se"] = h.detach()
        s = torch.sigmoid(self.up(F.relu(h).view(h.size(0), -1, 1, 1)))
        return x * s.view(-1, x.size(1), 1, 1)


# When a dict, every Block's forward stores its ReLU's argument there under the block's name, and
# its SE the argument of the SE's ReLU under the name + ".se". The
# C test reads them to find ReLUs whose pre-activation is within rounding of zero: one that
# float32 sends the other way moves every gradient upstream of it by percents, so the test makes
# those few go PyTorch's way (tests/test_torch_model.c, adopt_reference_masks).
PRE_RELU = None


class Block(nn.Module):
    def __init__(self, cin, cout, stride, groups, se):
        super().__init__()
        self.se = SE(cout, cout // 16) if se else nn.Identity()
        self.rbr_identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.rbr_dense = conv_bn(cin, cout, 3, stride, 1, groups)
        self.rbr_1x1 = conv_bn(cin, cout, 1, stride, 0, groups)
        self.groups = groups
        self.name = ""

    def forward(self, x):
        idv = 0 if self.rbr_identity is None else self.rbr_identity(x)
        z = self.se(self.rbr_dense(x) + self.rbr_1x1(x) + idv)
        if PRE_RELU is not None:
            PRE_RELU[self.name] = z.detach()
        return F.relu(z)

    def fused(self):
        """(kernel, bias) of the deploy form, as the official get_equivalent_kernel_bias."""
        def fuse(branch):
            if isinstance(branch, nn.Sequential):
                k, bn = branch.conv.weight, branch.bn
            else:
                bn = branch
                cin = bn.num_features
                cg = cin // self.groups
                k = torch.zeros(cin, cg, 3, 3, dtype=bn.weight.dtype)
                for i in range(cin):
                    k[i, i % cg, 1, 1] = 1
            std = (bn.running_var + bn.eps).sqrt()
            t = (bn.weight / std).reshape(-1, 1, 1, 1)
            return k * t, bn.bias - bn.running_mean * bn.weight / std
        k3, b3 = fuse(self.rbr_dense)
        k1, b1 = fuse(self.rbr_1x1)
        k = k3 + F.pad(k1, [1, 1, 1, 1])
        b = b3 + b1
        if self.rbr_identity is not None:
            kid, bid = fuse(self.rbr_identity)
            k, b = k + kid, b + bid
        return k, b


class RepVGG(nn.Module):
    def __init__(self, blocks, width, groups_map, se, in_ch, classes):
        super().__init__()
        in_planes = min(64, int(64 * width[0]))
        self.stage0 = Block(in_ch, in_planes, 2, 1, se)
        layer = 1
        stages = []
        for s in range(4):
            planes = int([64, 128, 256, 512][s] * width[s])
            mods = []
            for j in range(blocks[s]):
                mods.append(Block(in_planes, planes, 2 if j == 0 else 1,
                                  groups_map.get(layer, 1), se))
                in_planes = planes
                layer += 1
            stages.append(nn.Sequential(*mods))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.linear = nn.Linear(in_planes, classes)

    def forward(self, x):
        x = self.stage0(x)
        for st in (self.stage1, self.stage2, self.stage3, self.stage4):
            x = st(x)
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def blocks(self):
        yield "stage0", self.stage0
        for s, st in enumerate((self.stage1, self.stage2, self.stage3, self.stage4)):
            for j, b in enumerate(st):
                yield "stage%d.%d" % (s + 1, j), b


def custom_l2(model):
    """RepVGG's custom L2 (SPEC §5), with t3 and t1 detached as in the official code."""
    total = 0
    for _, b in model.blocks():
        k3, k1 = b.rbr_dense.conv.weight, b.rbr_1x1.conv.weight
        bn3, bn1 = b.rbr_dense.bn, b.rbr_1x1.bn
        t3 = (bn3.weight / (bn3.running_var + bn3.eps).sqrt()).reshape(-1, 1, 1, 1).detach()
        t1 = (bn1.weight / (bn1.running_var + bn1.eps).sqrt()).reshape(-1, 1, 1, 1).detach()
        circle = (k3 ** 2).sum() - (k3[:, :, 1:2, 1:2] ** 2).sum()
        eq = k3[:, :, 1:2, 1:2] * t3 + k1 * t1
        total = total + (eq ** 2 / (t3 ** 2 + t1 ** 2)).sum() + circle
    return total


def decays(name, custom):
    """Weight decay rule of the official sgd_optimizer (biases, branch BNs excluded)."""
    if custom and ("rbr_dense" in name or "rbr_1x1" in name):
        return False
    return not ("bias" in name or ".bn." in name)


def lr_at(base, it, warmup, total):
    if it < warmup:
        return base * (it + 1) / warmup
    frac = min(1.0, (it - warmup) / (total - warmup))
    return 0.5 * base * (1 + math.cos(math.pi * frac))


def summarize(out, prefix, name, t, full):
    """Stores t whole, or (for the big networks, to keep bundles small) 97 entries at evenly
    spaced flat indices plus the tensor's L2 norm: every tensor is still compared."""
    t = t.detach().float().reshape(-1)
    if full or t.numel() <= 256:
        out[prefix + name] = t
        return
    idx = torch.linspace(0, t.numel() - 1, 97, dtype=torch.float64).round().long()
    out["sample." + prefix + name] = t[idx]
    out["norm." + prefix + name] = t.double().norm().float().reshape(1)


def make_case(name, arch, in_ch, classes, size, n, steps, smoothing=0.1, soft=False,
              nesterov=False, custom=False, seed=0, full=True, base_lr=0.1,
              small_branch_gamma=False, ema=0.0, clip=0.0):
    torch.manual_seed(seed)
    if isinstance(arch, str):
        blocks, width, g, se = PRESETS[arch]
        gmap = {l: g for l in range(2, 27, 2)} if g > 1 else {}
    else:
        blocks, width, gmap, se = arch
    model = RepVGG(blocks, width, gmap, se, in_ch, classes)
    for pre, b in model.blocks():
        b.name = pre
        b.se.name = pre
    # Non-trivial BN state: random gammas, betas and running statistics, so that the conversion and
    # the running-statistics update are tested on values that are not 1 and 0. For D2se the 3x3
    # and 1x1 branch gammas are drawn smaller than the identity's: at default init that 48-block
    # network has exploding gradients in training mode (norm ~1e3), where float32 and float64
    # PyTorch already disagree by 10%; near-identity blocks keep the comparison well-conditioned.
    # B1g4 at batch 2 is on the edge too (two fp32 summation orders differ by 1%), so it gets the
    # same treatment.
    with torch.no_grad():
        for name_, mod in model.named_modules():
            if isinstance(mod, nn.BatchNorm2d):
                if small_branch_gamma and "rbr_identity" not in name_:
                    mod.weight.uniform_(0.1, 0.4)
                else:
                    mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(3)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(n, in_ch, size, size)
    labels = torch.randint(0, classes, (n,))
    if soft:  # mixup-style soft targets
        lam = 0.7
        perm = torch.roll(torch.arange(n), 1)
        onehot = F.one_hot(labels, classes).double()
        target = lam * onehot + (1 - lam) * onehot[perm]
        target = (1 - smoothing) * target + smoothing / classes
    else:
        target = (1 - smoothing) * F.one_hot(labels, classes).double() + smoothing / classes

    out = dict(("init." + k, v) for k, v in init.items())
    out["x"] = x
    out["target"] = target.float()

    # Eval-mode logits of the train form and of the converted deploy form.
    model = model.double()
    model.eval()
    with torch.no_grad():
        out["eval_logits"] = model(x.double()).float()
        for pre, b in model.blocks():
            k, bias = b.fused()
            summarize(out, "deploy.", pre + ".rbr_reparam.weight", k, full)
            summarize(out, "deploy.", pre + ".rbr_reparam.bias", bias, full)

    # Training: `steps` SGD steps with momentum 0.9, wd 1e-4, warm-up 1 iteration then cosine.
    model.train()
    params = dict(model.named_parameters())
    wd, total = 1e-4, steps + 2
    groups = [{"params": [p], "weight_decay": (wd if decays(k, custom) else 0.0)}
              for k, p in params.items()]
    opt = torch.optim.SGD(groups, lr=base_lr, momentum=0.9, nesterov=nesterov)
    # The weights' moving average (repvgg train --ema) as timm's ModelEmaV2 keeps it, with the
    # decay warmed up as TensorFlow's ExponentialMovingAverage(num_updates) does.
    avg = {k: v.clone() for k, v in model.state_dict().items()} if ema else None
    norms = []
    for it in range(steps):
        lr = lr_at(base_lr, it, 1, total)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        global PRE_RELU
        PRE_RELU = {}
        logits = model(x.double())
        for k, z in PRE_RELU.items():
            out["pre.%d.%s" % (it, k)] = z.float()
        PRE_RELU = None
        loss = torch.sum(-target * F.log_softmax(logits, dim=1)) / n
        if custom:
            loss = loss + wd * 0.5 * custom_l2(model)
        loss.backward()
        if it == 0:
            out["logits"] = logits.detach().float()
            out["loss"] = loss.detach().float().reshape(1)
            for k, p in params.items():
                summarize(out, "grad.", k, p.grad, full)
            for k, v in model.state_dict().items():
                if "running" in k:
                    summarize(out, "step1.", k, v, full)
        if clip:  # repvgg train --clip-grad: the global norm before clipping, then the clip
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item())
        opt.step()
        if ema:
            d = min(ema, (1.0 + it) / (10.0 + it))
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        avg[k].copy_(avg[k] * d + (1.0 - d) * v)
                    else:
                        avg[k].copy_(v)
    for k, v in (avg or {}).items():
        if v.dtype.is_floating_point:
            summarize(out, "ema.", k, v, full)
        else:
            out["ema." + k] = v
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            summarize(out, "final.", k, v, full)
        else:
            out["final." + k] = v
    if clip:
        out["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    meta = {"steps": steps, "n": n, "size": size, "in_ch": in_ch, "classes": classes,
            "nesterov": int(nesterov), "custom_l2": int(custom), "base_lr": base_lr,
            "warmup": 1, "total": total, "weight_decay": wd, "ema": ema,
            "clip": clip}
    bundle.save("%s/model_%s.safetensors" % (bundle.out_dir(), name), out, meta)


if __name__ == "__main__":
    # The big presets: one SGD step (the update from the checked gradients, weight decay and the
    # fresh momentum buffer). Several steps of these deep BN networks at this batch size are
    # chaotic: float32 and float64 PyTorch drift apart by a few percent within three steps.
    # Batch and size keep at least 8 values per channel in the last BN: with 2 values BN's output
    # is +-1 whatever the input and its gradient is pure rounding noise, in PyTorch as here.
    make_case("a0", "A0", 3, 10, 32, 8, 1)
    make_case("b1g4", "B1g4", 3, 10, 48, 2, 1, seed=1, full=False, small_branch_gamma=True)
    make_case("d2se", "D2se", 3, 10, 48, 2, 1, seed=2, full=False, small_branch_gamma=True)
    # Several steps with momentum, weight decay and the warm-up + cosine schedule on smaller
    # networks, where the trajectory is well-conditioned: the plain recipe, with the
    # weights' moving average (decays 0.1, 0.18, 0.2, 0.2 over the 4 steps) ...
    make_case("small", ([2, 2, 2, 1], [0.5, 0.5, 0.5, 0.5], {}, False), 3, 10, 32, 8, 4, seed=4,
              ema=0.2)
    # ... and a custom network with 1 input channel at 28x28 like Fashion-MNIST, groups on some
    # layers, SE, mixup soft targets, Nesterov and the custom L2.
    make_case("custom", ([1, 2, 2, 1], [0.25, 0.25, 0.25, 0.25], {2: 2, 4: 2}, True), 1, 7, 28,
              3, 3, soft=True, nesterov=True, custom=True, seed=3)
    # ... and repvgg train --clip-grad on the small network: the first steps' gradients (norms
    # ~26 and ~7) are clipped to 3, the later ones (~1) are not.
    make_case("clip", ([2, 2, 2, 1], [0.5, 0.5, 0.5, 0.5], {}, False), 3, 10, 32, 8, 4, seed=4,
              clip=3.0)
    print("wrote model bundles to", sys.argv[1])
