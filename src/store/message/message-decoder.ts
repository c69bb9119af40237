import zlib from 'node:zlib';
import { decodeHost } from './host.js';
import { readInt64BE } from './int64.js';
import type { MessageExt } from './message.js';
import {
  BLANK_MAGIC_CODE,
  bornHostLengthOf,
  CRC_MASK,
  calMsgLength,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  type MessageVersion,
  PROP_CRC_DIGITS,
  PROP_CRC_RESERVED_BYTES,
  storeHostLengthOf,
} from './message-format.js';
import { offsetMessageIdFromBytes } from './message-id.js';
import { MessageConst, string2messageProperties } from './message-properties.js';
import { consumeQueueTagsCode, PROPERTY_TIMER_DELIVER_MS, TIMER_TOPIC } from './tags-code.js';

/**
 * Reading records back: RocketMQ's `CommitLog.checkMessageAndReturnSize` (recovery, dispatch) and
 * `MessageDecoder.decode` (reads), on one parser. Every check a record can fail is named, so a
 * recovery report can say why it stopped.
 */

/** The smallest TOTALSIZE a real record can have: V1, IPv4 hosts, 1-byte topic, nothing else. */
export const MESSAGE_MIN_LENGTH_BYTES = calMsgLength(1, 0, 0, 1, 0);

export interface CheckOptions {
  /** Verify the body CRC (or the whole-record CRC with `forceVerifyPropCRC`). */
  readonly checkCRC: boolean;
  readonly forceVerifyPropCRC?: boolean;
  /** If given, PHYSICALOFFSET must equal it: a record must sit where it says it sits. */
  readonly expectedPhysicalOffset?: number;
  /**
   * The body CRC of this very record was already checked, on these bytes (by a recovery scan's
   * CRC worker): not checked again. Every other check still runs.
   */
  readonly bodyCrcVouched?: boolean;
}

/** A valid record, with the fields recovery and dispatch need. */
export interface CheckedRecord {
  readonly kind: 'record';
  readonly size: number;
  readonly version: MessageVersion;
  readonly topic: string;
  readonly queueId: number;
  readonly queueOffset: number;
  readonly physicalOffset: number;
  readonly sysFlag: number;
  readonly storeTimestamp: number;
  readonly bornTimestamp: number;
  readonly tagsCode: number;
  readonly keys: string | undefined;
  readonly uniqKey: string | undefined;
  readonly preparedTransactionOffset: number;
  readonly properties: Readonly<Record<string, string>>;
  readonly bodyOffset: number;
  readonly bodyLength: number;
}

/** The BLANK end-of-file record: the rest of the segment is filler. */
export interface CheckedBlank {
  readonly kind: 'blank';
  /** TOTALSIZE of the BLANK: the bytes from here to the end of the segment. */
  readonly size: number;
}

/** Not a record. `size` is the claimed TOTALSIZE when it could be read, else -1. */
export interface CheckedInvalid {
  readonly kind: 'invalid';
  readonly size: number;
  readonly reason: string;
}

export type CheckResult = CheckedRecord | CheckedBlank | CheckedInvalid;

function invalid(size: number, reason: string): CheckedInvalid {
  return { kind: 'invalid', size, reason };
}

/**
 * A record's fixed fields, as `checkRecordHeader` fills them: one object reused for every record
 * of a scan (recovery checks a million records a second; an object and a topic string per record
 * were a third of its time). Valid until the next call that fills it.
 */
export class RecordHeader {
  size = 0;
  version: MessageVersion = 1;
  topic = '';
  queueId = 0;
  queueOffset = 0;
  physicalOffset = 0;
  sysFlag = 0;
  storeTimestamp = 0;
  /**
   * Where BORNTIMESTAMP and PREPAREDTRANSACTIONOFFSET are in the buffer: read only by whoever
   * needs them (recovery does not; two int64 reads per record were 5% of its time).
   */
  bornTimestampOffset = 0;
  preparedTransactionOffsetOffset = 0;
  bodyOffset = 0;
  bodyLength = 0;
  /** Where the properties bytes start in the buffer, and how many there are. */
  propertiesOffset = 0;
  propertiesLength = 0;
  /** Why the record is not one (`checkRecordHeader` returned 'invalid'). */
  reason = '';
}

/** The last topic decoded, to skip decoding the same bytes again (records come in runs). */
let lastTopicBytes = Buffer.alloc(0);
let lastTopic = '';

