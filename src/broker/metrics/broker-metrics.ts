import fs from 'node:fs';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { StoreMetricsObserver } from '../../store/store-metrics.js';
import { consumerProgress, queueLag } from '../admin/admin-broker-processor.js';
import type { BrokerController } from '../broker-controller.js';

/**
 * The broker's Prometheus metrics (prom-client), in a registry of their own so that several
 * brokers in one process do not collide. Rates and latencies are recorded as they happen (puts
 * at the broker's send path, store reads at the pop engine, commits, flushes and group commits
 * through the store's `StoreMetricsObserver`); every gauge is read from the broker and its store
 * when scraped, so nothing is kept up to date between scrapes.
 *
 * Names follow RocketMQ's (`rocketmq_` prefix, `_seconds`, `_bytes`, `_total`); README.md
 * ("Metrics") lists each one, and a test checks that it does.
 */

/** Latency buckets, seconds: 50 us to 10 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Puts served by one group commit pass. */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

export interface BrokerMetricsOptions {
  /** Where the metrics are registered; default a new `Registry`. */
  readonly registry?: Registry;
  /** prom-client's process and Node.js metrics (`process_*`, `nodejs_*`) in the same registry; default true. */
  readonly processMetrics?: boolean;
  /** Labels put on every metric (e.g. `{ broker: 'broker-a' }`). */
  readonly defaultLabels?: Readonly<Record<string, string>>;
}

type LabelledGauge = Gauge<string>;

export class BrokerMetrics {
  readonly registry: Registry;
  /** Given to the store (`MessageStoreOptions.metrics`): commit and flush latency, group commit sizes. */
  readonly storeObserver: StoreMetricsObserver;
  readonly #putLatency: Histogram<'status'>;
  readonly #putTotal: Counter<'status'>;
  readonly #getLatency: Histogram<'status'>;
  readonly #getMessages: Counter;
  #broker: BrokerController | null = null;

