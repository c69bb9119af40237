import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ConsumeResult, Producer, PushConsumer, SimpleConsumer } from 'rocketmq-client-nodejs';
import { BrokerController } from '../src/broker/index.js';
import { GrpcServer, loadMessagingService } from '../src/grpc/index.js';
import { silentLogger } from '../src/store/index.js';
import { median, percentile } from './stats.js';

/**
 * The end-to-end section of `npm run bench` (`BENCH_ONLY=e2e`): the official RocketMQ 5 Node client
 * (`rocketmq-client-nodejs`) against a BrokerController + GrpcServer started in this process on
 * 127.0.0.1 (a free port) over a fresh store in a temporary directory.
 *
 * - Send: N lanes (1, 16, 64) share one Producer, each awaiting its send of a 1 KiB body before
 *   the next; latency is from the send() call to its resolution. Once under SYNC_FLUSH, once under
 *   ASYNC_FLUSH. The bare baseline is a gRPC server on 127.0.0.1 that speaks just enough of
 *   MessagingService for the same Producer (QueryRoute, the Telemetry settings reply, Heartbeat,
 *   NotifyClientTermination) and answers SendMessage at once, storing nothing: the ratio shows what
 *   the broker and store add to a send, the client and gRPC being the same on both sides. Runs
 *   alternate bare, SYNC_FLUSH, ASYNC_FLUSH, `pairs` times per concurrency; ratios are the median
 *   of the per-pair ratios.
 * - Receive: N messages put through the broker's send path first, then consumed by a new group
 *   with a SimpleConsumer (4 receive loops, batches of 32, every message acked) and, on another
 *   topic, with a PushConsumer whose listener returns SUCCESS. No bare baseline.
 *
 * The broker comes from src/ (run by tsx), as in the tests: the package exports only the store.
 */

const TOPIC = 'BenchE2eTopic';
const SIMPLE_TOPIC = 'BenchE2eSimpleTopic';
const PUSH_TOPIC = 'BenchE2ePushTopic';
const WARMUP_MS = 300;
const BODY = Buffer.alloc(1024, 0x45);
const CONCURRENCIES = [1, 16, 64] as const;
const FILL_LANES = 64;
const RECEIVE_LOOPS = 4;
const RECEIVE_BATCH = 32;
const RECEIVE_INVISIBLE_MS = 30_000;
const RECEIVE_AWAIT_MS = 2_000;
/** A consumer that gets nothing new for this long is given up on (its row says so). */
const STALL_MS = 10_000;
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** A client logger that keeps quiet (the official client logs every reconnect). */
const quietClientLogger = { info() {}, warn() {}, error() {}, debug() {} };

type FlushDiskType = 'SYNC_FLUSH' | 'ASYNC_FLUSH';

export interface E2eOptions {
  readonly baseDir: string;
  readonly seconds: number;
  readonly pairs: number;
  readonly messages: number;
}

export interface E2eSendRow {
  readonly concurrency: number;
  readonly bare: LatencyRun;
  readonly sync: LatencyRun;
  readonly async: LatencyRun;
  readonly syncRatio: number;
  readonly asyncRatio: number;
}

export interface E2eConsumeRow {
  readonly consumer: string;
  readonly messages: number;
  readonly received: number;
  readonly msgsPerSec: number;
  readonly seconds: number;
  /** Why the row is incomplete, when it is. */
  readonly problem?: string;
}