/** RocketMQ's topic characters (TopicValidator), the only ones a record's topic can hold. */
const TOPIC_BYTE = new Uint8Array(256);
for (const c of '%|_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ')
  TOPIC_BYTE[c.charCodeAt(0)] = 1;

/** The topic at `pos`, or null when its bytes cannot be a topic (damage). */
function topicAt(buf: Buffer, pos: number, length: number): string | null {
  if (length === lastTopicBytes.length && sameBytes(buf, pos, lastTopicBytes, length)) return lastTopic;
  for (let i = pos; i < pos + length; i++) if (TOPIC_BYTE[buf[i] as number] !== 1) return null;
  lastTopic = buf.toString('utf8', pos, pos + length);
  lastTopicBytes = Buffer.from(buf.subarray(pos, pos + length));
  return lastTopic;
}

/** Byte comparison in JS: for a topic's few bytes cheaper than a native call. */
function sameBytes(buf: Buffer, pos: number, other: Buffer, length: number): boolean {
  for (let i = 0; i < length; i++) if (buf[pos + i] !== other[i]) return false;
  return true;
}

/**
 * Checks the record at `pos` in `buf`, reading no further than `limit`, into `out`: RocketMQ's
 * `checkMessageAndReturnSize` without building anything per record. Properties are left as bytes
 * (`tagsCodeOf` finds the tags). Returns what is there; `out.size` is the record's or BLANK's
 * size (the claimed TOTALSIZE for an invalid record when it could be read, else -1) and
 * `out.reason` says why a record is invalid. Never throws.
 */
export function checkRecordHeader(
  buf: Buffer,
  pos: number,
  limit: number,
  options: CheckOptions,
  out: RecordHeader,
): 'record' | 'blank' | 'invalid' {
  const available = limit - pos;
  if (available < 8) return invalidInto(out, -1, `only ${available} bytes left, less than a record header`);
  const totalSize = buf.readInt32BE(pos);
  const magic = buf.readInt32BE(pos + 4);
  if (magic === BLANK_MAGIC_CODE) {
    if (totalSize < 8) return invalidInto(out, -1, `BLANK record with TOTALSIZE ${totalSize}`);
    out.size = totalSize;
    return 'blank';
  }
  if (magic !== MESSAGE_MAGIC_CODE_V1 && magic !== MESSAGE_MAGIC_CODE_V2) {
    return invalidInto(out, -1, `magic code 0x${(magic >>> 0).toString(16)} is not a record`);
  }
  if (totalSize < MESSAGE_MIN_LENGTH_BYTES)
    return invalidInto(out, -1, `TOTALSIZE ${totalSize} is too small for a record`);
  if (totalSize > available)
    return invalidInto(out, -1, `TOTALSIZE ${totalSize} runs past the readable ${available} bytes`);
  const version: MessageVersion = magic === MESSAGE_MAGIC_CODE_V1 ? 1 : 2;
  try {
    return parseHeader(buf, pos, pos + totalSize, totalSize, version, options, out);
  } catch (err) {
    // A length field pointing outside the record makes a read throw RangeError: not a record.
    return invalidInto(out, totalSize, `record fields overrun TOTALSIZE (${(err as Error).message})`);
  }
}

/**
 * A DataView over the buffer being checked, kept while the same buffer comes back (a scan checks
 * every record of one window): DataView reads inline where Buffer's readInt32BE calls do not, and
 * record checks were a third of recovery's own time.
 */
let lastViewBuffer: Buffer | null = null;
let lastView: DataView = new DataView(new ArrayBuffer(0));

/** Drops the kept view (a scan calls it when done, so its window is not kept alive). */
export function forgetCheckedBuffer(): void {
  lastViewBuffer = null;
  lastView = new DataView(new ArrayBuffer(0));
}

function viewOf(buf: Buffer): DataView {
  if (buf !== lastViewBuffer) {
    lastView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    lastViewBuffer = buf;
  }
  return lastView;
}

/** A big-endian int64 as a number; -1 when negative or past 2^53 (no valid field is). */
function int64At(view: DataView, pos: number): number {
  const hi = view.getInt32(pos);
  if (hi < 0 || hi > INT64_SAFE_HIGH_MAX) return -1;
  return hi * 4294967296 + view.getUint32(pos + 4);
}

/** The largest high half of a safe integer (2^53 - 1 >> 32). */
const INT64_SAFE_HIGH_MAX = 0x1fffff;

