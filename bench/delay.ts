import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { BrokerController, type SendMessageInput } from '../src/broker/index.js';
import { TimerMessageService } from '../src/broker/timer/timer-message-service.js';
import { silentLogger, TIMER_TOPIC } from '../src/store/index.js';
import { median } from './stats.js';

/**
 * The delay section of `npm run bench` (`BENCH_ONLY=delay`): what many pending delay messages
 * cost the rest of the broker. Two brokers (BrokerController, ASYNC_FLUSH, default segment size)
 * over fresh stores in this process, filled alike through `sendMessage` with `pending` messages of
 * the same record size, 1024 sends in flight:
 *
 * - delayed: DELAY messages of 64 B, due 1 to 2 hours ahead (none becomes due during the run),
 *   so they wait in `rmq_sys_wheel_timer` and in the timer's due-time heap;
 * - plain (the baseline): NORMAL messages to an ordinary topic, their bodies padded so each record
 *   is as large as a delayed one: the same commit log and consume queue bytes, no pending delay.
 *
 * Then, on both:
 *
 * - restart: clean shutdown, `sync`, `BrokerController.open` on the same directory, timed
 *   (one unmeasured round, then pairs); the reopened delayed broker should report `pending`
 *   scheduled (a loud warning row when it does not). "All scheduled" goes on until the timer holds
 *   every pending message, signalling it a timer-topic arrival as a new delay message would. The
 *   timer's share is measured apart: a second TimerMessageService started over the reopened store
 *   rebuilds the same heap from the timer topic's consume queue.
 * - normal traffic: 64 senders each awaiting its `sendMessage` of a 1 KiB NORMAL message to
 *   another topic, `seconds` per run after a 300 ms warm-up, alternating the two brokers in pairs
 *   (the first of a pair alternates too); the ratio is the median of the per-pair ratios.
 *
 * Memory (rss, V8 heap used, array buffers, after a full GC) is read before the fills, after the
 * plain fill and after the delayed fill: the heap lives in typed arrays (array buffers), 24 B a
 * message, its capacity doubling.
 */

const DELAY_TOPIC = 'BenchDelayTopic';
const PLAIN_TOPIC = 'BenchDelayPlainTopic';
const TRAFFIC_TOPIC = 'BenchDelayTrafficTopic';
const DELAY_BODY_BYTES = 64;
const TRAFFIC_BODY = Buffer.alloc(1024, 0x54);
const TRAFFIC_SENDERS = 64;
const FILL_IN_FLIGHT = 1024;
const WARMUP_MS = 300;
/** Traffic messages each broker takes before anything is measured. */
const WARMUP_MESSAGES = 20_000;
/** Delayed messages are due between 1 and 2 hours from their send. */
const DUE_AHEAD_MS = 60 * 60 * 1000;
const DUE_SPREAD_MS = 60 * 60 * 1000;
/** A client message id's shape (34 hex digits): every record of a kind is the same size. */
const ID_PREFIX = '0100163E0A0C1E3B8C';

export interface DelayOptions {
  readonly baseDir: string;
  readonly seconds: number;
  /** Normal-traffic pairs (plain, delayed). */
  readonly pairs: number;
  /** Restart pairs (plain, delayed). */
  readonly restartPairs: number;
  /** Delayed messages pending (and plain messages in the baseline store). */
  readonly pending: number;
}

export interface DelayTable {
  readonly title: string;
  readonly header: string[];
  readonly rows: string[][];
  readonly notes: string[];
}

interface Memory {
  readonly rss: number;
  readonly heapUsed: number;
  readonly arrayBuffers: number;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const ratio = (n: number): string => `${n.toFixed(2)}x`;
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);
const signedMb = (bytes: number): string => `${bytes >= 0 ? '+' : ''}${mb(bytes)}`;

const messageId = (n: number): string => ID_PREFIX + n.toString(16).toUpperCase().padStart(16, '0');

/** A full GC: `global.gc` when node runs with --expose-gc, else the flag turned on here. */
function fullGc(): void {
  let gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
  gc();
}

function memory(): Memory {
  fullGc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers };
}

