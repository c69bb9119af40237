/**
 * `npm run bench`: the store's throughput and latency beside a bare baseline doing the same work
 * with no store logic, measured in the same run and interleaved (store, baseline, store, ...), so
 * the ratio survives a noisy machine. Timings live here, never in tests.
 *
 *   BENCH_SECONDS  seconds per measured run (default 3)
 *   BENCH_REPS     repetitions of each pair (default 3; the median is reported)
 *   BENCH_DIR      where the files go (default: the OS temp dir)
 *   BENCH_ONLY     comma list of sections: sync, async (default both)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MessageStore, silentLogger } from '../src/store/index.js';
import { calMsgLength } from '../src/store/message/message-format.js';
import { BareCopyPwrite, BareGroupCommit, bareCopyPwriteLoop } from './baselines.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const BASE_DIR = process.env.BENCH_DIR ?? os.tmpdir();
const ONLY = (process.env.BENCH_ONLY ?? 'sync,async').split(',');
const WARMUP_MS = 300;
const SEGMENT_BYTES = 1024 * 1024 * 1024;
const TOPIC = 'BenchTopic';
/** Puts the ASYNC_FLUSH producer keeps in flight. */
const ASYNC_WINDOW = 1024;

const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? Number.NaN;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

/** Record size of a store message of this body (same topic, no properties): the baselines write this much. */
function recordBytesFor(bodyBytes: number): number {
  return calMsgLength(1, 0, bodyBytes, TOPIC.length, 0);
}

function freshDir(label: string): string {
  return fs.mkdtempSync(path.join(BASE_DIR, `rmq-bench-${label}-`));
}

