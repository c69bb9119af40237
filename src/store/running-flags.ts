import type { StoreError } from './errors.js';

/**
 * RocketMQ's `RunningFlags`: a bit set saying whether the store may be read and written, plus
 * (our addition) the error that turned a bit on, so "not writeable" always comes with a why.
 */
export const RunningFlagBits = {
  NOT_READABLE: 1,
  NOT_WRITEABLE: 2,
  WRITE_LOGICS_QUEUE_ERROR: 4,
  WRITE_INDEX_FILE_ERROR: 8,
  DISK_FULL: 16,
  FENCED: 32,
  LOGIC_DISK_FULL: 64,
} as const;

const NOT_WRITEABLE_MASK =
  RunningFlagBits.NOT_WRITEABLE |
  RunningFlagBits.WRITE_LOGICS_QUEUE_ERROR |
  RunningFlagBits.DISK_FULL |
  RunningFlagBits.WRITE_INDEX_FILE_ERROR |
  RunningFlagBits.FENCED |
  RunningFlagBits.LOGIC_DISK_FULL;

export class RunningFlags {
  #flagBits = 0;
  #notWriteableCause: StoreError | null = null;
  #diskFullCause: StoreError | null = null;

  get flagBits(): number {
    return this.#flagBits;
  }

  /** The first error that stopped writes, or null while the store is writeable. */
  get cause(): StoreError | null {
    return this.#notWriteableCause ?? this.#diskFullCause;
  }

  isWriteable(): boolean {
    return (this.#flagBits & NOT_WRITEABLE_MASK) === 0;
  }

  /** RocketMQ's `isCQWriteable`: no error stopped consume queue writes (a full disk does not count). */
  isCQWriteable(): boolean {
    return (
      (this.#flagBits & (RunningFlagBits.NOT_WRITEABLE | RunningFlagBits.WRITE_LOGICS_QUEUE_ERROR)) === 0
    );
  }

  isReadable(): boolean {
    return (this.#flagBits & RunningFlagBits.NOT_READABLE) === 0;
  }

  /** Stops writes for good (until the store is reopened): an fsync or write error. */
  makeNotWriteable(cause: StoreError): void {
    this.#flagBits |= RunningFlagBits.NOT_WRITEABLE;
    this.#notWriteableCause ??= cause;
  }

  /** Stops writes for good: a consume queue could not take a unit (RocketMQ's logics queue error). */
  makeLogicsQueueError(cause: StoreError): void {
    this.#flagBits |= RunningFlagBits.WRITE_LOGICS_QUEUE_ERROR;
    this.#notWriteableCause ??= cause;
  }

  /** Stops writes until `clearDiskFull()`: a commit hit ENOSPC/EDQUOT. */
  makeDiskFull(cause: StoreError): void {
    this.#flagBits |= RunningFlagBits.DISK_FULL;
    this.#diskFullCause ??= cause;
  }

  clearDiskFull(): void {
    if ((this.#flagBits & RunningFlagBits.DISK_FULL) === 0) return;
    this.#flagBits &= ~RunningFlagBits.DISK_FULL;
    this.#diskFullCause = null;
  }

  isDiskFull(): boolean {
    return (this.#flagBits & RunningFlagBits.DISK_FULL) !== 0;
  }
}