export interface LatencyRun {
  readonly sendsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function medianRun(runs: readonly LatencyRun[]): LatencyRun {
  return {
    sendsPerSec: median(runs.map((r) => r.sendsPerSec)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
  };
}

/** Something a Producer can be pointed at, and how to stop it. */
interface Endpoint {
  readonly endpoints: string;
  close(): Promise<void>;
}

/** The broker as `rocketmq-ts broker` runs it, on 127.0.0.1 over a fresh store. */
async function startBroker(
  baseDir: string,
  flushDiskType: FlushDiskType,
): Promise<Endpoint & { readonly broker: BrokerController }> {
  const storeDir = fs.mkdtempSync(path.join(baseDir, `rmq-bench-e2e-${flushDiskType}-`));
  const broker = await BrokerController.open({
    store: { storePathRootDir: storeDir, flushDiskType },
    logger: silentLogger,
  });
  let server: GrpcServer;
  try {
    server = await GrpcServer.start({
      broker,
      logger: silentLogger,
      host: '127.0.0.1',
      port: 0,
      pushLongPollingTimeoutMs: 1000,
    });
  } catch (err) {
    await broker.shutdown();
    fs.rmSync(storeDir, { recursive: true, force: true });
    throw err;
  }
  return {
    broker,
    endpoints: `127.0.0.1:${server.port}`,
    async close() {
      try {
        await server.shutdown(1000);
        await broker.shutdown();
      } finally {
        fs.rmSync(storeDir, { recursive: true, force: true });
      }
    },
  };
}

type Status = { code: string; message: string };
const OK: Status = { code: 'OK', message: 'OK' };

/**
 * The bare baseline: MessagingService with just what a Producer needs, answering SendMessage at
 * once with the client's own message id, storing nothing. Same grpc-js server options as
 * GrpcServer, same proto loading.
 */
async function startBareServer(): Promise<Endpoint> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  let port = 0;
  const streams = new Set<grpc.ServerDuplexStream<unknown, unknown>>();
  type Unary<Req> = (call: grpc.ServerUnaryCall<Req, unknown>, callback: grpc.sendUnaryData<unknown>) => void;
  const queryRoute: Unary<{ topic?: { name?: string } }> = (call, callback) => {
    callback(null, {
      status: OK,
      message_queues: [
        {
          topic: { name: call.request.topic?.name ?? '', resource_namespace: '' },
          id: 0,
          permission: 'READ_WRITE',
          broker: {
            name: 'bare',
            id: 0,
            endpoints: { scheme: 'IPv4', addresses: [{ host: '127.0.0.1', port }] },
          },
          accept_message_types: ['NORMAL'],
        },
      ],
    });
  };
  const sendMessage: Unary<{ messages?: { system_properties?: { message_id?: string } }[] }> = (
    call,
    callback,
  ) => {
    const entries = (call.request.messages ?? []).map((m) => {
      const id = m.system_properties?.message_id ?? '';
      return { status: OK, message_id: id, transaction_id: id, offset: 0 };
    });
    callback(null, { status: OK, entries });
  };
  const okOnly: Unary<unknown> = (_call, callback) => callback(null, { status: OK });
  const telemetry = (call: grpc.ServerDuplexStream<unknown, unknown>): void => {
    streams.add(call);
    call.on('data', (command: { command?: string; settings?: Record<string, unknown> }) => {
      if (command.command !== 'settings' || command.settings === undefined) return;
      const settings = command.settings;
      // What the Producer needs to send at all (see src/grpc/telemetry.ts).
      call.write({
        status: OK,
        settings: {
          ...settings,
          metric: { on: false },
          publishing: {
            ...(settings.publishing as object | undefined),
            max_body_size: MAX_BODY_BYTES,
            validate_message_type: true,
          },
          backoff_policy: {
            max_attempts: 3,
            exponential_backoff: { initial: { nanos: 10_000_000 }, max: { seconds: 1 }, multiplier: 2 },
          },
        },
      });
    });
    const forget = (): void => {
      streams.delete(call);
    };
    call.on('end', () => {
      forget();
      call.end();
    });
    call.on('error', forget);
    call.on('cancelled', forget);
  };
  server.addService(loadMessagingService(), {
    QueryRoute: queryRoute,
    SendMessage: sendMessage,
    Heartbeat: okOnly,
    NotifyClientTermination: okOnly,
    Telemetry: telemetry,
  } as grpc.UntypedServiceImplementation);
  port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err === null ? resolve(bound) : reject(err),
    );
  });
  return {
    endpoints: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const call of streams) call.end();
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

async function startProducer(endpoints: string, topics: string[]): Promise<Producer> {
  const producer = new Producer({ endpoints, namespace: '', logger: quietClientLogger, topics });
  await producer.startup();
  return producer;
}

