import zlib from 'node:zlib';
import type { MessageStoreConfig } from '../config/message-store-config.js';
import { PutMessageStatus } from '../status.js';
import { type HostAddress, parseHost } from './host.js';
import { setInt64 } from './int64.js';
import { tagsString2tagsCode } from './java-hash.js';
import type { BatchMessageItem, Message, MessageBatch } from './message.js';
import {
  BLANK_MAGIC_CODE,
  CRC_MASK,
  calMsgLength,
  END_FILE_MIN_BLANK_LENGTH_BYTES,
  MESSAGE_RECORD_OVERHEAD_MAX_BYTES,
  type MessageVersion,
  magicCodeOf,
  PROP_CRC_DIGITS,
  PROP_CRC_RESERVED_BYTES,
  PROPERTIES_LENGTH_MAX_BYTES,
  TOPIC_LENGTH_MAX_BYTES,
  TOPIC_LENGTH_V1_MAX_BYTES,
} from './message-format.js';
import {
  checkProperty,
  MessageConst,
  type MessageProperties,
  messageProperties2String,
  PROPERTY_SEPARATOR,
} from './message-properties.js';
import { getTransactionValue, MessageSysFlag } from './message-sys-flag.js';
import { consumeQueueTagsCode, PROPERTY_TIMER_DELIVER_MS } from './tags-code.js';

/**
 * RocketMQ's `MessageExtEncoder`, split in two because Node has no put lock to encode under:
 *
 * - `encodeMessage` / `encodeBatch` run before the put section: they validate, build the
 *   properties bytes, compute the body CRC and the record length. A rejection is a status with
 *   a reason, and nothing in the store has changed.
 * - `writeRecord` runs inside the put section, straight into the segment's write buffer (one copy
 *   of the body, not two), with the queue offset, physical offset and store timestamp that the
 *   section assigned.
 */

/** Everything needed to write one record, except what the put section assigns. */
export interface EncodedRecord {
  readonly topicBytes: Buffer;
  readonly version: MessageVersion;
  readonly queueId: number;
  readonly flag: number;
  readonly body: Uint8Array;
  readonly bodyCRC: number;
  readonly sysFlag: number;
  readonly bornTimestamp: number;
  readonly bornHost: HostAddress;
  readonly storeHost: HostAddress;
  readonly reconsumeTimes: number;
  readonly preparedTransactionOffset: number;
  readonly propertiesBytes: Buffer;
  /** A 0x02 must be added before the CRC tail (properties not ending in one). */
  readonly propCrcNeedsSeparator: boolean;
  readonly propCrc: boolean;
  readonly msgLength: number;
  /** The consume queue's tags code: Java hashCode of the TAGS property, 0 without one. */
  readonly tagsCode: number;
}

/** A single message ready for the put section: its record, plus what the put needs to know. */
export interface EncodedMessage extends EncodedRecord {
  readonly kind: 'single';
  readonly topic: string;
  /** The record itself (kept for callers that treat messages and batch elements alike). */
  readonly record: EncodedRecord;
  readonly waitStoreMsgOK: boolean;
  /** PREPARED and ROLLBACK transaction records take queue offset 0 and do not consume one. */
  readonly consumesQueueOffset: boolean;
}

export interface EncodedBatch {
  readonly kind: 'batch';
  readonly topic: string;
  readonly queueId: number;
  readonly records: readonly EncodedRecord[];
  readonly totalLength: number;
  readonly waitStoreMsgOK: boolean;
}

export interface EncodeRejection {
  readonly kind: 'rejected';
  readonly status: PutMessageStatus;
  /** Names the field that was wrong and why. */
  readonly reason: string;
}

/** What the encoder needs from the store config (a subset, so tests can pass plain objects). */
export type EncoderConfig = Pick<
  MessageStoreConfig,
  'maxMessageSize' | 'autoMessageVersionOnTopicLen' | 'enabledAppendPropCRC' | 'mappedFileSizeCommitLog'
> & { readonly defaultStoreHost: HostAddress };

