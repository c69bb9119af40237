import path from 'node:path';
import type { StoreCheckpoint } from '../checkpoint/store-checkpoint.js';
import { ServiceThread } from '../commitlog/service-thread.js';
import type { MessageStoreConfig } from '../config/message-store-config.js';
import { StoreError } from '../errors.js';
import type { StoreIO } from '../io/store-io.js';
import type { Logger } from '../logger.js';
import { WriteBufferPool } from '../mapped-file/write-buffer-pool.js';
import { ConsumeQueue } from './consume-queue.js';

/**
 * Every consume queue of the store (RocketMQ's `ConsumeQueueStore`), under
 * `{storePathRootDir}/consumequeue/{topic}/{queueId}/`, plus FlushConsumeQueueService.
 */

export const CONSUME_QUEUE_DIR = 'consumequeue';
/**
 * `{root}/config/topicQueueTable.json`: every queue's end (units, and the end of its last
 * message in the commit log), written after recovery and at shutdown. Queues only grow, so it
 * is a lower bound for their ends ever after; recovery compares it with the queues it found, and
 * rebuilds one that lost units (a file deleted or cut by hand) instead of reusing its offsets.
 *
 *   {"version":1,"queues":[["TopicA",0,1200,5242880], ...]}   topic, queueId, maxOffset, maxPhysicOffset
 */
export const TOPIC_QUEUE_TABLE_PATH = path.join('config', 'topicQueueTable.json');
const TOPIC_QUEUE_TABLE_VERSION = 1;

export interface QueueTableEntry {
  readonly topic: string;
  readonly queueId: number;
  readonly maxOffset: number;
  readonly maxPhysicOffset: number;
}
/** Consume queue write buffers: units are committed right after each dispatch pass. */
const CQ_WRITE_BUFFER_SIZE_BYTES = 64 * 1024;
const CQ_WRITE_BUFFER_BYTES_MAX = 256 * 1024 * 1024;
/** Flush attempts per queue on shutdown (RocketMQ's doFlush(3)). */
const SHUTDOWN_FLUSH_RETRIES = 3;

export interface ConsumeQueueStoreOptions {
  readonly config: MessageStoreConfig;
  readonly io: StoreIO;
  readonly logger: Logger;
}

export class ConsumeQueueStore {
  readonly rootPath: string;
  readonly #config: MessageStoreConfig;
  readonly #io: StoreIO;
  readonly #logger: Logger;
  readonly #pool: WriteBufferPool;
  readonly #queues = new Map<string, Map<number, ConsumeQueue>>();
  /** Directories whose entries changed (new queues) and are not yet fsynced. */
  readonly #dirsToSync = new Set<string>();