/** `lanes` lanes, each awaiting its send before the next; counts sends finished after the warm-up. */
async function runSends(producer: Producer, lanes: number, seconds: number): Promise<LatencyRun> {
  const latencies = new Float64Array(2_000_000);
  let count = 0;
  const warmEnd = performance.now() + WARMUP_MS;
  const end = warmEnd + seconds * 1000;
  const lane = async (): Promise<void> => {
    for (;;) {
      const begin = performance.now();
      if (begin >= end) return;
      await producer.send({ topic: TOPIC, body: BODY });
      if (begin >= warmEnd && count < latencies.length) latencies[count++] = performance.now() - begin;
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  const elapsed = (performance.now() - warmEnd) / 1000;
  const sorted = latencies.subarray(0, count).sort();
  return { sendsPerSec: count / elapsed, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

async function benchSends(options: E2eOptions): Promise<E2eSendRow[]> {
  const started: { endpoint: Endpoint; producer?: Producer }[] = [];
  const start = async (endpoint: Promise<Endpoint>): Promise<Producer> => {
    const entry: { endpoint: Endpoint; producer?: Producer } = { endpoint: await endpoint };
    started.push(entry);
    entry.producer = await startProducer(entry.endpoint.endpoints, [TOPIC]);
    return entry.producer;
  };
  try {
    const bare = await start(startBareServer());
    const sync = await start(startBroker(options.baseDir, 'SYNC_FLUSH'));
    const async = await start(startBroker(options.baseDir, 'ASYNC_FLUSH'));
    // The first runs in a process pay for JIT warm-up and connection set-up: not measured.
    for (const producer of [bare, sync, async]) await runSends(producer, 16, 0.5);
    const rows: E2eSendRow[] = [];
    for (const lanes of CONCURRENCIES) {
      const bareRuns: LatencyRun[] = [];
      const syncRuns: LatencyRun[] = [];
      const asyncRuns: LatencyRun[] = [];
      const syncRatios: number[] = [];
      const asyncRatios: number[] = [];
      for (let pair = 0; pair < options.pairs; pair++) {
        const b = await runSends(bare, lanes, options.seconds);
        const s = await runSends(sync, lanes, options.seconds);
        const a = await runSends(async, lanes, options.seconds);
        bareRuns.push(b);
        syncRuns.push(s);
        asyncRuns.push(a);
        syncRatios.push(s.sendsPerSec / b.sendsPerSec);
        asyncRatios.push(a.sendsPerSec / b.sendsPerSec);
      }
      console.error(
        `  e2e send ${lanes} lanes: SYNC_FLUSH pair ratios ${syncRatios.map((r) => r.toFixed(2)).join(' ')}, ` +
          `ASYNC_FLUSH ${asyncRatios.map((r) => r.toFixed(2)).join(' ')}`,
      );
      rows.push({
        concurrency: lanes,
        bare: medianRun(bareRuns),
        sync: medianRun(syncRuns),
        async: medianRun(asyncRuns),
        syncRatio: median(syncRatios),
        asyncRatio: median(asyncRatios),
      });
    }
    return rows;
  } finally {
    for (const { producer } of started) await producer?.shutdown();
    for (const { endpoint } of started) await endpoint.close();
  }
}

/**
 * Puts `count` 1 KiB messages to `topic` through the broker's send path (what SendMessage calls),
 * FILL_LANES at a time: the receive rows need messages, not another measure of sending.
 */
let filledIds = 0;

async function fill(broker: BrokerController, topic: string, count: number): Promise<void> {
  // Ids as long as the client's (34 hex digits, version 01), unique within the run.
  const prefix = `01${Date.now().toString(16).padStart(24, '0')}`;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      next++;
      const result = await broker.sendMessage({
        topic,
        body: BODY,
        messageId: `${prefix}${(filledIds++).toString(16).padStart(8, '0')}`.toUpperCase(),
        messageType: 'NORMAL',
      });
      if (result.status.code !== 'OK')
        throw new Error(`fill: ${result.status.code} ${result.status.message}`);
    }
  };
  await Promise.all(Array.from({ length: FILL_LANES }, lane));
}

/** RECEIVE_LOOPS loops on one SimpleConsumer, each receiving up to 32 and acking every one. */
async function consumeSimple(endpoints: string, messages: number): Promise<E2eConsumeRow> {
  const consumer = new SimpleConsumer({
    endpoints,
    namespace: '',
    logger: quietClientLogger,
    consumerGroup: 'BenchE2eSimpleGroup',
    subscriptions: new Map([[SIMPLE_TOPIC, '*']]),
    awaitDuration: RECEIVE_AWAIT_MS,
  });
  await consumer.startup();
  const seen = new Set<string>();
  let acked = 0;
  let problem: string | undefined;
  const begin = performance.now();
  let lastProgress = begin;
  let end = begin;
  try {
    const loop = async (): Promise<void> => {
      while (acked < messages && problem === undefined) {
        if (performance.now() - lastProgress > STALL_MS) {
          problem = `nothing new for ${STALL_MS / 1000} s`;
          return;
        }
        let batch: Awaited<ReturnType<SimpleConsumer['receive']>>;
        try {
          batch = await consumer.receive(RECEIVE_BATCH, RECEIVE_INVISIBLE_MS);
        } catch (err) {
          problem ??= `receive failed: ${(err as Error).message.split('\n')[0]}`;
          return;
        }
        await Promise.all(
          batch.map(async (message) => {
            await consumer.ack(message);
            if (!seen.has(message.messageId)) {
              seen.add(message.messageId);
              acked++;
              lastProgress = performance.now();
              if (acked === messages) end = lastProgress;
            }
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: RECEIVE_LOOPS }, loop));
  } finally {
    await consumer.shutdown();
  }
  if (acked < messages) end = lastProgress;
  const seconds = acked === 0 ? 0 : (end - begin) / 1000;
  return {
    consumer: `SimpleConsumer, ${RECEIVE_LOOPS} loops x receive(${RECEIVE_BATCH}) + ack each`,
    messages,
    received: acked,
    msgsPerSec: acked / seconds,
    seconds,
    ...(problem === undefined ? {} : { problem }),
  };
}

/**
 * The push consumer's consume service opens its own file logger (egg-logger, under
 * $HOME/logs/rocketmq) whose flush interval outlives `shutdown()` and keeps the process alive:
 * close it (client quirk, reference §6.11).
 */
function closeConsumeServiceLogger(consumer: PushConsumer): void {
  try {
    const service = consumer.getConsumeService() as unknown as
      | { logger?: { close?: () => void } }
      | undefined;
    service?.logger?.close?.();
  } catch {
    // No consume service: startup never got that far.
  }
}

/** A PushConsumer whose listener returns SUCCESS; timed from its first message to the last. */
async function consumePush(endpoints: string, messages: number): Promise<E2eConsumeRow> {
  const seen = new Set<string>();
  let first = 0;
  let last = 0;
  const consumer = new PushConsumer({
    endpoints,
    namespace: '',
    logger: quietClientLogger,
    consumerGroup: 'BenchE2ePushGroup',
    subscriptions: new Map([[PUSH_TOPIC, '*']]),
    messageListener: {
      consume(message) {
        const now = performance.now();
        if (first === 0) first = now;
        if (!seen.has(message.messageId)) {
          seen.add(message.messageId);
          last = now;
        }
        return ConsumeResult.SUCCESS;
      },
    },
  });
  const startedAt = performance.now();
  await consumer.startup();
  let problem: string | undefined;
  try {
    // Wait for every message (the listener timed them), giving up once nothing new arrives for STALL_MS.
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        const stalled = performance.now() - Math.max(last, startedAt) > STALL_MS;
        if (seen.size < messages && !stalled) return;
        if (seen.size < messages) problem = `nothing new for ${STALL_MS / 1000} s`;
        clearInterval(check);
        resolve();
      }, 50);
    });
  } finally {
    await consumer.shutdown();
    closeConsumeServiceLogger(consumer);
  }
  const seconds = first === 0 ? 0 : (last - first) / 1000;
  return {
    consumer: 'PushConsumer, listener returns SUCCESS',
    messages,
    received: seen.size,
    msgsPerSec: seconds > 0 ? seen.size / seconds : 0,
    seconds,
    ...(problem === undefined ? {} : { problem }),
  };
}

