/**
 * Typed errors of the broker's metadata (topics, subscription groups, consumer offsets).
 * Expected outcomes are return values (`null` for "no such topic and auto-create is off");
 * these are for everything else: a config file that cannot be read back, a write that did not
 * become durable, an argument the broker must refuse. Every error has a stable `code` that
 * callers can switch on, and keeps its `cause`.
 */

export type BrokerErrorCode =
  /** A config file (or its `.bak`) exists but cannot be parsed, and no usable copy is left. */
  | 'ERR_CONFIG_FILE_INVALID'
  /** A config file exists but reading it failed (EACCES, EIO, ...): not treated as "missing". */
  | 'ERR_CONFIG_FILE_READ'
  /** Persisting a config file failed: the new content is not known to be durable. */
  | 'ERR_CONFIG_FILE_WRITE'
  /** A topic name or topic config the broker refuses (TopicValidator's rules, queue counts). */
  | 'ERR_INVALID_TOPIC'
  /** A subscription group name or config the broker refuses. */
  | 'ERR_INVALID_GROUP'
  /** Any other argument out of range or of the wrong type (the message names it). */
  | 'ERR_INVALID_ARGUMENT'
  /** An admin request names a topic the broker does not have. */
  | 'ERR_TOPIC_NOT_FOUND'
  /** An admin request would create a topic that exists already. */
  | 'ERR_TOPIC_EXISTS'
  /** An admin request names a consumer group the broker does not know. */
  | 'ERR_GROUP_NOT_FOUND'
  /** An admin request would change a topic the broker owns (TBW102, retry, DLQ, rmq_sys_*). */
  | 'ERR_SYSTEM_TOPIC';

export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  readonly code: BrokerErrorCode;
  /** The file the error is about, for the `ERR_CONFIG_FILE_*` codes. */
  readonly file: string | undefined;

  constructor(code: BrokerErrorCode, message: string, options?: { cause?: unknown; file?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.file = options?.file;
  }
}
