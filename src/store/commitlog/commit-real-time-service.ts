import type { Logger } from '../logger.js';
import type { FlushContext } from './flush-context.js';
import { FLUSH_RETRY_TIMES_OVER } from './flush-real-time-service.js';
import { ServiceThread } from './service-thread.js';

/**
 * A commit (a pwrite into the page cache) slower than this is logged, ms (RocketMQ logs above
 * 500 ms too). Far above the 200 ms commit interval: the write buffers are falling behind.
 */
export const COMMIT_SLOW_LOG_THRESHOLD_MS = 500;

/**
 * RocketMQ's `CommitRealTimeService`, for the write-buffer pool (store reference §4.9): every
 * `commitIntervalCommitLog` (200 ms), or when a put wakes it, it writes the buffered bytes to the
 * file if at least `commitCommitLogLeastPages` (4) pages wait, and everything at least every
 * `commitCommitLogThoroughInterval` (200 ms). A commit that made progress wakes the flusher.
 * It never sleeps past the thorough deadline, so acknowledged bytes reach the file within one
 * thorough interval (what the pool promises to lose at most in a crash).
 */
export class CommitRealTimeService extends ServiceThread {
  readonly #ctx: FlushContext;
  #lastCommitTimestamp = 0;

  constructor(ctx: FlushContext, logger: Logger) {
    super(logger);
    this.#ctx = ctx;
  }

  getServiceName(): string {
    return 'CommitRealTimeService';
  }

  protected async run(): Promise<void> {
    const config = this.#ctx.config;
    while (!this.isStopped()) {
      let commitLeastPages = config.commitCommitLogLeastPages;
      const mfq = this.#ctx.mappedFileQueue;
      const committedBefore = mfq.committedWhere;
      const passBegin = performance.now();
      const begin = Date.now();
      if (begin >= this.#lastCommitTimestamp + config.commitCommitLogThoroughInterval) {
        this.#lastCommitTimestamp = begin;
        commitLeastPages = 0;
      }
      try {
        const noProgress = await this.#ctx.commitOnce(commitLeastPages);
        if (!noProgress) {
          this.#lastCommitTimestamp = Date.now();
          this.#ctx.wakeUpFlush();
        }
        this.warnIfSlow(
          passBegin,
          COMMIT_SLOW_LOG_THRESHOLD_MS,
          'committing the write buffers to the commit log was slow',
          () => ({
            committedBytes: mfq.committedWhere - committedBefore,
            committedWhere: mfq.committedWhere,
          }),
        );
      } catch (err) {
        this.#ctx.onIoError(err);
      }
      // Never past the thorough deadline: a put's wakeup just before it must not restart a whole
      // interval, or bytes acknowledged early would wait for the file nearly twice as long.
      const untilThoroughMs = this.#lastCommitTimestamp + config.commitCommitLogThoroughInterval - Date.now();
      await this.waitForRunning(Math.max(1, Math.min(config.commitIntervalCommitLog, untilThoroughMs)));
    }
    let noProgress = false;
    for (let i = 0; i < FLUSH_RETRY_TIMES_OVER && !noProgress; i++) {
      try {
        noProgress = await this.#ctx.commitOnce(0);
      } catch (err) {
        this.#ctx.onIoError(err);
        break;
      }
    }
  }
}
