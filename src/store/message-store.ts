import path from 'node:path';
import { StoreCheckpoint } from './checkpoint/store-checkpoint.js';
import { CommitLog, type CommitLogRecoveryReport, type PutMessageResult } from './commitlog/commit-log.js';
import {
  createMessageStoreConfig,
  type MessageStoreConfig,
  type MessageStoreConfigInput,
} from './config/message-store-config.js';
import type { ConsumeQueueUnit } from './consumequeue/consume-queue.js';
import { ConsumeQueueStore, FlushConsumeQueueService } from './consumequeue/consume-queue-store.js';
import { errnoCode, StoreError } from './errors.js';
import {
  type GetMessageOptions,
  type GetMessageResult,
  getMessage,
  getMessageStoreTimeStamp,
  getOffsetInQueueByTime,
  type ReadContext,
} from './get-message.js';
import { nodeStoreIO, type StoreIO } from './io/store-io.js';
import { createDefaultLogger, type Logger, neverThrowingLogger } from './logger.js';
import type { Message, MessageBatch, MessageExt } from './message/message.js';
import {
  CommitLogDispatcher,
  type MessageArrivingListener,
  ReputMessageService,
} from './reput/reput-message-service.js';
import { RunningFlags } from './running-flags.js';
import { FlushDiskType } from './status.js';
import { StoreLock } from './store-lock.js';
import type { StoreMetricsObserver } from './store-metrics.js';
import {
  type ConsumeQueueRecoveryReport,
  type RecoveryProgressListener,
  recoverStore,
} from './store-recovery.js';
import { withTimeout } from './util/with-timeout.js';

/**
 * RocketMQ's `DefaultMessageStore`, the store's one entry point (store reference §4.11, §4.18):
 *
 *   open      validate config, take the directory lock, load the commit log, the consume queues
 *             and the checkpoint, recover (normal or abnormal, chosen by the `abort` file; see
 *             store-recovery.ts), create `abort`, start the flush services, ReputMessageService,
 *             FlushConsumeQueueService and the 1 s checkpoint flush
 *   put       CommitLog.putMessage / putMessages
 *   read      getMessage and friends, through the consume queues (get-message.ts)
 *   shutdown  stop the commit log services (final commits and flushes), let dispatch catch up,
 *             flush the consume queues and the checkpoint, delete `abort` if the store is still
 *             writeable and everything was dispatched, release the lock
 */

export const ABORT_FILE_NAME = 'abort';
export const CHECKPOINT_FILE_NAME = 'checkpoint';
/** RocketMQ 5 flushes the checkpoint on a 1 s schedule. */
export const CHECKPOINT_FLUSH_INTERVAL_MS = 1000;
/** After a failed shutdown, how long to wait for a pending checkpoint flush before leaving it, ms. */
const CHECKPOINT_CLOSE_TIMEOUT_MS = 1000;
/** Shutdown waits this long for dispatch to catch up (RocketMQ: 50 x 100 ms), ms. */
const REPUT_SHUTDOWN_TIMEOUT_MS = 5000;
/** Shutdown waits this long for the final consume queue flush, ms. */
const CONSUME_QUEUE_SHUTDOWN_TIMEOUT_MS = 5000;

export interface MessageStoreOptions {
  /** The file layer; tests pass an instrumented or simulated one. Default: the real disk. */
  readonly io?: StoreIO;
  /** Default: pino at `warn` (or ROCKETMQ_TS_LOG_LEVEL) on stderr. */
  readonly logger?: Logger;
  /**
   * RocketMQ's `MessageArrivingListener`: told after dispatch made new messages of a queue
   * readable (topic, queue id, the queue's new max offset). Long polling hangs off it.
   */
  readonly onMessageArriving?: MessageArrivingListener;
  /**
   * Told how long commits and flushes take and how many puts each group commit serves (the
   * broker's Prometheus metrics hang off it). Without it nothing is timed.
   */
  readonly metrics?: StoreMetricsObserver;
  /**
   * Told how far the open's commit log scan got, in bytes (a recovery after a crash may scan
   * gigabytes): `(0, upper bound)` first, then every few MiB, then `(scanned, scanned)` when it is
   * over. Not called for a store without a commit log. See `recoverStore`.
   */
  readonly onRecoveryProgress?: RecoveryProgressListener;
}

