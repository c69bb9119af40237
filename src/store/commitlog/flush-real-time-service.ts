import type { Logger } from '../logger.js';
import type { FlushContext } from './flush-context.js';
import { ServiceThread } from './service-thread.js';

/**
 * RocketMQ's `FlushRealTimeService` for ASYNC_FLUSH (store reference §4.9): every
 * `flushIntervalCommitLog` (500 ms) it flushes if at least `flushCommitLogLeastPages` (4) pages are
 * dirty, and fully at least every `flushCommitLogThoroughInterval` (10 s). With
 * `flushCommitLogTimed` it sleeps through wakeups, as RocketMQ's `Thread.sleep` does. On shutdown
 * it flushes everything, up to 10 times until a flush makes no progress.
 */

/** Final flushes on shutdown (RocketMQ's RETRY_TIMES_OVER). */
export const FLUSH_RETRY_TIMES_OVER = 10;
/** A flush slower than this is logged, ms (RocketMQ logs above 500 ms). */
export const FLUSH_SLOW_LOG_THRESHOLD_MS = 500;
/**
 * Every this many thorough flushes, a progress line is logged (RocketMQ's
 * `printFlushProgress`). At info, not debug: with the 10 s `flushCommitLogThoroughInterval` that is
 * one line every 100 s, a heartbeat that tells an operator whether the disk keeps up with the
 * writes (`behindBytes`) without flooding the log.
 */
const PRINT_FLUSH_PROGRESS_EVERY = 10;

export class FlushRealTimeService extends ServiceThread {
  readonly #ctx: FlushContext;
  #lastFlushTimestamp = 0;
  #printTimes = 0;

  constructor(ctx: FlushContext, logger: Logger) {
    super(logger);
    this.#ctx = ctx;
  }

  getServiceName(): string {
    return 'FlushRealTimeService';
  }

  protected async run(): Promise<void> {
    const config = this.#ctx.config;
    while (!this.isStopped()) {
      let flushLeastPages = config.flushCommitLogLeastPages;
      let printFlushProgress = false;
      const now = Date.now();
      if (now >= this.#lastFlushTimestamp + config.flushCommitLogThoroughInterval) {
        this.#lastFlushTimestamp = now;
        flushLeastPages = 0;
        printFlushProgress = this.#printTimes++ % PRINT_FLUSH_PROGRESS_EVERY === 0;
      }
      if (config.flushCommitLogTimed) await this.sleep(config.flushIntervalCommitLog);
      else await this.waitForRunning(config.flushIntervalCommitLog);
      if (this.isStopped()) break;
      if (printFlushProgress) this.#printFlushProgress();
      const mfq = this.#ctx.mappedFileQueue;
      const flushedBefore = mfq.flushedWhere;
      const begin = performance.now();
      try {
        await this.#flush(flushLeastPages);
      } catch (err) {
        this.#ctx.onIoError(err);
      }
      this.warnIfSlow(begin, FLUSH_SLOW_LOG_THRESHOLD_MS, 'flushing the commit log to disk was slow', () => ({
        flushedBytes: mfq.flushedWhere - flushedBefore,
        flushedWhere: mfq.flushedWhere,
      }));
    }
    let noProgress = false;
    for (let i = 0; i < FLUSH_RETRY_TIMES_OVER && !noProgress; i++) {
      try {
        noProgress = await this.#flush(0);
      } catch (err) {
        this.#ctx.onIoError(err);
        break;
      }
    }
    this.#printFlushProgress();
  }

  async #flush(flushLeastPages: number): Promise<boolean> {
    if (!this.#ctx.transientStorePoolEnabled) await this.#ctx.commitAll();
    return this.#ctx.flushOnce(flushLeastPages);
  }

  #printFlushProgress(): void {
    const mfq = this.#ctx.mappedFileQueue;
    this.logger.info(
      { flushedWhere: mfq.flushedWhere, behindBytes: mfq.remainHowManyDataToFlush() },
      'commit log flush progress',
    );
  }
}
