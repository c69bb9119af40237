import path from 'node:path';
import { StoreError } from '../errors.js';
import { FlushDiskType } from '../status.js';

/**
 * RocketMQ's `MessageStoreConfig`: the same key names and the same defaults (store reference §3),
 * so a RocketMQ operator's `broker.conf` values mean the same here. Only the keys this store
 * implements are accepted; an unknown key is an error rather than a silently ignored typo.
 */
export interface MessageStoreConfig {
  /** Root of the store: `commitlog/`, `checkpoint`, `abort`, `lock`. Required. */
  readonly storePathRootDir: string;
  /** Commit log directory. Default `{storePathRootDir}/commitlog`. */
  readonly storePathCommitLog: string;
  /** Size of one commit log segment in bytes. Default 1 GiB. */
  readonly mappedFileSizeCommitLog: number;
  /** SYNC_FLUSH acknowledges after fdatasync (group commit); ASYNC_FLUSH after the page cache. */
  readonly flushDiskType: FlushDiskType;
  /** FlushRealTimeService period, ms. */
  readonly flushIntervalCommitLog: number;
  /** Dirty 4 KiB pages needed before a periodic flush. */
  readonly flushCommitLogLeastPages: number;
  /** A full flush (least pages 0) happens at least this often, ms. */
  readonly flushCommitLogThoroughInterval: number;
  /** true: FlushRealTimeService sleeps its interval (ignores wakeups); false: waits for wakeups. */
  readonly flushCommitLogTimed: boolean;
  /** CommitRealTimeService period (write-buffer pool only), ms. */
  readonly commitIntervalCommitLog: number;
  readonly commitCommitLogLeastPages: number;
  readonly commitCommitLogThoroughInterval: number;
  /** SYNC_FLUSH: a put not durable within this many ms completes with FLUSH_DISK_TIMEOUT. */
  readonly syncFlushTimeout: number;
  /** Acknowledge ASYNC_FLUSH puts once in a write buffer; CommitRealTimeService writes them. */
  readonly transientStorePoolEnable: boolean;
  /** Number of write buffers in the TransientStorePool. */
  readonly transientStorePoolSize: number;
  /** Largest message body in bytes; the whole record may be 64 KiB more. */
  readonly maxMessageSize: number;
  /** Verify body CRCs when recovering (and when reading). */
  readonly checkCRCOnRecover: boolean;
  /** Use the V2 record layout (2-byte topic length) for topics longer than 127 bytes. */
  readonly autoMessageVersionOnTopicLen: boolean;
  /** Append a `__CRC32#` property holding a CRC of the whole record. */
  readonly enabledAppendPropCRC: boolean;
  /** Verify records by that whole-record CRC instead of the body CRC. */
  readonly forceVerifyPropCRC: boolean;
  /** A commit that has made no progress for this long makes puts return OS_PAGE_CACHE_BUSY, ms. */
  readonly osPageCacheBusyTimeOutMills: number;
  /** With the pool on, every put wakes CommitRealTimeService. */
  readonly wakeCommitWhenPutMessage: boolean;
  /** With the pool off, every put wakes FlushRealTimeService (only matters when not timed). */
  readonly wakeFlushWhenPutMessage: boolean;
  /** Our addition (RocketMQ takes it from the broker config): the default store host `ip:port`. */
  readonly storeHost: string;
  /** Size of one consume queue segment in bytes; rounded up to a whole number of 20-byte units. */
  readonly mappedFileSizeConsumeQueue: number;
  /** FlushConsumeQueueService period, ms. */
  readonly flushIntervalConsumeQueue: number;
  /** Dirty 4 KiB pages needed before a periodic consume queue flush. */
  readonly flushConsumeQueueLeastPages: number;
  /** A full consume queue flush (least pages 0) happens at least this often, ms. */
  readonly flushConsumeQueueThoroughInterval: number;
  /** getMessage limits for messages still in memory (near the end of the log): bytes and count. */
  readonly maxTransferBytesOnMessageInMemory: number;
  readonly maxTransferCountOnMessageInMemory: number;
  /** getMessage limits for messages that have to come from disk: bytes and count. */
  readonly maxTransferBytesOnMessageInDisk: number;
  readonly maxTransferCountOnMessageInDisk: number;
  /** A message is "in memory" when it is within this share (%) of RAM from the end of the log. */
  readonly accessMessageInMemoryMaxRatio: number;
}

export type MessageStoreConfigInput = Partial<MessageStoreConfig> & { storePathRootDir: string };

