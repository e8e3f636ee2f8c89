"""train_peers_torch.py - PyTorch's side of bench/train_peers.sh: images/s of whole training steps
of the RepVGG-A0 train form (forward, cross-entropy, backward, SGD momentum step), median of RUNS
steps after warm-up, with the given thread count. Prints one JSON line.

usage: train_peers_torch.py IN_CH SIZE BATCH THREADS RUNS
PyTorch 1.13 from Debian (python3-torch, oneDNN enabled: this is the peer a user would run).
"""
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import torch  # noqa: E402

import gen_model  # noqa: E402  (the RepVGG re-statement of the parity tests)


def main():
    in_ch, size, batch, threads, runs = (int(a) for a in sys.argv[1:6])
    # gen_model's import switches PyTorch to its plain reference kernels for the parity tests;
    # the speed peer is PyTorch as users run it: oneDNN on, the requested threads.
    torch.backends.mkldnn.enabled = True
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    blocks, width, _, se = gen_model.PRESETS["A0"]
    model = gen_model.RepVGG(blocks, width, {}, se, in_ch, 10).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, in_ch, size, size)
    y = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for i in range(runs + 3):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    print(json.dumps({"runtime": "pytorch", "median_ms": med, "min_ms": min(times),
                      "images_per_s": batch * 1e3 / med,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