  constructor(options: BrokerMetricsOptions = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    if (options.defaultLabels !== undefined) registry.setDefaultLabels({ ...options.defaultLabels });
    const registers = [registry];
    this.#putLatency = new Histogram({
      name: 'rocketmq_put_latency_seconds',
      help: 'Time from handing a message to the store until it answered (its durability level reached), by PutMessageStatus',
      labelNames: ['status'],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#putTotal = new Counter({
      name: 'rocketmq_messages_put_total',
      help: 'Messages producers sent that reached the store, by PutMessageStatus',
      labelNames: ['status'],
      registers,
    });
    this.#getLatency = new Histogram({
      name: 'rocketmq_get_latency_seconds',
      help: 'Store reads (getMessage) made by pops, by GetMessageStatus',
      labelNames: ['status'],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#getMessages = new Counter({
      name: 'rocketmq_messages_get_total',
      help: 'Messages the store returned to pops (before tag filtering and redelivery checks)',
      registers,
    });
    const commitLatency = new Histogram({
      name: 'rocketmq_commit_latency_seconds',
      help: 'Commits that wrote buffered commit log bytes to a segment file',
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    const flushLatency = new Histogram({
      name: 'rocketmq_flush_latency_seconds',
      help: 'Commit log flushes (fdatasync) that made bytes durable',
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    const groupCommitBatch = new Histogram({
      name: 'rocketmq_group_commit_batch_size',
      help: 'SYNC_FLUSH: puts served by one group commit pass',
      buckets: [...BATCH_SIZE_BUCKETS],
      registers,
    });
    this.storeObserver = {
      onCommit: (durationMs) => commitLatency.observe(durationMs / 1000),
      onFlush: (durationMs) => flushLatency.observe(durationMs / 1000),
      onGroupCommitBatch: (requests) => groupCommitBatch.observe(requests),
    };

    // Gauges, read at scrape time. Without a broker (not attached yet, or shut down) they are empty.
    const gauge = (
      name: string,
      help: string,
      read: (broker: BrokerController, g: LabelledGauge) => void,
      labelNames: readonly string[] = [],
    ): void => {
      const self = this;
      new Gauge({
        name,
        help,
        labelNames: [...labelNames],
        registers,
        collect() {
          this.reset();
          const broker = self.#broker;
          if (broker === null || broker.store.isShutdown()) return;
          read(broker, this);
        },
      });
    };
    gauge(
      'rocketmq_bytes_not_committed',
      'Commit log bytes appended but not yet written to the segment files',
      (b, g) => g.set(b.store.getCommitLog().mappedFileQueue.remainHowManyDataToCommit()),
    );
    gauge(
      'rocketmq_bytes_not_flushed',
      'Commit log bytes written to the segment files but not yet flushed to disk',
      (b, g) => g.set(b.store.getCommitLog().mappedFileQueue.remainHowManyDataToFlush()),
    );
    gauge(
      'rocketmq_dispatch_behind_bytes',
      'Readable commit log bytes not yet dispatched to the consume queues',
      (b, g) => g.set(b.store.dispatchBehindBytes()),
    );
    gauge('rocketmq_commitlog_max_offset_bytes', 'End of the readable commit log (physical offset)', (b, g) =>
      g.set(b.store.getMaxPhyOffset()),
    );
    gauge(
      'rocketmq_commitlog_size_bytes',
      'Bytes the commit log segment files take (segments x segment size)',
      (b, g) => g.set(b.store.getCommitLog().mappedFileQueue.getMappedMemorySize()),
    );
    gauge('rocketmq_disk_used_bytes', 'Used bytes of the file system holding the store', (b, g) => {
      const disk = diskOf(b.store.getMessageStoreConfig().storePathRootDir);
      if (disk !== null) g.set(disk.used);
    });
    gauge('rocketmq_disk_total_bytes', 'Size of the file system holding the store', (b, g) => {
      const disk = diskOf(b.store.getMessageStoreConfig().storePathRootDir);
      if (disk !== null) g.set(disk.total);
    });
    gauge(
      'rocketmq_store_writeable',
      '1 while the store accepts puts; 0 after an I/O error stopped writes or while the disk is full',
      (b, g) => g.set(b.store.isWriteable() ? 1 : 0),
    );
    gauge(
      'rocketmq_consumer_lag_messages',
      "Messages of a queue not yet consumed by a group: the queue's end minus the group's committed offset (in-flight messages count)",
      (b, g) => {
        for (const lag of consumerLag(b)) g.set(lag.labels, lag.value);
      },
      ['group', 'topic', 'queue_id'],
    );
    gauge(
      'rocketmq_inflight_messages',
      'Messages popped by a group and not yet acked, nor revived',
      (b, g) => {
        for (const [group, n] of b.popMessageProcessor.inflightByGroup()) g.set({ group }, n);
      },
      ['group'],
    );
    gauge('rocketmq_timer_pending_messages', 'Delay messages waiting for their delivery time', (b, g) =>
      g.set(b.timerMessageService.pendingCount),
    );
    gauge(
      'rocketmq_transaction_open_messages',
      'Transactional half messages not yet committed or rolled back',
      (b, g) => g.set(b.transactionalMessageService.openCount),
    );
    if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  }

  /** Reads the gauges from this broker from now on (BrokerController.open does it). */
  attach(broker: BrokerController): void {
    this.#broker = broker;
  }

  /** A store put made for a producer took `durationMs` and ended with `status` (a PutMessageStatus). */
  observePut(status: string, durationMs: number): void {
    this.#putLatency.observe({ status }, durationMs / 1000);
    this.#putTotal.inc({ status });
  }

  /** A store read of a pop took `durationMs`, ended with `status` (a GetMessageStatus) and returned `messages`. */
  observeGet(status: string, durationMs: number, messages: number): void {
    this.#getLatency.observe({ status }, durationMs / 1000);
    if (messages > 0) this.#getMessages.inc(messages);
  }

  /** The exposition text (what GET /metrics answers). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

function diskOf(dir: string): { used: number; total: number } | null {
  try {
    const stats = fs.statfsSync(dir);
    return { used: (stats.blocks - stats.bfree) * stats.bsize, total: stats.blocks * stats.bsize };
  } catch {
    return null;
  }
}

/**
 * Lag per group and queue: every offset the group committed (persisted or not) and every queue a
 * pop read since the start, against the queue's readable end.
 */
function consumerLag(
  broker: BrokerController,
): { labels: { group: string; topic: string; queue_id: string }; value: number }[] {
  const lags: { labels: { group: string; topic: string; queue_id: string }; value: number }[] = [];
  for (const { group, topic, queueId, offset } of consumerProgress(broker)) {
    lags.push({
      labels: { group, topic, queue_id: String(queueId) },
      value: queueLag(broker, topic, queueId, offset).lag,
    });
  }
  return lags;
}
