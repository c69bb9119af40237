import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BrokerController,
  BrokerMetrics,
  type MetricsServer,
  type PoppedMessage,
  startMetricsServer,
} from '../../src/broker/index.js';
import { type MessageStoreConfigInput, silentLogger } from '../../src/store/index.js';
import { onCleanup, tempDir } from '../support/helpers.js';

/**
 * The Prometheus endpoint under load: a broker with metrics and its /metrics server on
 * 127.0.0.1, producers sending through the broker's API while the test scrapes over HTTP and
 * parses the exposition text. The expected values come from what the test itself did (messages
 * sent, popped, acked), never from the metrics code.
 */

const TOPIC = 'MetricsTopic';
const GROUP = 'GID_metrics';

interface Running {
  readonly broker: BrokerController;
  readonly server: MetricsServer;
  readonly url: string;
}

async function start(
  t: TestContext,
  store: Omit<MessageStoreConfigInput, 'storePathRootDir'>,
): Promise<Running> {
  const dir = tempDir(t, 'rmq-metrics-');
  const metrics = new BrokerMetrics();
  const broker = await BrokerController.open({
    store: { storePathRootDir: dir, mappedFileSizeCommitLog: 1024 * 1024, ...store },
    broker: { minInvisibleTimeMillsForRecv: 0, defaultTopicQueueNums: 4 },
    logger: silentLogger,
    metrics,
  });
  onCleanup(t, () => broker.shutdown());
  const server = await startMetricsServer({ registry: metrics.registry, host: '127.0.0.1', port: 0 });
  onCleanup(t, () => server.close());
  return { broker, server, url: `http://127.0.0.1:${server.port}/metrics` };
}

/** One sample of the exposition text: metric name and labels, and its value. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses Prometheus text format 0.0.4 (what prom-client writes): `name{a="b",...} value`. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    assert.ok(match !== null, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, (_, c: string) =>
        c === 'n' ? '\n' : c,
      );
    }
    const raw = match[3] as string;
    const value =
      raw === '+Inf' ? Number.POSITIVE_INFINITY : raw === '-Inf' ? Number.NEGATIVE_INFINITY : Number(raw);
    samples.push({ name: match[1] as string, labels, value });
  }
  return samples;
}

class Scrape {
  constructor(
    readonly samples: readonly Sample[],
    readonly contentType: string,
  ) {}

  /** Every sample of `name` whose labels include `labels`. */
  all(name: string, labels: Readonly<Record<string, string>> = {}): Sample[] {
    return this.samples.filter(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
  }

  /** The sum over matching samples; 0 when there is none. */
  sum(name: string, labels: Readonly<Record<string, string>> = {}): number {
    return this.all(name, labels).reduce((n, s) => n + s.value, 0);
  }

  /** The one matching sample's value; fails when there is not exactly one. */
  one(name: string, labels: Readonly<Record<string, string>> = {}): number {
    const found = this.all(name, labels);
    assert.equal(found.length, 1, `${name}${JSON.stringify(labels)}: ${found.length} samples`);
    return (found[0] as Sample).value;
  }
}

async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  return new Scrape(parseExposition(await response.text()), response.headers.get('content-type') ?? '');
}

/**
 * Producers sending 1 KiB messages until `load.stop` is set; `load.sent` counts the answered ones.
 * Each producer yields to the event loop after every send, as messages arriving over the network
 * would (an ASYNC_FLUSH put answers in a microtask: without it the load never lets timers run).
 */
interface Load {
  sent: number;
  stop: boolean;
  readonly done: Promise<void>;
}

function startLoad(broker: BrokerController, concurrency: number): Load {
  const body = Buffer.alloc(1024, 'x');
  let next = 0;
  const load: { sent: number; stop: boolean; done: Promise<void> } = {
    sent: 0,
    stop: false,
    done: Promise.resolve(),
  };
  load.done = Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!load.stop) {
        const i = next++;
        const result = await broker.sendMessage({
          topic: TOPIC,
          body,
          messageId: `metrics-${i}`,
          messageType: 'NORMAL',
          tag: 'load',
        });
        assert.equal(result.status.code, 'OK', result.status.message);
        load.sent++;
        await new Promise(setImmediate);
      }
    }),
  ).then(() => undefined);
  return load;
}