function invalidInto(out: RecordHeader, size: number, reason: string): 'invalid' {
  out.size = size;
  out.reason = reason;
  return 'invalid';
}

function parseHeader(
  buf: Buffer,
  start: number,
  end: number,
  totalSize: number,
  version: MessageVersion,
  options: CheckOptions,
  out: RecordHeader,
): 'record' | 'invalid' {
  const view = viewOf(buf);
  const bodyCRC = view.getInt32(start + 8);
  const queueId = view.getInt32(start + 12);
  const queueOffset = int64At(view, start + 20);
  const physicalOffset = int64At(view, start + 28);
  const sysFlag = view.getInt32(start + 36);
  let pos = start + 48 + bornHostLengthOf(sysFlag);
  const storeTimestamp = int64At(view, pos);
  pos += 8 + storeHostLengthOf(sysFlag);
  pos += 4; // RECONSUMETIMES
  const preparedTransactionOffsetOffset = pos;
  pos += 8;
  if (queueOffset < 0 || physicalOffset < 0 || storeTimestamp < 0) {
    return invalidInto(out, totalSize, 'an int64 field is negative or outside the safe integer range');
  }
  if (options.expectedPhysicalOffset !== undefined && physicalOffset !== options.expectedPhysicalOffset) {
    return invalidInto(
      out,
      totalSize,
      `PHYSICALOFFSET ${physicalOffset} does not match the record's position ${options.expectedPhysicalOffset}`,
    );
  }
  const bodyLength = view.getInt32(pos);
  pos += 4;
  if (bodyLength < 0 || pos + bodyLength > end)
    return invalidInto(out, totalSize, `body length ${bodyLength} overruns the record`);
  const bodyOffset = pos;
  if (
    options.checkCRC &&
    options.forceVerifyPropCRC !== true &&
    bodyLength > 0 &&
    options.bodyCrcVouched !== true
  ) {
    // A plain Uint8Array view: cheaper to make than Buffer.subarray's, once per record.
    const crc = zlib.crc32(new Uint8Array(buf.buffer, buf.byteOffset + bodyOffset, bodyLength)) & CRC_MASK;
    if (crc !== bodyCRC) return invalidInto(out, -1, `body CRC ${crc} does not match BODYCRC ${bodyCRC}`);
  }
  pos += bodyLength;
  const topicLength = version === 1 ? view.getInt8(pos) : view.getInt16(pos);
  pos += version === 1 ? 1 : 2;
  if (topicLength <= 0 || pos + topicLength > end)
    return invalidInto(out, totalSize, `topic length ${topicLength} is invalid`);
  const topicOffset = pos;
  pos += topicLength;
  const propertiesLength = view.getInt16(pos);
  pos += 2;
  if (propertiesLength < 0 || pos + propertiesLength > end) {
    return invalidInto(out, totalSize, `properties length ${propertiesLength} is invalid`);
  }
  if (options.checkCRC && options.forceVerifyPropCRC === true) {
    const problem = checkPropCrc(buf, start, totalSize, pos, propertiesLength);
    if (problem !== null) return invalidInto(out, -1, problem);
  }
  // Every writer ends each property with 0x02 (RocketMQ's messageProperties2String, ours): a
  // record whose properties end otherwise was torn after its body (the body CRC cannot see it).
  if (
    options.checkCRC &&
    propertiesLength > 0 &&
    buf[pos + propertiesLength - 1] !== PROPERTY_SEPARATOR_BYTE
  ) {
    return invalidInto(
      out,
      -1,
      'the properties do not end with the 0x02 separator (a torn or damaged record)',
    );
  }
  if (options.checkCRC && propertiesLength >= TORN_SECTOR_SIZE_BYTES) {
    const torn = zeroSectorInside(
      buf,
      pos,
      pos + propertiesLength,
      start,
      options.expectedPhysicalOffset ?? physicalOffset,
    );
    if (torn) {
      return invalidInto(
        out,
        -1,
        'a whole sector inside the properties is zeros (a torn write: the body CRC cannot see it)',
      );
    }
  }
  const expected = calMsgLength(version, sysFlag, bodyLength, topicLength, propertiesLength);
  if (expected !== totalSize) {
    return invalidInto(
      out,
      totalSize,
      `TOTALSIZE ${totalSize} does not match the field lengths (${expected})`,
    );
  }
  const topic = topicAt(buf, topicOffset, topicLength);
  if (topic === null) return invalidInto(out, -1, 'the topic holds characters no topic can have');
  out.size = totalSize;
  out.version = version;
  out.topic = topic;
  out.queueId = queueId;
  out.queueOffset = queueOffset;
  out.physicalOffset = physicalOffset;
  out.sysFlag = sysFlag;
  out.storeTimestamp = storeTimestamp;
  out.bornTimestampOffset = start + 40;
  out.preparedTransactionOffsetOffset = preparedTransactionOffsetOffset;
  out.bodyOffset = bodyOffset;
  out.bodyLength = bodyLength;
  out.propertiesOffset = pos;
  out.propertiesLength = propertiesLength;
  return 'record';
}