const DEFAULT_BORN_HOST = '127.0.0.1:0';
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
/** RocketMQ's TopicValidator character set; it also keeps `consumequeue/{topic}` a plain name. */
const TOPIC_PATTERN = /^[%|a-zA-Z0-9_-]+$/;

interface TopicInfo {
  readonly bytes: Buffer;
  readonly version: MessageVersion;
}
const TOPIC_CACHE_SIZE_MAX = 4096;
const topicCache = new Map<string, TopicInfo | string>();
let lastTopic: string | null = null;
let lastTopicAutoVersion = true;
let lastTopicInfo: TopicInfo | null = null;

function reject(status: PutMessageStatus, reason: string): EncodeRejection {
  return { kind: 'rejected', status, reason };
}

/** Validates a topic once and caches the encoded bytes (or the reason it is illegal). */
function topicInfo(topic: unknown, autoVersion: boolean): TopicInfo | string {
  // Puts come in runs to one topic: the last one is at hand without a map lookup.
  if (topic === lastTopic && autoVersion === lastTopicAutoVersion && lastTopicInfo !== null)
    return lastTopicInfo;
  if (typeof topic !== 'string' || topic.length === 0) return 'topic is empty';
  const key = autoVersion ? topic : `\u0000${topic}`;
  const cached = topicCache.get(key);
  if (cached !== undefined) {
    if (typeof cached !== 'string') {
      lastTopic = topic;
      lastTopicAutoVersion = autoVersion;
      lastTopicInfo = cached;
    }
    return cached;
  }
  let info: TopicInfo | string;
  const bytes = Buffer.from(topic, 'utf8');
  if (!TOPIC_PATTERN.test(topic)) {
    info = `topic ${JSON.stringify(topic)} contains characters outside [%|a-zA-Z0-9_-]`;
  } else if (bytes.length > TOPIC_LENGTH_MAX_BYTES) {
    info = `topic is ${bytes.length} bytes, more than ${TOPIC_LENGTH_MAX_BYTES}`;
  } else if (bytes.length > TOPIC_LENGTH_V1_MAX_BYTES && !autoVersion) {
    info = `topic is ${bytes.length} bytes, more than ${TOPIC_LENGTH_V1_MAX_BYTES}, and autoMessageVersionOnTopicLen is off`;
  } else {
    // RocketMQ counts UTF-16 chars here; bytes are what the int8 length field holds, so use bytes.
    info = { bytes, version: bytes.length > TOPIC_LENGTH_V1_MAX_BYTES ? 2 : 1 };
  }
  if (topicCache.size >= TOPIC_CACHE_SIZE_MAX) topicCache.clear();
  topicCache.set(key, info);
  if (typeof info !== 'string') {
    lastTopic = topic;
    lastTopicAutoVersion = autoVersion;
    lastTopicInfo = info;
  }
  return info;
}

function isInt32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX;
}

function isNonNegativeSafeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isBody(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

/**
 * The TAGS value the last `buildProperties` call wrote (undefined for none): read right after it,
 * in the same synchronous encode, to give the record its tags code without parsing it back.
 */
let builtTags: string | undefined;
/** The TIMER_DELIVER_MS value the last `buildProperties` call wrote (undefined for none), likewise. */
let builtTimerDeliverMs: string | undefined;

/** Builds the properties string: user properties first, then TAGS and KEYS from their fields. */
function buildProperties(
  userProperties: MessageProperties | undefined,
  tags: unknown,
  keysValue: unknown,
  extra: readonly (readonly [string, string])[],
): string | EncodeRejection {
  builtTags = undefined;
  builtTimerDeliverMs = undefined;
  if (userProperties === undefined && tags === undefined && keysValue === undefined && extra.length === 0) {
    return '';
  }
  const pairs = new Map<string, string>();
  if (userProperties !== undefined) {
    if (typeof userProperties !== 'object' || userProperties === null) {
      return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'properties must be an object of strings');
    }
    for (const [name, value] of Object.entries(userProperties)) pairs.set(name, value);
  }
  if (tags !== undefined) {
    if (typeof tags !== 'string') return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'tags must be a string');
    pairs.set(MessageConst.PROPERTY_TAGS, tags);
  }
  if (keysValue !== undefined) {
    const keys =
      typeof keysValue === 'string'
        ? keysValue
        : Array.isArray(keysValue)
          ? (keysValue as unknown[]).join(' ')
          : null;
    if (keys === null)
      return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'keys must be a string or an array of strings');
    pairs.set(MessageConst.PROPERTY_KEYS, keys);
  }
  for (const [name, value] of extra) pairs.set(name, value);
  for (const [name, value] of pairs) {
    const problem = checkProperty(name, value);
    if (problem !== null) return reject(PutMessageStatus.MESSAGE_ILLEGAL, problem);
  }
  builtTags = pairs.get(MessageConst.PROPERTY_TAGS);
  builtTimerDeliverMs = pairs.get(PROPERTY_TIMER_DELIVER_MS);
  return messageProperties2String(pairs);
}

