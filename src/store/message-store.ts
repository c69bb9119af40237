import path from 'node:path';
import { StoreCheckpoint } from './checkpoint/store-checkpoint.js';
import { CommitLog, type CommitLogRecoveryReport, type PutMessageResult } from './commitlog/commit-log.js';
import {
  createMessageStoreConfig,
  type MessageStoreConfig,
  type MessageStoreConfigInput,
} from './config/message-store-config.js';
import { errnoCode, StoreError } from './errors.js';
import { nodeStoreIO, type StoreIO } from './io/store-io.js';
import { createDefaultLogger, type Logger } from './logger.js';
import type { Message, MessageBatch, MessageExt } from './message/message.js';
import { RunningFlags } from './running-flags.js';
import { StoreLock } from './store-lock.js';
import { withTimeout } from './util/with-timeout.js';

/**
 * RocketMQ's `DefaultMessageStore`, the store's one entry point (store reference §4.11, §4.18):
 *
 *   open      validate config, take the directory lock, load segments and the checkpoint,
 *             recover (normal or abnormal, chosen by the `abort` file), create `abort`, start
 *             the flush services and the 1 s checkpoint flush
 *   put       CommitLog.putMessage / putMessages
 *   shutdown  stop the services (final commits and flushes), flush the checkpoint, delete
 *             `abort` if the store is still writeable, release the lock
 */

export const ABORT_FILE_NAME = 'abort';
export const CHECKPOINT_FILE_NAME = 'checkpoint';
/** RocketMQ 5 flushes the checkpoint on a 1 s schedule. */
export const CHECKPOINT_FLUSH_INTERVAL_MS = 1000;
/** After a failed shutdown, how long to wait for a pending checkpoint flush before leaving it, ms. */
const CHECKPOINT_CLOSE_TIMEOUT_MS = 1000;

export interface MessageStoreOptions {
  /** The file layer; tests pass an instrumented or simulated one. Default: the real disk. */
  readonly io?: StoreIO;
  /** Default: pino at `warn` (or ROCKETMQ_TS_LOG_LEVEL) on stderr. */
  readonly logger?: Logger;
}

export interface RecoveryReport {
  /** False when the `abort` file was found: the last run did not shut down cleanly. */
  readonly lastExitOK: boolean;
  /** True when there was no checkpoint file (or it was short) and a fresh one was made. */
  readonly checkpointCreated: boolean;
  readonly commitLog: CommitLogRecoveryReport;
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
  readonly #runningFlags: RunningFlags;
  readonly #recoveryReport: RecoveryReport;
  #checkpointTimer: NodeJS.Timeout | null = null;
  #shutdownPromise: Promise<void> | null = null;

  private constructor(fields: {
    config: MessageStoreConfig;
    io: StoreIO;
    logger: Logger;
    lock: StoreLock;
    checkpoint: StoreCheckpoint;
    commitLog: CommitLog;
    runningFlags: RunningFlags;
    recoveryReport: RecoveryReport;
  }) {
    this.#config = fields.config;
    this.#io = fields.io;
    this.#logger = fields.logger;
    this.#lock = fields.lock;
    this.#checkpoint = fields.checkpoint;
    this.#commitLog = fields.commitLog;
    this.#runningFlags = fields.runningFlags;
    this.#recoveryReport = fields.recoveryReport;
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
    const logger = (options.logger ?? createDefaultLogger()).child({ store: config.storePathRootDir });
    const root = config.storePathRootDir;
    try {
      io.mkdirSync(root);
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
    try {
      const abortPath = path.join(root, ABORT_FILE_NAME);
      const lastExitOK = io.statSync(abortPath) === null;
      checkpoint = StoreCheckpoint.open(io, path.join(root, CHECKPOINT_FILE_NAME));
      const runningFlags = new RunningFlags();
      commitLog = new CommitLog({ config, io, logger, checkpoint, runningFlags });
      try {
        commitLog.load();
      } catch (err) {
        throw openError(err, `cannot load the commit log in ${config.storePathCommitLog}`);
      }
      const commitLogReport = commitLog.recover(lastExitOK);
      const recoveryReport: RecoveryReport = {
        lastExitOK,
        checkpointCreated: checkpoint.createdOnOpen,
        commitLog: commitLogReport,
      };
      logger.info(
        { ...recoveryReport },
        lastExitOK ? 'store recovered normally' : 'store recovered after a crash',
      );
      MessageStore.#createAbortFile(io, abortPath);
      commitLog.start();
      const store = new MessageStore({
        config,
        io,
        logger,
        lock,
        checkpoint,
        commitLog,
        runningFlags,
        recoveryReport,
      });
      store.#startCheckpointFlush();
      return store;
    } catch (err) {
      await commitLog?.shutdown().catch(() => undefined);
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

  /** The message whose record starts at `commitLogOffset`, or null (only committed bytes are visible). */
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
        await this.#commitLog.shutdown();
      } catch (err) {
        failure = err;
      }
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
      if (failure === null && this.#runningFlags.isWriteable()) {
        const abortPath = path.join(this.#config.storePathRootDir, ABORT_FILE_NAME);
        try {
          this.#io.unlinkSync(abortPath);
          this.#io.fsyncDirectorySync(this.#config.storePathRootDir);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
        }
      } else {
        this.#logger.warn(
          { cause: this.#runningFlags.cause?.message },
          'keeping the abort file: the next open recovers as after a crash',
        );
      }
    } finally {
      this.#lock.release();
    }
    if (failure !== null) throw failure;
  }
}
