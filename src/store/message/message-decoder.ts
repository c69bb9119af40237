import zlib from 'node:zlib';
import { decodeHost } from './host.js';
import { readInt64BE } from './int64.js';
import { tagsString2tagsCode } from './java-hash.js';
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
 * Checks the record at `pos` in `buf`, reading no further than `limit`. Never throws: anything
 * malformed is `invalid` with a reason.
 */
export function checkMessageAndReturnSize(
  buf: Buffer,
  pos: number,
  limit: number,
  options: CheckOptions,
): CheckResult {
  const available = limit - pos;
  if (available < 8) return invalid(-1, `only ${available} bytes left, less than a record header`);
  const totalSize = buf.readInt32BE(pos);
  const magic = buf.readInt32BE(pos + 4);
  if (magic === BLANK_MAGIC_CODE) {
    if (totalSize < 8) return invalid(-1, `BLANK record with TOTALSIZE ${totalSize}`);
    return { kind: 'blank', size: totalSize };
  }
  if (magic !== MESSAGE_MAGIC_CODE_V1 && magic !== MESSAGE_MAGIC_CODE_V2) {
    return invalid(-1, `magic code 0x${(magic >>> 0).toString(16)} is not a record`);
  }
  if (totalSize < MESSAGE_MIN_LENGTH_BYTES)
    return invalid(-1, `TOTALSIZE ${totalSize} is too small for a record`);
  if (totalSize > available)
    return invalid(-1, `TOTALSIZE ${totalSize} runs past the readable ${available} bytes`);
  const version: MessageVersion = magic === MESSAGE_MAGIC_CODE_V1 ? 1 : 2;
  const end = pos + totalSize;
  try {
    return parseRecord(buf, pos, end, totalSize, version, options);
  } catch (err) {
    // A length field pointing outside the record makes a read throw RangeError: not a record.
    return invalid(totalSize, `record fields overrun TOTALSIZE (${(err as Error).message})`);
  }
}

function parseRecord(
  buf: Buffer,
  start: number,
  end: number,
  totalSize: number,
  version: MessageVersion,
  options: CheckOptions,
): CheckResult {
  const bodyCRC = buf.readInt32BE(start + 8);
  const queueId = buf.readInt32BE(start + 12);
  const queueOffset = readInt64BE(buf, start + 20);
  const physicalOffset = readInt64BE(buf, start + 28);
  const sysFlag = buf.readInt32BE(start + 36);
  const bornTimestamp = readInt64BE(buf, start + 40);
  let pos = start + 48 + bornHostLengthOf(sysFlag);
  const storeTimestamp = readInt64BE(buf, pos);
  pos += 8 + storeHostLengthOf(sysFlag);
  pos += 4; // RECONSUMETIMES
  const preparedTransactionOffset = readInt64BE(buf, pos);
  pos += 8;
  if (Number.isNaN(queueOffset) || Number.isNaN(physicalOffset) || Number.isNaN(storeTimestamp)) {
    return invalid(totalSize, 'an int64 field is outside the safe integer range');
  }
  if (options.expectedPhysicalOffset !== undefined && physicalOffset !== options.expectedPhysicalOffset) {
    return invalid(
      totalSize,
      `PHYSICALOFFSET ${physicalOffset} does not match the record's position ${options.expectedPhysicalOffset}`,
    );
  }
  const bodyLength = buf.readInt32BE(pos);
  pos += 4;
  if (bodyLength < 0 || pos + bodyLength > end)
    return invalid(totalSize, `body length ${bodyLength} overruns the record`);
  const bodyOffset = pos;
  if (options.checkCRC && options.forceVerifyPropCRC !== true && bodyLength > 0) {
    const crc = zlib.crc32(buf.subarray(bodyOffset, bodyOffset + bodyLength)) & CRC_MASK;
    if (crc !== bodyCRC) return invalid(-1, `body CRC ${crc} does not match BODYCRC ${bodyCRC}`);
  }
  pos += bodyLength;
  const topicLength = version === 1 ? buf.readInt8(pos) : buf.readInt16BE(pos);
  pos += version === 1 ? 1 : 2;
  if (topicLength <= 0 || pos + topicLength > end)
    return invalid(totalSize, `topic length ${topicLength} is invalid`);
  const topic = buf.toString('utf8', pos, pos + topicLength);
  pos += topicLength;
  const propertiesLength = buf.readInt16BE(pos);
  pos += 2;
  if (propertiesLength < 0 || pos + propertiesLength > end) {
    return invalid(totalSize, `properties length ${propertiesLength} is invalid`);
  }
  const properties =
    propertiesLength > 0 ? string2messageProperties(buf.toString('utf8', pos, pos + propertiesLength)) : {};
  if (options.checkCRC && options.forceVerifyPropCRC === true) {
    const problem = checkPropCrc(buf, start, totalSize, properties);
    if (problem !== null) return invalid(-1, problem);
  }
  const expected = calMsgLength(version, sysFlag, bodyLength, topicLength, propertiesLength);
  if (expected !== totalSize) {
    return invalid(totalSize, `TOTALSIZE ${totalSize} does not match the field lengths (${expected})`);
  }
  return {
    kind: 'record',
    size: totalSize,
    version,
    topic,
    queueId,
    queueOffset,
    physicalOffset,
    sysFlag,
    storeTimestamp,
    bornTimestamp,
    tagsCode: tagsString2tagsCode(properties[MessageConst.PROPERTY_TAGS]),
    keys: properties[MessageConst.PROPERTY_KEYS],
    uniqKey: properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX],
    preparedTransactionOffset,
    properties,
    bodyOffset,
    bodyLength,
  };
}

function checkPropCrc(
  buf: Buffer,
  start: number,
  totalSize: number,
  properties: Readonly<Record<string, string>>,
): string | null {
  const digits = properties[MessageConst.PROPERTY_CRC32];
  if (digits === undefined) return 'the __CRC32# property is missing';
  if (!/^\d+$/.test(digits) || digits.length !== PROP_CRC_DIGITS)
    return `the __CRC32# value ${digits} is malformed`;
  const stored = Number([...digits].reverse().join(''));
  const crc = zlib.crc32(buf.subarray(start, start + totalSize - PROP_CRC_RESERVED_BYTES)) & CRC_MASK;
  return crc === stored ? null : `record CRC ${crc} does not match __CRC32# ${stored}`;
}

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