/** Waits until `more` further messages were sent and at least `ms` passed, then scrapes; the load must still run. */
async function scrapeDuring(url: string, load: Load, more: number, ms: number): Promise<Scrape> {
  const from = load.sent;
  const since = Date.now();
  await waitFor(`${more} more messages`, () => load.sent >= from + more && Date.now() - since >= ms);
  const scraped = await scrape(url);
  assert.ok(!load.stop);
  return scraped;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

describe('broker metrics', () => {
  it('SYNC_FLUSH under load: latency histograms move between scrapes; lag and in-flight follow consumption', async (t) => {
    const { broker, url } = await start(t, { flushDiskType: 'SYNC_FLUSH' });
    // The group's first receive (nothing there yet) makes it known on every queue of the topic.
    const first = await broker.receiveMessage({
      group: GROUP,
      topic: TOPIC,
      maxMsgNums: 32,
      invisibleTimeMs: 60_000,
      pollTimeMs: 0,
    });
    assert.equal(first.messages.length, 0);

    const before = await scrape(url);
    assert.match(before.contentType, /^text\/plain; version=0\.0\.4/);
    assert.equal(before.sum('rocketmq_put_latency_seconds_count'), 0);
    assert.equal(before.sum('rocketmq_consumer_lag_messages', { group: GROUP, topic: TOPIC }), 0);

    const load = startLoad(broker, 32);
    const during1 = await scrapeDuring(url, load, 300, 20);
    const during2 = await scrapeDuring(url, load, 1000, 50);
    load.stop = true;
    await load.done;
    const total = load.sent;
    const after = await scrape(url);

    const countOf = (s: Scrape, name: string, labels: Record<string, string> = {}): number =>
      s.sum(`${name}_count`, labels);
    for (const [name, labels] of [
      ['rocketmq_put_latency_seconds', { status: 'PUT_OK' }],
      ['rocketmq_flush_latency_seconds', {}],
      ['rocketmq_commit_latency_seconds', {}],
      ['rocketmq_group_commit_batch_size', {}],
    ] as const) {
      const c0 = countOf(before, name, labels);
      const c1 = countOf(during1, name, labels);
      const c2 = countOf(during2, name, labels);
      assert.ok(c1 > c0 && c2 > c1, `${name}_count moves under load: ${c0} -> ${c1} -> ${c2}`);
    }
    // Every put the test made, and only those, was observed, with its status.
    assert.equal(after.one('rocketmq_put_latency_seconds_count', { status: 'PUT_OK' }), total);
    assert.equal(after.one('rocketmq_messages_put_total', { status: 'PUT_OK' }), total);
    assert.ok(during1.one('rocketmq_put_latency_seconds_count', { status: 'PUT_OK' }) >= 300);
    // Buckets are cumulative and end in +Inf = count; the sum is positive time.
    const buckets = after.all('rocketmq_put_latency_seconds_bucket', { status: 'PUT_OK' });
    assert.ok(buckets.length > 5);
    for (let i = 1; i < buckets.length; i++)
      assert.ok((buckets[i] as Sample).value >= (buckets[i - 1] as Sample).value);
    assert.equal(after.one('rocketmq_put_latency_seconds_bucket', { status: 'PUT_OK', le: '+Inf' }), total);
    assert.ok(after.one('rocketmq_put_latency_seconds_sum', { status: 'PUT_OK' }) > 0);
    // A group commit serves at least one put; all of them together served every put.
    assert.ok(after.one('rocketmq_group_commit_batch_size_sum') >= total);
    assert.ok(after.one('rocketmq_flush_latency_seconds_sum') > 0);

    // Nothing consumed yet: the group lags by everything sent, spread over the topic's 4 queues.
    await waitFor('dispatch', () => broker.store.dispatchBehindBytes() === 0);
    const loaded = await scrape(url);
    assert.equal(loaded.all('rocketmq_consumer_lag_messages', { group: GROUP, topic: TOPIC }).length, 4);
    assert.equal(loaded.sum('rocketmq_consumer_lag_messages', { group: GROUP, topic: TOPIC }), total);
    assert.equal(loaded.sum('rocketmq_inflight_messages', { group: GROUP }), 0);
    assert.equal(loaded.one('rocketmq_dispatch_behind_bytes'), 0);
    assert.ok(loaded.one('rocketmq_commitlog_max_offset_bytes') > total * 1024);
    assert.equal(loaded.one('rocketmq_commitlog_size_bytes') % (1024 * 1024), 0);
    assert.ok(
      loaded.one('rocketmq_commitlog_size_bytes') >= loaded.one('rocketmq_commitlog_max_offset_bytes'),
    );
    assert.equal(
      loaded.one('rocketmq_bytes_not_flushed'),
      0,
      'SYNC_FLUSH: everything acknowledged is flushed',
    );
    assert.equal(loaded.one('rocketmq_store_writeable'), 1);
    const used = loaded.one('rocketmq_disk_used_bytes');
    assert.ok(used > 0 && used <= loaded.one('rocketmq_disk_total_bytes'));

    // Popped, not acked: in flight, and still lagging (the committed offset has not moved).
    const getsBefore = loaded.sum('rocketmq_get_latency_seconds_count');
    const receive = async (group: string, maxMsgNums: number) =>
      (
        await broker.receiveMessage({
          group,
          topic: TOPIC,
          maxMsgNums,
          invisibleTimeMs: 60_000,
          pollTimeMs: 0,
        })
      ).messages;
    // Each receive starts at the next queue: 32 + 20 from two queues; another group holds 5.
    const popped = [...(await receive(GROUP, 32)), ...(await receive(GROUP, 20))];
    assert.equal(popped.length, 52);
    assert.equal(new Set(popped.map((m) => m.message.queueId)).size, 2);
    const other = await receive('GID_metrics_other', 5);
    assert.equal(other.length, 5);
    const inFlight = await scrape(url);
    assert.equal(inFlight.one('rocketmq_inflight_messages', { group: GROUP }), 52);
    assert.equal(inFlight.one('rocketmq_inflight_messages', { group: 'GID_metrics_other' }), 5);
    assert.equal(
      inFlight.sum('rocketmq_consumer_lag_messages', { group: 'GID_metrics_other', topic: TOPIC }),
      total,
    );
    assert.equal(inFlight.sum('rocketmq_consumer_lag_messages', { group: GROUP, topic: TOPIC }), total);
    assert.ok(inFlight.one('rocketmq_get_latency_seconds_count', { status: 'FOUND' }) >= 1);
    assert.ok(inFlight.sum('rocketmq_get_latency_seconds_count') > getsBefore);
    assert.ok(inFlight.one('rocketmq_messages_get_total') >= 32);

    // Ack everything: no lag, nothing in flight.
    let acked = 0;
    let batch: readonly PoppedMessage[] = popped;
    while (batch.length > 0) {
      for (const m of batch) {
        assert.equal(broker.ackMessage(GROUP, TOPIC, m.receiptHandle).code, 'OK');
        acked++;
      }
      batch = await receive(GROUP, 32);
    }
    assert.equal(acked, total);
    const consumed = await scrape(url);
    assert.equal(consumed.all('rocketmq_consumer_lag_messages', { group: GROUP, topic: TOPIC }).length, 4);
    assert.equal(consumed.sum('rocketmq_consumer_lag_messages', { group: GROUP, topic: TOPIC }), 0);
    assert.equal(consumed.sum('rocketmq_inflight_messages', { group: GROUP }), 0);
    assert.equal(consumed.one('rocketmq_inflight_messages', { group: 'GID_metrics_other' }), 5);
    assert.ok(consumed.one('rocketmq_messages_get_total') >= total);

    // Process metrics from prom-client's defaults.
    assert.ok(consumed.one('process_cpu_user_seconds_total') > 0);
    assert.ok(consumed.one('process_resident_memory_bytes') > 0);
    assert.ok(consumed.one('nodejs_heap_size_used_bytes') > 0);
  });

  it('ASYNC_FLUSH with the write-buffer pool: commit and flush latencies move, nothing left behind after', async (t) => {
    const { broker, url } = await start(t, {
      flushDiskType: 'ASYNC_FLUSH',
      transientStorePoolEnable: true,
      commitIntervalCommitLog: 5,
      flushIntervalCommitLog: 5,
      flushCommitLogLeastPages: 0,
    });
    const before = await scrape(url);
    const load = startLoad(broker, 16);
    const during1 = await scrapeDuring(url, load, 500, 30);
    const during2 = await scrapeDuring(url, load, 1500, 30);
    load.stop = true;
    await load.done;
    const total = load.sent;
    for (const name of ['rocketmq_commit_latency_seconds_count', 'rocketmq_flush_latency_seconds_count']) {
      const [c0, c1, c2] = [before.one(name), during1.one(name), during2.one(name)];
      assert.ok(c1 > c0 && c2 > c1, `${name} moves under load: ${c0} -> ${c1} -> ${c2}`);
    }
    // No group commit under ASYNC_FLUSH.
    assert.equal(during2.one('rocketmq_group_commit_batch_size_count'), 0);
    // The pool commits and the flusher flushes everything within a few intervals.
    const mfq = broker.store.getCommitLog().mappedFileQueue;
    await waitFor(
      'the commit and the flusher',
      () => mfq.remainHowManyDataToCommit() === 0 && mfq.remainHowManyDataToFlush() === 0,
    );
    const settled = await scrape(url);
    assert.equal(settled.one('rocketmq_bytes_not_committed'), 0);
    assert.equal(settled.one('rocketmq_bytes_not_flushed'), 0);
    assert.equal(settled.one('rocketmq_messages_put_total', { status: 'PUT_OK' }), total);
  });

  it('serves only GET /metrics; two brokers in one process keep their own registries', async (t) => {
    const a = await start(t, {});
    const b = await start(t, {});
    await a.broker.sendMessage({
      topic: TOPIC,
      body: Buffer.from('a'),
      messageId: 'a-1',
      messageType: 'NORMAL',
    });
    assert.equal((await scrape(a.url)).one('rocketmq_messages_put_total', { status: 'PUT_OK' }), 1);
    assert.equal((await scrape(b.url)).sum('rocketmq_messages_put_total'), 0);
    const base = `http://127.0.0.1:${a.server.port}`;
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal((await fetch(`${base}/metricsx`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 404);
    assert.equal((await fetch(`${base}/metrics?name=x`)).status, 200);
    // After the broker shut down the gauges are empty rather than failing the scrape.
    await b.broker.shutdown();
    const closed = await scrape(b.url);
    assert.equal(closed.all('rocketmq_consumer_lag_messages').length, 0);
  });

  it('README lists every metric the broker registers, and no other', () => {
    const metrics = new BrokerMetrics({ processMetrics: false });
    const registered = metrics.registry.getMetricsAsArray().map((m) => m.name);
    assert.ok(registered.length >= 15);
    const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = /^## Metrics\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
    assert.ok(section !== undefined, 'README has a "## Metrics" section');
    const documented = new Set([...section.matchAll(/`(rocketmq_[a-z_]+)(?:\{[^`]*\})?`/g)].map((m) => m[1]));
    for (const name of registered) assert.ok(documented.has(name), `README documents ${name}`);
    for (const name of documented)
      assert.ok(registered.includes(name as string), `${name} in README is registered`);
  });
});