/** The smallest commit log segment we accept: room for one small record and its BLANK. */
export const MAPPED_FILE_SIZE_COMMIT_LOG_MIN_BYTES = 128;
/** JS numbers are exact to 2^53; segment sizes stay far below. */
export const MAPPED_FILE_SIZE_COMMIT_LOG_MAX_BYTES = 2 ** 40;
/** RocketMQ resizes its encoder only for values of at least 10. */
export const MAX_MESSAGE_SIZE_MIN_BYTES = 10;
/** The body length is a signed int32 on disk; we stop well before it. */
export const MAX_MESSAGE_SIZE_MAX_BYTES = 2 ** 30;
export const INTERVAL_MAX_MS = 24 * 60 * 60 * 1000;
/** The smallest consume queue segment: a few units, so tests can roll constantly. */
export const MAPPED_FILE_SIZE_CONSUME_QUEUE_MIN_BYTES = 20 * 4;
/** One consume queue unit: commit log offset 8, size 4, tags code 8. */
export const CQ_STORE_UNIT_SIZE_BYTES = 20;

export type ConfigRule =
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'bool' }
  | { readonly kind: 'string' }
  | { readonly kind: 'enum'; readonly values: readonly string[] };

type Rule = ConfigRule;
const intRule = (min: number, max: number): Rule => ({ kind: 'int', min, max });
const BOOL: Rule = { kind: 'bool' };
const STRING: Rule = { kind: 'string' };

const DEFAULTS: Omit<MessageStoreConfig, 'storePathRootDir' | 'storePathCommitLog'> = {
  mappedFileSizeCommitLog: 1024 * 1024 * 1024,
  flushDiskType: FlushDiskType.ASYNC_FLUSH,
  flushIntervalCommitLog: 500,
  flushCommitLogLeastPages: 4,
  flushCommitLogThoroughInterval: 1000 * 10,
  flushCommitLogTimed: true,
  commitIntervalCommitLog: 200,
  commitCommitLogLeastPages: 4,
  commitCommitLogThoroughInterval: 200,
  syncFlushTimeout: 1000 * 5,
  transientStorePoolEnable: false,
  transientStorePoolSize: 5,
  maxMessageSize: 1024 * 1024 * 4,
  checkCRCOnRecover: true,
  autoMessageVersionOnTopicLen: true,
  enabledAppendPropCRC: false,
  forceVerifyPropCRC: false,
  osPageCacheBusyTimeOutMills: 1000,
  wakeCommitWhenPutMessage: true,
  wakeFlushWhenPutMessage: false,
  storeHost: '127.0.0.1:10911',
  mappedFileSizeConsumeQueue: 300000 * 20,
  flushIntervalConsumeQueue: 1000,
  flushConsumeQueueLeastPages: 2,
  flushConsumeQueueThoroughInterval: 1000 * 60,
  maxTransferBytesOnMessageInMemory: 1024 * 256,
  maxTransferCountOnMessageInMemory: 32,
  maxTransferBytesOnMessageInDisk: 1024 * 64,
  maxTransferCountOnMessageInDisk: 8,
  accessMessageInMemoryMaxRatio: 40,
};

const RULES: { readonly [K in keyof MessageStoreConfig]: Rule } = {
  storePathRootDir: STRING,
  storePathCommitLog: STRING,
  mappedFileSizeCommitLog: intRule(
    MAPPED_FILE_SIZE_COMMIT_LOG_MIN_BYTES,
    MAPPED_FILE_SIZE_COMMIT_LOG_MAX_BYTES,
  ),
  flushDiskType: { kind: 'enum', values: Object.values(FlushDiskType) },
  flushIntervalCommitLog: intRule(1, INTERVAL_MAX_MS),
  flushCommitLogLeastPages: intRule(0, 2 ** 31 - 1),
  flushCommitLogThoroughInterval: intRule(0, INTERVAL_MAX_MS),
  flushCommitLogTimed: BOOL,
  commitIntervalCommitLog: intRule(1, INTERVAL_MAX_MS),
  commitCommitLogLeastPages: intRule(0, 2 ** 31 - 1),
  commitCommitLogThoroughInterval: intRule(0, INTERVAL_MAX_MS),
  syncFlushTimeout: intRule(1, INTERVAL_MAX_MS),
  transientStorePoolEnable: BOOL,
  transientStorePoolSize: intRule(2, 1024),
  maxMessageSize: intRule(MAX_MESSAGE_SIZE_MIN_BYTES, MAX_MESSAGE_SIZE_MAX_BYTES),
  checkCRCOnRecover: BOOL,
  autoMessageVersionOnTopicLen: BOOL,
  enabledAppendPropCRC: BOOL,
  forceVerifyPropCRC: BOOL,
  osPageCacheBusyTimeOutMills: intRule(1, INTERVAL_MAX_MS),
  wakeCommitWhenPutMessage: BOOL,
  wakeFlushWhenPutMessage: BOOL,
  storeHost: STRING,
  mappedFileSizeConsumeQueue: intRule(
    MAPPED_FILE_SIZE_CONSUME_QUEUE_MIN_BYTES,
    MAPPED_FILE_SIZE_COMMIT_LOG_MAX_BYTES,
  ),
  flushIntervalConsumeQueue: intRule(1, INTERVAL_MAX_MS),
  flushConsumeQueueLeastPages: intRule(0, 2 ** 31 - 1),
  flushConsumeQueueThoroughInterval: intRule(0, INTERVAL_MAX_MS),
  maxTransferBytesOnMessageInMemory: intRule(1, 2 ** 31 - 1),
  maxTransferCountOnMessageInMemory: intRule(1, 2 ** 31 - 1),
  maxTransferBytesOnMessageInDisk: intRule(1, 2 ** 31 - 1),
  maxTransferCountOnMessageInDisk: intRule(1, 2 ** 31 - 1),
  accessMessageInMemoryMaxRatio: intRule(0, 100),
};

