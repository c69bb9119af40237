/**
 * `rocketmq-ts bench`: how fast this machine puts and reads messages, and proof that what was read
 * is what was put. By default an embedded MessageStore (the public API, as an application embeds
 * it) in a temporary directory: `--producers` concurrent putters put `--messages` messages round
 * robin over `--queues` queues, then every queue is read back with getMessage from where the run
 * began to its end, and every message is checked (its queue offset maps to the put that took it,
 * same commit log offset, same body). With `--endpoint` the same run goes through a running
 * broker's gRPC endpoint instead: the official Node client's Producer sends, a SimpleConsumer of a
 * fresh group receives and acks.
 *
 * Progress goes to stderr (progress.ts); the report to stdout, an aligned table or, with --json,
 * one object. Exit codes: 0 every message read back intact, 1 not, 2 bad usage.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type Command, InvalidArgumentError } from 'commander';
import type { ILogger } from 'rocketmq-client-nodejs';
import {
  type FlushDiskType,
  MessageStore,
  PutMessageStatus,
  StoreError,
  silentLogger,
} from '../store/index.js';
import { parseListen } from './broker-command.js';
import { type Progress, type ProgressUnit, startProgress } from './progress.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
/** Exit code after Ctrl-C stopped the run (128 + SIGINT, as shells report it). */
const EXIT_INTERRUPTED = 130;

const DEFAULT_MESSAGES = 100_000;
/** A latency, a commit log offset and an expected index are kept per message (20 B): this caps the memory. */
const MESSAGES_MAX = 20_000_000;
const DEFAULT_BODY_BYTES = 1024;
/** The store's default maxMessageSize, less room for the record's header and properties. */
const BODY_BYTES_MAX = 4 * 1024 * 1024 - 4096;
const DEFAULT_PRODUCERS = 16;
const PRODUCERS_MAX = 4096;
const DEFAULT_QUEUES = 4;
/** Queues of the bench topic (RocketMQ's topics have a handful; each costs a directory of files). */
const QUEUES_MAX = 1024;
/** The store's default segment (mappedFileSizeCommitLog): a bench measures the real setting. */
const DEFAULT_SEGMENT_BYTES = 1024 * 1024 * 1024;
/** Bench segments: from 64 KiB (a few records each, many rolls) to the store's own maximum (1 TiB). */
const SEGMENT_BYTES_MIN = 64 * 1024;
const SEGMENT_BYTES_MAX = 2 ** 40;
/** Room a record needs beyond its body (header, topic, properties), for the segment size check. */
const RECORD_OVERHEAD_BYTES_MAX = 1024;
const DEFAULT_TOPIC = 'BenchTopic';
/** Messages one getMessage or receive asks for (RocketMQ's pull batch, and the pop cap). */
const READ_BATCH_MESSAGES = 32;
/** How often the progress bar learns the counters: a redraw per put would cost more than the put. */
const PROGRESS_REFRESH_MS = 100;
/**
 * A put answered OS_PAGE_CACHE_BUSY (the write buffers are all out, the commit is behind) is tried
 * again after this pause, as RocketMQ's clients retry a busy broker; the retries are counted.
 */
const BUSY_RETRY_PAUSE_MS = 1;
/** A put still busy after this long keeps its OS_PAGE_CACHE_BUSY, ms. */
const BUSY_RETRY_TIMEOUT_MS = 10_000;
/** After the puts, dispatch into the consume queues must catch up within this, ms. */
const DISPATCH_WAIT_TIMEOUT_MS = 60_000;
/** How often the wait for dispatch looks again, ms. */
const DISPATCH_POLL_MS = 5;
/** Endpoint mode: the consumer stops after this long without a message of this run, ms. */
const RECEIVE_IDLE_TIMEOUT_MS = 15_000;
/** Endpoint mode: how long a received message stays invisible before redelivery (the broker's minimum is 10 s). */
const RECEIVE_INVISIBLE_MS = 30_000;
/** Endpoint mode: the client's timeout per request. */
const CLIENT_REQUEST_TIMEOUT_MS = 10_000;
/**
 * Endpoint mode: the process exits this long after the report at the latest. A client whose broker
 * went away cannot shut down cleanly (NotifyClientTermination fails and its timers stay).
 */
