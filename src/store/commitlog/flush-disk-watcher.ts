import type { StoreError } from '../errors.js';
import type { Logger } from '../logger.js';
import { PutMessageStatus } from '../status.js';
import { FixedDeque } from '../util/fixed-deque.js';
import type { FlushRequest } from './group-commit-request.js';
import { ServiceThread } from './service-thread.js';

/**
 * RocketMQ's `FlushDiskWatcher`: completes every request that is not durable by its deadline with
 * FLUSH_DISK_TIMEOUT, so a stuck disk gives the caller an answer instead of a hang. Requests
 * arrive in put order with the same timeout, so deadlines are in order too: only the oldest
 * pending one ever needs looking at.
 *
 * Requests reach it in one of two ways: `add` (RocketMQ's way: the watcher keeps its own queue),
 * or sources given at construction: queues their owners already keep, oldest first, which the
 * watcher reads every 10 ms. The commit log uses sources, so a put costs no second queue entry.
 */

/** How often the oldest pending request is looked at, ms (RocketMQ sleeps up to 10 ms). */
export const FLUSH_DISK_WATCHER_POLL_INTERVAL_MS = 10;
/** With nothing to watch, the loop sleeps until the next `add` wakes it. */
const IDLE_WAIT_MS = 60 * 1000;

type AnyRequest = FlushRequest;

export type TimeoutStatusOf = (request: AnyRequest) => PutMessageStatus;

/** Queues of pending requests, each oldest first, that the watcher reads but does not own. */
export type RequestSources = () => Iterable<Iterable<AnyRequest>>;

export class FlushDiskWatcher extends ServiceThread {
  readonly #queue = new FixedDeque<AnyRequest>(1024);
  readonly #timeoutStatusOf: TimeoutStatusOf;
  readonly #sources: RequestSources | null;
  /** True while the loop sleeps with nothing pending. */
  #idle = true;

  /**
   * `timeoutStatusOf` chooses the status of an expired request (FLUSH_DISK_TIMEOUT by default;
   * the commit log answers SERVICE_NOT_AVAILABLE for bytes that never reached the file).
   */
  constructor(
    logger: Logger,
    timeoutStatusOf: TimeoutStatusOf = () => PutMessageStatus.FLUSH_DISK_TIMEOUT,
    sources: RequestSources | null = null,
  ) {
    super(logger);
    this.#timeoutStatusOf = timeoutStatusOf;
    this.#sources = sources;
  }

  getServiceName(): string {
    return 'FlushDiskWatcher';
  }

  add(request: AnyRequest): void {
    const wasEmpty = this.#queue.isEmpty();
    this.#queue.push(request);
    if (wasEmpty) this.wakeup();
  }

  /** Completes every pending request at once (an I/O error stopped writes). */
  failAll(statusOf: TimeoutStatusOf, error: StoreError): void {
    for (const request of this.#queue) {
      if (!request.isDone()) request.wakeupCustomer(statusOf(request), error);
    }
    for (const source of this.#sources?.() ?? []) {
      for (const request of source) {
        if (!request.isDone()) request.wakeupCustomer(statusOf(request), error);
      }
    }
  }

  /** Requests not yet drained (done ones at the head are dropped on the next pass). */
  queueSize(): number {
    return this.#queue.size;
  }

  protected async run(): Promise<void> {
    while (!this.isStopped()) {
      const waitMs = this.checkTimeouts(performance.now());
      await this.waitForRunning(waitMs);
    }
    // Whatever is left at shutdown was completed by the flush services' final passes or times out now.
    for (const request of this.#queue.drain()) {
      if (!request.isDone()) request.wakeupCustomer(this.#timeoutStatusOf(request));
    }
    for (const source of this.#sources?.() ?? []) {
      for (const request of source) {
        if (!request.isDone()) request.wakeupCustomer(this.#timeoutStatusOf(request));
      }
    }
  }

  /** Drops done requests, times out expired ones; returns how long to wait before looking again. */
  checkTimeouts(now: number): number {
    let waitMs = IDLE_WAIT_MS;
    for (let head = this.#queue.peek(); head !== undefined; head = this.#queue.peek()) {
      if (head.isDone()) {
        this.#queue.shift();
        continue;
      }
      const remaining = head.deadline - now;
      if (remaining > 0.5) {
        waitMs = Math.min(FLUSH_DISK_WATCHER_POLL_INTERVAL_MS, Math.ceil(remaining));
        break;
      }
      this.#queue.shift();
      head.wakeupCustomer(this.#timeoutStatusOf(head));
    }
    for (const source of this.#sources?.() ?? []) {
      for (const request of source) {
        if (request.isDone()) continue;
        const remaining = request.deadline - now;
        if (remaining > 0.5) {
          // Sources are polled: their owners add without telling us.
          waitMs = Math.min(waitMs, FLUSH_DISK_WATCHER_POLL_INTERVAL_MS, Math.ceil(remaining));
          break;
        }
        request.wakeupCustomer(this.#timeoutStatusOf(request));
      }
    }
    this.#idle = waitMs === IDLE_WAIT_MS;
    return waitMs;
  }

  /**
   * For owners of sources: call after adding a request. Wakes the watcher only when it sleeps
   * with nothing to watch, so a busy store pays one boolean test per put.
   */
  wakeupIfIdle(): void {
    if (this.#idle) {
      this.#idle = false;
      this.wakeup();
    }
  }
}
