"""peers_summary.py - the table of bench/peers.sh from its JSON lines (ours, ORT, TorchScript).

usage: peers_summary.py RESULTS.jsonl MODEL
For each (threads, batch): the median over rounds of each runtime's median, and the minimum over
all runs (closest to an unloaded machine), with peer/ours ratios for both. Exits non-zero if a
peer's logits disagree with ours by more than 1e-4 of the largest logit.
"""
import json
import statistics
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    model = sys.argv[2]
    for r in rows:
        if "check" in r and r["max_rel_err"] > 1e-4:
            sys.exit("peer %s disagrees with us: %.3g x max|logit|" % (r["check"],
                                                                      r["max_rel_err"]))
    checks = {}
    for r in rows:
        if "check" in r:
            checks[r["check"]] = max(checks.get(r["check"], 0.0), r["max_rel_err"])

    timing = [r for r in rows if "median_ms" in r and "mem" not in r]

    def runs(name, m, t, b):
        return [r for r in timing if r.get("peer", "ours" if "gflops" in r else None) == name
                and r["model"] == m and (r["threads"], r["batch"]) == (t, b)]

    def med(name, m, t, b):
        v = [r["median_ms"] for r in runs(name, m, t, b)]
        return statistics.median(v) if v else float("nan")

    def mn(name, m, t, b):
        v = [r["min_ms"] for r in runs(name, m, t, b)]
        return min(v) if v else float("nan")

    rounds = len(runs("ours", model, 2, 1))
    print("logits vs ours, max |diff| / max |logit|: " +
          ", ".join("%s %.2g" % kv for kv in sorted(checks.items())))
    print("%d round(s); cells: median of the rounds' medians / minimum over all runs, ms\n"
          % rounds)
    print("| model | threads | batch | ours | ORT 1.30 | ORT/ours | TorchScript | TorchScript/ours "
          "| ORT ResNet-18 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t, b in ((2, 1), (2, 8), (1, 1)):
        o, ort, ts = (med("ours", model, t, b), med("ort", model, t, b),
                      med("torchscript", model, t, b))
        om, ortm, tsm = (mn("ours", model, t, b), mn("ort", model, t, b),
                         mn("torchscript", model, t, b))
        print("| %s | %d | %d | %.1f / %.1f | %.1f / %.1f | %.2fx / %.2fx | %.1f / %.1f "
              "| %.2fx / %.2fx | %.1f / %.1f |" % (
                  model, t, b, o, om, ort, ortm, ort / o, ortm / om, ts, tsm, ts / o, tsm / om,
                  med("ort", "resnet18", t, b), mn("ort", "resnet18", t, b)))

    # peak resident set, one process per runtime and batch (rows written by the memory pass)
    def rss(name, b):
        v = [r["rss_mb"] for r in rows if "rss_mb" in r and r["model"] == model
             and r["batch"] == b and (r.get("peer") == name if name != "ours" else "mem" in r)]
        return max(v) if v else float("nan")

    if any("mem" in r for r in rows):
        print("\npeak resident set (MB), 2 threads, one process per runtime and batch:\n")
        print("| model | batch | ours | ORT 1.30 | TorchScript |")
        print("|---|---|---|---|---|")
        for b in (1, 8):
            print("| %s | %d | %.0f | %.0f | %.0f |" % (model, b, rss("ours", b), rss("ort", b),
                                                   rss("torchscript", b)))


if __name__ == "__main__":
    main()
