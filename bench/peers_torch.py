"""peers_torch.py - PyTorch side of bench/peers.sh: the same weights as bench_infer, timed.

Reads the safetensors file that `bench_infer --model M --dump F` writes (deploy-form RepVGG weights
under the official names stageK.i.rbr_reparam.{weight,bias}, linear.*, plus an input batch and
bench_infer's logits), builds the same network in PyTorch, checks that its logits agree with ours,
times TorchScript (frozen + optimize_for_inference) at (threads, batch) = (2, 1), (2, 8), (1, 1),
and exports ONNX files for ONNX Runtime: the RepVGG model and a hand-written ResNet-18 (torchvision
may be missing) with seeded random weights. Prints one JSON object per line.

Run with Debian's interpreter: /usr/bin/python3 bench/peers_torch.py DUMP.safetensors OUTDIR [RUNS]
With a fourth argument `rss:B` it only builds the TorchScript model, runs it 10 times at batch B
with 2 threads and prints the process's peak resident set (for peers.sh's memory table: one
configuration per process, as for the other runtimes).
"""
import json
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        assert h["dtype"] == "F32", name
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy()
                                     .reshape(h["shape"]))
    return out, meta


class Block(nn.Module):
    """Deploy-form RepVGG block: one 3x3 conv with bias, then ReLU (names as the official code)."""

    def __init__(self, c, k, stride):
        super().__init__()
        self.rbr_reparam = nn.Conv2d(c, k, 3, stride, 1, bias=True)

    def forward(self, x):
        return F.relu(self.rbr_reparam(x))


class RepVGGDeploy(nn.Module):
    def __init__(self, sd):
        super().__init__()
        w = sd["stage0.rbr_reparam.weight"]
        self.stage0 = Block(w.shape[1], w.shape[0], 2)
        for s in range(1, 5):
            blocks = []
            i = 0
            while "stage%d.%d.rbr_reparam.weight" % (s, i) in sd:
                w = sd["stage%d.%d.rbr_reparam.weight" % (s, i)]
                blocks.append(Block(w.shape[1], w.shape[0], 2 if i == 0 else 1))
                i += 1
            setattr(self, "stage%d" % s, nn.Sequential(*blocks))
        lw = sd["linear.weight"]
        self.linear = nn.Linear(lw.shape[1], lw.shape[0])

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.stage1(self.stage0(x)))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class BasicBlock(nn.Module):
    def __init__(self, c, k, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c, k, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(k)
        self.conv2 = nn.Conv2d(k, k, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(k)
        self.down = None
        if stride != 1 or c != k:
            self.down = nn.Sequential(nn.Conv2d(c, k, 1, stride, bias=False), nn.BatchNorm2d(k))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout, written out so that torchvision is not needed."""

    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, c = [], 64
        for k, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c, k, s), BasicBlock(k, k, 1)]
            c = k
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def time_model(fn, x, runs, warmup=5):
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        t = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(x)
            t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t), min(t)


def main():
    dump, outdir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    sd, meta = read_safetensors(dump)
    model_name = meta.get("model", "a0")
    x8, ours = sd.pop("input"), sd.pop("logits")
    m = RepVGGDeploy(sd).eval()
    m.load_state_dict(sd, strict=True)
    if len(sys.argv) > 4 and sys.argv[4].startswith("rss:"):
        batch = int(sys.argv[4][4:])
        del ours
        torch.set_num_threads(2)
        with torch.no_grad():
            ts = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(m)))
        time_model(ts, x8[:batch].contiguous(), 10)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
        print(json.dumps({"peer": "torchscript", "model": model_name, "batch": batch,
                          "rss_mb": round(rss, 1)}), flush=True)
        return
    with torch.no_grad():
        ref = m(x8)
    err = (ref - ours).abs().max().item() / ref.abs().max().item()
    print(json.dumps({"check": "torch_vs_rvg", "model": model_name, "max_rel_err": err}),
          flush=True)
    if err > 1e-4:
        print("peers_torch: our logits differ from PyTorch's (%.3g x max|logit|)" % err,
              file=sys.stderr)
        sys.exit(1)

    # TorchScript frozen + optimize_for_inference (folds nothing here, but picks mkldnn paths).
    torch.set_num_threads(2)
    with torch.no_grad():
        ts = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(m)))
    for threads, batch in ((2, 1), (2, 8), (1, 1)):
        torch.set_num_threads(threads)
        med, mn = time_model(ts, x8[:batch].contiguous(), runs)
        print(json.dumps({"peer": "torchscript", "model": model_name, "threads": threads,
                          "batch": batch, "median_ms": round(med, 3), "min_ms": round(mn, 3)}),
              flush=True)

    torch.onnx.export(m, x8[:1], "%s/%s.onnx" % (outdir, model_name), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      opset_version=13)
    torch.manual_seed(0)
    r18 = ResNet18().eval()
    torch.onnx.export(r18, x8[:1], "%s/resnet18.onnx" % outdir, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      opset_version=13)
    np.asarray(x8.numpy(), dtype=np.float32).tofile("%s/%s_input.f32" % (outdir, model_name))
    np.asarray(ours.numpy(), dtype=np.float32).tofile("%s/%s_logits.f32" % (outdir, model_name))


if __name__ == "__main__":
    main()