const CLIENT_EXIT_GRACE_MS = 2000;
/** Endpoint mode: user properties naming the run and the message, for the read-back check. */
const PROPERTY_BENCH_RUN = 'benchRun';
const PROPERTY_BENCH_INDEX = 'benchIndex';
const BYTES_PER_MIB = 1024 * 1024;
const MS_PER_S = 1000;
/** Fills a body: index-derived 8 bytes, repeated (Knuth's multiplicative hash spreads the bits). */
const BODY_HASH_MULTIPLIER = 0x9e3779b1;

interface BenchOptions {
  storePath?: string;
  flushDiskType: FlushDiskType;
  transientStorePool?: boolean;
  messages: number;
  bodyBytes: number;
  producers: number;
  queues: number;
  segmentBytes: number;
  topic: string;
  endpoint?: string;
  json?: boolean;
}

interface LatencySummary {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** The report, as printed with --json. Times in ms, rates per second. */
export interface BenchReport {
  readonly mode: 'embedded' | 'endpoint';
  /** The store directory (embedded) or the broker's endpoint. */
  readonly target: string;
  readonly temporaryStore: boolean;
  readonly flushDiskType: FlushDiskType | null;
  readonly transientStorePool: boolean | null;
  readonly segmentBytes: number | null;
  readonly topic: string;
  readonly messages: number;
  readonly bodyBytes: number;
  readonly producers: number;
  readonly queues: number | null;
  readonly put: {
    readonly elapsedMs: number;
    readonly msgsPerSec: number;
    /** Bodies put per second, MiB. */
    readonly mibPerSec: number;
    readonly latencyMs: LatencySummary;
    /** Each put's status (RocketMQ's PutMessageStatus, or SEND_OK and the client's error). */
    readonly statuses: Readonly<Record<string, number>>;
    /** Messages the store took (PUT_OK, FLUSH_DISK_TIMEOUT: stored either way). */
    readonly stored: number;
    /** OS_PAGE_CACHE_BUSY answers that were retried (back pressure, not failures). */
    readonly busyRetries: number;
  };
  readonly read: {
    readonly elapsedMs: number;
    readonly messages: number;
    readonly msgsPerSec: number;
    readonly mibPerSec: number;
  };
  readonly verify: {
    /** Every message put was stored, read back once, and equal to what was put. */
    readonly ok: boolean;
    readonly verified: number;
    /** Read back but not what was put there (another body, offset, or a message of no put). */
    readonly mismatched: number;
    /** Stored but never read back. */
    readonly missing: number;
  };
  /** Commit log segments the run wrote into (embedded). */
  readonly segments: number | null;
}

function usageError(message: string): InvalidArgumentError {
  const error = new InvalidArgumentError(message);
  error.exitCode = EXIT_USAGE;
  return error;
}

function wholeNumber(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw usageError(`a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

function parseFlushDiskType(value: string): FlushDiskType {
  if (value !== 'SYNC_FLUSH' && value !== 'ASYNC_FLUSH') throw usageError('SYNC_FLUSH or ASYNC_FLUSH');
  return value;
}

function parseEndpoint(value: string): string {
  try {
    parseListen(value);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  return value;
}

export function registerBenchCommand(program: Command): void {
  const command = program
    .command('bench')
    .description('put messages into a store (or a broker) and read them back: throughput, latency, a verdict')
    .option('--store-path <dir>', 'the store directory (default: a temporary one, removed afterwards)')
    .option(
      '--flush-disk-type <type>',
      'SYNC_FLUSH or ASYNC_FLUSH (flushDiskType)',
      parseFlushDiskType,
      'ASYNC_FLUSH' as FlushDiskType,
    )
    .option('--transient-store-pool', 'put through the write-buffer pool (transientStorePoolEnable)')
    .option('--messages <n>', 'messages to put', wholeNumber(1, MESSAGES_MAX), DEFAULT_MESSAGES)
    .option('--body-bytes <n>', 'bytes of each body', wholeNumber(1, BODY_BYTES_MAX), DEFAULT_BODY_BYTES)
    .option('--producers <n>', 'concurrent putters', wholeNumber(1, PRODUCERS_MAX), DEFAULT_PRODUCERS)
    .option(
      '--queues <n>',
      'queues of the topic, put round robin',
      wholeNumber(1, QUEUES_MAX),
      DEFAULT_QUEUES,
    )
    .option(
      '--segment-bytes <n>',
      'commit log segment size (mappedFileSizeCommitLog)',
      wholeNumber(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX),
      DEFAULT_SEGMENT_BYTES,
    )
    .option('--topic <name>', 'the topic to put to', DEFAULT_TOPIC)
    .option(
      '--endpoint <host:port>',
      "bench a running broker through the official client instead (the store options don't apply)",
      parseEndpoint,
    )
    .option('--json', 'print the report as one JSON object')
    .addHelpText(
      'after',
      '\nProgress goes to stderr, the report to stdout. Exits 0 when every message was read back intact, 1 if not.\n\n' +
        'Examples:\n' +
        '  $ rocketmq-ts bench\n' +
        '  $ rocketmq-ts bench --flush-disk-type SYNC_FLUSH --producers 64 --messages 200000\n' +
        '  $ rocketmq-ts bench --transient-store-pool --body-bytes 4096 --json | jq .put.msgsPerSec\n' +
        '  $ rocketmq-ts bench --store-path /data/bench --segment-bytes 67108864\n' +
        '  $ rocketmq-ts bench --endpoint 127.0.0.1:8081 --topic BenchTopic --messages 20000',
    )
    .action(async (options: BenchOptions) => {
      const given = (name: string): boolean => command.getOptionValueSource(name) === 'cli';
      if (options.endpoint !== undefined) {
        const storeOnly = ['storePath', 'flushDiskType', 'transientStorePool', 'segmentBytes', 'queues'];
        const misplaced = storeOnly.find(given);
        if (misplaced !== undefined) {
          command.error(`error: --${kebab(misplaced)} is for the embedded store, not with --endpoint`, {
            exitCode: EXIT_USAGE,
          });
        }
      }
      if (options.segmentBytes < options.bodyBytes + RECORD_OVERHEAD_BYTES_MAX) {
        command.error(
          `error: --segment-bytes ${options.segmentBytes} cannot hold a message of --body-bytes ${options.bodyBytes} ` +
            `(at least ${options.bodyBytes + RECORD_OVERHEAD_BYTES_MAX})`,
          { exitCode: EXIT_USAGE },
        );
      }
      const interrupt = new AbortController();
      const onSigint = (): void => {
        if (interrupt.signal.aborted) process.exit(EXIT_INTERRUPTED);
        process.stderr.write('bench: interrupted; stopping (Ctrl-C again to exit now)\n');
        interrupt.abort();
      };
      process.on('SIGINT', onSigint);
      try {
        const report =
          options.endpoint === undefined
            ? await runEmbedded(options, command, interrupt.signal)
            : await runEndpoint(options, options.endpoint, interrupt.signal);
        if (interrupt.signal.aborted) {
          process.exitCode = EXIT_INTERRUPTED;
          return;
        }
        process.stdout.write(
          options.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report),
        );
        if (!report.verify.ok) process.exitCode = EXIT_FAILED;
        // Unref'd: a clean run exits at once; only lingering client timers wait for it.
        if (options.endpoint !== undefined) setTimeout(() => process.exit(), CLIENT_EXIT_GRACE_MS).unref();
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Body of message `index`: the same bytes every time, different from any other index's. */
function bodyOf(index: number, bodyBytes: number): Buffer {
  const seed = Buffer.allocUnsafe(8);
  seed.writeUInt32BE(index >>> 0, 0);
  seed.writeUInt32BE(Math.imul(index, BODY_HASH_MULTIPLIER) >>> 0, 4);
  return Buffer.alloc(bodyBytes, seed);
}

/** A store directory: it has a commit log or a checkpoint (what `MessageStore.open` writes first). */
function isStoreDirectory(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'commitlog')) || fs.existsSync(path.join(dir, 'checkpoint'));
}

/** Where the store lives: the given directory (never deleted) or a fresh temporary one. */
function resolveStorePath(options: BenchOptions, command: Command): { dir: string; temporary: boolean } {
  if (options.storePath === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rocketmq-ts-bench-'));
    // Also on the exits that skip the run's own cleanup (a second Ctrl-C, a config error): its
    // segments are gigabyte-sized files nobody else knows about.
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    return { dir, temporary: true };
  }
  const dir = path.resolve(options.storePath);
  const stat = fs.statSync(dir, { throwIfNoEntry: false });
  if (stat !== undefined && !stat.isDirectory()) {
    command.error(`error: --store-path ${dir} is not a directory`, { exitCode: EXIT_USAGE });
  }
  // A bench writes a gigabyte-sized segment into it: only into a store or an empty directory,
  // never next to someone's files.
  if (stat !== undefined && fs.readdirSync(dir).length > 0 && !isStoreDirectory(dir)) {
    command.error(
      `error: --store-path ${dir} is neither empty nor a store directory; give a new or empty directory, or a store`,
      { exitCode: EXIT_USAGE },
    );
  }
  return { dir, temporary: false };
}

/** Shows progress over a counter, refreshed on a timer rather than on every put. */
function progressOver(label: string, total: number, unit: ProgressUnit, count: () => number): Progress {
  const progress = startProgress({ label, total, unit });
  const timer = setInterval(() => progress.update(count()), PROGRESS_REFRESH_MS);
  return {
    update: (done, newTotal) => progress.update(done, newTotal),
    finish: () => {
      clearInterval(timer);
      progress.update(count());
      progress.finish();
    },
  };
}

class PutStats {
  readonly latencies: Float64Array;
  readonly statuses = new Map<string, number>();
  completed = 0;
  stored = 0;
  busyRetries = 0;

  constructor(messages: number) {
    this.latencies = new Float64Array(messages);
  }

  record(index: number, latencyMs: number, status: string, stored: boolean): void {
    this.latencies[index] = latencyMs;
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    this.completed++;
    if (stored) this.stored++;
  }

  summary(elapsedMs: number, bodyBytes: number): BenchReport['put'] {
    const done = this.latencies.subarray(0, this.completed).slice().sort();
    return {
      elapsedMs: round(elapsedMs),
      msgsPerSec: round(rate(this.completed, elapsedMs)),
      mibPerSec: round(rate((this.completed * bodyBytes) / BYTES_PER_MIB, elapsedMs)),
      latencyMs: {
        p50: round(percentile(done, 50)),
        p99: round(percentile(done, 99)),
        p999: round(percentile(done, 99.9)),
        max: round(done[done.length - 1] ?? 0),
      },
      statuses: Object.fromEntries([...this.statuses].sort(([a], [b]) => a.localeCompare(b))),
      stored: this.stored,
      busyRetries: this.busyRetries,
    };
  }
}

/** The nearest-rank percentile `p` (0-100) of ascending `sorted`; 0 for none. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
}

function rate(amount: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (amount / elapsedMs) * MS_PER_S : 0;
}

/** Three decimals: latencies are fractions of a millisecond. */
function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

async function runEmbedded(
  options: BenchOptions,
  command: Command,
  signal: AbortSignal,
): Promise<BenchReport> {
  const { dir, temporary } = resolveStorePath(options, command);
  const { messages, bodyBytes, queues, topic } = options;
  try {
    let store: MessageStore;
    try {
      store = await MessageStore.open(
        {
          storePathRootDir: dir,
          flushDiskType: options.flushDiskType,
          transientStorePoolEnable: options.transientStorePool === true,
          mappedFileSizeCommitLog: options.segmentBytes,
        },
        { logger: silentLogger },
      );
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ERR_STORE_CONFIG') {
        return command.error(`error: ${err.message}`, { exitCode: EXIT_USAGE });
      }
      throw err;
    }
    try {
      // A store that already holds messages of the topic: this run's start in every queue.
      const startOffsets = Array.from({ length: queues }, (_, q) => store.getMaxOffsetInQueue(topic, q));
      const firstPhyOffset = store.getMaxPhyOffset();
      // The put that took each (queue, queue offset from the start), -1 for none; where each put landed.
      const perQueue = Math.ceil(messages / queues);
      const expected = Array.from({ length: queues }, () => new Int32Array(perQueue).fill(-1));
      const wroteOffsets = new Float64Array(messages).fill(-1);
      const stats = new PutStats(messages);

      let next = 0;
      const progress = progressOver('put', messages, 'messages', () => stats.completed);
      const putsBegin = performance.now();
      const producer = async (): Promise<void> => {
        for (let i = next++; i < messages && !signal.aborted; i = next++) {
          const queueId = i % queues;
          const body = bodyOf(i, bodyBytes);
          const begin = performance.now();
          let status: string;
          let stored = false;
          try {
            let result = await store.putMessage({ topic, queueId, body });
            const retryUntil = begin + BUSY_RETRY_TIMEOUT_MS;
            while (
              result.status === PutMessageStatus.OS_PAGE_CACHE_BUSY &&
              performance.now() < retryUntil &&
              !signal.aborted
            ) {
              stats.busyRetries++;
              await new Promise((resolve) => setTimeout(resolve, BUSY_RETRY_PAUSE_MS));
              result = await store.putMessage({ topic, queueId, body });
            }
            status = result.status;
            if (result.appendResult !== null) {
              stored = true;
              wroteOffsets[i] = result.appendResult.wroteOffset;
              const relative = result.appendResult.queueOffset - (startOffsets[queueId] as number);
              const slots = expected[queueId] as Int32Array;
              if (relative >= 0 && relative < slots.length) slots[relative] = i;
            }
          } catch (err) {
            status = err instanceof StoreError ? err.code : 'EXCEPTION';
          }
          stats.record(i, performance.now() - begin, status, stored);
        }
      };
      try {
        await Promise.all(Array.from({ length: options.producers }, producer));
      } finally {
        progress.finish();
      }
      const putMs = performance.now() - putsBegin;

      // Dispatch (ReputMessageService) makes the puts readable shortly after they return.
      const readable = (): number =>
        startOffsets.reduce((n, start, q) => n + store.getMaxOffsetInQueue(topic, q) - start, 0);
      const dispatchDeadline = performance.now() + DISPATCH_WAIT_TIMEOUT_MS;
      while (readable() < stats.stored && performance.now() < dispatchDeadline && !signal.aborted) {
        await new Promise((resolve) => setTimeout(resolve, DISPATCH_POLL_MS));
      }

      let read = 0;
      let verified = 0;
      let mismatched = 0;
      // Interrupted: no read phase (the run's report is not printed).
      const readProgress = signal.aborted ? null : progressOver('read', stats.stored, 'messages', () => read);
      const readBegin = performance.now();
      try {
        for (let queueId = 0; queueId < queues && !signal.aborted; queueId++) {
          const start = startOffsets[queueId] as number;
          const slots = expected[queueId] as Int32Array;
          const end = store.getMaxOffsetInQueue(topic, queueId);
          for (let offset = start; offset < end && !signal.aborted; ) {
            const result = await store.getMessage('bench', topic, queueId, offset, READ_BATCH_MESSAGES);
            for (const message of result.messages) {
              read++;
              const index = slots[message.queueOffset - start] ?? -1;
              if (
                index >= 0 &&
                message.commitLogOffset === wroteOffsets[index] &&
                message.body.equals(bodyOf(index, bodyBytes))
              ) {
                verified++;
              } else {
                mismatched++;
              }
            }
            // A read that gets nowhere (damage skipped to the end, nothing readable) ends the queue.
            if (result.nextBeginOffset <= offset) break;
            offset = result.nextBeginOffset;
          }
        }
      } finally {
        readProgress?.finish();
      }
      const readMs = performance.now() - readBegin;
      const lastPhyOffset = store.getMaxPhyOffset();
      const segmentCount =
        lastPhyOffset > firstPhyOffset
          ? Math.floor((lastPhyOffset - 1) / options.segmentBytes) -
            Math.floor(firstPhyOffset / options.segmentBytes) +
            1
          : 0;
      return {
        mode: 'embedded',
        target: dir,
        temporaryStore: temporary,
        flushDiskType: options.flushDiskType,
        transientStorePool: options.transientStorePool === true,
        segmentBytes: options.segmentBytes,
        topic,
        messages,
        bodyBytes,
        producers: options.producers,
        queues,
        ...measured(stats, putMs, { read, readMs, verified, mismatched }, messages, bodyBytes),
        segments: segmentCount,
      };
    } finally {
      await store.shutdown();
    }
  } finally {
    if (temporary) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What both modes measure the same way: the puts, the read back, and the verdict on them. */
function measured(
  stats: PutStats,
  putMs: number,
  readBack: { read: number; readMs: number; verified: number; mismatched: number },
  messages: number,
  bodyBytes: number,
): Pick<BenchReport, 'put' | 'read' | 'verify'> {
  const { read, readMs, verified, mismatched } = readBack;
  return {
    put: stats.summary(putMs, bodyBytes),
    read: {
      elapsedMs: round(readMs),
      messages: read,
      msgsPerSec: round(rate(read, readMs)),
      mibPerSec: round(rate((read * bodyBytes) / BYTES_PER_MIB, readMs)),
    },
    verify: {
      ok: stats.stored === messages && read === messages && verified === messages,
      verified,
      mismatched,
      missing: Math.max(0, stats.stored - verified),
    },
  };
}

/** The client's own log would go to files under ~/logs/rocketmq; the bench reports failures itself. */
const silentClientLogger: ILogger = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * The same run through a broker: a Producer sends with `producers` sends in flight, then a
 * SimpleConsumer of a group of its own receives (a new group starts at each queue's earliest
 * message) and acks until it has every message of this run, or none came for a while. Messages
 * carry the run's id and their index, so other messages of the topic are passed over.
 */
async function runEndpoint(
  options: BenchOptions,
  endpoint: string,
  signal: AbortSignal,
): Promise<BenchReport> {
  const client = await import('rocketmq-client-nodejs');
  const { messages, bodyBytes, topic } = options;
  const runId = randomUUID();
  const stats = new PutStats(messages);
  const sent = new Uint8Array(messages);
  const producer = new client.Producer({
    endpoints: endpoint,
    namespace: '',
    requestTimeout: CLIENT_REQUEST_TIMEOUT_MS,
    logger: silentClientLogger,
  });
  await producer.startup();
  let next = 0;
  const progress = progressOver('send', messages, 'messages', () => stats.completed);
  const sendBegin = performance.now();
  try {
    const lane = async (): Promise<void> => {
      for (let i = next++; i < messages && !signal.aborted; i = next++) {
        const begin = performance.now();
        let status = 'SEND_OK';
        try {
          await producer.send({
            topic,
            body: bodyOf(i, bodyBytes),
            properties: new Map([
              [PROPERTY_BENCH_RUN, runId],
              [PROPERTY_BENCH_INDEX, String(i)],
            ]),
          });
          sent[i] = 1;
        } catch (err) {
          status = clientErrorName(err);
        }
        stats.record(i, performance.now() - begin, status, status === 'SEND_OK');
      }
    };
    await Promise.all(Array.from({ length: options.producers }, lane));
  } finally {
    progress.finish();
    await producer.shutdown();
  }
  const putMs = performance.now() - sendBegin;

  const consumer = new client.SimpleConsumer({
    endpoints: endpoint,
    namespace: '',
    consumerGroup: `bench-${runId}`,
    subscriptions: new Map([[topic, '*']]),
    awaitDuration: 1000,
    requestTimeout: CLIENT_REQUEST_TIMEOUT_MS,
    logger: silentClientLogger,
  });
  const seen = new Uint8Array(messages);
  let read = 0;
  let verified = 0;
  let mismatched = 0;
  const readProgress = signal.aborted ? null : progressOver('receive', stats.stored, 'messages', () => read);
  const readBegin = performance.now();
  let lastArrival = performance.now();
  let consumerStarted = false;
  try {
    // Nothing was sent (the broker refused every send): nothing to read, and the statuses say why.
    if (stats.stored > 0) {
      await consumer.startup();
      consumerStarted = true;
    }
    while (
      verified + mismatched < stats.stored &&
      performance.now() - lastArrival < RECEIVE_IDLE_TIMEOUT_MS &&
      !signal.aborted
    ) {
      const views = await consumer.receive(READ_BATCH_MESSAGES, RECEIVE_INVISIBLE_MS);
      for (const view of views) {
        await consumer.ack(view);
        if (view.properties.get(PROPERTY_BENCH_RUN) !== runId) continue;
        lastArrival = performance.now();
        read++;
        const index = Number(view.properties.get(PROPERTY_BENCH_INDEX));
        const fresh = Number.isSafeInteger(index) && index >= 0 && index < messages && seen[index] === 0;
        if (fresh && sent[index] === 1 && view.body.equals(bodyOf(index, bodyBytes))) {
          seen[index] = 1;
          verified++;
        } else {
          mismatched++;
        }
      }
    }
  } finally {
    readProgress?.finish();
    if (consumerStarted) await consumer.shutdown();
  }
  const readMs = performance.now() - readBegin;
  return {
    mode: 'endpoint',
    target: endpoint,
    temporaryStore: false,
    flushDiskType: null,
    transientStorePool: null,
    segmentBytes: null,
    topic,
    messages,
    bodyBytes,
    producers: options.producers,
    queues: null,
    ...measured(stats, putMs, { read, readMs, verified, mismatched }, messages, bodyBytes),
    segments: null,
  };
}

/**
 * The client's failure as a status: the gRPC status when the call itself failed (`UNAVAILABLE`:
 * no broker there), else the client's error class with the broker's code (`BadRequestException(40001)`).
 */
function clientErrorName(err: unknown): string {
  if (!(err instanceof Error)) return 'ERROR';
  const code = (err as { code?: unknown }).code;
  if (err.name === 'Error' && typeof code === 'number' && GrpcStatus[code] !== undefined) {
    return `GRPC_${GrpcStatus[code]}`;
  }
  return typeof code === 'number' || typeof code === 'string' ? `${err.name}(${code})` : err.name;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** The report as two aligned columns: what was measured, and its value. */
export function formatReport(report: BenchReport): string {
  const { put, read, verify } = report;
  const statuses = Object.entries(put.statuses)
    .map(([status, n]) => `${status} ${n}`)
    .join(', ');
  const ms = (value: number): string => value.toFixed(3);
  const rows: [string, string][] = [
    [
      report.mode === 'embedded' ? 'store' : 'endpoint',
      `${report.target}${report.temporaryStore ? ' (temporary, removed)' : ''}`,
    ],
    ...(report.mode === 'embedded'
      ? ([
          [
            'flushDiskType',
            `${report.flushDiskType}${report.transientStorePool === true ? ' + transient store pool' : ''}`,
          ],
          [
            'segments',
            `${report.segments} of ${integer.format((report.segmentBytes ?? 0) / BYTES_PER_MIB)} MiB`,
          ],
        ] as [string, string][])
      : []),
    ['topic', `${report.topic}${report.queues === null ? '' : `, ${report.queues} queues`}`],
    [
      'messages',
      `${report.messages} x ${report.bodyBytes} B, ${report.producers} ${report.mode === 'embedded' ? 'producers' : 'sends in flight'}`,
    ],
    ['put time', `${(put.elapsedMs / MS_PER_S).toFixed(2)} s`],
    ['put msgs/s', integer.format(put.msgsPerSec)],
    ['put MiB/s', oneDecimal.format(put.mibPerSec)],
    ['put p50 ms', ms(put.latencyMs.p50)],
    ['put p99 ms', ms(put.latencyMs.p99)],
    ['put p999 ms', ms(put.latencyMs.p999)],
    ['put max ms', ms(put.latencyMs.max)],
    ['statuses', statuses],
    ...(put.busyRetries > 0 ? ([['busy retries', String(put.busyRetries)]] as [string, string][]) : []),
    ['read time', `${(read.elapsedMs / MS_PER_S).toFixed(2)} s`],
    ['read msgs/s', integer.format(read.msgsPerSec)],
    ['read MiB/s', oneDecimal.format(read.mibPerSec)],
    ['read back', `${read.messages}/${report.messages}`],
    [
      'verdict',
      verify.ok
        ? `OK: all ${report.messages} messages read back, each equal to what was put`
        : `FAILED: ${verify.verified} of ${report.messages} verified, ${verify.mismatched} mismatched, ` +
          `${verify.missing} stored but not read back, ${report.messages - put.stored} not stored`,
    ],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  return `${rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`).join('\n')}\n`;
}
