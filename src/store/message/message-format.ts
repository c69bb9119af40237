import { HOST_V4_LENGTH_BYTES, HOST_V6_LENGTH_BYTES } from './host.js';
import { isBornHostV6, isStoreHostV6 } from './message-sys-flag.js';

/**
 * The commit log record, byte for byte as RocketMQ writes it (store reference §2.1). All integers
 * are big-endian. Offsets shown for IPv4 born and store hosts (each 8 bytes; 20 for IPv6):
 *
 *   offset  size  field
 *   ------  ----  ------------------------------------------------------------------
 *        0     4  TOTALSIZE            length of the whole record, this field included
 *        4     4  MAGICCODE            V1 0xDAA320A7 | V2 0xDAA320AB | BLANK 0xCBD43194
 *        8     4  BODYCRC              crc32(body) & 0x7FFFFFFF
 *       12     4  QUEUEID
 *       16     4  FLAG                 the producer's flag
 *       20     8  QUEUEOFFSET          index in the consume queue (counts messages)
 *       28     8  PHYSICALOFFSET       commit log offset of this record
 *       36     4  SYSFLAG              MessageSysFlag bits
 *       40     8  BORNTIMESTAMP        ms
 *       48   8|20 BORNHOST             address + port int32
 *       56     8  STORETIMESTAMP       ms, set in the put section
 *       64   8|20 STOREHOSTADDRESS
 *       72     4  RECONSUMETIMES
 *       76     8  PREPARED TX OFFSET
 *       84   4+n  BODY                 int32 length, then the bytes
 *     88+n 1|2+t  TOPIC                V1: int8 length, V2: int16 length, then UTF-8
 *        …   2+p  PROPERTIES           int16 length, then UTF-8 `name 0x01 value 0x02 …`
 *
 * A segment that cannot take the next record ends in a BLANK record: 8 bytes, TOTALSIZE = the
 * remaining bytes of the segment and MAGICCODE = BLANK. Readers jump to the next segment.
 */

export const MESSAGE_MAGIC_CODE_V1 = 0xdaa320a7 | 0;
export const MESSAGE_MAGIC_CODE_V2 = 0xdaa320ab | 0;
export const BLANK_MAGIC_CODE = 0xcbd43194 | 0;

/** A record never ends closer than this to the end of its segment: room for the BLANK. */
export const END_FILE_MIN_BLANK_LENGTH_BYTES = 8;
/** The properties length is a signed int16 on disk. */
export const PROPERTIES_LENGTH_MAX_BYTES = 32767;
/** V1 stores the topic length in a signed int8. */
export const TOPIC_LENGTH_V1_MAX_BYTES = 127;
/** RocketMQ's broker refuses longer topics; it also keeps directory names sane. */
export const TOPIC_LENGTH_MAX_BYTES = 255;
/** The whole record may exceed `maxMessageSize` by this much (header, topic, properties). */
export const MESSAGE_RECORD_OVERHEAD_MAX_BYTES = 64 * 1024;

export const TOTALSIZE_POSITION = 0;
export const MESSAGE_MAGIC_CODE_POSITION = 4;
export const BODYCRC_POSITION = 8;
export const QUEUEID_POSITION = 12;
export const MESSAGE_FLAG_POSITION = 16;
export const QUEUE_OFFSET_POSITION = 20;
export const PHY_POS_POSITION = 28;
export const SYSFLAG_POSITION = 36;
export const BORN_TIMESTAMP_POSITION = 40;
export const BORNHOST_POSITION = 48;

/** The property-CRC tail: `__CRC32#` 0x01 ten digits 0x02. */
export const PROP_CRC_RESERVED_BYTES = 20;
export const PROP_CRC_DIGITS = 10;

export type MessageVersion = 1 | 2;

export function magicCodeOf(version: MessageVersion): number {
  return version === 1 ? MESSAGE_MAGIC_CODE_V1 : MESSAGE_MAGIC_CODE_V2;
}

export function topicLengthSizeOf(version: MessageVersion): number {
  return version === 1 ? 1 : 2;
}

export function bornHostLengthOf(sysFlag: number): number {
  return isBornHostV6(sysFlag) ? HOST_V6_LENGTH_BYTES : HOST_V4_LENGTH_BYTES;
}

export function storeHostLengthOf(sysFlag: number): number {
  return isStoreHostV6(sysFlag) ? HOST_V6_LENGTH_BYTES : HOST_V4_LENGTH_BYTES;
}

/** STORETIMESTAMP's position: it moves with the born host's length. */
export function storeTimestampPositionOf(sysFlag: number): number {
  return BORNHOST_POSITION + bornHostLengthOf(sysFlag);
}

/** RocketMQ's `calMsgLength`: the total record length for these field sizes. */
export function calMsgLength(
  version: MessageVersion,
  sysFlag: number,
  bodyLength: number,
  topicLength: number,
  propertiesLength: number,
): number {
  return (
    4 + // TOTALSIZE
    4 + // MAGICCODE
    4 + // BODYCRC
    4 + // QUEUEID
    4 + // FLAG
    8 + // QUEUEOFFSET
    8 + // PHYSICALOFFSET
    4 + // SYSFLAG
    8 + // BORNTIMESTAMP
    bornHostLengthOf(sysFlag) + // BORNHOST
    8 + // STORETIMESTAMP
    storeHostLengthOf(sysFlag) + // STOREHOSTADDRESS
    4 + // RECONSUMETIMES
    8 + // PREPARED TRANSACTION OFFSET
    4 +
    bodyLength + // BODY
    topicLengthSizeOf(version) +
    topicLength + // TOPIC
    2 +
    propertiesLength // PROPERTIES
  );
}

/** RocketMQ's offset-to-file-name rule: decimal, zero-padded to 20 digits. */
export function offset2FileName(offset: number): string {
  return String(offset).padStart(20, '0');
}

/** The BODYCRC value: IEEE CRC-32 with the top bit masked off, as `UtilAll.crc32` returns it. */
export const CRC_MASK = 0x7fffffff;
