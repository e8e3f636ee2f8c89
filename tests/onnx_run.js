// onnx_run.js - runs an ONNX model in ONNX Runtime (npm onnxruntime-node) on a NumPy input, for
// tests/cli_onnx.sh.
//
//   node onnx_run.js MODEL.onnx INPUT.npy OUTPUT.npy
//
// Reads a float32 C-order .npy (version 1-3), feeds it to the model's only input, writes the
// model's only output as float32 .npy, and prints the input/output names and the output shape.
// onnxruntime-node is found through NODE_PATH or the usual node_modules lookup. Exits 77 when it
// cannot be loaded (ctest: skipped), 1 on any other failure.
'use strict';
const fs = require('fs');

let ort;
try {
    ort = require('onnxruntime-node');
} catch (e) {
    console.error('SKIPPED: cannot load onnxruntime-node (' + e.message.split('\n')[0] + ')');
    process.exit(77);
}

function readNpy(path) {
    const buf = fs.readFileSync(path);
    if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
        throw new Error(path + ': not a .npy file');
    const major = buf[6];
    const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
    const start = major === 1 ? 10 : 12;
    const header = buf.toString('latin1', start, start + hlen);
    if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header))
        throw new Error(path + ': expected little-endian float32 in C order, got ' + header);
    const m = /'shape':\s*\(([^)]*)\)/.exec(header);
    const shape = m[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    const off = start + hlen;
    // Copy into an aligned Float32Array (the header length need not be a multiple of 4).
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++)
        data[i] = buf.readFloatLE(off + 4 * i);
    return {shape, data};
}

function writeNpy(path, shape, data) {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
        shape.join(', ') + (shape.length === 1 ? ',' : '') + '), }';
    const pad = 64 - ((10 + header.length + 1) % 64);
    header += ' '.repeat(pad % 64) + '\n';
    const head = Buffer.alloc(10);
    head.write('\x93NUMPY', 0, 'latin1');
    head[6] = 1;
    head[7] = 0;
    head.writeUInt16LE(header.length, 8);
    const body = Buffer.alloc(4 * data.length);
    for (let i = 0; i < data.length; i++)
        body.writeFloatLE(data[i], 4 * i);
    fs.writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

async function main() {
    const [model, inPath, outPath] = process.argv.slice(2);
    if (!outPath) {
        console.error('usage: node onnx_run.js MODEL.onnx INPUT.npy OUTPUT.npy');
        process.exit(2);
    }
    const session = await ort.InferenceSession.create(model, {
        graphOptimizationLevel: 'all',
        intraOpNumThreads: 1,
    });
    if (session.inputNames.length !== 1 || session.outputNames.length !== 1)
        throw new Error('expected one input and one output, got ' + session.inputNames + ' / ' +
                        session.outputNames);
    const x = readNpy(inPath);
    const feeds = {};
    feeds[session.inputNames[0]] = new ort.Tensor('float32', x.data, x.shape);
    const res = await session.run(feeds);
    const y = res[session.outputNames[0]];
    writeNpy(outPath, y.dims, y.data);
    console.log('input ' + session.inputNames[0] + ' [' + x.shape + '] -> output ' +
                session.outputNames[0] + ' [' + y.dims + ']');
}

main().catch((e) => {
    console.error('onnx_run.js: ' + (e && e.message ? e.message : e));
    process.exit(1);
});
