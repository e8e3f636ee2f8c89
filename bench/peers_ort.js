// peers_ort.js - ONNX Runtime side of bench/peers.sh: times an ONNX model at the same
// (threads, batch) points as bench_infer and, given our logits, checks that ORT agrees with them.
// usage: node peers_ort.js MODEL.onnx NAME RUNS [INPUT.f32 LOGITS.f32]   (prints JSON lines)
//        node peers_ort.js MODEL.onnx NAME RUNS rss:B   (only 2 threads, batch B; prints the
//        process's peak resident set, for peers.sh's memory table: one configuration per process)
// onnxruntime-node is found through NODE_PATH (peers.sh installs it under the build directory).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function median(a) {
    const s = [...a].sort((x, y) => x - y), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

async function main() {
    let [path, name, runsArg, inputPath, logitsPath] = process.argv.slice(2);
    const runs = parseInt(runsArg || '30', 10);
    let configs = [[2, 1], [2, 8], [1, 1]], rss = false;
    if (inputPath && inputPath.startsWith('rss:')) {
        configs = [[2, parseInt(inputPath.slice(4), 10)]];
        rss = true;
        inputPath = undefined;
    }
    const H = 224, W = 224, C = 3;
    let x8 = new Float32Array(8 * C * H * W);
    if (inputPath) {
        const b = fs.readFileSync(inputPath);
        x8 = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    } else {
        let s = 12345; // seeded LCG: timings do not depend on the values
        for (let i = 0; i < x8.length; i++) {
            s = (s * 1103515245 + 12345) % 2147483648;
            x8[i] = s / 1073741824 - 1;
        }
    }
    for (const [threads, batch] of configs) {
        const sess = await ort.InferenceSession.create(path, {
            intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
            graphOptimizationLevel: 'all',
        });
        const x = new ort.Tensor('float32', x8.subarray(0, batch * C * H * W), [batch, C, H, W]);
        let out;
        for (let i = 0; i < 5; i++)
            out = await sess.run({x});
        const t = [];
        for (let i = 0; i < runs; i++) {
            const t0 = process.hrtime.bigint();
            out = await sess.run({x});
            t.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        if (logitsPath && batch === 8) {
            const b = fs.readFileSync(logitsPath);
            const ours = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
            const got = out.logits.data;
            let err = 0, mx = 0;
            for (let i = 0; i < ours.length; i++) {
                err = Math.max(err, Math.abs(got[i] - ours[i]));
                mx = Math.max(mx, Math.abs(got[i]));
            }
            console.log(JSON.stringify({check: 'ort_vs_rvg', model: name, max_rel_err: err / mx}));
        }
        if (rss) { // resourceUsage().maxRSS: KiB
            const mb = process.resourceUsage().maxRSS / 1024;
            console.log(JSON.stringify({peer: 'ort', model: name, batch, rss_mb: +mb.toFixed(1)}));
        } else {
            console.log(JSON.stringify({peer: 'ort', model: name, threads, batch,
                                        median_ms: +median(t).toFixed(3),
                                        min_ms: +Math.min(...t).toFixed(3)}));
        }
        await sess.release();
    }
}

main().catch((e) => { console.error(e); process.exit(1); });