/** Every store config key with its rule and default (`storePathCommitLog` defaults from the root), for config files and references. */
export function messageStoreConfigKeys(): readonly { key: string; rule: ConfigRule; default: unknown }[] {
  return Object.entries(RULES).map(([key, rule]) => ({
    key,
    rule,
    default: (DEFAULTS as Record<string, unknown>)[key],
  }));
}

export function checkValue(key: string, value: unknown, rule: Rule): string | null {
  switch (rule.kind) {
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        return `${key} must be an integer, got ${describe(value)}`;
      }
      if (value < rule.min || value > rule.max) {
        return `${key} must be between ${rule.min} and ${rule.max}, got ${value}`;
      }
      return null;
    case 'bool':
      return typeof value === 'boolean' ? null : `${key} must be true or false, got ${describe(value)}`;
    case 'string':
      return typeof value === 'string' && value.length > 0
        ? null
        : `${key} must be a non-empty string, got ${describe(value)}`;
    case 'enum':
      return typeof value === 'string' && rule.values.includes(value)
        ? null
        : `${key} must be one of ${rule.values.join(', ')}, got ${describe(value)}`;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

/**
 * Fills in RocketMQ's defaults and validates every value. All problems are reported at once, in
 * one `ERR_STORE_CONFIG` error, so an operator fixes a config file in one pass.
 */
export function createMessageStoreConfig(input: MessageStoreConfigInput): MessageStoreConfig {
  if (typeof input !== 'object' || input === null) {
    throw new StoreError('ERR_STORE_CONFIG', 'message store config must be an object');
  }
  const problems: string[] = [];
  const known = new Set(Object.keys(RULES));
  for (const key of Object.keys(input)) {
    if (!known.has(key)) problems.push(`unknown config key ${JSON.stringify(key)}`);
  }
  const rootDir = input.storePathRootDir;
  const merged: Record<string, unknown> = {
    ...DEFAULTS,
    storePathCommitLog:
      typeof rootDir === 'string' && rootDir.length > 0 ? path.join(rootDir, 'commitlog') : undefined,
  };
  for (const [key, value] of Object.entries(input)) {
    if (value !== undefined) merged[key] = value;
  }
  for (const [key, rule] of Object.entries(RULES)) {
    const problem = checkValue(key, merged[key], rule);
    if (problem !== null) problems.push(problem);
  }
  if (problems.length === 0 && merged.forceVerifyPropCRC === true && merged.enabledAppendPropCRC !== true) {
    problems.push('forceVerifyPropCRC needs enabledAppendPropCRC: records would carry no CRC to verify');
  }
  if (problems.length > 0) {
    throw new StoreError('ERR_STORE_CONFIG', `invalid message store config: ${problems.join('; ')}`);
  }
  const config = merged as unknown as MessageStoreConfig;
  // RocketMQ's getter rounds up to a whole number of units.
  const cqSize =
    Math.ceil(config.mappedFileSizeConsumeQueue / CQ_STORE_UNIT_SIZE_BYTES) * CQ_STORE_UNIT_SIZE_BYTES;
  return Object.freeze({
    ...config,
    mappedFileSizeConsumeQueue: cqSize,
    storePathRootDir: path.resolve(config.storePathRootDir),
    storePathCommitLog: path.resolve(config.storePathCommitLog),
  });
}
