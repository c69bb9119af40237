import assert from 'node:assert/strict';
import nodePath from 'node:path';
import { StoreError } from '../errors.js';
import type { StoreFileHandle, StoreIO } from '../io/store-io.js';
import { readInt64BE, writeInt64BE } from '../message/int64.js';

/**
 * RocketMQ's `StoreCheckpoint` (store reference §2.9): one 4096-byte page of big-endian int64s.
 *
 *   offset  field                meaning
 *   ------  -------------------  ------------------------------------------------------------
 *        0  physicMsgTimestamp   store time of the last commit log record known flushed
 *        8  logicsMsgTimestamp   store time of the last record dispatched to a consume queue
 *       16  indexMsgTimestamp    end time of the last full index file flushed
 *       24  masterFlushedOffset  HA
 *       32  confirmPhyOffset     HA / controller
 *       40  (zeros to 4096)
 *
 * Recovery after a crash starts from a segment whose first record is older than
 * `getMinTimestamp()`, so these values must never claim more than is durable.
 */
export const CHECKPOINT_FILE_SIZE_BYTES = 4096;
/** Recovery starts this much before the checkpoint's timestamps (RocketMQ's safety margin). */
export const CHECKPOINT_MIN_TIMESTAMP_MARGIN_MS = 3000;

const PHYSIC_MSG_TIMESTAMP_POSITION = 0;
const LOGICS_MSG_TIMESTAMP_POSITION = 8;
const INDEX_MSG_TIMESTAMP_POSITION = 16;
const MASTER_FLUSHED_OFFSET_POSITION = 24;
const CONFIRM_PHY_OFFSET_POSITION = 32;

export class StoreCheckpoint {
  readonly path: string;
  physicMsgTimestamp = 0;
  logicsMsgTimestamp = 0;
  /**
   * Store time of the last record dispatched to a consume queue, in memory only: it becomes
   * `logicsMsgTimestamp` once a full consume queue flush made those units durable. Written to
   * the page before that, a checkpoint flush (every second) would vouch for units a crash can
   * still tear.
   */
  dispatchedLogicsMsgTimestamp = 0;
  indexMsgTimestamp = 0;
  masterFlushedOffset = 0;
  confirmPhyOffset = 0;
  /** True when the file did not exist (or was short) and was created at open. */
  readonly createdOnOpen: boolean;

  readonly #file: StoreFileHandle;
  readonly #page = Buffer.alloc(CHECKPOINT_FILE_SIZE_BYTES);
  #flushChain: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(path: string, file: StoreFileHandle, createdOnOpen: boolean) {
    this.path = path;
    this.#file = file;
    this.createdOnOpen = createdOnOpen;
  }

  /** Opens (or creates, zero-filled) the checkpoint file and reads its fields. */
  static open(io: StoreIO, path: string): StoreCheckpoint {
    const existed = io.statSync(path);
    const file = io.openSync(path, 'open-or-create');
    try {
      const size = file.sizeSync();
      const page = Buffer.alloc(CHECKPOINT_FILE_SIZE_BYTES);
      let read = 0;
      while (read < Math.min(size, CHECKPOINT_FILE_SIZE_BYTES)) {
        const n = file.readSync(page, read, CHECKPOINT_FILE_SIZE_BYTES - read, read);
        if (n === 0) break;
        read += n;
      }
      const created = existed === null || size < CHECKPOINT_FILE_SIZE_BYTES;
      if (size < CHECKPOINT_FILE_SIZE_BYTES) {
        file.truncateSync(CHECKPOINT_FILE_SIZE_BYTES);
        file.datasyncSync();
        if (existed === null) io.fsyncDirectorySync(nodePath.dirname(path));
      }
      const checkpoint = new StoreCheckpoint(path, file, created);
      checkpoint.physicMsgTimestamp = checkpoint.#field(page, PHYSIC_MSG_TIMESTAMP_POSITION);
      checkpoint.logicsMsgTimestamp = checkpoint.#field(page, LOGICS_MSG_TIMESTAMP_POSITION);
      checkpoint.dispatchedLogicsMsgTimestamp = checkpoint.logicsMsgTimestamp;
      checkpoint.indexMsgTimestamp = checkpoint.#field(page, INDEX_MSG_TIMESTAMP_POSITION);
      checkpoint.masterFlushedOffset = checkpoint.#field(page, MASTER_FLUSHED_OFFSET_POSITION);
      checkpoint.confirmPhyOffset = checkpoint.#field(page, CONFIRM_PHY_OFFSET_POSITION);
      return checkpoint;
    } catch (err) {
      file.closeSync();
      if (err instanceof StoreError) throw err;
      throw new StoreError(
        'ERR_STORE_FILE_INVALID',
        `cannot read checkpoint ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  #field(page: Buffer, pos: number): number {
    const value = readInt64BE(page, pos);
    // A corrupt page must not make recovery trust a timestamp in the future or a negative one.
    return Number.isSafeInteger(value) && value >= 0 ? value : 0;
  }

  /** RocketMQ's rule: recovery may trust records older than min(physic, logics) minus 3 s. */
  getMinTimestamp(): number {
    return Math.max(
      0,
      Math.min(this.physicMsgTimestamp, this.logicsMsgTimestamp) - CHECKPOINT_MIN_TIMESTAMP_MARGIN_MS,
    );
  }

  getMinTimestampIndex(): number {
    return Math.min(this.getMinTimestamp(), this.indexMsgTimestamp);
  }

  /**
   * Writes all five fields and fdatasyncs the page. Flushes run one at a time. Throws
   * `StoreError('ERR_FLUSH_FAILED')` when the sync fails.
   */
  flush(): Promise<void> {
    const next = this.#flushChain.then(() => this.#flush0());
    this.#flushChain = next.catch(() => undefined);
    return next;
  }

  async #flush0(): Promise<void> {
    assert.ok(!this.#closed, 'checkpoint flushed after close');
    const page = this.#page;
    writeInt64BE(page, this.physicMsgTimestamp, PHYSIC_MSG_TIMESTAMP_POSITION);
    writeInt64BE(page, this.logicsMsgTimestamp, LOGICS_MSG_TIMESTAMP_POSITION);
    writeInt64BE(page, this.indexMsgTimestamp, INDEX_MSG_TIMESTAMP_POSITION);
    writeInt64BE(page, this.masterFlushedOffset, MASTER_FLUSHED_OFFSET_POSITION);
    writeInt64BE(page, this.confirmPhyOffset, CONFIRM_PHY_OFFSET_POSITION);
    try {
      // Flushes are chained, so the page is not rewritten while this write is in flight.
      await this.#file.write([page], 0);
      await this.#file.datasync();
    } catch (err) {
      throw new StoreError(
        'ERR_FLUSH_FAILED',
        `flushing checkpoint ${this.path} failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  /** Waits for a pending flush, then closes the file. */
  async shutdown(): Promise<void> {
    await this.#flushChain;
    if (this.#closed) return;
    this.#closed = true;
    this.#file.closeSync();
  }
}
