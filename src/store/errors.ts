/**
 * Typed errors of the store. Expected outcomes of a put are status values (`PutMessageStatus`);
 * these are for everything else: a bad configuration, a locked directory, a failed fsync.
 * Every error has a stable `code` that callers can switch on, and keeps its `cause`.
 */

export type StoreErrorCode =
  /** A configuration value is missing, unknown, of the wrong type or out of range. */
  | 'ERR_STORE_CONFIG'
  /** The store directory (or one of its sub-directories) cannot be created or written. */
  | 'ERR_STORE_PATH_NOT_WRITABLE'
  /** Another store instance (this process or another) holds the directory's lock. */
  | 'ERR_STORE_LOCKED'
  /** A file on disk does not match what the store expects (size, name, layout). */
  | 'ERR_STORE_FILE_INVALID'
  /** fdatasync failed: the bytes are not known to be durable and the store stopped writing. */
  | 'ERR_FLUSH_FAILED'
  /** pwrite failed: the bytes did not reach the file and the store stopped writing. */
  | 'ERR_COMMIT_FAILED'
  /** The disk is full (ENOSPC/EDQUOT): writes are refused until a commit succeeds again. */
  | 'ERR_DISK_FULL'
  /** A new segment file could not be created. */
  | 'ERR_CREATE_MAPPED_FILE'
  /** The store was shut down. */
  | 'ERR_STORE_SHUTDOWN'
  /** Shutdown gave up waiting for the disk to finish the final commits and flushes. */
  | 'ERR_SHUTDOWN_TIMEOUT'
  /** A consume queue could not take a unit (a hole, or no file): dispatch stopped. */
  | 'ERR_CONSUME_QUEUE'
  /** A read API was called with an argument it cannot take (the message names it). */
  | 'ERR_INVALID_ARGUMENT';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The errno code of a Node system error (`ENOSPC`, `EIO`, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** True for the errno codes that mean "no space left": the only write errors worth retrying. */
export function isDiskFullError(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}
