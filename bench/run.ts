/**
 * `npm run bench`: the store's throughput and latency beside a bare baseline doing the same work
 * with no store logic, in the same process and the same run. Timings live here, never in tests.
 *
 * This machine's disk speed drifts by 2x within a minute, so figures are taken in pairs: store,
 * baseline, store, baseline, ..., each run on fresh files, and the ratio reported is the median of
 * the per-pair ratios. Drift then hits both sides of a pair alike.
 *
 *   BENCH_SECONDS  seconds per measured run (default 1.5)
 *   BENCH_PAIRS    store/baseline pairs per row (default 9)
 *   BENCH_DIR      where the files go (default: the OS temp dir)
 *   BENCH_ONLY     comma list of sections: sync, async, read, recovery, e2e, delay (default all)
 *   BENCH_READ_MESSAGES   messages in the read section (default 200000)
 *   BENCH_RECOVERY_BYTES  commit log size in the recovery section (default 1 GiB)
 *   BENCH_E2E_MESSAGES    messages each consumer of the e2e section receives (default 20000)
 *   BENCH_E2E_PAIRS       bare/broker rounds per e2e send row (default min(BENCH_PAIRS, 3))
 *   BENCH_DELAY_PENDING   delay messages pending in the delay section (default 1000000)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MessageStore, silentLogger } from 'rocketmq-ts/store';
import { BareCopyPwrite, BareGroupCommit, bareCopyPwriteLoop } from './baselines.js';
import { benchDelay } from './delay.js';
import { benchE2E, type LatencyRun as E2eRun } from './e2e.js';
import { benchRead, benchRecovery } from './read-recovery.js';
import { median, percentile } from './stats.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const PAIRS = Number(process.env.BENCH_PAIRS ?? 9);
const BASE_DIR = process.env.BENCH_DIR ?? os.tmpdir();
const ONLY = (process.env.BENCH_ONLY ?? 'sync,async,read,recovery,e2e,delay').split(',');
const READ_MESSAGES = Number(process.env.BENCH_READ_MESSAGES ?? 200_000);
const RECOVERY_BYTES = Number(process.env.BENCH_RECOVERY_BYTES ?? 1024 * 1024 * 1024);
const E2E_MESSAGES = Number(process.env.BENCH_E2E_MESSAGES ?? 20_000);
const DELAY_PENDING = Number(process.env.BENCH_DELAY_PENDING ?? 1_000_000);
/** The read and recovery sections take longer per run: fewer pairs. */
const READ_PAIRS = Math.max(1, Math.min(PAIRS, 5));
const RECOVERY_PAIRS = Math.max(1, Math.min(PAIRS, 7));
/** The e2e send section runs three servers per round: fewer rounds. */
const E2E_PAIRS = Math.max(1, Number(process.env.BENCH_E2E_PAIRS ?? Math.min(PAIRS, 3)));
const WARMUP_MS = 300;
const SEGMENT_BYTES = 1024 * 1024 * 1024;
/** The baselines' file: sparse, as large as a run could ever fill. */
const BARE_FILE_BYTES = 16 * 1024 * 1024 * 1024;
const TOPIC = 'BenchTopic';
/** Puts the ASYNC_FLUSH producer keeps in flight. */
const ASYNC_WINDOW = 1024;

/**
 * Record size of a store message of this body (same topic, no properties, IPv4 hosts): the
 * baselines write this much. RocketMQ's layout: 91 bytes of fields plus body and topic.
 */
function recordBytesFor(bodyBytes: number): number {
  return 91 + bodyBytes + TOPIC.length;
}

function freshDir(label: string): string {
  return fs.mkdtempSync(path.join(BASE_DIR, `rmq-bench-${label}-`));
}