export interface RecoveryReport {
  /** False when the `abort` file was found: the last run did not shut down cleanly. */
  readonly lastExitOK: boolean;
  /** True when there was no checkpoint file (or it was short) and a fresh one was made. */
  readonly checkpointCreated: boolean;
  readonly commitLog: CommitLogRecoveryReport;
  readonly consumeQueues: ConsumeQueueRecoveryReport;
  /** How long loading and recovering the commit log and consume queues took, ms. */
  readonly durationMs: number;
}

/** A reader waiting for a queue to grow past an offset (`waitForMessages`). */
interface ArrivalWaiter {
  readonly offset: number;
  readonly resolve: (arrived: boolean) => void;
}

/** Turns an fs error during open into a typed error naming the path. */
function openError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = errnoCode(err);
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOTDIR' || code === 'ENOSPC') {
    return new StoreError('ERR_STORE_PATH_NOT_WRITABLE', `${what}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return new StoreError('ERR_STORE_FILE_INVALID', `${what}: ${(err as Error).message}`, { cause: err });
}

export class MessageStore {
  readonly #config: MessageStoreConfig;
  readonly #io: StoreIO;
  readonly #logger: Logger;
  readonly #lock: StoreLock;
  readonly #checkpoint: StoreCheckpoint;
  readonly #commitLog: CommitLog;
  readonly #consumeQueues: ConsumeQueueStore;
  readonly #runningFlags: RunningFlags;
  readonly #recoveryReport: RecoveryReport;
  readonly #reput: ReputMessageService;
  readonly #flushConsumeQueueService: FlushConsumeQueueService;
  readonly #readContext: ReadContext;
  readonly #onMessageArriving: MessageArrivingListener | null;
  /** `topic\0queueId` -> readers waiting for that queue to grow. */
  readonly #arrivalWaiters = new Map<string, Set<ArrivalWaiter>>();
  #checkpointTimer: NodeJS.Timeout | null = null;
  #shutdownPromise: Promise<void> | null = null;

  private constructor(fields: {
    config: MessageStoreConfig;
    io: StoreIO;
    logger: Logger;
    lock: StoreLock;
    checkpoint: StoreCheckpoint;
    commitLog: CommitLog;
    consumeQueues: ConsumeQueueStore;
    runningFlags: RunningFlags;
    recoveryReport: RecoveryReport;
    reputFromOffset: number;
    onMessageArriving: MessageArrivingListener | null;
  }) {
    this.#config = fields.config;
    this.#io = fields.io;
    this.#logger = fields.logger;
    this.#lock = fields.lock;
    this.#checkpoint = fields.checkpoint;
    this.#commitLog = fields.commitLog;
    this.#consumeQueues = fields.consumeQueues;
    this.#runningFlags = fields.runningFlags;
    this.#recoveryReport = fields.recoveryReport;
    this.#onMessageArriving = fields.onMessageArriving;
    const logger = fields.logger;
    const dispatcher = new CommitLogDispatcher(fields.consumeQueues, fields.checkpoint, (error) => {
      if (this.#runningFlags.isWriteable()) {
        logger.error({ err: error }, 'a consume queue refused a unit; writes stop');
      }
      this.#runningFlags.makeLogicsQueueError(error);
    });
    this.#reput = new ReputMessageService({
      commitLog: fields.commitLog,
      dispatcher,
      sync: fields.config.flushDiskType === FlushDiskType.SYNC_FLUSH,
      logger,
      onMessageArriving: (topic, queueId, maxOffset) => this.#messageArrived(topic, queueId, maxOffset),
    });
    this.#reput.reputFromOffset = fields.reputFromOffset;
    this.#flushConsumeQueueService = new FlushConsumeQueueService(
      fields.consumeQueues,
      fields.checkpoint,
      fields.config,
      logger,
      (err) => this.#onConsumeQueueFlushError(err),
    );
    this.#readContext = {
      commitLog: fields.commitLog,
      consumeQueues: fields.consumeQueues,
      config: fields.config,
      logger,
    };
  }

  #start(): void {
    this.#commitLog.setVisibleListener(() => this.#reput.wakeup());
    this.#commitLog.start();
    this.#reput.start();
    this.#flushConsumeQueueService.start();
    this.#startCheckpointFlush();
  }

  /**
   * Opens (creating if needed) the store at `config.storePathRootDir`. Throws `StoreError`:
   * `ERR_STORE_CONFIG` for a bad config, `ERR_STORE_PATH_NOT_WRITABLE` for a directory that cannot
   * be written, `ERR_STORE_LOCKED` when another store holds it, `ERR_STORE_FILE_INVALID` for files
   * that do not match the config.
   */
  static async open(
    configInput: MessageStoreConfigInput,
    options: MessageStoreOptions = {},
  ): Promise<MessageStore> {
    const config = createMessageStoreConfig(configInput);
    const io = options.io ?? nodeStoreIO;
    const logger = neverThrowingLogger(
      (options.logger ?? createDefaultLogger()).child({ store: config.storePathRootDir }),
    );
    const root = config.storePathRootDir;
    try {
      createDirectoryDurably(io, root);
    } catch (err) {
      // Whatever the errno (a recursive mkdir on a read-only file system reports ENOENT), a
      // directory we cannot create is a directory we cannot write.
      throw new StoreError(
        'ERR_STORE_PATH_NOT_WRITABLE',
        `cannot create the store directory ${root}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    let lock: StoreLock;
    try {
      lock = StoreLock.acquire(io, root);
    } catch (err) {
      throw openError(err, `cannot lock the store directory ${root}`);
    }
    let checkpoint: StoreCheckpoint | null = null;
    let commitLog: CommitLog | null = null;
    let consumeQueues: ConsumeQueueStore | null = null;
    try {
      const recoveryBegin = performance.now();
      const abortPath = path.join(root, ABORT_FILE_NAME);
      const lastExitOK = io.statSync(abortPath) === null;
      checkpoint = StoreCheckpoint.open(io, path.join(root, CHECKPOINT_FILE_NAME));
      const runningFlags = new RunningFlags();
      commitLog = new CommitLog({ config, io, logger, checkpoint, runningFlags, metrics: options.metrics });
      try {
        commitLog.load();
      } catch (err) {
        throw openError(err, `cannot load the commit log in ${config.storePathCommitLog}`);
      }
      consumeQueues = new ConsumeQueueStore({ config, io, logger });
      const recovery = await recoverStore({
        lastExitOK,
        commitLog,
        consumeQueues,
        checkpoint,
        logger,
        ...(options.onRecoveryProgress === undefined ? {} : { onProgress: options.onRecoveryProgress }),
      });
      // The store's directories exist now: make their entries durable, up to the root's own.
      syncDirectories(io, [
        path.dirname(root),
        root,
        path.dirname(config.storePathCommitLog),
        consumeQueues.rootPath,
      ]);
      const recoveryReport: RecoveryReport = {
        lastExitOK,
        checkpointCreated: checkpoint.createdOnOpen,
        commitLog: recovery.commitLog,
        consumeQueues: recovery.consumeQueues,
        durationMs: Math.round(performance.now() - recoveryBegin),
      };
      logger.info(
        recoverySummary(recoveryReport, commitLog.getMinOffset()),
        lastExitOK ? 'store recovered normally' : 'store recovered after a crash',
      );
      MessageStore.#createAbortFile(io, abortPath);
      const store = new MessageStore({
        config,
        io,
        logger,
        lock,
        checkpoint,
        commitLog,
        consumeQueues,
        runningFlags,
        recoveryReport,
        reputFromOffset: recovery.reputFromOffset,
        onMessageArriving: options.onMessageArriving ?? null,
      });
      store.#start();
      return store;
    } catch (err) {
      await commitLog?.shutdown().catch(() => undefined);
      consumeQueues?.shutdown();
      await checkpoint?.shutdown().catch(() => undefined);
      lock.release();
      throw openError(err, `cannot open the store in ${root}`);
    }
  }

  /** The `abort` file says "running": a crash leaves it behind and the next open knows. */
  static #createAbortFile(io: StoreIO, abortPath: string): void {
    const file = io.openSync(abortPath, 'open-or-create');
    try {
      file.truncateSync(0);
      file.writeSync(Buffer.from(String(process.pid)), 0);
      file.datasyncSync();
    } finally {
      file.closeSync();
    }
    io.fsyncDirectorySync(path.dirname(abortPath));
  }

  #startCheckpointFlush(): void {
    this.#checkpointTimer = setInterval(() => {
      this.#checkpoint.flush().catch((err: unknown) => this.#onCheckpointError(err));
    }, CHECKPOINT_FLUSH_INTERVAL_MS);
    this.#checkpointTimer.unref();
  }

  #onConsumeQueueFlushError(err: unknown): void {
    const error =
      err instanceof StoreError ? err : new StoreError('ERR_FLUSH_FAILED', String(err), { cause: err });
    if (this.#runningFlags.isWriteable()) {
      this.#logger.error({ err: error }, 'consume queue flush failed; writes stop');
    }
    this.#runningFlags.makeLogicsQueueError(error);
  }

  #messageArrived(topic: string, queueId: number, maxOffset: number): void {
    const key = `${topic}\u0000${queueId}`;
    const waiters = this.#arrivalWaiters.get(key);
    if (waiters !== undefined) {
      for (const waiter of waiters) {
        if (maxOffset > waiter.offset) {
          waiters.delete(waiter);
          waiter.resolve(true);
        }
      }
      if (waiters.size === 0) this.#arrivalWaiters.delete(key);
    }
    if (this.#onMessageArriving !== null) {
      try {
        this.#onMessageArriving(topic, queueId, maxOffset);
      } catch (err) {
        this.#logger.error({ err, topic, queueId }, 'onMessageArriving threw');
      }
    }
  }

  #onCheckpointError(err: unknown): void {
    const error =
      err instanceof StoreError ? err : new StoreError('ERR_FLUSH_FAILED', String(err), { cause: err });
    if (this.#runningFlags.isWriteable())
      this.#logger.error({ err: error }, 'checkpoint flush failed; writes stop');
    this.#runningFlags.makeNotWriteable(error);
  }

  /** Appends one message; resolves when it reached its durability level (see `PutMessageResult`). */
  putMessage(msg: Message): Promise<PutMessageResult> {
    return this.#commitLog.putMessage(msg);
  }

  /** Appends a batch of messages to one queue, in one segment, with consecutive queue offsets. */
  putMessages(batch: MessageBatch): Promise<PutMessageResult> {
    return this.#commitLog.putMessages(batch);
  }

  /**
   * RocketMQ's `getMessage`: up to `maxMsgNums` messages of `topic`/`queueId` from queue offset
   * `offset`, read through the consume queue and CRC checked, with RocketMQ's `GetMessageStatus`
   * and the offset to read from next. `group` names the reader (RocketMQ uses it for statistics
   * and filters; the store keeps no state for it). Never waits for a put.
   */
  async getMessage(
    group: string,
    topic: string,
    queueId: number,
    offset: number,
    maxMsgNums: number,
    options: GetMessageOptions = {},
  ): Promise<GetMessageResult> {
    void group;
    if (this.isShutdown()) {
      throw new StoreError('ERR_STORE_SHUTDOWN', 'getMessage on a store that was shut down');
    }
    checkQueueArguments(topic, queueId);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new StoreError(
        'ERR_INVALID_ARGUMENT',
        `getMessage: offset must be a whole number >= 0, got ${offset}`,
      );
    }
    if (!Number.isSafeInteger(maxMsgNums) || maxMsgNums < 1) {
      throw new StoreError(
        'ERR_INVALID_ARGUMENT',
        `getMessage: maxMsgNums must be a whole number >= 1, got ${maxMsgNums}`,
      );
    }
    return getMessage(this.#readContext, topic, queueId, offset, maxMsgNums, options);
  }

  /**
   * Up to `count` readable consume queue units of a queue from queue offset `offset`: commit log
   * offset, size and tags code, without reading the records. Fewer at the end of the queue and
   * at the end of each of its files (read on from there); none past the end or for no such
   * queue. The broker's timer rebuilds its schedule from these.
   */
  async getConsumeQueueUnits(
    topic: string,
    queueId: number,
    offset: number,
    count: number,
  ): Promise<ConsumeQueueUnit[]> {
    checkQueueArguments(topic, queueId);
    const queue = this.#consumeQueues.find(topic, queueId);
    if (queue === null) return [];
    const from = Math.max(offset, queue.getMinOffsetInQueue());
    const n = Math.min(count, queue.getMaxOffsetInQueue() - from);
    return n > 0 ? queue.getUnits(from, n) : [];
  }

  /** The first readable queue offset of a queue; -1 when there is no such queue (RocketMQ). */
  getMinOffsetInQueue(topic: string, queueId: number): number {
    const queue = this.#consumeQueues.find(topic, queueId);
    return queue === null ? -1 : queue.getMinOffsetInQueue();
  }

  /**
   * The queue offset after the last readable message (0 for no such queue). With
   * `committed = false`, the next offset a put will take instead, readable or not (RocketMQ's
   * `getMaxOffsetInQueue(topic, queueId, committed)`).
   */
  getMaxOffsetInQueue(topic: string, queueId: number, committed = true): number {
    if (!committed) return this.#commitLog.getQueueOffset(topic, queueId);
    const queue = this.#consumeQueues.find(topic, queueId);
    return queue === null ? 0 : queue.getMaxOffsetInQueue();
  }

  /** The first queue offset stored at or after `timestampMs` (the queue's end when none is; 0 for no queue). */
  getOffsetInQueueByTime(topic: string, queueId: number, timestampMs: number): Promise<number> {
    return getOffsetInQueueByTime(this.#readContext, topic, queueId, timestampMs);
  }

  /** Store time of the message at a queue offset, -1 when there is none. */
  getMessageStoreTimeStamp(topic: string, queueId: number, consumeQueueOffset: number): Promise<number> {
    return getMessageStoreTimeStamp(this.#readContext, topic, queueId, consumeQueueOffset);
  }

  /**
   * Resolves true as soon as the queue holds a readable message at `offset` or later, false after
   * `timeoutMs` (long polling). Resolves at once when one is already there.
   */
  waitForMessages(topic: string, queueId: number, offset: number, timeoutMs: number): Promise<boolean> {
    if (this.getMaxOffsetInQueue(topic, queueId) > offset) return Promise.resolve(true);
    if (this.isShutdown() || timeoutMs <= 0) return Promise.resolve(false);
    const key = `${topic}\u0000${queueId}`;
    return new Promise((resolve) => {
      let waiters = this.#arrivalWaiters.get(key);
      if (waiters === undefined) {
        waiters = new Set();
        this.#arrivalWaiters.set(key, waiters);
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        if (waiters.size === 0) this.#arrivalWaiters.delete(key);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      const waiter: ArrivalWaiter = {
        offset,
        resolve: (arrived) => {
          clearTimeout(timer);
          resolve(arrived);
        },
      };
      waiters.add(waiter);
    });
  }

  /** Readable commit log bytes not yet dispatched to the consume queues. */
  dispatchBehindBytes(): number {
    return this.#reput.dispatchBehindBytes();
  }

  /** The consume queue store, for tools and tests that look below the facade. */
  getConsumeQueueStore(): ConsumeQueueStore {
    return this.#consumeQueues;
  }

  /** The message whose record starts at `commitLogOffset`, or null (only visible bytes: committed, and flushed under SYNC_FLUSH). */
  lookMessageByOffset(commitLogOffset: number): Promise<MessageExt | null> {
    return this.#commitLog.lookMessageByOffset(commitLogOffset);
  }

  /** End of the readable commit log. */
  getMaxPhyOffset(): number {
    return this.#commitLog.getMaxOffset();
  }

  /** Start of the commit log (-1 when it has no segment). */
  getMinPhyOffset(): number {
    return this.#commitLog.getMinOffset();
  }

  /** The next queue offset of a queue: how many messages it has taken so far. */
  getQueueOffset(topic: string, queueId: number): number {
    return this.#commitLog.getQueueOffset(topic, queueId);
  }

  /** How the store came up: clean or after a crash, and what recovery cut. */
  getRecoveryReport(): RecoveryReport {
    return this.#recoveryReport;
  }

  getMessageStoreConfig(): MessageStoreConfig {
    return this.#config;
  }

  /** False once an I/O error stopped writes or the disk is full; `getRunningFlags().cause` says why. */
  isWriteable(): boolean {
    return this.#runningFlags.isWriteable();
  }

  getRunningFlags(): RunningFlags {
    return this.#runningFlags;
  }

  /** The checkpoint as last written or about to be written (physicMsgTimestamp etc.). */
  getStoreCheckpoint(): StoreCheckpoint {
    return this.#checkpoint;
  }

  /** The commit log, for tools and tests that look below the facade. */
  getCommitLog(): CommitLog {
    return this.#commitLog;
  }

  isShutdown(): boolean {
    return this.#shutdownPromise !== null;
  }

  /**
   * Flushes and commits everything, answers every waiting put, writes the checkpoint, deletes the
   * `abort` file (if no I/O error stopped writes) and releases the lock. Idempotent. If the disk
   * does not finish in time (see `CommitLog.shutdownJoinTimeoutMs`), it still releases the lock,
   * keeps `abort`, and rejects with `StoreError('ERR_SHUTDOWN_TIMEOUT')`.
   */
  shutdown(): Promise<void> {
    this.#shutdownPromise ??= this.#shutdown0();
    return this.#shutdownPromise;
  }

  async #shutdown0(): Promise<void> {
    if (this.#checkpointTimer !== null) clearInterval(this.#checkpointTimer);
    let failure: unknown = null;
    try {
      try {
        // Dispatch catches up with the log's final end before its segments close.
        await this.#commitLog.shutdown(async () => {
          if (!(await withTimeout(this.#reput.shutdown(), REPUT_SHUTDOWN_TIMEOUT_MS))) {
            this.#logger.warn(
              { behind: this.#reput.dispatchBehindBytes() },
              'dispatch did not catch up in time',
            );
          }
        });
      } catch (err) {
        failure = err;
      }
      // The final consume queue flush writes the checkpoint too.
      if (
        !(await withTimeout(this.#flushConsumeQueueService.shutdown(), CONSUME_QUEUE_SHUTDOWN_TIMEOUT_MS))
      ) {
        this.#onConsumeQueueFlushError(
          new StoreError('ERR_SHUTDOWN_TIMEOUT', 'the final consume queue flush did not finish in time'),
        );
      } else if (this.#runningFlags.isCQWriteable()) {
        // Every queue's end, for the next recovery to check the queues against.
        try {
          this.#consumeQueues.writeTable();
        } catch (err) {
          this.#logger.warn({ err }, 'the topic queue table could not be written');
        }
      }
      this.#consumeQueues.shutdown();
      for (const waiters of this.#arrivalWaiters.values())
        for (const waiter of waiters) waiter.resolve(false);
      this.#arrivalWaiters.clear();
      // The checkpoint says what is durable: only write it when the commit log finished. Close it
      // either way, unless a flush of it is itself stuck on the disk (its descriptor stays open
      // until that returns, rather than be closed under it).
      if (failure === null) {
        try {
          await this.#checkpoint.flush();
        } catch (err) {
          this.#onCheckpointError(err);
        }
        await this.#checkpoint.shutdown();
      } else if (!(await withTimeout(this.#checkpoint.shutdown(), CHECKPOINT_CLOSE_TIMEOUT_MS))) {
        this.#logger.warn({}, 'the checkpoint file stays open: a flush of it is stuck on the disk');
      }
      const behind = this.#reput.dispatchBehindBytes();
      if (failure === null && this.#runningFlags.isWriteable() && behind === 0) {
        const abortPath = path.join(this.#config.storePathRootDir, ABORT_FILE_NAME);
        try {
          this.#io.unlinkSync(abortPath);
          this.#io.fsyncDirectorySync(this.#config.storePathRootDir);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
        }
      } else {
        this.#logger.warn(
          { cause: this.#runningFlags.cause?.message, dispatchBehindBytes: behind },
          'keeping the abort file: the next open recovers as after a crash',
        );
      }
    } finally {
      this.#lock.release();
    }
    if (failure !== null) throw failure;
  }
}

/**
 * The recovery log line's fields: flat numbers an operator (or a log query) reads at a glance,
 * rather than the report's nested lists; the lists of what was repaired are in the report and in
 * the store-recovery warnings.
 */
function recoverySummary(report: RecoveryReport, commitLogMinOffset: number): Record<string, unknown> {
  const { commitLog, consumeQueues } = report;
  const repaired = new Set([
    ...consumeQueues.queuesReset,
    ...consumeQueues.queuesZeroed,
    ...consumeQueues.queuesTailRepaired,
    ...consumeQueues.rebuiltQueues,
  ]);
  return {
    recovery: report.lastExitOK ? 'normal' : 'abnormal',
    lastExitOK: report.lastExitOK,
    durationMs: report.durationMs,
    commitLogMinOffset: Math.max(0, commitLogMinOffset),
    commitLogMaxOffset: commitLog.maxPhyOffset,
    scanFromOffset: commitLog.scanFromOffset,
    recordsScanned: commitLog.messagesScanned,
    bytesScanned: commitLog.maxPhyOffset - commitLog.scanFromOffset,
    truncatedBytes: commitLog.truncatedBytes,
    consumeQueuesLoaded: consumeQueues.queuesLoaded,
    consumeQueuesRepaired: repaired.size,
    unitsCut: consumeQueues.unitsCut,
    unitsRebuilt: consumeQueues.unitsRebuilt,
    checkpointCreated: report.checkpointCreated,
    ...(commitLog.stopReason === null ? {} : { stopReason: commitLog.stopReason }),
    ...(commitLog.deletedFiles.length === 0 ? {} : { deletedFiles: commitLog.deletedFiles }),
    ...(commitLog.extendedFiles.length === 0 ? {} : { extendedFiles: commitLog.extendedFiles }),
  };
}

/** fsyncs each directory that exists (entries made at open: the root, `commitlog`, `consumequeue`). */
/**
 * mkdir -p, then an fsync of the parent of every directory it created: a new directory's entry
 * lives in its parent, and without that sync a power loss can take the whole store with it,
 * acknowledged SYNC_FLUSH messages included.
 */
function createDirectoryDurably(io: StoreIO, dir: string): void {
  const created: string[] = [];
  for (let d = path.resolve(dir); io.statSync(d) === null; d = path.dirname(d)) {
    created.push(d);
    if (path.dirname(d) === d) break;
  }
  io.mkdirSync(dir);
  // Deepest first: each parent is synced after its new child exists.
  for (const d of created) io.fsyncDirectorySync(path.dirname(d));
}

function syncDirectories(io: StoreIO, dirs: readonly string[]): void {
  for (const dir of new Set(dirs)) {
    if (io.statSync(dir)?.isDirectory === true) io.fsyncDirectorySync(dir);
  }
}

/** Topic and queue id checks for the read API: a typed error naming what was wrong. */
function checkQueueArguments(topic: string, queueId: number): void {
  if (typeof topic !== 'string' || topic.length === 0) {
    throw new StoreError('ERR_INVALID_ARGUMENT', 'topic must be a non-empty string');
  }
  if (!Number.isSafeInteger(queueId) || queueId < 0) {
    throw new StoreError('ERR_INVALID_ARGUMENT', `queueId must be a whole number >= 0, got ${queueId}`);
  }
}
