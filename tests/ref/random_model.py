"""random_model.py - writes a randomly initialised train-form RepVGG as safetensors, with official
state_dict names, for the CLI tests (tests/cli_onnx.sh, tests/cli_predict.sh).

    /usr/bin/python3 random_model.py OUT.safetensors --blocks 1,2,1,1 --width 0.25,0.25,0.25,0.5
        [--groups 2@2,4] [--se] [--in-ch 3] [--classes 10] [--seed 0]
        [--input X.npy N C H W ...] [--meta KEY=VALUE ...]

The network is gen_model.py's RepVGG (the official module structure), imported rather than copied.
BN statistics are drawn away from 1/0 as in gen_model.py, so the train form and its conversion
differ from a plain convolution in every branch. --input writes a float32 standard-normal array of
the given shape as .npy (repeatable). No metadata is written but what --meta gives (the
preprocessing record of `repvgg train`: repvgg.mean, ...): the loader must infer the architecture
from the names and shapes, as it does for real checkpoints. Exits 77 without torch.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundle  # noqa: E402

torch = bundle.import_torch()
import gen_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--blocks", default="1,2,1,1")
    ap.add_argument("--width", default="0.25,0.25,0.25,0.5")
    ap.add_argument("--groups", default="", help="G@L1,L2 (layers count from 1 at stage1.0)")
    ap.add_argument("--se", action="store_true")
    ap.add_argument("--in-ch", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", nargs=5, action="append", default=[],
                    metavar=("PATH", "N", "C", "H", "W"))
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    blocks = [int(v) for v in a.blocks.split(",")]
    width = [float(v) for v in a.width.split(",")]
    gmap = {}
    if a.groups:
        g, layers = a.groups.split("@")
        gmap = {int(l): int(g) for l in layers.split(",")}
    torch.manual_seed(a.seed)
    model = gen_model.RepVGG(blocks, width, gmap, a.se, a.in_ch, a.classes)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(3)
    bundle.save(a.out, model.state_dict(), dict(kv.split("=", 1) for kv in a.meta))
    import numpy as np
    for path, n, c, h, w in a.input:
        x = torch.randn(int(n), int(c), int(h), int(w))
        np.save(path, x.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
