"""onnx_inspect.py - checks the structure of an ONNX file written by `repvgg export`, without the
onnx package (Debian has none): a 40-line protobuf wire-format reader walks the ModelProto.

    /usr/bin/python3 onnx_inspect.py MODEL.onnx WEIGHTS.safetensors FORM H W

Checks: ir_version 7 and one opset import (default domain, 13); input "input" of shape
(N, C, H, W) with the symbolic batch "N" (H or W of 0: symbolic "H"/"W"); output "logits" of shape
(N, classes); the initializers are exactly the tensors of WEIGHTS (num_batches_tracked excepted),
under the same names, with the same shapes and bit-identical float32 raw_data; every node input is
the graph input, an initializer or an earlier node's output (topological order); the operators
are those of FORM (deploy: no BatchNormalization or Add; train: one BatchNormalization per BN).
Prints one line per check and exits 1 if any fails. Field numbers: onnx/onnx.proto.
"""
import struct
import sys

import bundle

torch = bundle.import_torch()


def varint(buf, i):
    v = s = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << s
        s += 7
        if b < 0x80:
            return v, i


def fields(buf):
    """Yields (field number, wire type, value) of one message; LEN values as bytes."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError("unexpected wire type %d" % wt)
        yield f, wt, v


def group(buf):
    out = {}
    for f, _, v in fields(buf):
        out.setdefault(f, []).append(v)
    return out


def s(b):
    return bytes(b).decode()


def value_info(buf):
    g = group(buf)
    tensor = group(group(g[2][0])[1][0])
    dims = []
    for d in group(tensor[2][0]).get(1, []):
        dg = group(d)
        dims.append(dg[1][0] if 1 in dg else s(dg[2][0]))
    return s(g[1][0]), tensor[1][0], dims


def main():
    path, wpath, form, H, W = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), \
        int(sys.argv[5])
    data = open(path, "rb").read()
    model = group(data)
    weights, _ = bundle.load(wpath)
    weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    fails = []

    def check(cond, what):
        print(("  ok   " if cond else "FAILED ") + what)
        if not cond:
            fails.append(what)

    check(model[1] == [7], "ir_version 7 (got %s)" % model.get(1))
    opsets = [group(o) for o in model.get(8, [])]
    check(len(opsets) == 1 and opsets[0].get(2) == [13] and s(opsets[0].get(1, [b""])[0]) == "",
          "one opset import: default domain, version 13")
    check(s(model[2][0]) == "repvgg.c", "producer_name repvgg.c")
    graph = group(model[7][0])
    inputs = [value_info(v) for v in graph.get(11, [])]
    outputs = [value_info(v) for v in graph.get(12, [])]
    lin = weights["linear.weight"]
    first = weights.get("stage0.rbr_reparam.weight", weights.get("stage0.rbr_dense.conv.weight"))
    in_ch = first.shape[1]
    want_in = ["N", in_ch, H if H else "H", W if W else "W"]
    check(inputs == [("input", 1, want_in)], "input %s, want input float %s" % (inputs, want_in))
    want_out = ["N", lin.shape[0]]
    check(outputs == [("logits", 1, want_out)],
          "output %s, want logits float %s" % (outputs, want_out))

    inits = {}
    typed = True
    for t in graph.get(5, []):
        g = group(t)
        name = s(g[8][0])
        typed &= g[2] == [1] and name not in inits
        inits[name] = (list(g.get(1, [])), bytes(g[9][0]))
    check(typed, "%d initializers, all float32, names unique" % len(inits))
    check(sorted(inits) == sorted(weights),
          "initializer names are the weight names (%d vs %d; extra %s, missing %s)" % (
              len(inits), len(weights), sorted(set(inits) - set(weights))[:3],
              sorted(set(weights) - set(inits))[:3]))
    same = all(k in inits and inits[k][0] == list(v.shape) and
               inits[k][1] == v.float().numpy().astype("<f4").tobytes()
               for k, v in weights.items())
    check(same, "initializer shapes and raw_data bit-identical to the weights")

    known = {"input"} | set(inits)
    ops = {}
    order_ok = True
    names = set()
    for n in graph.get(1, []):
        g = group(n)
        op = s(g[4][0])
        ops[op] = ops.get(op, 0) + 1
        order_ok &= all(s(i) in known for i in g.get(1, []))
        known |= {s(o) for o in g.get(2, [])}
        names.add(s(g[3][0]))
    check(order_ok, "nodes in topological order, every input defined")
    check(len(names) == len(graph.get(1, [])), "node names unique")
    check("logits" in known, "logits produced by a node")
    n_bn = sum(1 for k in weights if k.endswith("running_var"))
    if form == "deploy":
        check(set(ops) <= {"Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm", "Sigmoid",
                           "Mul"}, "deploy operators %s" % sorted(ops))
    else:
        check(ops.get("BatchNormalization") == n_bn,
              "train form: %s BatchNormalization nodes for %d BNs" % (
                  ops.get("BatchNormalization"), n_bn))
    print("operators: " + ", ".join("%s %d" % kv for kv in sorted(ops.items())))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