interface LatencyRun {
  readonly msgsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** N producers, each awaiting its put before the next; counts puts finished after the warm-up. */
async function runProducers(
  producers: number,
  put: () => Promise<unknown>,
  seconds = SECONDS,
): Promise<LatencyRun> {
  const latencies = new Float64Array(4_000_000);
  let count = 0;
  const warmEnd = performance.now() + WARMUP_MS;
  const end = warmEnd + seconds * 1000;
  const lane = async (): Promise<void> => {
    for (;;) {
      const begin = performance.now();
      if (begin >= end) return;
      await put();
      if (begin >= warmEnd && count < latencies.length) latencies[count++] = performance.now() - begin;
    }
  };
  await Promise.all(Array.from({ length: producers }, lane));
  const elapsed = (performance.now() - warmEnd) / 1000;
  const sorted = latencies.subarray(0, count).sort();
  return { msgsPerSec: count / elapsed, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

async function syncStoreRun(producers: number, body: Buffer, seconds = SECONDS): Promise<LatencyRun> {
  const dir = freshDir('sync');
  const store = await MessageStore.open(
    { storePathRootDir: dir, flushDiskType: 'SYNC_FLUSH', mappedFileSizeCommitLog: SEGMENT_BYTES },
    { logger: silentLogger },
  );
  try {
    let failures = 0;
    const run = await runProducers(
      producers,
      async () => {
        const result = await store.putMessage({ topic: TOPIC, queueId: 0, body });
        if (result.status !== 'PUT_OK') failures++;
      },
      seconds,
    );
    if (failures > 0) throw new Error(`${failures} SYNC_FLUSH puts were not PUT_OK`);
    return run;
  } finally {
    await store.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function syncBareRun(producers: number, body: Buffer, seconds = SECONDS): Promise<LatencyRun> {
  const dir = freshDir('bare-gc');
  const bare = new BareGroupCommit(path.join(dir, 'log'), SEGMENT_BYTES);
  const recordBytes = recordBytesFor(body.length);
  try {
    return await runProducers(producers, () => bare.append(body, recordBytes), seconds);
  } finally {
    bare.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * ASYNC_FLUSH producer: keeps ASYNC_WINDOW puts in flight, each completion issuing the next, as a
 * broker serving many connections would. A put refused as busy is retried after 1 ms, as a client
 * would back off. Returns PUT_OK messages per second and how many refusals it saw.
 */
/**
 * The ASYNC_FLUSH producer, the same for the store and the bare baseline: keeps ASYNC_WINDOW puts
 * in flight, each completion issuing the next, as a broker serving many connections would. A put
 * refused as busy is retried after 1 ms, as a client would back off.
 */
async function runWindowed(
  put: () => Promise<{ status: string } | undefined>,
  room: () => boolean,
  seconds = SECONDS,
): Promise<{ msgsPerSec: number; busy: number }> {
  let ok = 0;
  let busy = 0;
  let failures = 0;
  let counting = false;
  const warmEnd = performance.now() + WARMUP_MS;
  const end = warmEnd + seconds * 1000;
  let start = warmEnd;
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const issue = (): void => {
      while (inFlight < ASYNC_WINDOW) {
        const now = performance.now();
        if (!counting && now >= warmEnd) {
          counting = true;
          start = now;
          ok = 0;
        }
        if (now >= end || !room()) {
          if (inFlight === 0) resolve();
          return;
        }
        inFlight++;
        void put().then(onDone);
      }
    };
    const onDone = (result: { status: string } | undefined): void => {
      inFlight--;
      const status = result?.status ?? 'PUT_OK';
      if (status === 'PUT_OK') ok++;
      else if (status === 'OS_PAGE_CACHE_BUSY') {
        busy++;
        inFlight++;
        setTimeout(() => {
          inFlight--;
          issue();
        }, 1);
        return;
      } else failures++;
      issue();
    };
    issue();
  });
  if (failures > 0) throw new Error(`${failures} ASYNC_FLUSH puts failed`);
  return { msgsPerSec: ok / ((performance.now() - start) / 1000), busy };
}

async function asyncStoreRun(
  body: Buffer,
  pool: boolean,
  seconds = SECONDS,
): Promise<{ msgsPerSec: number; busy: number }> {
  const dir = freshDir('async');
  const store = await MessageStore.open(
    {
      storePathRootDir: dir,
      flushDiskType: 'ASYNC_FLUSH',
      transientStorePoolEnable: pool,
      mappedFileSizeCommitLog: SEGMENT_BYTES,
    },
    { logger: silentLogger },
  );
  try {
    const message = { topic: TOPIC, queueId: 0, body };
    const mfq = store.getCommitLog().mappedFileQueue;
    const margin = ASYNC_WINDOW * recordBytesFor(body.length) * 2;
    // Stop before the 1 GiB segment fills: this measures appends, not segment rolls.
    return await runWindowed(
      () => store.putMessage(message),
      () => mfq.getMaxWrotePosition() + margin < SEGMENT_BYTES,
      seconds,
    );
  } finally {
    await store.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function asyncBareRun(body: Buffer, seconds = SECONDS): Promise<number> {
  const dir = freshDir('bare-cp');
  const bare = new BareCopyPwrite(path.join(dir, 'log'), SEGMENT_BYTES);
  const recordBytes = recordBytesFor(body.length);
  const margin = ASYNC_WINDOW * recordBytes * 2;
  try {
    const run = await runWindowed(
      async () => {
        await bare.append(body, recordBytes);
        return undefined;
      },
      () => bare.appendedBytes + margin < SEGMENT_BYTES,
      seconds,
    );
    return run.msgsPerSec;
  } finally {
    await bare.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function asyncLoopRun(body: Buffer): Promise<number> {
  const dir = freshDir('bare-loop');
  try {
    const result = await bareCopyPwriteLoop(
      path.join(dir, 'log'),
      SEGMENT_BYTES,
      body,
      recordBytesFor(body.length),
      SECONDS,
    );
    return result.messages / (result.elapsedMs / 1000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => n.toFixed(3);

function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(' | ')} |`;
  console.log(`\n${title}\n`);
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

async function benchSync(): Promise<void> {
  const body = Buffer.alloc(1024, 0x42);
  const rows: string[][] = [];
  for (const producers of [1, 16, 128]) {
    const store: LatencyRun[] = [];
    const bare: LatencyRun[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      store.push(await syncStoreRun(producers, body));
      bare.push(await syncBareRun(producers, body));
    }
    const storeMsgs = median(store.map((r) => r.msgsPerSec));
    const bareMsgs = median(bare.map((r) => r.msgsPerSec));
    rows.push([
      String(producers),
      fmt(storeMsgs),
      ms(median(store.map((r) => r.p50Ms))),
      ms(median(store.map((r) => r.p99Ms))),
      fmt(bareMsgs),
      ms(median(bare.map((r) => r.p50Ms))),
      ms(median(bare.map((r) => r.p99Ms))),
      `${(storeMsgs / bareMsgs).toFixed(2)}x`,
    ]);
    console.error(`  sync ${producers} producers done`);
  }
  printTable(
    'SYNC_FLUSH, 1 KiB body: store vs bare group commit (pwrite + fdatasync), medians',
    ['producers', 'store msg/s', 'p50 ms', 'p99 ms', 'bare msg/s', 'bare p50', 'bare p99', 'ratio'],
    rows,
  );
  console.log('target: ratio >= 0.90x at 128 producers');
}

async function benchAsync(): Promise<void> {
  const rows: string[][] = [];
  for (const size of [128, 1024, 16 * 1024]) {
    const body = Buffer.alloc(size, 0x43);
    const off: number[] = [];
    const on: number[] = [];
    const bare: number[] = [];
    const loop: number[] = [];
    let busy = 0;
    for (let rep = 0; rep < REPS; rep++) {
      off.push((await asyncStoreRun(body, false)).msgsPerSec);
      bare.push(await asyncBareRun(body));
      const pooled = await asyncStoreRun(body, true);
      on.push(pooled.msgsPerSec);
      busy += pooled.busy;
      loop.push(await asyncLoopRun(body));
    }
    const bareMsgs = median(bare);
    const offMsgs = median(off);
    const onMsgs = median(on);
    const loopMsgs = median(loop);
    const mbps = (m: number): string => ((m * recordBytesFor(size)) / 1e6).toFixed(0);
    rows.push([
      size >= 1024 ? `${size / 1024} KiB` : `${size} B`,
      fmt(offMsgs),
      `${(offMsgs / bareMsgs).toFixed(2)}x`,
      fmt(onMsgs),
      `${(onMsgs / bareMsgs).toFixed(2)}x`,
      fmt(bareMsgs),
      mbps(bareMsgs),
      fmt(busy / REPS),
      fmt(loopMsgs),
      `${(offMsgs / loopMsgs).toFixed(2)}x`,
    ]);
    console.error(`  async ${size} B done`);
  }
  printTable(
    `ASYNC_FLUSH: store vs bare copy + pwrite (both acknowledge each put once written; ${ASYNC_WINDOW} in flight), medians`,
    [
      'body',
      'pool off msg/s',
      'ratio',
      'pool on msg/s',
      'ratio',
      'bare msg/s',
      'bare MB/s',
      'busy/run (pool on)',
      'tight loop msg/s',
      'pool off / loop',
    ],
    rows,
  );
  console.log(
    'target: pool-off ratio >= 0.70x at 1 KiB. The tight loop acknowledges nothing: a ceiling, not a baseline.',
  );
}

console.log(
  `rocketmq-ts bench: node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ` +
    `${SECONDS} s x ${REPS} reps per figure, files in ${BASE_DIR}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
);
// One unmeasured pass of each kind first: the first run in a process pays for JIT warm-up,
// which would otherwise bias whichever side happens to go first.
{
  const body = Buffer.alloc(1024, 0x41);
  await syncStoreRun(16, body, 0.5);
  await syncBareRun(16, body, 0.5);
  await asyncStoreRun(body, false, 0.5);
  await asyncBareRun(body, 0.5);
}
if (ONLY.includes('sync')) await benchSync();
if (ONLY.includes('async')) await benchAsync();
