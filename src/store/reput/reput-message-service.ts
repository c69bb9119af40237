import type { StoreCheckpoint } from '../checkpoint/store-checkpoint.js';
import type { CommitLog } from '../commitlog/commit-log.js';
import { ServiceThread } from '../commitlog/service-thread.js';
import type { ConsumeQueueStore } from '../consumequeue/consume-queue-store.js';
import { StoreError } from '../errors.js';
import type { Logger } from '../logger.js';
import { type CheckedRecord, checkMessageAndReturnSize } from '../message/message-decoder.js';
import { getTransactionValue, MessageSysFlag } from '../message/message-sys-flag.js';

/**
 * Dispatch (store reference §4.12): commit log records become consume queue units.
 *
 * - `CommitLogDispatcher` (RocketMQ's BuildConsumeQueue) turns one record into one unit;
 *   recovery and ReputMessageService both use it. Transaction PREPARED and ROLLBACK records
 *   get no unit, as in RocketMQ.
 * - `ReputMessageService` follows the commit log from `reputFromOffset` and dispatches in order,
 *   but never past what a reader may see: under SYNC_FLUSH the flushed offset (RocketMQ #8239:
 *   a consumer must not read, and commit its offset past, a message a power loss then erases),
 *   otherwise the committed offset. After each pass it commits the touched queues and tells
 *   the arrival listener, which wakes waiting readers.
 */

export interface DispatchRequest {
  readonly topic: string;
  readonly queueId: number;
  readonly commitLogOffset: number;
  readonly msgSize: number;
  readonly tagsCode: number;
  readonly storeTimestamp: number;
  readonly consumeQueueOffset: number;
  readonly sysFlag: number;
}

export function dispatchRequestOf(record: CheckedRecord): DispatchRequest {
  return {
    topic: record.topic,
    queueId: record.queueId,
    commitLogOffset: record.physicalOffset,
    msgSize: record.size,
    tagsCode: record.tagsCode,
    storeTimestamp: record.storeTimestamp,
    consumeQueueOffset: record.queueOffset,
    sysFlag: record.sysFlag,
  };
}

export class CommitLogDispatcher {
  readonly #consumeQueues: ConsumeQueueStore;
  readonly #checkpoint: StoreCheckpoint;
  readonly #onConsumeQueueError: (error: StoreError) => void;
  #failed: StoreError | null = null;

  constructor(
    consumeQueues: ConsumeQueueStore,
    checkpoint: StoreCheckpoint,
    onConsumeQueueError: (error: StoreError) => void,
  ) {
    this.#consumeQueues = consumeQueues;
    this.#checkpoint = checkpoint;
    this.#onConsumeQueueError = onConsumeQueueError;
  }

  /** The error that stopped dispatch, or null. */
  get failed(): StoreError | null {
    return this.#failed;
  }

  /** Returns the queue that took a unit (to commit and announce), or null. */
  dispatch(request: DispatchRequest): { topic: string; queueId: number } | null {
    const tx = getTransactionValue(request.sysFlag);
    if (tx === MessageSysFlag.TRANSACTION_PREPARED_TYPE || tx === MessageSysFlag.TRANSACTION_ROLLBACK_TYPE) {
      return null;
    }
    const queue = this.#consumeQueues.findOrCreate(request.topic, request.queueId);
    const result = queue.putMessagePositionInfo(
      request.commitLogOffset,
      request.msgSize,
      request.tagsCode,
      request.consumeQueueOffset,
    );
    if (result === 'GAP' || result === 'FAILED') {
      const error = new StoreError(
        'ERR_CONSUME_QUEUE',
        result === 'GAP'
          ? `consume queue ${request.topic}/${request.queueId} holds ${queue.getWrittenOffsetInQueue()} units; ` +
              `the message at commit log offset ${request.commitLogOffset} has queue offset ${request.consumeQueueOffset}, ` +
              'which would leave a hole: dispatch stopped'
          : `consume queue ${request.topic}/${request.queueId} could not take the unit of queue offset ${request.consumeQueueOffset}`,
      );
      this.#failed ??= error;
      this.#onConsumeQueueError(error);
      return null;
    }
    this.#checkpoint.logicsMsgTimestamp = request.storeTimestamp;
    return { topic: request.topic, queueId: request.queueId };
  }
}

/** Called after a dispatch pass made units readable: topic, queue id, new max offset. */
export type MessageArrivingListener = (topic: string, queueId: number, maxOffsetInQueue: number) => void;

/** Commit log bytes read per dispatch step. */
export const REPUT_READ_WINDOW_BYTES = 4 * 1024 * 1024;
/** Without a wakeup the service still looks this often, ms (RocketMQ sleeps 1 ms between passes). */
const REPUT_IDLE_WAIT_MS = 100;
/** Shutdown waits at most this many passes for dispatch to catch up (RocketMQ: 50 x 100 ms). */
const SHUTDOWN_CATCH_UP_PASSES = 50;

export interface ReputMessageServiceOptions {
  readonly commitLog: CommitLog;
  readonly consumeQueues: ConsumeQueueStore;
  readonly dispatcher: CommitLogDispatcher;
  /** SYNC_FLUSH: dispatch only flushed bytes. */
  readonly sync: boolean;
  readonly logger: Logger;
  readonly onMessageArriving: MessageArrivingListener;
}