const EMPTY = Buffer.alloc(0);
const NO_EXTRA_PROPERTIES: readonly (readonly [string, string])[] = [];
const WAIT_FALSE_PROPERTY: readonly (readonly [string, string])[] = [
  [MessageConst.PROPERTY_WAIT_STORE_MSG_OK, 'false'],
];
const DEFAULT_BORN_HOST_ADDRESS = parseHost(DEFAULT_BORN_HOST) as HostAddress;

interface CommonFields {
  topic: TopicInfo;
  queueId: number;
  bornTimestamp: number;
  bornHost: HostAddress;
  storeHost: HostAddress;
}

/**
 * The fields shared by a message or a whole batch, validated into one reused object: encoding is
 * synchronous and never re-entered, and an object per put is garbage the put path can do without.
 */
const common: CommonFields = {
  topic: { bytes: EMPTY, version: 1 },
  queueId: 0,
  bornTimestamp: 0,
  bornHost: DEFAULT_BORN_HOST_ADDRESS,
  storeHost: DEFAULT_BORN_HOST_ADDRESS,
};

function hostField(value: unknown): HostAddress | null {
  return typeof value === 'string' ? parseHost(value) : null;
}

/**
 * Validates the shared fields into `common`; returns a rejection or null. Takes values, not the
 * caller's object: it runs after every user getter has been read, so nothing user-defined can run
 * (and re-enter the encoder) between filling `common` and building the record from it.
 */
function checkCommonFields(
  topicValue: unknown,
  queueId: unknown,
  bornTimestampValue: unknown,
  bornHostValue: unknown,
  storeHostValue: unknown,
  config: EncoderConfig,
  now: number,
): EncodeRejection | null {
  const topic = topicInfo(topicValue, config.autoMessageVersionOnTopicLen);
  if (typeof topic === 'string') return reject(PutMessageStatus.MESSAGE_ILLEGAL, topic);
  if (!isInt32(queueId) || queueId < 0) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, `queueId must be an integer from 0 to ${INT32_MAX}`);
  }
  const bornTimestamp = bornTimestampValue ?? now;
  if (!isNonNegativeSafeInteger(bornTimestamp)) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'bornTimestamp must be a non-negative integer (ms)');
  }
  const bornHost = bornHostValue === undefined ? DEFAULT_BORN_HOST_ADDRESS : hostField(bornHostValue);
  if (bornHost === null) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      `bornHost ${JSON.stringify(bornHostValue)} is not ip:port`,
    );
  }
  const storeHost = storeHostValue === undefined ? config.defaultStoreHost : hostField(storeHostValue);
  if (storeHost === null) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      `storeHost ${JSON.stringify(storeHostValue)} is not ip:port`,
    );
  }
  common.topic = topic;
  common.queueId = queueId;
  common.bornTimestamp = bornTimestamp;
  common.bornHost = bornHost;
  common.storeHost = storeHost;
  return null;
}

/**
 * One encoded record; for a single message it also carries what the put needs (topic, wait,
 * queue-offset rule), so a put makes one object, not one per concern.
 */