  constructor(options: ConsumeQueueStoreOptions) {
    this.#config = options.config;
    this.#io = options.io;
    this.#logger = options.logger;
    this.rootPath = path.join(options.config.storePathRootDir, CONSUME_QUEUE_DIR);
    const bufferSize = Math.min(options.config.mappedFileSizeConsumeQueue, CQ_WRITE_BUFFER_SIZE_BYTES);
    this.#pool = new WriteBufferPool(
      bufferSize,
      Math.max(16, Math.floor(CQ_WRITE_BUFFER_BYTES_MAX / bufferSize)),
    );
  }

  /**
   * Opens every `consumequeue/{topic}/{queueId}` directory found. A queue whose files cannot be
   * loaded (a file of the wrong size, a missing file in the middle) is derived data: its files
   * are deleted and recovery rebuilds it from the commit log. Returns those queues.
   */
  load(): string[] {
    this.#io.mkdirSync(this.rootPath);
    const reset: string[] = [];
    for (const topic of this.#io.readdirSync(this.rootPath).sort()) {
      const topicDir = path.join(this.rootPath, topic);
      if (this.#io.statSync(topicDir)?.isDirectory !== true) continue;
      for (const name of this.#io.readdirSync(topicDir).sort()) {
        const queueId = Number(name);
        if (!/^\d+$/.test(name) || !Number.isSafeInteger(queueId)) {
          this.#logger.warn(
            { dir: topicDir, name },
            'ignoring a consume queue directory that is not a queue id',
          );
          continue;
        }
        const queue = this.#create(topic, queueId);
        try {
          queue.load();
        } catch (err) {
          if (!(err instanceof StoreError) || err.code !== 'ERR_STORE_FILE_INVALID') throw err;
          this.#logger.warn(
            { topic, queueId, err },
            'a consume queue could not be loaded; deleting it to rebuild it from the commit log',
          );
          this.#deleteQueueFiles(path.join(topicDir, name));
          reset.push(`${topic}/${queueId}`);
        }
      }
    }
    return reset;
  }

  #deleteQueueFiles(queueDir: string): void {
    for (const name of this.#io.readdirSync(queueDir)) {
      const filePath = path.join(queueDir, name);
      if (this.#io.statSync(filePath)?.isFile === true) this.#io.unlinkSync(filePath);
    }
    this.#io.fsyncDirectorySync(queueDir);
  }

  #create(topic: string, queueId: number): ConsumeQueue {
    const queue = new ConsumeQueue({
      topic,
      queueId,
      rootPath: this.rootPath,
      mappedFileSize: this.#config.mappedFileSizeConsumeQueue,
      io: this.#io,
      writeBufferPool: this.#pool,
      logger: this.#logger,
    });
    let queues = this.#queues.get(topic);
    if (queues === undefined) {
      queues = new Map();
      this.#queues.set(topic, queues);
    }
    queues.set(queueId, queue);
    return queue;
  }

  find(topic: string, queueId: number): ConsumeQueue | null {
    return this.#queues.get(topic)?.get(queueId) ?? null;
  }

  findOrCreate(topic: string, queueId: number): ConsumeQueue {
    const found = this.find(topic, queueId);
    if (found !== null) return found;
    const queue = this.#create(topic, queueId);
    this.#io.mkdirSync(queue.mappedFileQueue.storePath);
    // The new directories' entries become durable with the next flush (`#syncDirectories`).
    this.#dirsToSync.add(this.rootPath);
    this.#dirsToSync.add(path.join(this.rootPath, topic));
    return queue;
  }

  all(): ConsumeQueue[] {
    const out: ConsumeQueue[] = [];
    for (const queues of this.#queues.values()) out.push(...queues.values());
    return out;
  }

  topics(): string[] {
    return [...this.#queues.keys()];
  }

  queueIds(topic: string): number[] {
    return [...(this.#queues.get(topic)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** Recovers every queue (see `ConsumeQueue.recover`); returns the queues it zeroed stale bytes in. */
  recover(afterCrash: boolean): string[] {
    const zeroed: string[] = [];
    for (const queue of this.all()) {
      if (queue.recover(afterCrash)) zeroed.push(`${queue.topic}/${queue.queueId}`);
    }
    return zeroed;
  }

  /** End of the highest message any queue indexes; -1 when none does (recovery's dispatch start). */
  getMaxPhysicOffset(): number {
    let max = -1;
    for (const queue of this.all()) max = Math.max(max, queue.getMaxPhysicOffset());
    return max;
  }

  truncateDirtyLogicFiles(phyOffset: number): void {
    for (const queue of this.all()) queue.truncateDirtyLogicFiles(phyOffset);
  }

  correctMinOffset(minCommitLogOffset: number): void {
    for (const queue of this.all()) queue.correctMinOffset(minCommitLogOffset);
  }

  /** Commits every queue with appended units (makes them readable). */
  async commitAll(): Promise<void> {
    const pending = this.all().filter((queue) => queue.hasUncommitted());
    await Promise.all(pending.map((queue) => queue.commit()));
  }

  /** Flushes every queue `retries` times (one file per call, as RocketMQ). */
  async flushAll(flushLeastPages: number, retries = 1): Promise<void> {
    await this.#syncDirectories();
    for (const queue of this.all()) {
      for (let i = 0; i < retries; i++) await queue.flush(flushLeastPages);
    }
  }

  /**
   * Makes new queue directories durable (their entries in `consumequeue/` and the topic's
   * directory); each file's own entry is synced by its first flush. Until then a crash may lose
   * a new queue, which recovery rebuilds from the commit log.
   */
  async #syncDirectories(): Promise<void> {
    if (this.#dirsToSync.size === 0) return;
    const dirs = [...this.#dirsToSync];
    this.#dirsToSync.clear();
    try {
      // Parents first: `consumequeue` sorts before its topic directories.
      for (const dir of dirs.sort()) await this.#io.fsyncDirectory(dir);
    } catch (err) {
      for (const dir of dirs) this.#dirsToSync.add(dir);
      throw err;
    }
  }

  /** Flushes until every unit is durable (recovery, shutdown). */
  async flushEverything(): Promise<void> {
    await this.#syncDirectories();
    for (const queue of this.all()) {
      const mfq = queue.mappedFileQueue;
      const callsMax = mfq.getMappedFiles().length + SHUTDOWN_FLUSH_RETRIES;
      await queue.commit();
      for (let i = 0; i < callsMax && mfq.flushedWhere < mfq.getMaxOffset(); i++) await mfq.flush(0);
    }
  }

  /** The table `writeTable` last wrote; empty when there is none or it cannot be read. */
  readTable(): QueueTableEntry[] {
    const file = path.join(this.#config.storePathRootDir, TOPIC_QUEUE_TABLE_PATH);
    if (this.#io.statSync(file) === null) return [];
    try {
      const parsed = JSON.parse(this.#io.readFileSync(file).toString('utf8')) as {
        version?: unknown;
        queues?: unknown;
      };
      if (parsed.version !== TOPIC_QUEUE_TABLE_VERSION || !Array.isArray(parsed.queues))
        throw new Error('unknown format');
      const out: QueueTableEntry[] = [];
      for (const item of parsed.queues as unknown[]) {
        if (!Array.isArray(item) || item.length !== 4)
          throw new Error('an entry is not [topic, queueId, maxOffset, maxPhysicOffset]');
        const [topic, queueId, maxOffset, maxPhysicOffset] = item as unknown[];
        if (
          typeof topic !== 'string' ||
          !Number.isSafeInteger(queueId) ||
          !Number.isSafeInteger(maxOffset) ||
          !Number.isSafeInteger(maxPhysicOffset)
        ) {
          throw new Error('an entry has a field of the wrong type');
        }
        out.push({
          topic,
          queueId: queueId as number,
          maxOffset: maxOffset as number,
          maxPhysicOffset: maxPhysicOffset as number,
        });
      }
      return out;
    } catch (err) {
      this.#logger.warn({ file, err }, 'ignoring an unreadable topic queue table');
      return [];
    }
  }

  /** Writes every queue's end, atomically (a temporary file, fdatasync, rename, directory fsync). */
  writeTable(): void {
    const dir = path.join(this.#config.storePathRootDir, path.dirname(TOPIC_QUEUE_TABLE_PATH));
    const file = path.join(this.#config.storePathRootDir, TOPIC_QUEUE_TABLE_PATH);
    const queues = this.all()
      .filter((queue) => queue.getMaxOffsetInQueue() > 0)
      .map((queue) => [queue.topic, queue.queueId, queue.getMaxOffsetInQueue(), queue.getMaxPhysicOffset()]);
    const bytes = Buffer.from(JSON.stringify({ version: TOPIC_QUEUE_TABLE_VERSION, queues }));
    const created = this.#io.statSync(dir) === null;
    this.#io.mkdirSync(dir);
    if (created) this.#io.fsyncDirectorySync(this.#config.storePathRootDir);
    const temporary = `${file}.tmp`;
    const handle = this.#io.openSync(temporary, 'open-or-create');
    try {
      handle.truncateSync(0);
      handle.writeSync(bytes, 0);
      handle.datasyncSync();
    } finally {
      handle.closeSync();
    }
    this.#io.renameSync(temporary, file);
    this.#io.fsyncDirectorySync(dir);
  }

  /** Deletes every consume queue (the commit log is gone or was never there). */
  destroy(): void {
    for (const queue of this.all()) queue.destroy();
    this.#queues.clear();
  }

  shutdown(): void {
    for (const queue of this.all()) queue.shutdown();
    this.#pool.destroy();
  }
}

/**
 * RocketMQ's `FlushConsumeQueueService` (store reference §4.14): every `flushIntervalConsumeQueue`
 * (1 s) it flushes every queue with at least `flushConsumeQueueLeastPages` (2) dirty pages, and
 * fully at least every `flushConsumeQueueThoroughInterval` (60 s). On a full flush it writes the
 * checkpoint, with `logicsMsgTimestamp` set to the store time of the last record dispatched
 * before the flush began: that one's units are known durable, a later one's may not be
 * (RocketMQ #678). Between full flushes the checkpoint keeps the last durable value.
 */
export class FlushConsumeQueueService extends ServiceThread {
  readonly #store: ConsumeQueueStore;
  readonly #checkpoint: StoreCheckpoint;
  readonly #config: MessageStoreConfig;
  readonly #onError: (err: unknown) => void;
  #lastFlushTimestamp = 0;

  constructor(
    store: ConsumeQueueStore,
    checkpoint: StoreCheckpoint,
    config: MessageStoreConfig,
    logger: Logger,
    onError: (err: unknown) => void,
  ) {
    super(logger);
    this.#store = store;
    this.#checkpoint = checkpoint;
    this.#config = config;
    this.#onError = onError;
  }

  getServiceName(): string {
    return 'FlushConsumeQueueService';
  }

  protected async run(): Promise<void> {
    while (!this.isStopped()) {
      await this.waitForRunning(this.#config.flushIntervalConsumeQueue);
      if (this.isStopped()) break;
      await this.#doFlush(false);
    }
    await this.#doFlush(true);
  }

  async #doFlush(final: boolean): Promise<void> {
    let leastPages = final ? 0 : this.#config.flushConsumeQueueLeastPages;
    let logicsMsgTimestamp = 0;
    const now = Date.now();
    if (final || now >= this.#lastFlushTimestamp + this.#config.flushConsumeQueueThoroughInterval) {
      this.#lastFlushTimestamp = now;
      leastPages = 0;
      logicsMsgTimestamp = this.#checkpoint.dispatchedLogicsMsgTimestamp;
    }
    try {
      if (final) await this.#store.flushEverything();
      else await this.#store.flushAll(leastPages);
      if (leastPages === 0) {
        if (logicsMsgTimestamp > this.#checkpoint.logicsMsgTimestamp) {
          this.#checkpoint.logicsMsgTimestamp = logicsMsgTimestamp;
        }
        await this.#checkpoint.flush();
      }
    } catch (err) {
      this.#onError(err);
    }
  }
}
