import type { Logger } from '../logger.js';

/**
 * RocketMQ's `ServiceThread` on the event loop (DESIGN.md §3, store reference §4.1). Each service
 * is an async loop instead of a thread.
 *
 * - `wakeup()` sets `notified` and ends the current wait. The flag is what makes a wakeup that
 *   arrives while the service is busy (awaiting an fdatasync) count: the next `waitForRunning`
 *   sees it and returns at once, so requests queued during a flush are served without waiting a
 *   full interval. Repeated wakeups collapse into one.
 * - `waitForRunning(ms)` consumes a pending wakeup, or waits for one or for the timeout; either
 *   way it then calls `onWaitEnd()` exactly once (GroupCommitService swaps its lists there).
 * - `shutdown()` stops the loop, wakes it, and waits for its final pass.
 *
 * There is no check-then-reset race as in Java (#5710): JS runs one callback at a time.
 */
export abstract class ServiceThread {
  protected readonly logger: Logger;
  #stopped = false;
  #notified = false;
  /** Ends the current `waitForRunning` early. */
  #waitEnd: (() => void) | null = null;
  /** Ends the current `sleep` early (only shutdown does). */
  #sleepEnd: (() => void) | null = null;
  #loop: Promise<void> | null = null;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  abstract getServiceName(): string;

  /** The service loop: runs until `isStopped()`, then does its final work and returns. */
  protected abstract run(): Promise<void>;

  /**
   * Logs one pass that took longer than `thresholdMs` (from `beginMs`, a `performance.now()`):
   * its duration, the threshold and `fields` (what it moved), under `msg`.
   */
  protected warnIfSlow(beginMs: number, thresholdMs: number, msg: string, fields: () => object): void {
    const durationMs = performance.now() - beginMs;
    if (durationMs > thresholdMs) {
      this.logger.warn({ durationMs: Math.round(durationMs), ...fields(), thresholdMs }, msg);
    }
  }

  start(): void {
    if (this.#loop !== null) return;
    this.#stopped = false;
    this.#loop = this.run().catch((err: unknown) => {
      this.logger.error({ err, service: this.getServiceName() }, 'service loop ended with an error');
    });
  }

  isStarted(): boolean {
    return this.#loop !== null;
  }

  isStopped(): boolean {
    return this.#stopped;
  }

  wakeup(): void {
    if (this.#notified) return;
    this.#notified = true;
    const end = this.#waitEnd;
    if (end !== null) end();
  }

  protected async waitForRunning(intervalMs: number): Promise<void> {
    if (this.#notified) {
      this.#notified = false;
      this.onWaitEnd();
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(end, intervalMs);
      function end(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#waitEnd = end;
    });
    this.#waitEnd = null;
    this.#notified = false;
    this.onWaitEnd();
  }

  /** Called once at the end of every `waitForRunning`. */
  protected onWaitEnd(): void {}

  /** RocketMQ's `Thread.sleep`: ignores wakeups; only shutdown cuts it short. */
  protected async sleep(ms: number): Promise<void> {
    if (this.#stopped) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(end, ms);
      function end(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#sleepEnd = end;
    });
    this.#sleepEnd = null;
  }

  /** Stops the loop and waits for its final pass. Safe to call more than once. */
  async shutdown(): Promise<void> {
    this.#stopped = true;
    this.wakeup();
    const sleepEnd = this.#sleepEnd;
    if (sleepEnd !== null) sleepEnd();
    if (this.#loop !== null) await this.#loop;
  }
}