/**
 * Disks write whole sectors, and after a power loss each unsynced sector of a record may have
 * kept its new content or reverted to what was durable before: zeros, in a commit log (segments
 * are created zero-filled and recovery zeroes what it cuts). A reverted sector inside the body
 * fails the body CRC; inside the header, topic or the properties' last bytes it breaks a length,
 * the topic or the final 0x02. Only a sector wholly inside the properties escapes all of those,
 * and puts refuse NUL characters in properties, so a whole sector of zeros there means a tear.
 */
export const TORN_SECTOR_SIZE_BYTES = 512;
const ZERO_SECTOR = Buffer.alloc(TORN_SECTOR_SIZE_BYTES);

/**
 * Whether [from, to) of `buf` holds a sector-aligned run of TORN_SECTOR_SIZE_BYTES zeros;
 * `recordStart` in `buf` is at commit-log offset `recordOffset` (sectors align to the file,
 * and segment sizes are whole sectors).
 */
function zeroSectorInside(
  buf: Buffer,
  from: number,
  to: number,
  recordStart: number,
  recordOffset: number,
): boolean {
  const fromOffset = recordOffset + (from - recordStart);
  const misalignment = fromOffset % TORN_SECTOR_SIZE_BYTES;
  let at = misalignment === 0 ? from : from + TORN_SECTOR_SIZE_BYTES - misalignment;
  for (; at + TORN_SECTOR_SIZE_BYTES <= to; at += TORN_SECTOR_SIZE_BYTES) {
    if (buf.compare(ZERO_SECTOR, 0, TORN_SECTOR_SIZE_BYTES, at, at + TORN_SECTOR_SIZE_BYTES) === 0)
      return true;
  }
  return false;
}

const TAGS_NAME = Buffer.from(MessageConst.PROPERTY_TAGS, 'latin1');
const TIMER_DELIVER_MS_NAME = Buffer.from(PROPERTY_TIMER_DELIVER_MS, 'latin1');
const NAME_VALUE_SEPARATOR_BYTE = 0x01;
const PROPERTY_SEPARATOR_BYTE = 0x02;

/**
 * The tags code of the record `header` describes in `buf`: Java hashCode of its TAGS property,
 * 0 without one. Found in the bytes with `string2messageProperties`' rules (pairs split at 0x02,
 * name and value at the first 0x01, both non-empty, the last TAGS wins).
 */
export function tagsCodeOf(buf: Buffer, header: RecordHeader): number {
  const tags = propertyValueOf(buf, header.propertiesOffset, header.propertiesLength, TAGS_NAME);
  const timerDeliverMs =
    header.topic === TIMER_TOPIC
      ? propertyValueOf(buf, header.propertiesOffset, header.propertiesLength, TIMER_DELIVER_MS_NAME)
      : undefined;
  return consumeQueueTagsCode(header.topic, tags, timerDeliverMs);
}

function propertyValueOf(buf: Buffer, offset: number, length: number, name: Buffer): string | undefined {
  const end = offset + length;
  let value: string | undefined;
  let start = offset;
  while (start < end) {
    let pairEnd = buf.indexOf(PROPERTY_SEPARATOR_BYTE, start);
    if (pairEnd < 0 || pairEnd > end) pairEnd = end;
    const sep = start + name.length;
    if (
      sep < pairEnd - 1 &&
      buf[sep] === NAME_VALUE_SEPARATOR_BYTE &&
      buf.compare(name, 0, name.length, start, sep) === 0
    ) {
      value = buf.toString('utf8', sep + 1, pairEnd);
    }
    start = pairEnd + 1;
  }
  return value;
}

const scratch = new RecordHeader();

/**
 * Checks the record at `pos` in `buf`, reading no further than `limit`. Never throws: anything
 * malformed is `invalid` with a reason.
 */
