import type { Logger } from '../logger.js';
import { PutMessageStatus } from '../status.js';
import type { FlushContext } from './flush-context.js';
import type { FlushRequest } from './group-commit-request.js';
import { ServiceThread } from './service-thread.js';

/**
 * RocketMQ's `GroupCommitService` for SYNC_FLUSH (store reference §4.9). Puts add requests to
 * `requestsWrite` and wake the service; at the end of every wait the lists are swapped, so the
 * service works on `requestsRead` while new requests gather in the other list. One fdatasync
 * serves every request whose `nextOffset` it covers: that is the group in group commit.
 *
 * A request is completed PUT_OK only when `flushedWhere >= nextOffset`, re-checked after every
 * flush: `flush` handles one file per call, so a request whose bytes went to a freshly rolled
 * segment needs a second flush, not a false timeout (RocketMQ #2274/#3408). With the write-buffer
 * pool the flush can only reach what CommitRealTimeService has committed, so the service retries
 * with 1 ms pauses instead of giving up at once (#7523). The request's deadline is enforced by
 * FlushDiskWatcher; this loop stops retrying as soon as a request is done.
 */

/** Wait between passes without a wakeup, ms (RocketMQ: 10). */
export const GROUP_COMMIT_WAIT_INTERVAL_MS = 10;
/** Attempts to make one request durable before it is reported FLUSH_DISK_TIMEOUT (#7524). */
export const FLUSH_RETRY_TIMES_MAX = 1000;
/** Pause between attempts that made no progress, ms. */
const FLUSH_RETRY_PAUSE_MS = 1;
/**
 * A group commit slower than this is logged, ms: the puts it serves waited that long for their
 * acknowledgement. RocketMQ's threshold for a slow flush; a healthy disk's fdatasync takes a few
 * ms, and `syncFlushTimeout` (5 s) is where the puts fail.
 */
export const GROUP_COMMIT_SLOW_LOG_THRESHOLD_MS = 500;

export class GroupCommitService extends ServiceThread {
  readonly #ctx: FlushContext;
  #requestsWrite: FlushRequest[] = [];
  #requestsRead: FlushRequest[] = [];
  /** The group `doCommit` is working on (kept visible to the watcher while it awaits the disk). */
  #requestsInProcess: FlushRequest[] = [];

  constructor(ctx: FlushContext, logger: Logger) {
    super(logger);
    this.#ctx = ctx;
  }

  getServiceName(): string {
    return 'GroupCommitService';
  }

  putRequest(request: FlushRequest): void {
    this.#requestsWrite.push(request);
    this.wakeup();
  }

  /** Requests not completed by this service yet (both lists). */
  pendingRequestCount(): number {
    return this.#requestsWrite.length + this.#requestsRead.length + this.#requestsInProcess.length;
  }

  /** The pending requests, oldest first in each list (for FlushDiskWatcher). */
  pendingRequests(): Iterable<Iterable<FlushRequest>> {
    return [this.#requestsInProcess, this.#requestsRead, this.#requestsWrite];
  }

  protected override onWaitEnd(): void {
    this.#swapRequests();
  }

  #swapRequests(): void {
    const read = this.#requestsRead;
    this.#requestsRead = this.#requestsWrite;
    this.#requestsWrite = read;
  }

  protected async run(): Promise<void> {
    while (!this.isStopped()) {
      await this.waitForRunning(GROUP_COMMIT_WAIT_INTERVAL_MS);
      await this.doCommit();
    }
    // Final pass: serve whatever arrived before the stop.
    this.#swapRequests();
    await this.doCommit();
    this.#swapRequests();
    await this.doCommit();
  }

  async doCommit(): Promise<void> {
    const mfq = this.#ctx.mappedFileQueue;
    const flushedBefore = mfq.flushedWhere;
    const begin = performance.now();
    const served = await this.#commitGroup();
    this.warnIfSlow(
      begin,
      GROUP_COMMIT_SLOW_LOG_THRESHOLD_MS,
      'a group commit (SYNC_FLUSH) to disk was slow',
      () => ({
        flushedBytes: mfq.flushedWhere - flushedBefore,
        flushedWhere: mfq.flushedWhere,
        requests: served,
      }),
    );
  }

  /** Makes the waiting group durable; returns how many requests it served. */
  async #commitGroup(): Promise<number> {
    const requests = this.#requestsRead;
    if (requests.length === 0) {
      // Nothing waits, but messages put with waitStoreMsgOK=false still need flushing.
      try {
        if (!this.#ctx.transientStorePoolEnabled) await this.#ctx.commitAll();
        await this.#ctx.flushOnce(0);
      } catch (err) {
        this.#ctx.onIoError(err);
      }
      return 0;
    }
    this.#requestsRead = [];
    this.#requestsInProcess = requests;
    this.#ctx.metrics?.onGroupCommitBatch(requests.length);
    const mfq = this.#ctx.mappedFileQueue;
    try {
      for (const request of requests) {
        let flushOK = mfq.flushedWhere >= request.nextOffset;
        for (let i = 0; i < FLUSH_RETRY_TIMES_MAX && !flushOK && !request.isDone(); i++) {
          if (!this.#ctx.transientStorePoolEnabled) await this.#ctx.commitAll();
          const noProgress = await this.#ctx.flushOnce(0);
          flushOK = mfq.flushedWhere >= request.nextOffset;
          if (!flushOK && noProgress) await this.sleep(FLUSH_RETRY_PAUSE_MS);
        }
        request.wakeupCustomer(flushOK ? PutMessageStatus.PUT_OK : PutMessageStatus.FLUSH_DISK_TIMEOUT);
      }
    } catch (err) {
      // onIoError fails every waiting request (with the status their bytes reached).
      this.#ctx.onIoError(err);
    } finally {
      this.#requestsInProcess = [];
    }
    return requests.length;
  }
}
