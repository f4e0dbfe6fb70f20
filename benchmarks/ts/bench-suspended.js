'use strict';
// Memory per suspended workflow in the TypeScript original (a case its harness lacks).
// `TSBENCH_DIR=/path/to/hotmesh-ts-anchor node bench-suspended.js <redis|postgres>`
// Uses the anchor harness (lib/common, lib/proc, worker.js: wfSignal) from TSBENCH_DIR (default
// /work/shared/anchors/hotmesh-ts, with node_modules installed). Starts N_SUSP wfSignal workflows
// (START_CONC at a time), waits until every one is registered as waiting (its signal key exists),
// then reports the worker's RSS before/after and the redis INFO used_memory delta, scaled per 10,000.
// The workflows are left suspended: purge the namespace (TSBENCH_NS) afterwards.
const path = require('path');
const dir = process.env.TSBENCH_DIR || '/work/shared/anchors/hotmesh-ts';
const c = require(path.join(dir, 'lib/common'));
const { startWorker } = require(path.join(dir, 'lib/proc'));
const { Client, HotMesh } = require(path.join(dir, 'node_modules/@hotmeshio/hotmesh'));
const Redis = require(path.join(dir, 'node_modules/ioredis'));

const backend = process.argv[2] || 'redis';
const N = +(process.env.N_SUSP || 2000);
const CONC = +(process.env.START_CONC || 100);
const NS = c.NS_FLOW;
const QUEUE = process.env.TSBENCH_QUEUE || 'bench';

(async () => {
  const worker = startWorker(backend, 'meshflow');
  await worker.ready();
  const client = new Client({ connection: c.connection(backend) });
  const r = new Redis({ host: c.REDIS_HOST, port: c.REDIS_PORT, db: c.REDIS_DB });
  const start = (name, args, id) => client.workflow.start({ namespace: NS, taskQueue: QUEUE, workflowName: name, args, workflowId: id });
  for (let i = 0; i < 3; i++) await (await start('wfOne', [`m${i}`], `m-${HotMesh.guid()}`)).result();
  await c.sleep(1000);
  const rss0 = (await worker.stats(true)).rss;
  const used0 = +((await r.info('memory')).match(/used_memory:(\d+)/)[1]);
  const t0 = c.nowMs();
  const ids = [];
  await c.runConcurrent(N, CONC, async (i) => { const id = `susp-${HotMesh.guid()}`; ids.push(id); await start('wfSignal', [id], id); });
  const startS = (c.nowMs() - t0) / 1000;
  let waiting = 0;
  const deadline = c.nowMs() + 600000;
  while (c.nowMs() < deadline) {
    waiting = 0;
    for (let k = 0; k < ids.length; k += 500) {
      const keys = ids.slice(k, k + 500).map((id) => `hmsh:${NS}:signals:${NS}.wfs.signal:sig-${id}`);
      waiting += (await r.exists(...keys));
    }
    if (waiting >= N) break;
    await c.sleep(2000);
  }
  const settleS = (c.nowMs() - t0) / 1000;
  const rss1 = (await worker.stats(true)).rss;
  const used1 = +((await r.info('memory')).match(/used_memory:(\d+)/)[1]);
  const out = {
    bench: 'suspended', backend, n: N, waiting, start_s: startS, settle_s: settleS,
    worker_rss_mb_before: c.rssMB(rss0), worker_rss_mb_after: c.rssMB(rss1),
    worker_rss_mb_per_10k: +(((rss1 - rss0) / 1048576) * 10000 / N).toFixed(1),
    redis_used_memory_mb_per_10k: backend === 'redis' ? +(((used1 - used0) / 1048576) * 10000 / N).toFixed(1) : null,
  };
  console.log(JSON.stringify(out));
  await r.quit();
  await worker.stop();
  process.exit(0);
})().catch((e) => { console.error('bench-suspended failed:', e); process.exit(1); });
