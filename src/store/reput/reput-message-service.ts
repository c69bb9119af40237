import type { StoreCheckpoint } from '../checkpoint/store-checkpoint.js';
import type { CommitLog } from '../commitlog/commit-log.js';
import { ServiceThread } from '../commitlog/service-thread.js';
import type { ConsumeQueue } from '../consumequeue/consume-queue.js';
import type { ConsumeQueueStore } from '../consumequeue/consume-queue-store.js';
import { StoreError } from '../errors.js';
import type { Logger } from '../logger.js';
import { checkMessageAndReturnSize } from '../message/message-decoder.js';
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

export class CommitLogDispatcher {
  readonly #consumeQueues: ConsumeQueueStore;
  readonly #checkpoint: StoreCheckpoint;
  readonly #onConsumeQueueError: (error: StoreError) => void;
  #failed: StoreError | null = null;
  /** The last queue a unit went to: records come in runs to one queue. */
  #lastQueue: ConsumeQueue | null = null;

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

  /**
   * One record becomes one unit (RocketMQ's BuildConsumeQueue). Returns the queue that took it
   * (to commit and announce), or null: no unit (a transaction half or rollback record), or a
   * refusal, which stops dispatch for good and is reported.
   */
  dispatch(
    topic: string,
    queueId: number,
    commitLogOffset: number,
    msgSize: number,
    tagsCode: number,
    storeTimestamp: number,
    consumeQueueOffset: number,
    sysFlag: number,
  ): ConsumeQueue | null {
    const tx = getTransactionValue(sysFlag);
    if (tx === MessageSysFlag.TRANSACTION_PREPARED_TYPE || tx === MessageSysFlag.TRANSACTION_ROLLBACK_TYPE) {
      return null;
    }
    let queue = this.#lastQueue;
    if (queue === null || queue.queueId !== queueId || queue.topic !== topic) {
      queue = this.#consumeQueues.findOrCreate(topic, queueId);
      this.#lastQueue = queue;
    }
    const result = queue.putMessagePositionInfo(commitLogOffset, msgSize, tagsCode, consumeQueueOffset);
    if (result === 'GAP' || result === 'FAILED') {
      const error = new StoreError(
        'ERR_CONSUME_QUEUE',
        result === 'GAP'
          ? `consume queue ${topic}/${queueId} holds ${queue.getWrittenOffsetInQueue()} units; ` +
              `the message at commit log offset ${commitLogOffset} has queue offset ${consumeQueueOffset}, ` +
              'which would leave a hole: dispatch stopped'
          : `consume queue ${topic}/${queueId} could not take the unit of queue offset ${consumeQueueOffset}`,
      );
      this.#failed ??= error;
      this.#onConsumeQueueError(error);
      return null;
    }
    this.#checkpoint.dispatchedLogicsMsgTimestamp = storeTimestamp;
    return queue;
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
  readonly dispatcher: CommitLogDispatcher;
  /** SYNC_FLUSH: dispatch only flushed bytes. */
  readonly sync: boolean;
  readonly logger: Logger;
  readonly onMessageArriving: MessageArrivingListener;
}

export class ReputMessageService extends ServiceThread {
  reputFromOffset = 0;
  readonly #commitLog: CommitLog;
  readonly #dispatcher: CommitLogDispatcher;
  readonly #sync: boolean;
  readonly #onMessageArriving: MessageArrivingListener;
  /** Queues that took units in the current pass. */
  readonly #touched = new Set<ConsumeQueue>();

  constructor(options: ReputMessageServiceOptions) {
    super(options.logger);
    this.#commitLog = options.commitLog;
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
    const ring = this.#commitLog.dispatchRing;
    const minOffset = mfq.getMinOffset();
    if (minOffset > this.reputFromOffset) this.reputFromOffset = minOffset;
    const touched = this.#touched;
    const end = this.getReputEndOffset();
    while (this.reputFromOffset < end && this.#dispatcher.failed === null) {
      ring.dropBefore(this.reputFromOffset);
      const first = ring.firstOffset();
      // The ring's first entry follows what was dispatched (directly, or after a BLANK).
      if (first >= 0 && (first === this.reputFromOffset || ring.previousEnd === this.reputFromOffset)) {
        if (!this.#dispatchFromRing(end, touched)) break;
        continue;
      }
      // Records the ring no longer holds (after a restart, or dropped): read them from the log,
      // up to where the ring takes over.
      const limit = first > this.reputFromOffset ? Math.min(end, first) : end;
      if (!(await this.#dispatchStep(limit, touched))) break;
    }
    if (touched.size === 0) return false;
    const queues = [...touched];
    touched.clear();
    await Promise.all(queues.map((queue) => queue.commit()));
    for (const queue of queues)
      this.#onMessageArriving(queue.topic, queue.queueId, queue.getMaxOffsetInQueue());
    return true;
  }

  /** Dispatches ring entries that are visible (end at or before `end`); false when none was. */
  #dispatchFromRing(end: number, touched: Set<ConsumeQueue>): boolean {
    const ring = this.#commitLog.dispatchRing;
    const dispatcher = this.#dispatcher;
    let dispatched = false;
    while (ring.length > 0 && dispatcher.failed === null) {
      const offset = ring.firstOffset();
      const size = ring.size;
      if (offset + size > end) break;
      const queue = dispatcher.dispatch(
        ring.topic,
        ring.queueId,
        offset,
        size,
        ring.tagsCode,
        ring.storeTimestamp,
        ring.queueOffset,
        ring.sysFlag,
      );
      if (queue !== null) touched.add(queue);
      ring.shift();
      this.reputFromOffset = offset + size;
      dispatched = true;
    }
    return dispatched;
  }

  /**
   * Reads one window from `reputFromOffset` and dispatches the whole records in it. Returns false
   * when nothing more can be done this pass.
   */
  async #dispatchStep(end: number, touched: Set<ConsumeQueue>): Promise<boolean> {
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
        const queue = this.#dispatcher.dispatch(
          result.topic,
          result.queueId,
          result.physicalOffset,
          result.size,
          result.tagsCode,
          result.storeTimestamp,
          result.queueOffset,
          result.sysFlag,
        );
        if (queue !== null) touched.add(queue);
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