class EncodedRecordObject implements EncodedMessage {
  readonly kind = 'single' as const;
  readonly topic: string;
  readonly topicBytes: Buffer;
  readonly version: MessageVersion;
  readonly queueId: number;
  readonly flag: number;
  readonly body: Uint8Array;
  readonly bodyCRC: number;
  readonly sysFlag: number;
  readonly bornTimestamp: number;
  readonly bornHost: HostAddress;
  readonly storeHost: HostAddress;
  readonly reconsumeTimes: number;
  readonly preparedTransactionOffset: number;
  readonly propertiesBytes: Buffer;
  readonly propCrcNeedsSeparator: boolean;
  readonly propCrc: boolean;
  readonly msgLength: number;
  readonly waitStoreMsgOK: boolean;
  readonly consumesQueueOffset: boolean;
  readonly tagsCode: number;

  constructor(
    topic: string,
    flag: number,
    body: Uint8Array,
    sysFlag: number,
    reconsumeTimes: number,
    preparedTransactionOffset: number,
    propertiesBytes: Buffer,
    propCrcNeedsSeparator: boolean,
    propCrc: boolean,
    msgLength: number,
    waitStoreMsgOK: boolean,
    tagsCode: number,
  ) {
    this.topic = topic;
    this.tagsCode = tagsCode;
    this.topicBytes = common.topic.bytes;
    this.version = common.topic.version;
    this.queueId = common.queueId;
    this.flag = flag;
    this.body = body;
    this.bodyCRC = zlib.crc32(body) & CRC_MASK;
    this.sysFlag = sysFlag;
    this.bornTimestamp = common.bornTimestamp;
    this.bornHost = common.bornHost;
    this.storeHost = common.storeHost;
    this.reconsumeTimes = reconsumeTimes;
    this.preparedTransactionOffset = preparedTransactionOffset;
    this.propertiesBytes = propertiesBytes;
    this.propCrcNeedsSeparator = propCrcNeedsSeparator;
    this.propCrc = propCrc;
    this.msgLength = msgLength;
    this.waitStoreMsgOK = waitStoreMsgOK;
    const tx = getTransactionValue(sysFlag);
    this.consumesQueueOffset =
      tx !== MessageSysFlag.TRANSACTION_PREPARED_TYPE && tx !== MessageSysFlag.TRANSACTION_ROLLBACK_TYPE;
  }

  get record(): EncodedRecord {
    return this;
  }
}

/** Checks the sizes and builds the record from `common` and the per-record fields. */
function buildRecord(
  topic: string,
  flag: number,
  body: Uint8Array,
  requestedSysFlag: number,
  reconsumeTimes: number,
  preparedTransactionOffset: number,
  properties: string,
  tagsCode: number,
  waitStoreMsgOK: boolean,
  config: EncoderConfig,
): EncodedRecordObject | EncodeRejection {
  if (body.length > config.maxMessageSize) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      `body is ${body.length} bytes, more than maxMessageSize ${config.maxMessageSize}`,
    );
  }
  // Buffer.from('') is not free (~0.25 us); most messages carry few or no properties.
  const propertiesBytes = properties.length === 0 ? EMPTY : Buffer.from(properties, 'utf8');
  let propCrcNeedsSeparator = false;
  let propertiesLength = propertiesBytes.length;
  if (config.enabledAppendPropCRC) {
    propCrcNeedsSeparator = propertiesLength > 0 && propertiesBytes[propertiesLength - 1] !== 0x02;
    propertiesLength += (propCrcNeedsSeparator ? 1 : 0) + PROP_CRC_RESERVED_BYTES;
  }
  if (propertiesLength > PROPERTIES_LENGTH_MAX_BYTES) {
    return reject(
      PutMessageStatus.PROPERTIES_SIZE_EXCEEDED,
      `properties are ${propertiesLength} bytes, more than ${PROPERTIES_LENGTH_MAX_BYTES}`,
    );
  }
  let sysFlag =
    requestedSysFlag & ~(MessageSysFlag.BORNHOST_V6_FLAG | MessageSysFlag.STOREHOSTADDRESS_V6_FLAG);
  if (common.bornHost.v6) sysFlag |= MessageSysFlag.BORNHOST_V6_FLAG;
  if (common.storeHost.v6) sysFlag |= MessageSysFlag.STOREHOSTADDRESS_V6_FLAG;
  const msgLength = calMsgLength(
    common.topic.version,
    sysFlag,
    body.length,
    common.topic.bytes.length,
    propertiesLength,
  );
  const recordMax = config.maxMessageSize + MESSAGE_RECORD_OVERHEAD_MAX_BYTES;
  if (msgLength > recordMax) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, `record is ${msgLength} bytes, more than ${recordMax}`);
  }
  if (msgLength + END_FILE_MIN_BLANK_LENGTH_BYTES > config.mappedFileSizeCommitLog) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      `record is ${msgLength} bytes and cannot fit in a ${config.mappedFileSizeCommitLog}-byte commit log segment`,
    );
  }
  return new EncodedRecordObject(
    topic,
    flag,
    body,
    sysFlag,
    reconsumeTimes,
    preparedTransactionOffset,
    propertiesBytes,
    propCrcNeedsSeparator,
    config.enabledAppendPropCRC,
    msgLength,
    waitStoreMsgOK,
    tagsCode,
  );
}

