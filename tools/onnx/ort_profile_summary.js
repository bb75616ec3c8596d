#!/usr/bin/env node
// Sums an ONNX Runtime profile (tools/onnx/ort_profile.c --profile PREFIX writes PREFIX_*.json)
// per operator type and per node: microseconds per run and share of the total.
//
//   node tools/onnx/ort_profile_summary.js PROFILE.json [--nodes N]   (N largest nodes, default 10)
'use strict';
const fs = require('fs');
const args = process.argv.slice(2);
if (args.length < 1) {
  process.stderr.write('usage: ort_profile_summary.js PROFILE.json [--nodes N]\n');
  process.exit(2);
}
const topNodes = args[1] === '--nodes' ? Number(args[2]) : 10;
const events = JSON.parse(fs.readFileSync(args[0], 'utf8'));
const byOp = new Map(), byNode = new Map(), runs = new Map();
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const node = e.name.slice(0, -'_kernel_time'.length), op = e.args.op_name;
  byOp.set(op, (byOp.get(op) || 0) + e.dur);
  byNode.set(node, {op, us: ((byNode.get(node) || {}).us || 0) + e.dur});
  runs.set(node, (runs.get(node) || 0) + 1);
}
const n = Math.max(...runs.values());
let total = 0;
for (const v of byOp.values()) total += v;
const line = (us, name) =>
  `${(us / n).toFixed(1).padStart(10)} us/run ${(100 * us / total).toFixed(1).padStart(5)} %  ${name}`;
console.log(`${n} runs, ${(total / n).toFixed(1)} us/run in the nodes`);
for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1])) console.log(line(us, op));
console.log('largest nodes:');
for (const [node, v] of [...byNode].sort((a, b) => b[1].us - a[1].us).slice(0, topNodes))
  console.log(line(v.us, `${v.op} ${node}`));
