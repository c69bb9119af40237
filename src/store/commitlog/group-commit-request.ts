import type { StoreError } from '../errors.js';
import type { PutMessageStatus } from '../status.js';
import { burstMonotonicMs } from '../util/burst-clock.js';

/**
 * RocketMQ's `GroupCommitRequest`: a put waiting for its bytes to reach a durability level.
 * `nextOffset` is the end of the put's bytes (wroteOffset + wroteBytes); the request is done
 * when the log is flushed (or, for a commit wait, committed) at least that far. The first
 * completion wins; FlushDiskWatcher and the flush service may race, later ones are ignored.
 *
 * The promise resolves to whatever `resultOf` makes of the final status, so the put path hands
 * its caller the request's own promise instead of chaining another one per message.
 */
export type DurabilityLevel =
  /** Wait for fdatasync (SYNC_FLUSH with waitStoreMsgOK). */
  | 'flush'
  /** Wait for pwrite to the file: the page cache (ASYNC_FLUSH without the pool). */
  | 'commit';

export interface RequestOutcome {
  readonly status: PutMessageStatus;
  readonly error: StoreError | null;
}

/** What the services and the watcher see of a request, whatever it resolves to. */
export interface FlushRequest {
  readonly nextOffset: number;
  readonly deadline: number;
  readonly level: DurabilityLevel;
  isDone(): boolean;
  wakeupCustomer(status: PutMessageStatus, error?: StoreError | null): boolean;
}

let capturedResolve: ((value: never) => void) | null = null;
function captureResolve(resolve: (value: never) => void): void {
  capturedResolve = resolve;
}

const outcomeOf = (status: PutMessageStatus, error: StoreError | null): RequestOutcome => ({ status, error });

export class GroupCommitRequest<T = RequestOutcome> implements FlushRequest {
  readonly nextOffset: number;
  /** `performance.now()` ms after which the request times out. */
  readonly deadline: number;
  readonly level: DurabilityLevel;
  readonly promise: Promise<T>;
  readonly #resultOf: (status: PutMessageStatus, error: StoreError | null) => T;
  #resolve!: (value: T) => void;
  #status: PutMessageStatus | null = null;

  constructor(
    nextOffset: number,
    timeoutMs: number,
    level: DurabilityLevel,
    resultOf?: (status: PutMessageStatus, error: StoreError | null) => T,
    now: number = burstMonotonicMs(),
  ) {
    this.nextOffset = nextOffset;
    this.deadline = now + timeoutMs;
    this.level = level;
    this.#resultOf =
      resultOf ?? (outcomeOf as unknown as (status: PutMessageStatus, error: StoreError | null) => T);
    // A module-level executor: one closure less per put than an arrow function here.
    this.promise = new Promise(captureResolve);
    this.#resolve = capturedResolve as (value: T) => void;
  }

  isDone(): boolean {
    return this.#status !== null;
  }

  /** The status it completed with, or null while pending. */
  get status(): PutMessageStatus | null {
    return this.#status;
  }

  /** RocketMQ's `wakeupCustomer`. Returns false when the request was already completed. */
  wakeupCustomer(status: PutMessageStatus, error: StoreError | null = null): boolean {
    if (this.#status !== null) return false;
    this.#status = status;
    this.#resolve(this.makeResult(status, error));
    return true;
  }

  /** What the promise resolves to; the put path overrides it rather than pass a closure per put. */
  protected makeResult(status: PutMessageStatus, error: StoreError | null): T {
    return this.#resultOf(status, error);
  }
}