function waitStoreMsgOKOf(
  explicit: unknown,
  properties: MessageProperties | undefined,
): boolean | EncodeRejection {
  if (explicit !== undefined) {
    if (typeof explicit !== 'boolean')
      return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'waitStoreMsgOK must be a boolean');
    return explicit;
  }
  const wait = properties?.[MessageConst.PROPERTY_WAIT_STORE_MSG_OK];
  return wait === undefined || wait === 'true';
}

export function encodeMessage(
  msg: Message,
  config: EncoderConfig,
  now: number,
): EncodedMessage | EncodeRejection {
  if (typeof msg !== 'object' || msg === null) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'message must be an object');
  }
  // Every field is read once, and everything that may run user code (getters, a properties
  // object, keys' toString) runs before `common` is filled: see checkCommonFields.
  const topic = msg.topic;
  const queueId = msg.queueId;
  const body = msg.body;
  const flag = msg.flag ?? 0;
  const sysFlag = msg.sysFlag ?? 0;
  const reconsumeTimes = msg.reconsumeTimes ?? 0;
  const preparedTransactionOffset = msg.preparedTransactionOffset ?? 0;
  const bornTimestamp = msg.bornTimestamp;
  const bornHost = msg.bornHost;
  const storeHost = msg.storeHost;
  const explicitWait = msg.waitStoreMsgOK;
  const userProperties = msg.properties;
  const waitStoreMsgOK = waitStoreMsgOKOf(explicitWait, userProperties);
  if (typeof waitStoreMsgOK !== 'boolean') return waitStoreMsgOK;
  // The record says what the put did: WAIT=false is kept, as RocketMQ's client writes it.
  const extra = explicitWait === false ? WAIT_FALSE_PROPERTY : NO_EXTRA_PROPERTIES;
  const properties = buildProperties(userProperties, msg.tags, msg.keys, extra);
  if (typeof properties !== 'string') return properties;
  if (!isBody(body)) return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'body must be a Buffer or Uint8Array');
  if (!isInt32(flag)) return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'flag must be an int32');
  if (!isInt32(sysFlag)) return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'sysFlag must be an int32');
  if (!isInt32(reconsumeTimes) || reconsumeTimes < 0) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'reconsumeTimes must be a non-negative int32');
  }
  if (!isNonNegativeSafeInteger(preparedTransactionOffset)) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      'preparedTransactionOffset must be a non-negative integer',
    );
  }
  const rejection = checkCommonFields(topic, queueId, bornTimestamp, bornHost, storeHost, config, now);
  if (rejection !== null) return rejection;
  return buildRecord(
    topic,
    flag,
    body,
    sysFlag,
    reconsumeTimes,
    preparedTransactionOffset,
    properties,
    consumeQueueTagsCode(topic, builtTags, builtTimerDeliverMs),
    waitStoreMsgOK,
    config,
  );
}