interface LatencyRun {
  readonly msgsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** What a put resolves to: the store's result, or nothing for a baseline (which cannot fail). */
type PutOutcome = { readonly status: string };

/**
 * N producers, each awaiting its put before the next; counts puts finished after the warm-up.
 * Store and baseline puts are awaited the same way (their own promise, no wrapper), and a store
 * put that is not PUT_OK fails the run.
 */
async function runProducers(
  producers: number,
  put: () => Promise<PutOutcome | undefined>,
  seconds: number,
): Promise<LatencyRun> {
  const latencies = new Float64Array(4_000_000);
  let count = 0;
  let failures = 0;
  const warmEnd = performance.now() + WARMUP_MS;
  const end = warmEnd + seconds * 1000;
  const lane = async (): Promise<void> => {
    for (;;) {
      const begin = performance.now();
      if (begin >= end) return;
      const outcome = await put();
      if (outcome !== undefined && outcome.status !== 'PUT_OK') failures++;
      if (begin >= warmEnd && count < latencies.length) latencies[count++] = performance.now() - begin;
    }
  };
  await Promise.all(Array.from({ length: producers }, lane));
  if (failures > 0) throw new Error(`${failures} puts were not PUT_OK`);
  const elapsed = (performance.now() - warmEnd) / 1000;
  const sorted = latencies.subarray(0, count).sort();
  return { msgsPerSec: count / elapsed, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

/**
 * The ASYNC_FLUSH producer, the same for the store and the bare baseline: keeps ASYNC_WINDOW puts
 * in flight, each completion issuing the next, as a broker serving many connections would. A put
 * refused as busy is retried after 1 ms, as a client would back off.
 */
async function runWindowed(
  put: () => Promise<PutOutcome | undefined>,
  seconds: number,
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
        if (now >= end) {
          if (inFlight === 0) resolve();
          return;
        }
        inFlight++;
        void put().then(onDone);
      }
    };
    const onDone = (result: PutOutcome | undefined): void => {
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

async function openStore(
  dir: string,
  flushDiskType: 'SYNC_FLUSH' | 'ASYNC_FLUSH',
  pool: boolean,
): Promise<MessageStore> {
  return MessageStore.open(
    {
      storePathRootDir: dir,
      flushDiskType,
      transientStorePoolEnable: pool,
      mappedFileSizeCommitLog: SEGMENT_BYTES,
    },
    { logger: silentLogger },
  );
}

/** Puts into `store` and throws unless every put gets `status`. */
function storePut(store: MessageStore, body: Buffer): () => Promise<{ status: string }> {
  const message = { topic: TOPIC, queueId: 0, body };
  return () => store.putMessage(message);
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => n.toFixed(3);
const ratio = (n: number): string => `${n.toFixed(2)}x`;

function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => c.padStart(widths[i] ?? 0)).join(' | ')} |`;
  console.log(`\n${title}\n`);
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

/**
 * One measured run on fresh files: the store (or the baseline) starts at offset 0 of a new file
 * every time, so both sides of a pair meet the file system in the same state. (Write speed here
 * falls by half as a file grows past a few hundred MB, for the store and the baseline alike.)
 */
async function withFreshStore<T>(
  flushDiskType: 'SYNC_FLUSH' | 'ASYNC_FLUSH',
  pool: boolean,
  run: (store: MessageStore) => Promise<T>,
): Promise<T> {
  const dir = freshDir('store');
  const store = await openStore(dir, flushDiskType, pool);
  try {
    return await run(store);
  } finally {
    await store.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function benchSyncRow(producers: number): Promise<string[]> {
  const body = Buffer.alloc(1024, 0x42);
  const recordBytes = recordBytesFor(body.length);
  const storeRuns: LatencyRun[] = [];
  const bareRuns: LatencyRun[] = [];
  const ratios: number[] = [];
  // One unmeasured run first: the first run at a new concurrency is always the slowest.
  await withFreshStore('SYNC_FLUSH', false, (store) => runProducers(producers, storePut(store, body), 0.5));
  for (let pair = 0; pair < PAIRS; pair++) {
    const s = await withFreshStore('SYNC_FLUSH', false, (store) =>
      runProducers(producers, storePut(store, body), SECONDS),
    );
    const bareDir = freshDir('bare-gc');
    const bare = new BareGroupCommit(path.join(bareDir, 'log'), BARE_FILE_BYTES);
    let b: LatencyRun;
    try {
      b = await runProducers(producers, () => bare.append(body, recordBytes), SECONDS);
    } finally {
      bare.close();
      fs.rmSync(bareDir, { recursive: true, force: true });
    }
    storeRuns.push(s);
    bareRuns.push(b);
    ratios.push(s.msgsPerSec / b.msgsPerSec);
  }
  console.error(
    `  SYNC_FLUSH ${producers} producers: pair ratios ${ratios.map((r) => r.toFixed(2)).join(' ')}`,
  );
  return [
    String(producers),
    fmt(median(storeRuns.map((r) => r.msgsPerSec))),
    ms(median(storeRuns.map((r) => r.p50Ms))),
    ms(median(storeRuns.map((r) => r.p99Ms))),
    fmt(median(bareRuns.map((r) => r.msgsPerSec))),
    ms(median(bareRuns.map((r) => r.p50Ms))),
    ms(median(bareRuns.map((r) => r.p99Ms))),
    ratio(median(ratios)),
  ];
}

async function benchAsyncRow(size: number): Promise<string[]> {
  const body = Buffer.alloc(size, 0x43);
  const recordBytes = recordBytesFor(size);
  const offRuns: number[] = [];
  const onRuns: number[] = [];
  const bareRuns: number[] = [];
  const offRatios: number[] = [];
  const onRatios: number[] = [];
  let busy = 0;
  await withFreshStore('ASYNC_FLUSH', false, async (store) => runWindowed(storePut(store, body), 0.5));
  for (let pair = 0; pair < PAIRS; pair++) {
    const o = await withFreshStore('ASYNC_FLUSH', false, async (store) =>
      runWindowed(storePut(store, body), SECONDS),
    );
    const bareDir = freshDir('bare-cp');
    const bare = new BareCopyPwrite(path.join(bareDir, 'log'), BARE_FILE_BYTES);
    let b: number;
    try {
      b = (await runWindowed(() => bare.append(body, recordBytes), SECONDS)).msgsPerSec;
    } finally {
      await bare.close();
      fs.rmSync(bareDir, { recursive: true, force: true });
    }
    const pooled = await withFreshStore('ASYNC_FLUSH', true, async (store) =>
      runWindowed(storePut(store, body), SECONDS),
    );
    offRuns.push(o.msgsPerSec);
    bareRuns.push(b);
    onRuns.push(pooled.msgsPerSec);
    busy += pooled.busy;
    offRatios.push(o.msgsPerSec / b);
    onRatios.push(pooled.msgsPerSec / b);
  }
  // The ceiling, once per row.
  const loopDir = freshDir('bare-loop');
  let loopMsgs: number;
  try {
    const loop = await bareCopyPwriteLoop(
      path.join(loopDir, 'log'),
      SEGMENT_BYTES,
      body,
      recordBytes,
      SECONDS,
    );
    loopMsgs = loop.messages / (loop.elapsedMs / 1000);
  } finally {
    fs.rmSync(loopDir, { recursive: true, force: true });
  }
  const label = size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
  console.error(
    `  ASYNC_FLUSH ${label}: pool-off pair ratios ${offRatios.map((r) => r.toFixed(2)).join(' ')}`,
  );
  const bareMsgs = median(bareRuns);
  return [
    label,
    fmt(median(offRuns)),
    ratio(median(offRatios)),
    fmt(median(onRuns)),
    ratio(median(onRatios)),
    fmt(bareMsgs),
    ((bareMsgs * recordBytes) / 1e6).toFixed(0),
    fmt(busy / PAIRS),
    fmt(loopMsgs),
  ];
}

async function warmUp(): Promise<void> {
  // The first runs in a process pay for JIT warm-up; they are not measured.
  const dir = freshDir('warm');
  const body = Buffer.alloc(1024, 0x41);
  const store = await openStore(path.join(dir, 'store'), 'SYNC_FLUSH', false);
  const bare = new BareGroupCommit(path.join(dir, 'bare'), SEGMENT_BYTES);
  try {
    // The baselines write records of recordBytesFor(); check that is what the store writes.
    const probe = await store.putMessage({ topic: TOPIC, queueId: 0, body });
    if (probe.appendResult?.wroteBytes !== recordBytesFor(body.length)) {
      throw new Error(
        `store record is ${probe.appendResult?.wroteBytes} bytes, bench assumes ${recordBytesFor(body.length)}`,
      );
    }
    await runProducers(16, storePut(store, body), 0.5);
    await runProducers(16, () => bare.append(body, recordBytesFor(body.length)), 0.5);
  } finally {
    await store.shutdown();
    bare.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

console.log(
  `rocketmq-ts bench: node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ` +
    `${PAIRS} pairs x ${SECONDS} s per row, files in ${BASE_DIR}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
);
await warmUp();
if (ONLY.includes('sync')) {
  const rows: string[][] = [];
  for (const producers of [1, 16, 128]) rows.push(await benchSyncRow(producers));
  printTable(
    'SYNC_FLUSH, 1 KiB body: store vs bare group commit (pwrite + fdatasync); medians, ratio = median of pair ratios',
    ['producers', 'store msg/s', 'p50 ms', 'p99 ms', 'bare msg/s', 'bare p50', 'bare p99', 'ratio'],
    rows,
  );
  console.log('target: ratio >= 0.90x at 128 producers');
}
if (ONLY.includes('async')) {
  const rows: string[][] = [];
  for (const size of [128, 1024, 16 * 1024]) rows.push(await benchAsyncRow(size));
  printTable(
    `ASYNC_FLUSH: store vs bare copy + pwrite, both acknowledging each put once written (${ASYNC_WINDOW} in flight)`,
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
    ],
    rows,
  );
  console.log('target: pool-off ratio >= 0.70x at 1 KiB');
  console.log(
    'tight loop: encode + pwrite with no acknowledgement at all; the ceiling of this machine, not a baseline.',
  );
}
if (ONLY.includes('read')) {
  const row = await benchRead(BASE_DIR, READ_MESSAGES, READ_PAIRS);
  printTable(
    `Read: one queue of 1 KiB messages from offset 0 to the end, ${32} per getMessage; bare = pread of the same bytes in the same batches + body CRC (${READ_PAIRS} pairs, medians)`,
    ['messages', 'store msg/s', 'bare msg/s', 'ratio'],
    [[fmt(row.messages), fmt(row.storeMsgsPerSec), fmt(row.bareMsgsPerSec), ratio(row.ratio)]],
  );
}
if (ONLY.includes('recovery')) {
  const row = await benchRecovery(BASE_DIR, RECOVERY_BYTES, RECOVERY_PAIRS);
  printTable(
    `Recovery of a ${(row.logBytes / 2 ** 30).toFixed(2)} GiB commit log (1 KiB messages): abnormal = abort file, no checkpoint, no consume queues (every record checked and dispatched again); bare = sequential read + body CRC of the same bytes (${RECOVERY_PAIRS} pairs, medians)`,
    ['messages', 'abnormal ms', 'bare ms', 'ratio', 'normal (clean) ms'],
    [[fmt(row.messages), fmt(row.abnormalMs), fmt(row.bareMs), ratio(row.ratio), fmt(row.normalMs)]],
  );
  console.log('target: abnormal recovery <= 1.5x the bare scan');
}
if (ONLY.includes('e2e')) {
  const { send, consume } = await benchE2E({
    baseDir: BASE_DIR,
    seconds: SECONDS,
    pairs: E2E_PAIRS,
    messages: E2E_MESSAGES,
  });
  const run = (r: E2eRun): string[] => [fmt(r.sendsPerSec), ms(r.p50Ms), ms(r.p99Ms)];
  printTable(
    `End to end, official Node client (Producer.send, 1 KiB body) against the broker on 127.0.0.1; bare = a gRPC server answering SendMessage at once, storing nothing (${E2E_PAIRS} rounds, medians, ratio = median of round ratios)`,
    [
      'lanes',
      'SYNC_FLUSH sends/s',
      'p50 ms',
      'p99 ms',
      'ratio',
      'ASYNC_FLUSH sends/s',
      'p50 ms',
      'p99 ms',
      'ratio',
      'bare sends/s',
      'bare p50',
      'bare p99',
    ],
    send.map((row) => [
      String(row.concurrency),
      ...run(row.sync),
      ratio(row.syncRatio),
      ...run(row.async),
      ratio(row.asyncRatio),
      ...run(row.bare),
    ]),
  );
  printTable(
    `End to end, receive: ${fmt(E2E_MESSAGES)} messages of 1 KiB put first (ASYNC_FLUSH), then consumed by a new group`,
    ['consumer', 'received', 'msg/s', 'seconds', 'note'],
    consume.map((row) => [
      row.consumer,
      `${row.received}/${row.messages}`,
      row.received === 0 ? '-' : fmt(row.msgsPerSec),
      row.seconds.toFixed(2),
      row.problem ?? '',
    ]),
  );
  console.log(
    'push: timed from its first message to the last (its first receive starts about 1 s after startup)',
  );
}
if (ONLY.includes('delay')) {
  const tables = await benchDelay({
    baseDir: BASE_DIR,
    seconds: SECONDS,
    pairs: PAIRS,
    restartPairs: Math.min(PAIRS, 3),
    pending: DELAY_PENDING,
  });
  for (const table of tables) {
    printTable(table.title, table.header, table.rows);
    for (const note of table.notes) console.log(note);
  }
}
