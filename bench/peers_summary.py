"""peers_summary.py - the table of bench/peers.sh from its JSON lines (ours, ORT, TorchScript).

usage: peers_summary.py RESULTS.jsonl MODEL [ORT_VERSION]
For each (threads, batch) and each of our kernel sets timed (the default fp32 one, and amx where
the CPU has it): the median over rounds of each runtime's median, and the minimum over all runs
(closest to an unloaded machine), with peer/ours ratios for both. Exits non-zero if a peer's
logits disagree with ours by more than 1e-4 of the largest logit.
"""
import json
import statistics
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    model = sys.argv[2]
    ort_label = "ORT " + sys.argv[3] if len(sys.argv) > 3 else "ORT"
    for r in rows:
        if "check" in r and r["max_rel_err"] > 1e-4:
            sys.exit("peer %s disagrees with us: %.3g x max|logit|" % (r["check"],
                                                                      r["max_rel_err"]))
    checks = {}
    for r in rows:
        if "check" in r:
            checks[r["check"]] = max(checks.get(r["check"], 0.0), r["max_rel_err"])

    timing = [r for r in rows if "median_ms" in r and "mem" not in r]

    # our rows are named by kernel set: "ours" (the default, fp32) and "ours-amx"
    def who(r):
        if "peer" in r:
            return r["peer"]
        return "ours-amx" if r.get("isa") == "amx" else "ours"

    def runs(name, m, t, b):
        return [r for r in timing if who(r) == name
                and r["model"] == m and (r["threads"], r["batch"]) == (t, b)]

    def med(name, m, t, b):
        v = [r["median_ms"] for r in runs(name, m, t, b)]
        return statistics.median(v) if v else float("nan")

    def mn(name, m, t, b):
        v = [r["min_ms"] for r in runs(name, m, t, b)]
        return min(v) if v else float("nan")

    ours = [n for n in ("ours", "ours-amx") if runs(n, model, 2, 1)]
    rounds = len(runs(ours[0], model, 2, 1)) if ours else 0
    print("logits vs ours, max |diff| / max |logit|: " +
          ", ".join("%s %.2g" % kv for kv in sorted(checks.items())))
    print("%d round(s); cells: median of the rounds' medians / minimum over all runs, ms\n"
          % rounds)
    print("| model | kernels | threads | batch | ours | %s | ORT/ours | TorchScript "
          "| TorchScript/ours | ORT ResNet-18 |" % ort_label)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ours:
        isa = runs(name, model, 2, 1)[0].get("isa", "?")
        for t, b in ((2, 1), (2, 8), (1, 1)):
            o, ort, ts = (med(name, model, t, b), med("ort", model, t, b),
                          med("torchscript", model, t, b))
            om, ortm, tsm = (mn(name, model, t, b), mn("ort", model, t, b),
                             mn("torchscript", model, t, b))
            print("| %s | %s | %d | %d | %.1f / %.1f | %.1f / %.1f | %.2fx / %.2fx | %.1f / %.1f "
                  "| %.2fx / %.2fx | %.1f / %.1f |" % (
                      model, isa, t, b, o, om, ort, ortm, ort / o, ortm / om, ts, tsm, ts / o,
                      tsm / om, med("ort", "resnet18", t, b), mn("ort", "resnet18", t, b)))

    # peak resident set, one process per runtime and batch (rows written by the memory pass)
    def rss(name, b):
        v = [r["rss_mb"] for r in rows if "rss_mb" in r and r["model"] == model
             and r["batch"] == b and who(r) == name and ("mem" in r or "peer" in r)]
        return max(v) if v else float("nan")

    if any("mem" in r for r in rows):
        print("\npeak resident set (MB), 2 threads, one process per runtime and batch:\n")
        print("| model | batch | %s | %s | TorchScript |" % (" | ".join(ours), ort_label))
        print("|---|---|%s---|---|" % ("---|" * len(ours)))
        for b in (1, 8):
            print("| %s | %d | %s | %.0f | %.0f |" % (
                model, b, " | ".join("%.0f" % rss(n, b) for n in ours), rss("ort", b),
                rss("torchscript", b)))


if __name__ == "__main__":
    main()