export function encodeBatch(
  batch: MessageBatch,
  config: EncoderConfig,
  now: number,
): EncodedBatch | EncodeRejection {
  if (typeof batch !== 'object' || batch === null) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'batch must be an object');
  }
  const topic = batch.topic;
  const queueId = batch.queueId;
  const bornTimestamp = batch.bornTimestamp;
  const bornHost = batch.bornHost;
  const storeHost = batch.storeHost;
  const messages = batch.messages;
  const waitStoreMsgOK = waitStoreMsgOKOf(batch.waitStoreMsgOK, undefined);
  if (typeof waitStoreMsgOK !== 'boolean') return waitStoreMsgOK;
  if (!Array.isArray(messages) || messages.length === 0) {
    return reject(PutMessageStatus.MESSAGE_ILLEGAL, 'a batch needs at least one message');
  }
  // First everything that reads user objects, then `common`, then the records (see encodeMessage).
  const items: {
    readonly body: Uint8Array;
    readonly flag: number;
    readonly properties: string;
    readonly tags: string | undefined;
  }[] = [];
  let totalBody = 0;
  for (let i = 0; i < messages.length; i++) {
    const item: BatchMessageItem | undefined = messages[i];
    if (typeof item !== 'object' || item === null) {
      return reject(PutMessageStatus.MESSAGE_ILLEGAL, `batch message ${i}: must be an object`);
    }
    const body = item.body;
    const flag = item.flag ?? 0;
    const userProperties = item.properties;
    if (!isBody(body)) {
      return reject(
        PutMessageStatus.MESSAGE_ILLEGAL,
        `batch message ${i}: body must be a Buffer or Uint8Array`,
      );
    }
    if (!isInt32(flag))
      return reject(PutMessageStatus.MESSAGE_ILLEGAL, `batch message ${i}: flag must be an int32`);
    if (userProperties?.[MessageConst.PROPERTY_DELAY_TIME_LEVEL] !== undefined) {
      return reject(
        PutMessageStatus.MESSAGE_ILLEGAL,
        `batch message ${i}: a batch cannot carry a delay level`,
      );
    }
    const properties = buildProperties(userProperties, item.tags, item.keys, NO_EXTRA_PROPERTIES);
    if (typeof properties !== 'string')
      return reject(properties.status, `batch message ${i}: ${properties.reason}`);
    items.push({ body, flag, properties, tags: builtTags });
    totalBody += body.length;
  }
  // RocketMQ limits the batch body (all elements) by maxMessageSize.
  if (totalBody > config.maxMessageSize) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      `batch bodies total ${totalBody} bytes, more than maxMessageSize ${config.maxMessageSize}`,
    );
  }
  const rejection = checkCommonFields(topic, queueId, bornTimestamp, bornHost, storeHost, config, now);
  if (rejection !== null) return rejection;
  const records: EncodedRecord[] = [];
  let totalLength = 0;
  for (const [i, item] of items.entries()) {
    const record = buildRecord(
      topic,
      item.flag,
      item.body,
      0,
      0,
      0,
      item.properties,
      tagsString2tagsCode(item.tags),
      waitStoreMsgOK,
      config,
    );
    if (!(record instanceof EncodedRecordObject))
      return reject(record.status, `batch message ${i}: ${record.reason}`);
    records.push(record);
    totalLength += record.msgLength;
  }
  if (totalLength + END_FILE_MIN_BLANK_LENGTH_BYTES > config.mappedFileSizeCommitLog) {
    return reject(
      PutMessageStatus.MESSAGE_ILLEGAL,
      `batch is ${totalLength} bytes and cannot fit in a ${config.mappedFileSizeCommitLog}-byte commit log segment`,
    );
  }
  return { kind: 'batch', topic, queueId: common.queueId, records, totalLength, waitStoreMsgOK };
}

/** DataViews over write buffers, made once per buffer (the put path writes through them). */
const dataViews = new WeakMap<Buffer, DataView>();