export class ReputMessageService extends ServiceThread {
  reputFromOffset = 0;
  readonly #commitLog: CommitLog;
  readonly #consumeQueues: ConsumeQueueStore;
  readonly #dispatcher: CommitLogDispatcher;
  readonly #sync: boolean;
  readonly #onMessageArriving: MessageArrivingListener;

  constructor(options: ReputMessageServiceOptions) {
    super(options.logger);
    this.#commitLog = options.commitLog;
    this.#consumeQueues = options.consumeQueues;
    this.#dispatcher = options.dispatcher;
    this.#sync = options.sync;
    this.#onMessageArriving = options.onMessageArriving;
  }

  getServiceName(): string {
    return 'ReputMessageService';
  }

  /** How far dispatch may go: flushed bytes under SYNC_FLUSH (#8239), else committed ones. */
  getReputEndOffset(): number {
    const mfq = this.#commitLog.mappedFileQueue;
    return this.#sync ? mfq.flushedWhere : mfq.committedWhere;
  }

  /** Readable bytes not dispatched yet (RocketMQ's `dispatchBehindBytes`). */
  dispatchBehindBytes(): number {
    return Math.max(0, this.getReputEndOffset() - this.reputFromOffset);
  }

  protected async run(): Promise<void> {
    while (!this.isStopped()) {
      await this.waitForRunning(REPUT_IDLE_WAIT_MS);
      await this.#passSafely();
    }
    for (let i = 0; i < SHUTDOWN_CATCH_UP_PASSES && this.dispatchBehindBytes() > 0; i++) {
      if (!(await this.#passSafely())) break;
    }
  }

  async #passSafely(): Promise<boolean> {
    try {
      return await this.doReput();
    } catch (err) {
      this.logger.error({ err, reputFromOffset: this.reputFromOffset }, 'dispatch pass failed');
      return false;
    }
  }

  /** One pass up to the current end offset. Returns true when it dispatched anything. */
  async doReput(): Promise<boolean> {
    const mfq = this.#commitLog.mappedFileQueue;
    const minOffset = mfq.getMinOffset();
    if (minOffset > this.reputFromOffset) this.reputFromOffset = minOffset;
    const touched = new Map<string, { topic: string; queueId: number }>();
    const end = this.getReputEndOffset();
    while (this.reputFromOffset < end && this.#dispatcher.failed === null) {
      const step = await this.#dispatchStep(end, touched);
      if (!step) break;
    }
    if (touched.size === 0) return false;
    await this.#consumeQueues.commitAll();
    for (const { topic, queueId } of touched.values()) {
      const queue = this.#consumeQueues.find(topic, queueId);
      if (queue !== null) this.#onMessageArriving(topic, queueId, queue.getMaxOffsetInQueue());
    }
    return true;
  }

  /**
   * Reads one window from `reputFromOffset` and dispatches the whole records in it. Returns false
   * when nothing more can be done this pass.
   */
  async #dispatchStep(
    end: number,
    touched: Map<string, { topic: string; queueId: number }>,
  ): Promise<boolean> {
    const mfq = this.#commitLog.mappedFileQueue;
    const file = mfq.findMappedFileByOffset(this.reputFromOffset);
    if (file === null) return false;
    const position = this.reputFromOffset - file.fileFromOffset;
    const limit = Math.min(file.getReadPosition(), end - file.fileFromOffset);
    let length = Math.min(limit - position, REPUT_READ_WINDOW_BYTES);
    if (length <= 0) return false;
    let bytes = await file.selectMappedBuffer(position, length);
    if (bytes === null) return false;
    // A record larger than the window (a 4 MiB body) is read whole.
    const firstSize = length >= 4 ? bytes.readInt32BE(0) : 0;
    if (firstSize > length && position + firstSize <= limit) {
      length = firstSize;
      bytes = await file.selectMappedBuffer(position, length);
      if (bytes === null) return false;
    }
    let offset = 0;
    while (offset < length) {
      const result = checkMessageAndReturnSize(bytes, offset, length, {
        checkCRC: false,
        expectedPhysicalOffset: file.fileFromOffset + position + offset,
      });
      if (result.kind === 'record') {
        const queue = this.#dispatcher.dispatch(dispatchRequestOf(result));
        if (queue !== null) touched.set(`${queue.topic}\u0000${queue.queueId}`, queue);
        offset += result.size;
        continue;
      }
      if (result.kind === 'blank') {
        // The segment ends here; the next one starts at the next segment's offset.
        this.reputFromOffset = file.fileFromOffset + file.fileSize;
        return true;
      }
      const left = length - offset;
      const claimed = left >= 4 ? bytes.readInt32BE(offset) : 0;
      if (left < 8 || claimed > left) {
        // Not all of the record is in this window: read it again whole next step, or, if it is
        // not all readable yet, stop until it is.
        this.reputFromOffset = file.fileFromOffset + position + offset;
        return offset > 0 && position + offset + Math.max(claimed, 8) <= limit;
      }
      // Recovery verified everything below its end and puts write only whole records, so this is
      // damage behind the reader's back. RocketMQ skips the rest of the segment; so do we.
      this.logger.error(
        { offset: file.fileFromOffset + position + offset, reason: result.reason },
        'dispatch found an invalid record in readable commit log bytes; skipping the rest of its segment',
      );
      this.reputFromOffset = file.fileFromOffset + file.fileSize;
      return mfq.findMappedFileByOffset(this.reputFromOffset) !== null;
    }
    this.reputFromOffset = file.fileFromOffset + position + offset;
    return true;
  }
}