/** Writes back every dirty page of the machine (sync(1)), so an open starts from a quiet disk. */
function settleDisk(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

function openBroker(dir: string): Promise<BrokerController> {
  return BrokerController.open({
    store: { storePathRootDir: dir, flushDiskType: 'ASYNC_FLUSH' },
    logger: silentLogger,
  });
}

/** Sends `count` messages made by `make`, `inFlight` at a time; a busy answer is retried after 1 ms. */
async function fill(
  broker: BrokerController,
  count: number,
  make: (i: number) => SendMessageInput,
  inFlight = FILL_IN_FLIGHT,
): Promise<{ ms: number }> {
  const start = performance.now();
  let next = 0;
  let failure: string | null = null;
  const lane = async (): Promise<void> => {
    while (next < count && failure === null) {
      const input = make(next++);
      for (;;) {
        const result = await broker.sendMessage(input);
        if (result.status.code === 'OK') break;
        if (result.status.code !== 'TOO_MANY_REQUESTS') {
          failure = `${result.status.code}: ${result.status.message}`;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, lane));
  if (failure !== null) throw new Error(`a fill send failed: ${failure}`);
  return { ms: performance.now() - start };
}

/** Waits until the timer has scheduled `count` messages (its reads trail the sends a little). */
async function waitForPending(broker: BrokerController, count: number, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (broker.timerMessageService.pendingCount < count && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return broker.timerMessageService.pendingCount;
}

/** Bytes one record of `input` takes in the commit log, measured on a throwaway broker. */
async function recordBytes(baseDir: string, inputs: readonly SendMessageInput[]): Promise<number[]> {
  const dir = fs.mkdtempSync(path.join(baseDir, 'rmq-bench-delay-probe-'));
  const broker = await openBroker(dir);
  try {
    const sizes: number[] = [];
    for (const input of inputs) {
      const before = broker.store.getMaxPhyOffset();
      const result = await broker.sendMessage(input);
      if (result.status.code !== 'OK') throw new Error(`probe send: ${result.status.code}`);
      sizes.push(broker.store.getMaxPhyOffset() - before);
    }
    return sizes;
  } finally {
    await broker.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** 64 senders, each awaiting its NORMAL send of 1 KiB before the next; msg/s after the warm-up. */
async function normalTraffic(broker: BrokerController, seconds: number, idBase: number): Promise<number> {
  let count = 0;
  let sent = 0;
  let failure: string | null = null;
  const warmEnd = performance.now() + WARMUP_MS;
  const end = warmEnd + seconds * 1000;
  const lane = async (): Promise<void> => {
    for (;;) {
      const begin = performance.now();
      if (begin >= end || failure !== null) return;
      const result = await broker.sendMessage({
        topic: TRAFFIC_TOPIC,
        body: TRAFFIC_BODY,
        messageId: messageId(idBase + sent++),
        messageType: 'NORMAL',
      });
      if (result.status.code !== 'OK') failure = `${result.status.code}: ${result.status.message}`;
      if (begin >= warmEnd) count++;
    }
  };
  await Promise.all(Array.from({ length: TRAFFIC_SENDERS }, lane));
  if (failure !== null) throw new Error(`a traffic send failed: ${failure}`);
  return count / ((performance.now() - warmEnd) / 1000);
}

/**
 * Tells `service` a timer-topic message arrived (so it reads on) until it has scheduled `count`,
 * or it made no progress for 500 ms. Returns its pending count.
 */
async function scheduleAll(service: TimerMessageService, count: number): Promise<number> {
  let last = service.pendingCount;
  let lastProgress = performance.now();
  while (service.pendingCount < count && performance.now() - lastProgress < 500) {
    service.onMessageArriving(TIMER_TOPIC);
    await new Promise((resolve) => setImmediate(resolve));
    if (service.pendingCount !== last) {
      last = service.pendingCount;
      lastProgress = performance.now();
    }
  }
  return service.pendingCount;
}

interface Reopen {
  /** BrokerController.open alone. */
  readonly openMs: number;
  /** What the timer had scheduled when open returned. */
  readonly pendingAfterOpen: number;
  /** Open plus the time until the timer scheduled `expected` (see scheduleAll). */
  readonly allScheduledMs: number;
  readonly pendingAll: number;
}

/** Clean shutdown, sync, open on the same directory: timed. */
async function reopen(
  broker: BrokerController,
  dir: string,
  expected: number,
): Promise<[BrokerController, Reopen]> {
  await broker.shutdown();
  settleDisk();
  const start = performance.now();
  const reopened = await openBroker(dir);
  const openMs = performance.now() - start;
  const pendingAfterOpen = reopened.timerMessageService.pendingCount;
  const pendingAll = await scheduleAll(reopened.timerMessageService, expected);
  return [reopened, { openMs, pendingAfterOpen, allScheduledMs: performance.now() - start, pendingAll }];
}

/** The timer's rebuild alone: a second service over the broker's store reads the timer topic into its own heap. */
async function timedTimerRebuild(
  broker: BrokerController,
  expected: number,
): Promise<{ startMs: number; allMs: number; pending: number }> {
  const service = new TimerMessageService({
    store: broker.store,
    offsets: broker.consumerOffsetManager,
    logger: silentLogger,
  });
  const start = performance.now();
  await service.start();
  const startMs = performance.now() - start;
  const pending = await scheduleAll(service, expected);
  const allMs = performance.now() - start;
  service.shutdown();
  return { startMs, allMs, pending };
}

export async function benchDelay(options: DelayOptions): Promise<DelayTable[]> {
  const { baseDir, seconds, pending } = options;
  const pairs = Math.max(1, options.pairs);
  const restartPairs = Math.max(1, options.restartPairs);
  const dueBase = Date.now() + DUE_AHEAD_MS;
  const delayedBody = Buffer.alloc(DELAY_BODY_BYTES, 0x44);
  const delayed = (i: number): SendMessageInput => ({
    topic: DELAY_TOPIC,
    body: delayedBody,
    messageId: messageId(i),
    messageType: 'DELAY',
    deliveryTimestamp: dueBase + Math.floor(Math.random() * DUE_SPREAD_MS),
  });
  // Plain records padded to a delayed record's size (its topic and timer properties are longer).
  const [delayedBytes = 0, unpaddedBytes = 0] = await recordBytes(baseDir, [
    delayed(0),
    { topic: PLAIN_TOPIC, body: delayedBody, messageId: messageId(0), messageType: 'NORMAL' },
  ]);
  const plainBody = Buffer.alloc(DELAY_BODY_BYTES + Math.max(0, delayedBytes - unpaddedBytes), 0x50);
  const plain = (i: number): SendMessageInput => ({
    topic: PLAIN_TOPIC,
    body: plainBody,
    messageId: messageId(i),
    messageType: 'NORMAL',
  });
  const [plainBytes = 0] = await recordBytes(baseDir, [plain(0)]);

  const plainDir = fs.mkdtempSync(path.join(baseDir, 'rmq-bench-delay-plain-'));
  const delayDir = fs.mkdtempSync(path.join(baseDir, 'rmq-bench-delay-pending-'));
  let plainBroker: BrokerController | null = null;
  let delayBroker: BrokerController | null = null;
  try {
    plainBroker = await openBroker(plainDir);
    delayBroker = await openBroker(delayDir);
    // Warm the send path on both (JIT), unmeasured: as many traffic messages on each, so both
    // commit logs stay the same size.
    const warm = (i: number): SendMessageInput => ({
      topic: TRAFFIC_TOPIC,
      body: TRAFFIC_BODY,
      messageId: messageId(1e12 + i),
      messageType: 'NORMAL',
    });
    await fill(plainBroker, WARMUP_MESSAGES, warm, TRAFFIC_SENDERS);
    await fill(delayBroker, WARMUP_MESSAGES, warm, TRAFFIC_SENDERS);

    const memBefore = memory();
    console.error(`  delay: filling the plain store with ${fmt(pending)} NORMAL messages of ${plainBytes} B`);
    const plainFill = await fill(plainBroker, pending, plain);
    const memPlain = memory();
    console.error(`  delay: sending ${fmt(pending)} DELAY messages of ${delayedBytes} B`);
    const delayStart = performance.now();
    const delayFill = await fill(delayBroker, pending, delayed);
    const scheduled = await waitForPending(delayBroker, pending, 60_000);
    const scheduledMs = performance.now() - delayStart;
    const memDelayed = memory();
    const plainLogBytes = plainBroker.store.getMaxPhyOffset();
    const delayLogBytes = delayBroker.store.getMaxPhyOffset();

    // Restart: clean shutdown, sync, open; one unmeasured round first (the recovery code's first
    // run in this process), then pairs, alternating which store goes first.
    const plainRuns: Reopen[] = [];
    const delayRuns: Reopen[] = [];
    const rebuilds: { startMs: number; allMs: number; pending: number }[] = [];
    for (let round = -1; round < restartPairs; round++) {
      let p: Reopen;
      let d: Reopen;
      if (round % 2 === 0) {
        [delayBroker, d] = await reopen(delayBroker, delayDir, pending);
        [plainBroker, p] = await reopen(plainBroker, plainDir, 0);
      } else {
        [plainBroker, p] = await reopen(plainBroker, plainDir, 0);
        [delayBroker, d] = await reopen(delayBroker, delayDir, pending);
      }
      const rebuild = await timedTimerRebuild(delayBroker, pending);
      if (round < 0) continue;
      plainRuns.push(p);
      delayRuns.push(d);
      rebuilds.push(rebuild);
    }
    const restartRatios = delayRuns.map((d, i) => d.openMs / (plainRuns[i] as Reopen).openMs);
    const allRatios = delayRuns.map((d, i) => d.allScheduledMs / (plainRuns[i] as Reopen).allScheduledMs);
    console.error(
      `  delay: open ms plain ${plainRuns.map((r) => fmt(r.openMs)).join(' ')}, delayed ${delayRuns.map((r) => fmt(r.openMs)).join(' ')}; pending after open ${delayRuns.map((r) => fmt(r.pendingAfterOpen)).join(' ')}; all scheduled ${delayRuns.map((r) => fmt(r.allScheduledMs)).join(' ')} ms`,
    );

    // Normal traffic on both, in pairs; the first of a pair alternates.
    const plainRates: number[] = [];
    const delayRates: number[] = [];
    const trafficRatios: number[] = [];
    let idBase = 2e12;
    for (let pair = 0; pair < pairs; pair++) {
      let p: number;
      let d: number;
      if (pair % 2 === 0) {
        p = await normalTraffic(plainBroker, seconds, idBase);
        d = await normalTraffic(delayBroker, seconds, idBase);
      } else {
        d = await normalTraffic(delayBroker, seconds, idBase);
        p = await normalTraffic(plainBroker, seconds, idBase);
      }
      idBase += 1e8;
      plainRates.push(p);
      delayRates.push(d);
      trafficRatios.push(d / p);
    }
    const pendingAfterTraffic = delayBroker.timerMessageService.pendingCount;
    console.error(`  delay: traffic pair ratios ${trafficRatios.map((r) => r.toFixed(2)).join(' ')}`);

    const pendingOk =
      scheduled === pending &&
      delayRuns.every((r) => r.pendingAfterOpen === pending) &&
      plainRuns.every((r) => r.pendingAfterOpen === 0);
    const allOk =
      delayRuns.every((r) => r.pendingAll === pending) &&
      rebuilds.every((r) => r.pending === pending) &&
      pendingAfterTraffic === pending;
    const label = `${fmt(pending)} pending`;
    const tables: DelayTable[] = [
      {
        title: `Delay messages: normal traffic (${TRAFFIC_SENDERS} senders each awaiting its sendMessage of a 1 KiB NORMAL message, ASYNC_FLUSH) on a broker with ${label} delay messages vs. one whose store holds as many plain messages of the same record size (${pairs} pairs x ${seconds} s, medians, ratio = median of pair ratios)`,
        header: ['broker', 'msg/s', 'ratio'],
        rows: [
          ['0 pending (plain store)', fmt(median(plainRates)), ''],
          [label, fmt(median(delayRates)), ratio(median(trafficRatios))],
        ],
        notes: [`pair ratios (with / without): ${trafficRatios.map((r) => r.toFixed(2)).join(' ')}`],
      },
      {
        title: `Delay messages: clean restart (shutdown, sync, BrokerController.open) of ${mb(delayLogBytes)} MB (delayed) and ${mb(plainLogBytes)} MB (plain) of commit log (${restartPairs} pairs, medians, ratio = median of pair ratios). "all scheduled": open, then a timer-topic arrival signalled until the timer holds every pending message; timer rebuild: a second TimerMessageService over the reopened store, start() and then all scheduled`,
        header: [
          'store',
          'open ms',
          'ratio',
          'pending after open',
          'all scheduled ms',
          'ratio',
          'timer start() ms',
          'timer all ms',
        ],
        rows: [
          [
            '0 pending (plain store)',
            fmt(median(plainRuns.map((r) => r.openMs))),
            '',
            plainRuns.map((r) => fmt(r.pendingAfterOpen)).join(', '),
            fmt(median(plainRuns.map((r) => r.allScheduledMs))),
            '',
            '',
            '',
          ],
          [
            label,
            fmt(median(delayRuns.map((r) => r.openMs))),
            ratio(median(restartRatios)),
            delayRuns.map((r) => fmt(r.pendingAfterOpen)).join(', '),
            fmt(median(delayRuns.map((r) => r.allScheduledMs))),
            ratio(median(allRatios)),
            fmt(median(rebuilds.map((r) => r.startMs))),
            fmt(median(rebuilds.map((r) => r.allMs))),
          ],
          ...(pendingOk
            ? []
            : [
                [
                  `!!! WARNING: pendingCount after open is not ${fmt(pending)}`,
                  '',
                  '',
                  delayRuns.map((r) => fmt(r.pendingAfterOpen)).join(', '),
                  '',
                  '',
                  '',
                  '',
                ],
              ]),
        ],
        notes: [
          pendingOk
            ? `sanity: timerMessageService.pendingCount === ${fmt(pending)} right after every reopen`
            : `!!! WARNING: timerMessageService.pendingCount right after open was ${delayRuns.map((r) => fmt(r.pendingAfterOpen)).join(', ')}, not ${fmt(pending)}: the rest is scheduled only when later timer-topic messages arrive`,
          allOk
            ? `every pending message was scheduled once signalled (${fmt(pending)} after the traffic runs)`
            : `!!! WARNING: even when signalled the timer scheduled ${delayRuns.map((r) => fmt(r.pendingAll)).join(', ')} (rebuild ${rebuilds.map((r) => fmt(r.pending)).join(', ')}; after traffic ${fmt(pendingAfterTraffic)}), not ${fmt(pending)}`,
        ],
      },
      {
        title: `Delay messages: filling each store with ${fmt(pending)} messages through sendMessage (${FILL_IN_FLIGHT} in flight); memory after a full GC`,
        header: ['fill', 'record B', 'msg/s', 'ratio', 'seconds', 'rss MB', 'heapUsed MB', 'arrayBuffers MB'],
        rows: [
          ['before', '', '', '', '', mb(memBefore.rss), mb(memBefore.heapUsed), mb(memBefore.arrayBuffers)],
          [
            'NORMAL (plain store)',
            String(plainBytes),
            fmt(pending / (plainFill.ms / 1000)),
            '',
            (plainFill.ms / 1000).toFixed(1),
            signedMb(memPlain.rss - memBefore.rss),
            signedMb(memPlain.heapUsed - memBefore.heapUsed),
            signedMb(memPlain.arrayBuffers - memBefore.arrayBuffers),
          ],
          [
            `DELAY, ${DELAY_BODY_BYTES} B body`,
            String(delayedBytes),
            fmt(pending / (delayFill.ms / 1000)),
            ratio(plainFill.ms / delayFill.ms),
            (delayFill.ms / 1000).toFixed(1),
            signedMb(memDelayed.rss - memPlain.rss),
            signedMb(memDelayed.heapUsed - memPlain.heapUsed),
            signedMb(memDelayed.arrayBuffers - memPlain.arrayBuffers),
          ],
        ],
        notes: [
          `${fmt(scheduled)} of ${fmt(pending)} delay messages were in the timer's heap ${((scheduledMs - delayFill.ms) / 1000).toFixed(2)} s after the last send was acknowledged`,
          `the delay row's memory is the change from the plain row; the heap's arrays hold 24 B a message, capacity a power of two (${mb(24 * 2 ** Math.ceil(Math.log2(Math.max(1024, pending))))} MB for ${fmt(pending)})`,
        ],
      },
    ];
    return tables;
  } finally {
    await plainBroker?.shutdown();
    await delayBroker?.shutdown();
    fs.rmSync(plainDir, { recursive: true, force: true });
    fs.rmSync(delayDir, { recursive: true, force: true });
  }
}
