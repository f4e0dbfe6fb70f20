'use strict';
// start -> result latency of every workflow shape in the TypeScript original, one workflow at a time
// (its bench-meshflow.js times only wfOne one at a time; wfSeq5 / wfPar5 only as throughput).
// `TSBENCH_DIR=/path/to/hotmesh-ts-anchor node bench-latency.js <redis|postgres>` prints one JSON line.
// Uses the anchor harness (lib/common, lib/proc, worker.js) from TSBENCH_DIR (default
// /work/shared/anchors/hotmesh-ts, node_modules installed) and its namespace/env knobs (TSBENCH_NS,
// REDIS_DB, PG_URL). Env: N_LAT (per shape, default 20), WARMUP (default 2), SHAPES (default all three).
const path = require('path');
const dir = process.env.TSBENCH_DIR || '/work/shared/anchors/hotmesh-ts';
const c = require(path.join(dir, 'lib/common'));
const { startWorker } = require(path.join(dir, 'lib/proc'));
const { Client, HotMesh, MeshFlow } = require(path.join(dir, 'node_modules/@hotmeshio/hotmesh'));

const backend = process.argv[2] || 'redis';
const N = +(process.env.N_LAT || 20);
const WARMUP = +(process.env.WARMUP || 2);
const SHAPES = (process.env.SHAPES || 'wfOne,wfSeq5,wfPar5').split(',');
const QUEUE = process.env.TSBENCH_QUEUE || 'bench';
const CAP_MS = +(process.env.CAP_S || 60) * 1000;
const expected = {
  wfOne: (x) => `echo:${x}`,
  wfSeq5: (x) => `echo:${x}.4`,
  wfPar5: (x) => [0, 1, 2, 3, 4].map((i) => `echo:${x}.${i}`).join(','),
};

(async () => {
  if (backend.startsWith('postgres')) await c.ensurePgDatabase();
  const worker = startWorker(backend, 'meshflow');
  await worker.ready();
  const client = new Client({ connection: c.connection(backend) });
  const run = async (name, x) => {
    const h = await client.workflow.start({ namespace: c.NS_FLOW, taskQueue: QUEUE, workflowName: name, args: [x], workflowId: `${name}-${HotMesh.guid()}` });
    const r = await h.result();
    if (r !== expected[name](x)) throw new Error(`${name} returned ${JSON.stringify(r)}`);
  };
  const out = { bench: 'ts-latency', backend, versions: c.versions(), params: { N, WARMUP, SHAPES }, shapes: {} };
  for (const name of SHAPES) {
    for (let i = 0; i < WARMUP; i++) await run(name, `w${i}`);
    const lat = [];
    const t0 = c.nowMs();
    for (let i = 0; i < N && c.nowMs() - t0 < CAP_MS; i++) {
      const t = c.nowMs();
      await run(name, `l${i}`);
      lat.push(c.nowMs() - t);
    }
    out.shapes[name] = c.summarize(lat);
  }
  console.log(JSON.stringify(out));
  await worker.stop();
  await Promise.race([MeshFlow.shutdown(), c.sleep(3000)]);
  process.exit(0);
})().catch((e) => { console.error('bench-latency failed:', e); process.exit(1); });