export function dataViewOf(buf: Buffer): DataView {
  let view = dataViews.get(buf);
  if (view === undefined) {
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    dataViews.set(buf, view);
  }
  return view;
}

/** Copies a short array byte by byte: cheaper than Buffer.copy's call overhead below ~64 bytes. */
function copySmall(src: Uint8Array, dst: Buffer, pos: number): number {
  const n = src.length;
  if (n > 64) {
    dst.set(src, pos);
    return n;
  }
  for (let i = 0; i < n; i++) dst[pos + i] = src[i] as number;
  return n;
}

/**
 * Writes one record at `pos`. Runs inside the put section; `buf` has `record.msgLength` bytes of
 * room at `pos` (asserted by the caller). Returns the position after the record. Fields go
 * through a DataView: Buffer's `writeInt32BE` range checks cost ten times more per field.
 */
export function writeRecord(
  buf: Buffer,
  pos: number,
  record: EncodedRecord,
  queueOffset: number,
  physicalOffset: number,
  storeTimestamp: number,
  view: DataView = dataViewOf(buf),
): number {
  const start = pos;
  view.setInt32(pos, record.msgLength);
  view.setInt32(pos + 4, magicCodeOf(record.version));
  view.setInt32(pos + 8, record.bodyCRC);
  view.setInt32(pos + 12, record.queueId);
  view.setInt32(pos + 16, record.flag);
  setInt64(view, pos + 20, queueOffset);
  setInt64(view, pos + 28, physicalOffset);
  view.setInt32(pos + 36, record.sysFlag);
  setInt64(view, pos + 40, record.bornTimestamp);
  pos += 48;
  pos += copySmall(record.bornHost.bytes, buf, pos);
  setInt64(view, pos, storeTimestamp);
  pos += 8;
  pos += copySmall(record.storeHost.bytes, buf, pos);
  view.setInt32(pos, record.reconsumeTimes);
  setInt64(view, pos + 4, record.preparedTransactionOffset);
  view.setInt32(pos + 12, record.body.length);
  pos += 16;
  buf.set(record.body, pos);
  pos += record.body.length;
  if (record.version === 1) {
    view.setInt8(pos, record.topicBytes.length);
    pos += 1;
  } else {
    view.setInt16(pos, record.topicBytes.length);
    pos += 2;
  }
  pos += copySmall(record.topicBytes, buf, pos);
  const propertiesLength = record.msgLength - (pos + 2 - start);
  view.setInt16(pos, propertiesLength);
  pos += 2;
  pos += copySmall(record.propertiesBytes, buf, pos);
  if (record.propCrc) {
    if (record.propCrcNeedsSeparator) {
      buf[pos] = 0x02;
      pos += 1;
    }
    pos = writePropCrc(buf, start, pos, record.msgLength);
  }
  return pos;
}

/**
 * The optional whole-record CRC (store reference §2.4): `__CRC32#` 0x01, ten digits least
 * significant first, 0x02, over the record bytes before these 20.
 */
function writePropCrc(buf: Buffer, start: number, pos: number, msgLength: number): number {
  const crc = zlib.crc32(buf.subarray(start, start + msgLength - PROP_CRC_RESERVED_BYTES)) & CRC_MASK;
  pos += buf.write(MessageConst.PROPERTY_CRC32, pos, 'latin1');
  buf[pos++] = 0x01;
  let value = crc;
  for (let i = 0; i < PROP_CRC_DIGITS; i++) {
    buf[pos++] = 0x30 + (value % 10);
    value = Math.floor(value / 10);
  }
  buf[pos++] = PROPERTY_SEPARATOR.charCodeAt(0);
  return pos;
}

/** The BLANK end-of-file record: TOTALSIZE = the rest of the segment, MAGICCODE = BLANK. */
export function writeBlankRecord(buf: Buffer, pos: number, maxBlank: number): void {
  buf.writeInt32BE(maxBlank, pos);
  buf.writeInt32BE(BLANK_MAGIC_CODE, pos + 4);
}