async function benchConsume(options: E2eOptions): Promise<E2eConsumeRow[]> {
  const endpoint = await startBroker(options.baseDir, 'ASYNC_FLUSH');
  try {
    await fill(endpoint.broker, SIMPLE_TOPIC, options.messages);
    await fill(endpoint.broker, PUSH_TOPIC, options.messages);
    const simple = await consumeSimple(endpoint.endpoints, options.messages);
    if (simple.received === 0 && simple.problem !== undefined) {
      // Receiving does not work at all: the push consumer would only time out the same way.
      return [simple, { ...simple, consumer: 'PushConsumer, listener returns SUCCESS', problem: 'skipped' }];
    }
    return [simple, await consumePush(endpoint.endpoints, options.messages)];
  } finally {
    await endpoint.close();
  }
}

/**
 * The whole section. The official client's consume services log to $HOME/logs/rocketmq whatever
 * logger they are given: HOME points at a temporary directory while it runs.
 */
export async function benchE2E(options: E2eOptions): Promise<{
  readonly send: E2eSendRow[];
  readonly consume: E2eConsumeRow[];
}> {
  const home = process.env.HOME;
  const clientHome = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-bench-client-home-'));
  process.env.HOME = clientHome;
  try {
    const send = await benchSends(options);
    const consume = await benchConsume(options);
    return { send, consume };
  } finally {
    if (home === undefined) delete process.env.HOME;
    else process.env.HOME = home;
    fs.rmSync(clientHome, { recursive: true, force: true });
  }
}