export function checkMessageAndReturnSize(
  buf: Buffer,
  pos: number,
  limit: number,
  options: CheckOptions,
): CheckResult {
  const kind = checkRecordHeader(buf, pos, limit, options, scratch);
  if (kind === 'invalid') return invalid(scratch.size, scratch.reason);
  if (kind === 'blank') return { kind: 'blank', size: scratch.size };
  const properties =
    scratch.propertiesLength > 0
      ? string2messageProperties(
          buf.toString('utf8', scratch.propertiesOffset, scratch.propertiesOffset + scratch.propertiesLength),
        )
      : {};
  return {
    kind: 'record',
    size: scratch.size,
    version: scratch.version,
    topic: scratch.topic,
    queueId: scratch.queueId,
    queueOffset: scratch.queueOffset,
    physicalOffset: scratch.physicalOffset,
    sysFlag: scratch.sysFlag,
    storeTimestamp: scratch.storeTimestamp,
    bornTimestamp: readInt64BE(buf, scratch.bornTimestampOffset),
    tagsCode: consumeQueueTagsCode(
      scratch.topic,
      properties[MessageConst.PROPERTY_TAGS],
      properties[PROPERTY_TIMER_DELIVER_MS],
    ),
    keys: properties[MessageConst.PROPERTY_KEYS],
    uniqKey: properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX],
    preparedTransactionOffset: readInt64BE(buf, scratch.preparedTransactionOffsetOffset),
    properties,
    bodyOffset: scratch.bodyOffset,
    bodyLength: scratch.bodyLength,
  };
}

function checkPropCrc(
  buf: Buffer,
  start: number,
  totalSize: number,
  propertiesOffset: number,
  propertiesLength: number,
): string | null {
  const digits = propertyValueOf(buf, propertiesOffset, propertiesLength, PROP_CRC_NAME);
  if (digits === undefined) return 'the __CRC32# property is missing';
  if (!/^\d+$/.test(digits) || digits.length !== PROP_CRC_DIGITS)
    return `the __CRC32# value ${digits} is malformed`;
  const stored = Number([...digits].reverse().join(''));
  const crc = zlib.crc32(buf.subarray(start, start + totalSize - PROP_CRC_RESERVED_BYTES)) & CRC_MASK;
  return crc === stored ? null : `record CRC ${crc} does not match __CRC32# ${stored}`;
}

const PROP_CRC_NAME = Buffer.from(MessageConst.PROPERTY_CRC32, 'latin1');

/** Decodes a checked record into a `MessageExt`. */
export function decodeCheckedRecord(buf: Buffer, start: number, record: CheckedRecord): MessageExt {
  const bornHostV6 = bornHostLengthOf(record.sysFlag) === 20;
  const storeHostV6 = storeHostLengthOf(record.sysFlag) === 20;
  const bornHost = decodeHost(buf, start + 48, bornHostV6);
  const storeHostPos = start + 48 + bornHostLengthOf(record.sysFlag) + 8;
  const storeHost = decodeHost(buf, storeHostPos, storeHostV6);
  const reconsumeTimes = buf.readInt32BE(storeHostPos + storeHostLengthOf(record.sysFlag));
  return {
    topic: record.topic,
    queueId: record.queueId,
    flag: buf.readInt32BE(start + 16),
    body: Buffer.from(buf.subarray(record.bodyOffset, record.bodyOffset + record.bodyLength)),
    bodyCRC: buf.readInt32BE(start + 8),
    properties: record.properties,
    tags: record.properties[MessageConst.PROPERTY_TAGS],
    keys: record.keys,
    queueOffset: record.queueOffset,
    commitLogOffset: record.physicalOffset,
    sysFlag: record.sysFlag,
    bornTimestamp: record.bornTimestamp,
    bornHost,
    storeTimestamp: record.storeTimestamp,
    storeHost,
    reconsumeTimes,
    preparedTransactionOffset: record.preparedTransactionOffset,
    storeSize: record.size,
    version: record.version,
    msgId: offsetMessageIdFromBytes(
      buf,
      storeHostPos,
      storeHostLengthOf(record.sysFlag),
      record.physicalOffset,
    ),
  };
}

/** Checks and decodes the record at `pos`; null when it is not a valid record. */
export function decodeMessage(
  buf: Buffer,
  pos: number,
  limit: number,
  options: CheckOptions,
): MessageExt | null {
  const checked = checkMessageAndReturnSize(buf, pos, limit, options);
  return checked.kind === 'record' ? decodeCheckedRecord(buf, pos, checked) : null;
}
