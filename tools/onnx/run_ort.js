#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU) on raw float32 images.
//
//   node tools/onnx/run_ort.js MODEL.onnx IMAGES.f32 OUT.f32 --shape C,H,W [--batch B]
//        [--threads T] [--spin 0|1] [--bench SECONDS] [--verbose 0|1] [--optimize 0|1]
//
// IMAGES.f32 holds N images, float32 little-endian, N x C x H x W. They are run in batches of B
// (default 64; the last one may be smaller) with T intra-op threads (default 1). OUT.f32 receives
// the first output, float32, N x (its per-sample size). --bench repeats the whole run for at least SECONDS and prints
// images/s. --verbose 1 turns on ONNX Runtime's verbose log (stderr): among much else it says which
// QDQ node groups its optimizer fused ("MatchAndProcess] Matched Conv" per DQ -> Conv -> Q turned
// into QLinearConv) and whether float convolutions were left for the NCHWc transformer
// (onnxruntime-node 1.20 has no optimizedModelFilePath option: tools/onnx/ort_profile.c saves the
// optimized graph and a per-node profile). --outputs-json PATH also writes every output of the
// model for the first image alone to PATH as {name: [values]} (tools/onnx/compare_trace.py adds
// the codes of every QuantizeLinear as outputs and reads them back). A JSON summary goes to stdout. ONNX Runtime is looked up in $SQ_ORT_DIR (default:
// .cache/onnxruntime of the repository, installed by scripts/setup_onnxruntime.sh).
'use strict';
const fs = require('fs');
const path = require('path');

function usage(msg) {
  process.stderr.write(`run_ort.js: ${msg}\nusage: run_ort.js MODEL.onnx IMAGES.f32 OUT.f32 ` +
                       `--shape C,H,W [--batch B] [--threads T] [--spin 0|1] [--bench SECONDS] ` +
                       `[--optimize 0|1] [--outputs-json PATH] ` +
                       `[--verbose 0|1]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const pos = [];
const opt = {batch: 64, threads: 1, bench: 0, shape: null, spin: 1, verbose: 0, optimize: 1,
             outputsJson: null};
for (let i = 0; i < args.length; ++i) {
  const a = args[i];
  if (a.startsWith('--')) {
    const v = args[++i];
    if (v === undefined) usage(`${a} needs a value`);
    const k = a.slice(2);
    if (k === 'shape') opt.shape = v.split(',').map(Number);
    else if (k === 'outputs-json') opt.outputsJson = v;
    else if (k in opt) opt[k] = Number(v);
    else usage(`unknown option ${a}`);
  } else {
    pos.push(a);
  }
}
if (pos.length !== 3) usage('expected MODEL.onnx IMAGES.f32 OUT.f32');
const [modelPath, inPath, outPath] = pos;

const ortDir = process.env.SQ_ORT_DIR || path.join(__dirname, '..', '..', '.cache', 'onnxruntime');
let ort;
try {
  ort = require(path.join(ortDir, 'node_modules', 'onnxruntime-node'));
} catch (e) {
  process.stderr.write(`run_ort.js: onnxruntime-node not found in ${ortDir} ` +
                       `(run scripts/setup_onnxruntime.sh): ${e.message}\n`);
  process.exit(3);
}

async function main() {
  const options = {
    intraOpNumThreads: opt.threads,
    interOpNumThreads: 1,
    executionProviders: ['cpu'],
    // --optimize 0: no graph optimization, so a QDQ model runs literally (QuantizeLinear and
    // DequantizeLinear as the ONNX spec defines them, float ops between): the model's exact
    // semantics, against which the fused quantized kernels can be checked.
    graphOptimizationLevel: opt.optimize ? 'all' : 'disabled',
    // --spin 0: worker threads sleep instead of spinning between ops (kinder to a shared machine).
    extra: {session: {intra_op: {allow_spinning: String(opt.spin)}}},
  };
  if (opt.verbose) options.logSeverityLevel = 0;
  const session = await ort.InferenceSession.create(modelPath, options);
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];
  if (!opt.shape) usage('--shape C,H,W is required');
  const per = opt.shape.reduce((a, b) => a * b, 1);
  const buf = fs.readFileSync(inPath);
  if (buf.length % (4 * per) !== 0)
    throw new Error(`${inPath}: ${buf.length} bytes is not a whole number of ${opt.shape} float32 images`);
  const n = buf.length / (4 * per);
  const images = new Float32Array(buf.buffer, buf.byteOffset, n * per);
  let outPer = 0;
  let out = null;
  const runAll = async () => {
    for (let s = 0; s < n; s += opt.batch) {
      const b = Math.min(opt.batch, n - s);
      const x = new ort.Tensor('float32', images.subarray(s * per, (s + b) * per), [b, ...opt.shape]);
      const r = await session.run({[inName]: x});
      const y = r[outName];
      if (!out) {
        outPer = y.data.length / b;
        out = new Float32Array(n * outPer);
      }
      out.set(y.data, s * outPer);
    }
  };
  await runAll();
  fs.writeFileSync(outPath, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
  if (opt.outputsJson) {
    const r = await session.run({[inName]: new ort.Tensor('float32', images.subarray(0, per),
                                                           [1, ...opt.shape])});
    const all = {};
    for (const k of session.outputNames) all[k] = Array.from(r[k].data, Number);
    const tmp = `${opt.outputsJson}.tmp.${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(all));
    fs.renameSync(tmp, opt.outputsJson);
  }
  const summary = {model: modelPath, images: n, outputs_per_image: outPer, batch: opt.batch,
                   threads: opt.threads};
  if (opt.bench > 0) {
    let runs = 0;
    const t0 = process.hrtime.bigint();
    let secs = 0;
    do {
      await runAll();
      ++runs;
      secs = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (secs < opt.bench);
    summary.images_per_s = (runs * n) / secs;
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
}

main().catch((e) => {
  process.stderr.write(`run_ort.js: ${e.message}\n`);
  process.exit(1);
});
