import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { decodeHost, type HostAddress, parseHost } from '../../src/store/message/host.js';
import { readInt64BE, writeInt64BE } from '../../src/store/message/int64.js';
import { javaStringHashCode, tagsString2tagsCode } from '../../src/store/message/java-hash.js';
import type { Message } from '../../src/store/message/message.js';
import {
  checkMessageAndReturnSize,
  decodeMessage,
  MESSAGE_MIN_LENGTH_BYTES,
} from '../../src/store/message/message-decoder.js';
import {
  type EncodedMessage,
  type EncodeRejection,
  type EncoderConfig,
  encodeBatch,
  encodeMessage,
  writeRecord,
} from '../../src/store/message/message-ext-encoder.js';
import { calMsgLength } from '../../src/store/message/message-format.js';
import { createOffsetMessageId, decodeOffsetMessageId } from '../../src/store/message/message-id.js';
import {
  messageProperties2String,
  string2messageProperties,
} from '../../src/store/message/message-properties.js';
import { PutMessageStatus } from '../../src/store/status.js';
import { expectedRecordLength } from '../support/record-layout.js';

// ---------------------------------------------------------------------------------------------
// Reference values written from the RocketMQ record layout (store reference §2.1-§2.5), not from
// the code under test.
// ---------------------------------------------------------------------------------------------

const MAGIC_V1 = 0xdaa320a7 | 0; // -626843481
const MAGIC_V2 = 0xdaa320ab | 0; // -626843477
const BORNHOST_V6 = 0x10;
const STOREHOST_V6 = 0x20;
const NUM_RUNS = 300;

function host(text: string): HostAddress {
  const parsed = parseHost(text);
  assert.ok(parsed !== null, `test setup: ${text} must parse`);
  return parsed;
}

function config(overrides: Partial<EncoderConfig> = {}): EncoderConfig {
  return {
    maxMessageSize: 4 * 1024 * 1024,
    autoMessageVersionOnTopicLen: true,
    enabledAppendPropCRC: false,
    mappedFileSizeCommitLog: 64 * 1024 * 1024,
    defaultStoreHost: host('127.0.0.1:10911'),
    ...overrides,
  };
}

/** Java's `(int) crc32 & 0x7FFFFFFF`, as RocketMQ's UtilAll.crc32 returns it. */
function bodyCrc(body: Uint8Array): number {
  return zlib.crc32(body) & 0x7fffffff;
}

/** Java String.hashCode from its definition, with BigInt so no int32 tricks are shared with src. */
function javaHashReference(s: string): number {
  let h = 0n;
  for (let i = 0; i < s.length; i++) h = (h * 31n + BigInt(s.charCodeAt(i))) & 0xffffffffn;
  return Number(BigInt.asIntN(32, h));
}

function encoded(result: EncodedMessage | EncodeRejection | ReturnType<typeof encodeBatch>): EncodedMessage {
  assert.equal(result.kind, 'single', `expected an encoded message, got ${JSON.stringify(result)}`);
  return result as EncodedMessage;
}

function rejection(result: { kind: string }): EncodeRejection {
  assert.equal(result.kind, 'rejected', `expected a rejection, got kind ${result.kind}`);
  return result as EncodeRejection;
}

function assertRejected(result: { kind: string }, status: PutMessageStatus, what: string): void {
  const r = rejection(result);
  assert.equal(r.status, status, `${what}: status (reason: ${r.reason})`);
  assert.ok(r.reason.length > 0, `${what}: a rejection names its reason`);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

const TOPIC_CHARS = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-%|'];
const topicCharArb = fc.constantFrom(...TOPIC_CHARS);
const topicV1Arb = fc.string({ unit: topicCharArb, minLength: 1, maxLength: 127 });
const topicV2Arb = fc.string({ unit: topicCharArb, minLength: 128, maxLength: 255 });

const portArb = fc.integer({ min: 0, max: 65535 });
const ipv4HostArb = fc.tuple(fc.ipV4(), portArb).map(([ip, port]) => `${ip}:${port}`);
const ipv6HostArb = fc.tuple(fc.ipV6(), portArb).map(([ip, port]) => `[${ip}]:${port}`);
const hostArb = fc.oneof(ipv4HostArb, ipv6HostArb);

/** Printable text without the two separators: what a property name or value may hold. */
const printableArb = (maxLength: number) =>
  fc
    .string({ unit: 'grapheme', minLength: 1, maxLength })
    .filter((s) => !s.includes('\u0001') && !s.includes('\u0002'));

const RESERVED_NAMES = new Set(['TAGS', 'KEYS', 'WAIT', '__CRC32#', '__proto__']);
const propertyNameArb = printableArb(12).filter((s) => !RESERVED_NAMES.has(s));
const propertiesArb = fc.dictionary(propertyNameArb, printableArb(40), { maxKeys: 6 });

const bodyArb = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 2048 }),
  fc.uint8Array({ minLength: 0, maxLength: 64 }).map((b) => Buffer.from(b)),
  fc.constant(new Uint8Array(0)),
);

const int32Arb = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

interface MessageCase {
  readonly msg: Message;
  readonly queueOffset: number;
  readonly physicalOffset: number;
  readonly storeTimestamp: number;
  readonly storeHostText: string;
  readonly padBefore: number;
}

const messageCaseArb = (topicArb: fc.Arbitrary<string>): fc.Arbitrary<MessageCase> =>
  fc
    .record({
      topic: topicArb,
      queueId: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      body: bodyArb,
      flag: int32Arb,
      sysFlag: int32Arb,
      tags: fc.option(printableArb(20), { nil: undefined }),
      keys: fc.option(
        fc.oneof(printableArb(30), fc.array(printableArb(10), { minLength: 1, maxLength: 4 })),
        {
          nil: undefined,
        },
      ),
      properties: fc.option(propertiesArb, { nil: undefined }),
      bornTimestamp: fc.maxSafeNat(),
      bornHost: hostArb,
      storeHost: hostArb,
      reconsumeTimes: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      preparedTransactionOffset: fc.maxSafeNat(),
      waitStoreMsgOK: fc.option(fc.boolean(), { nil: undefined }),
      queueOffset: fc.maxSafeNat(),
      physicalOffset: fc.maxSafeNat(),
      storeTimestamp: fc.maxSafeNat(),
      padBefore: fc.nat(64),
    })
    .map((r) => {
      const msg: Message = {
        topic: r.topic,
        queueId: r.queueId,
        body: r.body,
        flag: r.flag,
        sysFlag: r.sysFlag,
        bornTimestamp: r.bornTimestamp,
        bornHost: r.bornHost,
        storeHost: r.storeHost,
        reconsumeTimes: r.reconsumeTimes,
        preparedTransactionOffset: r.preparedTransactionOffset,
        ...(r.tags === undefined ? {} : { tags: r.tags }),
        ...(r.keys === undefined ? {} : { keys: r.keys }),
        ...(r.properties === undefined ? {} : { properties: r.properties }),
        ...(r.waitStoreMsgOK === undefined ? {} : { waitStoreMsgOK: r.waitStoreMsgOK }),
      };
      return {
        msg,
        queueOffset: r.queueOffset,
        physicalOffset: r.physicalOffset,
        storeTimestamp: r.storeTimestamp,
        storeHostText: r.storeHost,
        padBefore: r.padBefore,
      };
    });

/** The properties the record must carry: user properties, then TAGS, KEYS, and WAIT=false. */
function expectedProperties(msg: Message): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(msg.properties ?? {})) out[name] = value;
  if (msg.tags !== undefined) out.TAGS = msg.tags;
  if (msg.keys !== undefined) out.KEYS = typeof msg.keys === 'string' ? msg.keys : msg.keys.join(' ');
  if (msg.waitStoreMsgOK === false) out.WAIT = 'false';
  return out;
}

function propertiesByteLength(props: Record<string, string>): number {
  let n = 0;
  for (const [name, value] of Object.entries(props)) {
    n += Buffer.byteLength(name, 'utf8') + 1 + Buffer.byteLength(value, 'utf8') + 1;
  }
  return n;
}

/** Encodes and writes one case into a buffer with garbage around it; returns where it landed. */
function writeCase(
  c: MessageCase,
  cfg: EncoderConfig = config(),
): { buf: Buffer; pos: number; enc: EncodedMessage } {
  const enc = encoded(encodeMessage(c.msg, cfg, 1_700_000_000_000));
  const buf = Buffer.alloc(c.padBefore + enc.record.msgLength + 32, 0xa5);
  const end = writeRecord(buf, c.padBefore, enc.record, c.queueOffset, c.physicalOffset, c.storeTimestamp);
  assert.equal(end - c.padBefore, enc.record.msgLength, 'writeRecord writes exactly msgLength bytes');
  // The garbage after the record is untouched.
  assert.ok(
    buf.subarray(end).every((b) => b === 0xa5),
    'nothing is written past the record',
  );
  return { buf, pos: c.padBefore, enc };
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

function checkRoundTrip(c: MessageCase, expectV2: boolean): void {
  const { buf, pos, enc } = writeCase(c);
  const msg = c.msg;
  const topicBytes = Buffer.byteLength(msg.topic, 'utf8');
  const bornV6 = msg.bornHost?.startsWith('[') === true;
  const storeV6 = c.storeHostText.startsWith('[');
  const props = expectedProperties(msg);
  const propLength = propertiesByteLength(props);
  const totalSize = expectedRecordLength(bornV6, storeV6, msg.body.length, topicBytes, propLength);

  // Raw header fields, read at the fixed offsets of §2.1.
  assert.equal(buf.readInt32BE(pos), totalSize, 'TOTALSIZE');
  assert.equal(enc.record.msgLength, totalSize, 'msgLength');
  const version = expectV2 ? 2 : 1;
  const sysFlagOnDisk = buf.readInt32BE(pos + 36);
  assert.equal(
    calMsgLength(version, sysFlagOnDisk, msg.body.length, topicBytes, propLength),
    totalSize,
    'TOTALSIZE == calMsgLength',
  );
  assert.equal(buf.readInt32BE(pos + 4), expectV2 ? MAGIC_V2 : MAGIC_V1, 'MAGICCODE');
  assert.equal(buf.readInt32BE(pos + 8), bodyCrc(msg.body), 'BODYCRC == crc32(body) & 0x7fffffff');
  assert.equal(buf.readInt32BE(pos + 12), msg.queueId, 'QUEUEID');
  assert.equal(buf.readInt32BE(pos + 16), msg.flag, 'FLAG');
  assert.equal(buf.readBigInt64BE(pos + 20), BigInt(c.queueOffset), 'QUEUEOFFSET');
  assert.equal(buf.readBigInt64BE(pos + 28), BigInt(c.physicalOffset), 'PHYSICALOFFSET');
  const expectedSysFlag =
    ((msg.sysFlag ?? 0) & ~(BORNHOST_V6 | STOREHOST_V6)) |
    (bornV6 ? BORNHOST_V6 : 0) |
    (storeV6 ? STOREHOST_V6 : 0);
  assert.equal(sysFlagOnDisk, expectedSysFlag, 'SYSFLAG: caller bits kept, V6 bits set by the encoder');
  assert.equal((sysFlagOnDisk & BORNHOST_V6) !== 0, bornV6, 'SYSFLAG bit 0x10 <=> IPv6 born host');
  assert.equal((sysFlagOnDisk & STOREHOST_V6) !== 0, storeV6, 'SYSFLAG bit 0x20 <=> IPv6 store host');
  assert.equal(buf.readBigInt64BE(pos + 40), BigInt(msg.bornTimestamp ?? -1), 'BORNTIMESTAMP');
  const bornLen = bornV6 ? 20 : 8;
  const storeLen = storeV6 ? 20 : 8;
  assert.deepEqual(buf.subarray(pos + 48, pos + 48 + bornLen), host(msg.bornHost ?? '').bytes, 'BORNHOST');
  const storeTsPos = pos + 48 + bornLen;
  assert.equal(buf.readBigInt64BE(storeTsPos), BigInt(c.storeTimestamp), 'STORETIMESTAMP');
  const storeHostBytes = buf.subarray(storeTsPos + 8, storeTsPos + 8 + storeLen);
  assert.deepEqual(storeHostBytes, host(c.storeHostText).bytes, 'STOREHOSTADDRESS');
  let p = storeTsPos + 8 + storeLen;
  assert.equal(buf.readInt32BE(p), msg.reconsumeTimes, 'RECONSUMETIMES');
  assert.equal(buf.readBigInt64BE(p + 4), BigInt(msg.preparedTransactionOffset ?? -1), 'PREPARED TX OFFSET');
  assert.equal(buf.readInt32BE(p + 12), msg.body.length, 'BODY length');
  p += 16;
  assert.deepEqual(
    new Uint8Array(buf.subarray(p, p + msg.body.length)),
    new Uint8Array(msg.body),
    'BODY bytes',
  );
  p += msg.body.length;
  if (expectV2) {
    assert.equal(buf.readInt16BE(p), topicBytes, 'TOPIC length (int16, V2)');
    p += 2;
  } else {
    assert.equal(buf.readInt8(p), topicBytes, 'TOPIC length (int8, V1)');
    p += 1;
  }
  assert.equal(buf.toString('utf8', p, p + topicBytes), msg.topic, 'TOPIC bytes');
  p += topicBytes;
  assert.equal(buf.readInt16BE(p), propLength, 'PROPERTIES length');
  p += 2 + propLength;
  assert.equal(p - pos, totalSize, 'the fields add up to TOTALSIZE');

  // The checker and the decoder agree with the raw bytes.
  const checked = checkMessageAndReturnSize(buf, pos, pos + totalSize, {
    checkCRC: true,
    expectedPhysicalOffset: c.physicalOffset,
  });
  assert.equal(checked.kind, 'record', `check: ${JSON.stringify(checked)}`);
  if (checked.kind !== 'record') return;
  assert.equal(checked.size, totalSize);
  assert.equal(checked.version, version);
  assert.equal(checked.tagsCode, msg.tags === undefined ? 0 : javaHashReference(msg.tags), 'tagsCode');
  assert.equal(checked.keys, props.KEYS);

  const decoded = decodeMessage(buf, pos, buf.length, { checkCRC: true });
  assert.ok(decoded !== null, 'decodeMessage returns the record');
  assert.equal(decoded.topic, msg.topic);
  assert.equal(decoded.queueId, msg.queueId);
  assert.equal(decoded.flag, msg.flag);
  assert.deepEqual(new Uint8Array(decoded.body), new Uint8Array(msg.body));
  assert.equal(decoded.bodyCRC, bodyCrc(msg.body));
  assert.deepEqual({ ...decoded.properties }, props, 'properties');
  assert.equal(decoded.tags, msg.tags);
  assert.equal(decoded.keys, props.KEYS);
  assert.equal(decoded.queueOffset, c.queueOffset);
  assert.equal(decoded.commitLogOffset, c.physicalOffset);
  assert.equal(decoded.sysFlag, expectedSysFlag);
  assert.equal(decoded.bornTimestamp, msg.bornTimestamp);
  assert.equal(decoded.bornHost, host(msg.bornHost ?? '').text);
  assert.equal(decoded.storeTimestamp, c.storeTimestamp);
  assert.equal(decoded.storeHost, host(c.storeHostText).text);
  assert.equal(decoded.reconsumeTimes, msg.reconsumeTimes);
  assert.equal(decoded.preparedTransactionOffset, msg.preparedTransactionOffset);
  assert.equal(decoded.storeSize, totalSize);
  assert.equal(decoded.version, version);
  const expectedMsgId =
    storeHostBytes.toString('hex').toUpperCase() +
    c.physicalOffset.toString(16).toUpperCase().padStart(16, '0');
  assert.equal(decoded.msgId, expectedMsgId, 'msgId = hex(store host bytes) + hex(offset, 16)');
  assert.equal(decoded.msgId.length, storeV6 ? 56 : 32);
}

describe('record codec round trip', () => {
  it('V1 topics (<= 127 bytes): every field survives encode -> writeRecord -> check/decode', () => {
    fc.assert(
      fc.property(messageCaseArb(topicV1Arb), (c) => checkRoundTrip(c, false)),
      { numRuns: NUM_RUNS },
    );
  });

  it('V2 topics (128..255 bytes): magic 0xDAA320AB and an int16 topic length', () => {
    fc.assert(
      fc.property(messageCaseArb(topicV2Arb), (c) => checkRoundTrip(c, true)),
      { numRuns: NUM_RUNS },
    );
  });

  it('IPv4 and IPv6 hosts in every combination set exactly the matching SYSFLAG bits', () => {
    fc.assert(
      fc.property(
        messageCaseArb(topicV1Arb),
        ipv4HostArb,
        ipv6HostArb,
        fc.boolean(),
        fc.boolean(),
        (c, v4, v6, bornV6, storeV6) => {
          const bornHost = bornV6 ? v6 : v4;
          const storeHost = storeV6 ? v6 : v4;
          checkRoundTrip({ ...c, msg: { ...c.msg, bornHost, storeHost }, storeHostText: storeHost }, false);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('the topic switches from V1 to V2 exactly above 127 bytes', () => {
    for (const [length, magic] of [
      [127, MAGIC_V1],
      [128, MAGIC_V2],
      [255, MAGIC_V2],
    ] as const) {
      const topic = 'T'.repeat(length);
      const enc = encoded(encodeMessage({ topic, queueId: 0, body: Buffer.from('x') }, config(), 1));
      const buf = Buffer.alloc(enc.record.msgLength);
      writeRecord(buf, 0, enc.record, 0, 0, 1);
      assert.equal(buf.readInt32BE(4), magic, `topic of ${length} bytes`);
      const decoded = decodeMessage(buf, 0, buf.length, { checkCRC: true });
      assert.equal(decoded?.topic, topic);
    }
    assertRejected(
      encodeMessage(
        { topic: 'T'.repeat(128), queueId: 0, body: Buffer.from('x') },
        config({ autoMessageVersionOnTopicLen: false }),
        1,
      ),
      PutMessageStatus.MESSAGE_ILLEGAL,
      '128-byte topic without autoMessageVersionOnTopicLen',
    );
  });

  it('a message without a store host takes the configured default store host', () => {
    const enc = encoded(
      encodeMessage(
        { topic: 'T', queueId: 0, body: Buffer.alloc(0) },
        config({ defaultStoreHost: host('[2001:db8::7]:10911') }),
        123,
      ),
    );
    const buf = Buffer.alloc(enc.record.msgLength);
    writeRecord(buf, 0, enc.record, 0, 4096, 999);
    assert.equal(buf.readInt32BE(36), STOREHOST_V6, 'only the store host is IPv6');
    const decoded = decodeMessage(buf, 0, buf.length, { checkCRC: true });
    assert.equal(decoded?.storeHost, '[2001:db8::7]:10911');
    assert.equal(decoded?.bornHost, '127.0.0.1:0', 'the default born host');
    assert.equal(decoded?.bornTimestamp, 123, 'bornTimestamp defaults to now');
    assert.equal(decoded?.msgId.length, 56);
  });
});

describe('body CRC', () => {
  it('flipping any single bit of the body fails the CRC check (and only the CRC check)', () => {
    fc.assert(
      fc.property(
        messageCaseArb(topicV1Arb).filter((c) => c.msg.body.length > 0),
        fc.nat(),
        (c, bitSeed) => {
          const { buf, pos, enc } = writeCase(c);
          assert.equal(checkMessageAndReturnSize(buf, pos, buf.length, { checkCRC: true }).kind, 'record');
          const bodyPos =
            pos +
            enc.record.msgLength -
            (2 + enc.record.propertiesBytes.length) -
            (enc.record.version === 1 ? 1 : 2) -
            enc.record.topicBytes.length -
            c.msg.body.length;
          const bit = bitSeed % (c.msg.body.length * 8);
          buf[bodyPos + (bit >> 3)] = (buf[bodyPos + (bit >> 3)] as number) ^ (1 << (bit & 7));
          const withCrc = checkMessageAndReturnSize(buf, pos, buf.length, { checkCRC: true });
          assert.equal(withCrc.kind, 'invalid', `bit ${bit} flipped must fail the CRC`);
          const withoutCrc = checkMessageAndReturnSize(buf, pos, buf.length, { checkCRC: false });
          assert.equal(withoutCrc.kind, 'record', 'without CRC the record still parses');
          assert.equal(decodeMessage(buf, pos, buf.length, { checkCRC: true }), null);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('an empty body has BODYCRC 0 and a zero BODY length', () => {
    const enc = encoded(encodeMessage({ topic: 'T', queueId: 0, body: new Uint8Array(0) }, config(), 1));
    const buf = Buffer.alloc(enc.record.msgLength);
    writeRecord(buf, 0, enc.record, 0, 0, 1);
    assert.equal(buf.readInt32BE(8), 0);
    assert.equal(buf.readInt32BE(84), 0);
    assert.equal(enc.record.msgLength, 91 + 0 + 1 + 0);
    assert.equal(MESSAGE_MIN_LENGTH_BYTES, 92, 'the smallest record: V1, IPv4, 1-byte topic');
    assert.equal(decodeMessage(buf, 0, buf.length, { checkCRC: true })?.body.length, 0);
  });
});

describe('torn sectors inside the properties', () => {
  // The body CRC does not cover the properties: a sector of them lost in a power loss (reverted
  // to the zeros of a fresh segment) would go unnoticed without this check.
  const SECTOR = 512;

  function longPropertyRecord(physicalOffset: number): { buf: Buffer; propsStart: number; propsEnd: number } {
    const enc = encoded(
      encodeMessage(
        { topic: 'TornTopic', queueId: 1, body: Buffer.from('body'), properties: { pad: 'p'.repeat(3000) } },
        config(),
        1,
      ),
    );
    const buf = Buffer.alloc(enc.record.msgLength);
    writeRecord(buf, 0, enc.record, 0, physicalOffset, 1);
    const propsEnd = enc.record.msgLength;
    return { buf, propsStart: propsEnd - enc.record.propertiesBytes.length, propsEnd };
  }

  it('a whole aligned sector of zeros inside the properties fails the check; a shorter run does not', () => {
    for (const physicalOffset of [0, 100, 511, 4096 + 37]) {
      const { buf, propsStart, propsEnd } = longPropertyRecord(physicalOffset);
      const firstAligned = propsStart + ((SECTOR - ((physicalOffset + propsStart) % SECTOR)) % SECTOR);
      assert.ok(firstAligned + SECTOR < propsEnd, 'the properties hold a whole sector');
      const torn = Buffer.from(buf);
      torn.fill(0, firstAligned, firstAligned + SECTOR);
      const check = checkMessageAndReturnSize(torn, 0, torn.length, { checkCRC: true });
      assert.equal(
        check.kind,
        'invalid',
        `a zero sector at record byte ${firstAligned} (offset ${physicalOffset})`,
      );
      assert.equal(
        checkMessageAndReturnSize(torn, 0, torn.length, { checkCRC: false }).kind,
        'record',
        'without CRC checks the record still parses',
      );
      // 511 zeros, or 512 not aligned to a sector, are not a lost sector.
      const partial = Buffer.from(buf);
      partial.fill(0, firstAligned + 1, firstAligned + SECTOR);
      assert.equal(checkMessageAndReturnSize(partial, 0, partial.length, { checkCRC: true }).kind, 'record');
      const unaligned = Buffer.from(buf);
      unaligned.fill(0, firstAligned + 1, firstAligned + 1 + SECTOR - 1);
      assert.equal(
        checkMessageAndReturnSize(unaligned, 0, unaligned.length, { checkCRC: true }).kind,
        'record',
      );
      assert.equal(checkMessageAndReturnSize(buf, 0, buf.length, { checkCRC: true }).kind, 'record');
    }
  });

  it('puts refuse a NUL character in a property name or value (it could later read as a tear)', () => {
    for (const properties of [{ pad: 'a\u0000b' }, { 'n\u0000': 'v' }]) {
      const r = rejection(
        encodeMessage({ topic: 'T', queueId: 0, body: Buffer.from('x'), properties }, config(), 1),
      );
      assert.equal(r.status, PutMessageStatus.MESSAGE_ILLEGAL);
      assert.match(r.reason, /NUL/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Limits and rejections
// ---------------------------------------------------------------------------------------------

describe('encoder limits', () => {
  const base: Message = { topic: 'LimitTopic', queueId: 0, body: Buffer.from('x') };

  it('body of maxMessageSize is accepted, maxMessageSize + 1 is MESSAGE_ILLEGAL', () => {
    const cfg = config({ maxMessageSize: 4096, mappedFileSizeCommitLog: 1024 * 1024 });
    const ok = encoded(encodeMessage({ ...base, body: Buffer.alloc(4096, 7) }, cfg, 1));
    assert.equal(ok.record.msgLength, 91 + 4096 + 'LimitTopic'.length);
    assertRejected(
      encodeMessage({ ...base, body: Buffer.alloc(4097, 7) }, cfg, 1),
      PutMessageStatus.MESSAGE_ILLEGAL,
      'body maxMessageSize + 1',
    );
    // The default 4 MiB limit, as RocketMQ's testPutMsgExceedsMaxLength.
    const big = config({ mappedFileSizeCommitLog: 16 * 1024 * 1024 });
    assert.equal(encodeMessage({ ...base, body: Buffer.alloc(4 * 1024 * 1024) }, big, 1).kind, 'single');
    assertRejected(
      encodeMessage({ ...base, body: Buffer.alloc(4 * 1024 * 1024 + 1) }, big, 1),
      PutMessageStatus.MESSAGE_ILLEGAL,
      'body 4 MiB + 1',
    );
  });

  it('properties of 32767 encoded bytes are accepted, 32768 is PROPERTIES_SIZE_EXCEEDED', () => {
    // `P` 0x01 value 0x02: 3 bytes plus the value.
    const ok = encoded(encodeMessage({ ...base, properties: { P: 'v'.repeat(32764) } }, config(), 1));
    assert.equal(ok.record.propertiesBytes.length, 32767);
    const buf = Buffer.alloc(ok.record.msgLength);
    writeRecord(buf, 0, ok.record, 0, 0, 1);
    const propLenPos = 84 + 4 + base.body.length + 1 + base.topic.length;
    assert.equal(buf.readInt16BE(propLenPos), 32767, 'int16 properties length, still positive');
    assert.equal(decodeMessage(buf, 0, buf.length, { checkCRC: true })?.properties.P?.length, 32764);
    assertRejected(
      encodeMessage({ ...base, properties: { P: 'v'.repeat(32765) } }, config(), 1),
      PutMessageStatus.PROPERTIES_SIZE_EXCEEDED,
      '32768 bytes of properties',
    );
  });

  it('the properties limit counts UTF-8 bytes, TAGS and KEYS included', () => {
    // 10921 x '€' (3 bytes) + 'a' = 32764 bytes of value -> 32767 with `P` 0x01 .. 0x02.
    const value = `${'€'.repeat(10921)}a`;
    assert.equal(Buffer.byteLength(value), 32764);
    assert.equal(encodeMessage({ ...base, properties: { P: value } }, config(), 1).kind, 'single');
    assertRejected(
      encodeMessage({ ...base, properties: { P: `${value}a` } }, config(), 1),
      PutMessageStatus.PROPERTIES_SIZE_EXCEEDED,
      'multi-byte properties of 32768 bytes',
    );
    // TAGS\x01t\x02 = 7 bytes, KEYS\x01k\x02 = 7 bytes: 32767 - 14 - 3 = 32750 for P's value.
    const withTagsKeys = { ...base, tags: 't', keys: 'k' };
    assert.equal(
      encodeMessage({ ...withTagsKeys, properties: { P: 'v'.repeat(32750) } }, config(), 1).kind,
      'single',
    );
    assertRejected(
      encodeMessage({ ...withTagsKeys, properties: { P: 'v'.repeat(32751) } }, config(), 1),
      PutMessageStatus.PROPERTIES_SIZE_EXCEEDED,
      'properties with TAGS and KEYS over 32767',
    );
  });

  it('with the property CRC on, its 20 reserved bytes count toward the 32767 limit', () => {
    const cfg = config({ enabledAppendPropCRC: true });
    // 3 + value + 20 <= 32767 -> value <= 32744.
    const ok = encoded(encodeMessage({ ...base, properties: { P: 'v'.repeat(32744) } }, cfg, 1));
    assert.equal(ok.record.msgLength, 91 + 1 + base.topic.length + 32767);
    assertRejected(
      encodeMessage({ ...base, properties: { P: 'v'.repeat(32745) } }, cfg, 1),
      PutMessageStatus.PROPERTIES_SIZE_EXCEEDED,
      'properties + CRC tail of 32768 bytes',
    );
  });

  it('illegal topics are MESSAGE_ILLEGAL', () => {
    for (const topic of [
      '',
      'a/b',
      'a b',
      ' ',
      'tab\t',
      'dot.ted',
      'ünï',
      'T'.repeat(256),
      'T'.repeat(1000),
    ]) {
      assertRejected(
        encodeMessage({ ...base, topic }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        `topic ${JSON.stringify(topic.slice(0, 20))} (${topic.length})`,
      );
    }
    assertRejected(
      encodeMessage({ ...base, topic: undefined as unknown as string }, config(), 1),
      PutMessageStatus.MESSAGE_ILLEGAL,
      'missing topic',
    );
    // The whole legal set, at the 255-byte maximum.
    assert.equal(
      encodeMessage({ ...base, topic: `${'aZ09_-%|'.repeat(31)}abcdefg` }, config(), 1).kind,
      'single',
    );
  });

  it('queueId outside 0..2^31-1 or not an integer is MESSAGE_ILLEGAL', () => {
    for (const queueId of [-1, 1.5, 2 ** 31, Number.NaN, Number.POSITIVE_INFINITY, -(2 ** 31)]) {
      assertRejected(
        encodeMessage({ ...base, queueId }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        `queueId ${queueId}`,
      );
    }
    assert.equal(encodeMessage({ ...base, queueId: 2 ** 31 - 1 }, config(), 1).kind, 'single');
    assert.equal(encodeMessage({ ...base, queueId: 0 }, config(), 1).kind, 'single');
  });

  it('flag outside int32, negative reconsumeTimes, bad timestamps are MESSAGE_ILLEGAL', () => {
    const bad: Partial<Message>[] = [
      { flag: 2 ** 31 },
      { flag: 0.5 },
      { reconsumeTimes: -1 },
      { bornTimestamp: -1 },
      { bornTimestamp: 2 ** 53 },
      { preparedTransactionOffset: -1 },
      { sysFlag: 2 ** 32 },
    ];
    for (const fields of bad) {
      assertRejected(
        encodeMessage({ ...base, ...fields }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        JSON.stringify(fields),
      );
    }
    assert.equal(encodeMessage({ ...base, flag: -(2 ** 31) }, config(), 1).kind, 'single');
  });

  it('property names or values with 0x01/0x02, empty names and empty values are MESSAGE_ILLEGAL', () => {
    const bad: Partial<Message>[] = [
      { properties: { 'a\u0001b': 'v' } },
      { properties: { 'a\u0002b': 'v' } },
      { properties: { a: 'v\u0001w' } },
      { properties: { a: 'v\u0002w' } },
      { properties: { a: '\u0001' } },
      { properties: { a: '' } },
      { properties: { '': 'v' } },
      { tags: 'x\u0002y' },
      { tags: '' },
      { keys: 'k\u0001' },
      { keys: ['a', 'b\u0002'] },
      { keys: '' },
    ];
    for (const fields of bad) {
      assertRejected(
        encodeMessage({ ...base, ...fields }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        JSON.stringify(fields),
      );
    }
  });

  it('a record that cannot fit in one commit log segment (with its 8-byte BLANK) is MESSAGE_ILLEGAL', () => {
    // V1, IPv4 hosts, 1-byte topic, no properties: 92 + body. 92 + body + 8 <= 512 -> body <= 412.
    const cfg = config({ mappedFileSizeCommitLog: 512 });
    const fits = encoded(encodeMessage({ topic: 'T', queueId: 0, body: Buffer.alloc(412) }, cfg, 1));
    assert.equal(fits.record.msgLength + 8, 512);
    assertRejected(
      encodeMessage({ topic: 'T', queueId: 0, body: Buffer.alloc(413) }, cfg, 1),
      PutMessageStatus.MESSAGE_ILLEGAL,
      'record of segment size - 7',
    );
    // The same for a batch as a whole.
    const item = { body: Buffer.alloc(100) };
    assertRejected(
      encodeBatch({ topic: 'T', queueId: 0, messages: [item, item, item, item] }, cfg, 1),
      PutMessageStatus.MESSAGE_ILLEGAL,
      'batch larger than a segment',
    );
  });

  it('bad bornHost / storeHost strings are MESSAGE_ILLEGAL', () => {
    const badHosts = [
      '',
      '1.2.3.4',
      '1.2.3.4:',
      ':80',
      '1.2.3.4:65536',
      '1.2.3.4:-1',
      '1.2.3.4:1a',
      '256.1.1.1:1',
      '1.2.3:80',
      'localhost:80',
      '[::1]',
      '[::1]:',
      '[::1]80',
      '[1:2:3:4:5:6:7:8:9]:1',
      '[fe80::1%eth0]:1',
      '[::ffff:1.2.3.256]:1',
      '[gggg::1]:1',
    ];
    for (const text of badHosts) {
      assert.equal(parseHost(text), null, `parseHost(${JSON.stringify(text)})`);
      assertRejected(
        encodeMessage({ ...base, bornHost: text }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        `bornHost ${JSON.stringify(text)}`,
      );
      assertRejected(
        encodeMessage({ ...base, storeHost: text }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        `storeHost ${JSON.stringify(text)}`,
      );
    }
    assertRejected(
      encodeMessage({ ...base, bornHost: 42 as unknown as string }, config(), 1),
      PutMessageStatus.MESSAGE_ILLEGAL,
      'non-string bornHost',
    );
  });

  it('a body that is not bytes is MESSAGE_ILLEGAL', () => {
    for (const body of ['text', null, undefined, [1, 2, 3]]) {
      assertRejected(
        encodeMessage({ ...base, body: body as unknown as Uint8Array }, config(), 1),
        PutMessageStatus.MESSAGE_ILLEGAL,
        `body ${JSON.stringify(body)}`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Property CRC (AppendPropCRCTest)
// ---------------------------------------------------------------------------------------------

describe('property CRC (enabledAppendPropCRC / forceVerifyPropCRC)', () => {
  const crcConfig = config({ enabledAppendPropCRC: true });

  function tailOf(buf: Buffer, pos: number, size: number): string {
    return buf.toString('latin1', pos + size - 20, pos + size);
  }

  it('every encoded record carries a correct __CRC32# tail and verifies', () => {
    fc.assert(
      fc.property(messageCaseArb(fc.oneof(topicV1Arb, topicV2Arb)), (c) => {
        const { buf, pos, enc } = writeCase(c, crcConfig);
        const size = enc.record.msgLength;
        const props = expectedProperties(c.msg);
        const userLength = propertiesByteLength(props);
        const bornV6 = c.msg.bornHost?.startsWith('[') === true;
        const storeV6 = c.storeHostText.startsWith('[');
        assert.equal(
          size,
          expectedRecordLength(
            bornV6,
            storeV6,
            c.msg.body.length,
            Buffer.byteLength(c.msg.topic),
            userLength + 20,
          ),
          'the properties grow by exactly 20 bytes',
        );
        // crc32 over the record before the tail, digits least significant first, zero padded.
        const crc = zlib.crc32(buf.subarray(pos, pos + size - 20)) & 0x7fffffff;
        const digits = [...String(crc).padStart(10, '0')].reverse().join('');
        assert.equal(tailOf(buf, pos, size), `__CRC32#\u0001${digits}\u0002`);
        const checked = checkMessageAndReturnSize(buf, pos, pos + size, {
          checkCRC: true,
          forceVerifyPropCRC: true,
        });
        assert.equal(checked.kind, 'record', JSON.stringify(checked));
        if (checked.kind === 'record') {
          assert.equal(checked.properties['__CRC32#'], digits);
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('flipping one byte of the properties (or anywhere before the tail) fails verification', () => {
    fc.assert(
      fc.property(
        messageCaseArb(topicV1Arb),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (c, where, mask, inProperties) => {
          const { buf, pos, enc } = writeCase(c, crcConfig);
          const size = enc.record.msgLength;
          const propLength = enc.record.propertiesBytes.length + 20;
          // Either a byte of the properties (tail included) or any byte of the record except
          // TOTALSIZE and MAGICCODE, which decide whether it is a record at all.
          const target = inProperties
            ? pos + size - propLength + (where % propLength)
            : pos + 8 + (where % (size - 8));
          buf[target] = (buf[target] as number) ^ mask;
          const checked = checkMessageAndReturnSize(buf, pos, pos + size, {
            checkCRC: true,
            forceVerifyPropCRC: true,
          });
          assert.notEqual(checked.kind, 'record', `byte ${target - pos} ^ ${mask} must fail verification`);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('a record without __CRC32# fails forced verification; body CRC mode ignores the tail', () => {
    const plain = encoded(
      encodeMessage({ topic: 'T', queueId: 0, body: Buffer.from('abc'), tags: 'x' }, config(), 1),
    );
    const buf = Buffer.alloc(plain.record.msgLength);
    writeRecord(buf, 0, plain.record, 0, 0, 1);
    assert.equal(checkMessageAndReturnSize(buf, 0, buf.length, { checkCRC: true }).kind, 'record');
    assert.equal(
      checkMessageAndReturnSize(buf, 0, buf.length, { checkCRC: true, forceVerifyPropCRC: true }).kind,
      'invalid',
      'missing __CRC32# counts as a failure',
    );
    assert.equal(
      checkMessageAndReturnSize(buf, 0, buf.length, { checkCRC: false, forceVerifyPropCRC: true }).kind,
      'record',
      'no verification at all without checkCRC',
    );
  });

  it('no properties at all: the properties are just the 20-byte tail', () => {
    const enc = encoded(encodeMessage({ topic: 'T', queueId: 3, body: Buffer.from('hi') }, crcConfig, 1));
    assert.equal(enc.record.msgLength, 91 + 2 + 1 + 20);
    const buf = Buffer.alloc(enc.record.msgLength);
    writeRecord(buf, 0, enc.record, 5, 77, 9);
    assert.equal(buf.readInt16BE(84 + 4 + 2 + 1 + 1), 20, 'properties length after body "hi" and topic "T"');
    const tail = tailOf(buf, 0, buf.length);
    assert.equal(tail.slice(0, 9), '__CRC32#\u0001');
    assert.match(tail.slice(9, 19), /^\d{10}$/);
    assert.equal(tail.slice(19), '\u0002');
    const decoded = decodeMessage(buf, 0, buf.length, { checkCRC: true, forceVerifyPropCRC: true });
    assert.deepEqual(Object.keys(decoded?.properties ?? {}), ['__CRC32#']);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties string
// ---------------------------------------------------------------------------------------------

describe('properties string', () => {
  it('the writer terminates every pair with 0x02, the last one included', () => {
    assert.equal(
      messageProperties2String([
        ['a', 'b'],
        ['KEYS', 'k1 k2'],
      ]),
      'a\u0001b\u0002KEYS\u0001k1 k2\u0002',
    );
    assert.equal(messageProperties2String([]), '');
  });

  it('the reader follows RocketMQ: short segments ignored, trailing 0x02 optional, split at first 0x01', () => {
    const cases: [string, Record<string, string>][] = [
      ['a\u0001b\u0002', { a: 'b' }],
      ['a\u0001b', { a: 'b' }], // missing trailing 0x02
      ['a\u0001b\u0002c\u0001d', { a: 'b', c: 'd' }],
      ['ab\u0002a\u0001b\u0002', { a: 'b' }], // "ab" is shorter than 3 chars
      ['a\u0001\u0002x\u0001y\u0002', { x: 'y' }], // "a\x01" shorter than 3 chars
      ['\u0001ab\u0002', {}], // 0x01 at index 0
      ['ab\u0001\u0002', {}], // 0x01 is the last char
      ['abc\u0002', {}], // no 0x01 at all
      ['a\u0001b\u0001c\u0002', { a: 'b\u0001c' }], // split at the first 0x01
      ['\u0002\u0002a\u0001b\u0002\u0002', { a: 'b' }],
      ['k\u0001v1\u0002k\u0001v2\u0002', { k: 'v2' }], // a repeated name: the last one wins
      ['', {}],
    ];
    for (const [text, expected] of cases) {
      assert.deepEqual({ ...string2messageProperties(text) }, expected, JSON.stringify(text));
    }
  });

  it('reader(writer(map)) == map for any valid names and values', () => {
    fc.assert(
      fc.property(propertiesArb, (props) => {
        const text = messageProperties2String(Object.entries(props));
        assert.deepEqual({ ...string2messageProperties(text) }, { ...props });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('names that are Object.prototype members round-trip like any other name', () => {
    // RocketMQ reads properties into a HashMap: no name is special.
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      const text = messageProperties2String([
        [name, 'v'],
        ['z', 'w'],
      ]);
      const decoded = string2messageProperties(text);
      assert.ok(Object.hasOwn(decoded, name), `property ${JSON.stringify(name)} is read back as an own key`);
      assert.equal(decoded[name], 'v', `property ${JSON.stringify(name)}`);
      assert.equal(decoded.z, 'w');
    }
  });

  it('a message whose properties include "__proto__" decodes with that property', () => {
    const properties = JSON.parse('{"__proto__":"p","a":"b"}') as Record<string, string>;
    assert.ok(Object.hasOwn(properties, '__proto__'), 'test setup: an own "__proto__" key');
    const enc = encoded(
      encodeMessage({ topic: 'T', queueId: 0, body: Buffer.from('x'), properties }, config(), 1),
    );
    const buf = Buffer.alloc(enc.record.msgLength);
    writeRecord(buf, 0, enc.record, 0, 0, 1);
    assert.ok(buf.includes(Buffer.from('__proto__\u0001p\u0002')), 'the property is written');
    const decoded = decodeMessage(buf, 0, buf.length, { checkCRC: true });
    assert.ok(decoded !== null);
    assert.equal(Object.getOwnPropertyDescriptor(decoded.properties, '__proto__')?.value, 'p');
    assert.equal(decoded.properties.a, 'b');
  });
});

// ---------------------------------------------------------------------------------------------
// Java String.hashCode
// ---------------------------------------------------------------------------------------------

describe('Java String.hashCode', () => {
  it('matches known Java values', () => {
    assert.equal(javaStringHashCode('hello'), 99162322);
    assert.equal(javaStringHashCode(''), 0);
    assert.equal(javaStringHashCode('polygenelubricants'), -2147483648);
    assert.equal(javaStringHashCode('Aa'), 2112);
    assert.equal(javaStringHashCode('BB'), 2112);
    assert.equal(javaStringHashCode('TAG1'), ((84 * 31 + 65) * 31 + 71) * 31 + 49);
    assert.equal(javaStringHashCode('TAG1'), 2567159);
    // U+1F600 is the surrogate pair D83D DE00: 31 * 0xD83D + 0xDE00 over UTF-16 code units.
    assert.equal(javaStringHashCode('\u{1F600}'), 31 * 0xd83d + 0xde00);
    assert.equal(javaStringHashCode('\u{1F600}'), 1772899);
    assert.equal(javaStringHashCode('a\u{1F600}'), 97 * 31 * 31 + 1772899);
  });

  it('matches the definition (31*h + c over UTF-16 units, int32 wrap) for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        assert.equal(javaStringHashCode(s), javaHashReference(s));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('tagsCode is the hash of TAGS, 0 without tags', () => {
    assert.equal(tagsString2tagsCode(undefined), 0);
    assert.equal(tagsString2tagsCode(''), 0);
    assert.equal(tagsString2tagsCode('hello'), 99162322);
  });
});

// ---------------------------------------------------------------------------------------------
// Hosts and message ids
// ---------------------------------------------------------------------------------------------

/** Expands a WHATWG-canonical IPv6 text (no dotted quad) to its 16 bytes, independently of src. */
function ipv6Bytes(canonical: string): Buffer {
  const [left = '', right] = canonical.split('::');
  const l = left === '' ? [] : left.split(':');
  const r = right === undefined || right === '' ? [] : right.split(':');
  const words =
    right === undefined ? l : [...l, ...new Array<string>(8 - l.length - r.length).fill('0'), ...r];
  assert.equal(words.length, 8, `test oracle: ${canonical}`);
  const out = Buffer.alloc(16);
  words.forEach((w, i) => {
    out.writeUInt16BE(Number.parseInt(w, 16), i * 2);
  });
  return out;
}

describe('hosts', () => {
  it('IPv4 ip:port is 4 address bytes + int32 port', () => {
    fc.assert(
      fc.property(fc.ipV4(), portArb, (ip, port) => {
        const h = host(`${ip}:${port}`);
        assert.equal(h.v6, false);
        const expected = Buffer.alloc(8);
        ip.split('.').forEach((part, i) => {
          expected[i] = Number(part);
        });
        expected.writeInt32BE(port, 4);
        assert.deepEqual(h.bytes, expected);
        assert.equal(h.text, `${ip}:${port}`);
        assert.equal(decodeHost(h.bytes, 0, false), h.text);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('IPv6 [ip]:port is 16 address bytes + int32 port, formatted in RFC 5952 compressed form', () => {
    fc.assert(
      fc.property(fc.ipV6(), portArb, fc.boolean(), (ip, port, bracketed) => {
        const h = host(bracketed ? `[${ip}]:${port}` : `${ip}:${port}`);
        // The WHATWG URL parser is an independent canonicaliser: lower case, the first longest
        // run of 2+ zero words as "::", no dotted quad.
        const canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
        assert.equal(h.v6, true);
        const expected = Buffer.alloc(20);
        ipv6Bytes(canonical).copy(expected, 0);
        expected.writeInt32BE(port, 16);
        assert.deepEqual(h.bytes, expected, `bytes of ${ip}`);
        assert.equal(h.text, `[${canonical}]:${port}`, `text of ${ip}`);
        assert.equal(decodeHost(h.bytes, 0, true), h.text);
        assert.deepEqual(host(h.text).bytes, h.bytes, 'the text form parses back to the same bytes');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('IPv6 compression: longest zero run, leftmost on a tie, never a single zero word', () => {
    const cases: [string, string][] = [
      ['[0:0:0:0:0:0:0:0]:1', '[::]:1'],
      ['[0:0:0:0:0:0:0:1]:1', '[::1]:1'],
      ['[1:0:0:0:0:0:0:0]:1', '[1::]:1'],
      ['[2001:db8:0:0:1:0:0:1]:9', '[2001:db8::1:0:0:1]:9'],
      ['[2001:0DB8:0000:0000:0000:ff00:0042:8329]:9', '[2001:db8::ff00:42:8329]:9'],
      ['[1:0:0:4:0:0:0:8]:3', '[1:0:0:4::8]:3'],
      ['[2001:db8:0:1:1:1:1:1]:2', '[2001:db8:0:1:1:1:1:1]:2'],
      ['[1:2:3:4:5:6:7::]:1', '[1:2:3:4:5:6:7:0]:1'],
      ['[fe80::1]:10911', '[fe80::1]:10911'],
    ];
    for (const [input, text] of cases) {
      assert.equal(host(input).text, text, input);
    }
  });

  it("'::ffff:1.2.3.4' (IPv4-mapped) is an IPv6 host with the IPv4 address in the last 4 bytes", () => {
    for (const input of ['[::ffff:1.2.3.4]:80', '::ffff:1.2.3.4:80', '[0:0:0:0:0:ffff:102:304]:80']) {
      const h = host(input);
      assert.equal(h.v6, true, input);
      assert.equal(h.bytes.toString('hex'), '00000000000000000000ffff0102030400000050', input);
      // RFC 5952 §5 recommends the mixed form; the plain hex form is also valid. Either way the
      // text must parse back to the same bytes.
      assert.ok(['[::ffff:1.2.3.4]:80', '[::ffff:102:304]:80'].includes(h.text), `${input} -> ${h.text}`);
      assert.deepEqual(host(h.text).bytes, h.bytes);
    }
  });
});

describe('offset message id', () => {
  it('is 32 hex chars for IPv4 and 56 for IPv6, and decodeOffsetMessageId inverts it', () => {
    fc.assert(
      fc.property(hostArb, fc.maxSafeNat(), (text, offset) => {
        const h = host(text);
        const id = createOffsetMessageId(h, offset);
        assert.equal(id.length, h.v6 ? 56 : 32);
        assert.match(id, /^[0-9A-F]+$/);
        const expected =
          h.bytes.toString('hex').toUpperCase() + offset.toString(16).toUpperCase().padStart(16, '0');
        assert.equal(id, expected);
        assert.deepEqual(decodeOffsetMessageId(id), { storeHost: h.text, commitLogOffset: offset });
        assert.deepEqual(decodeOffsetMessageId(id.toLowerCase()), {
          storeHost: h.text,
          commitLogOffset: offset,
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('a known IPv4 id', () => {
    const id = createOffsetMessageId(host('192.168.1.2:10911'), 1580);
    assert.equal(id, 'C0A8010200002A9F000000000000062C');
  });

  it('rejects text that is not an offset message id', () => {
    const valid = 'C0A8010200002A9F000000000000062C';
    for (const text of [
      '',
      valid.slice(1),
      `${valid}0`,
      `${valid.slice(0, -1)}G`,
      'C0A8010200002A9F0020000000000000', // offset 2^53: not a safe integer
      'C0A8010200002A9FFFFFFFFFFFFFFFFF',
    ]) {
      assert.equal(decodeOffsetMessageId(text), null, text);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// int64
// ---------------------------------------------------------------------------------------------

describe('int64 helpers', () => {
  it('writeInt64BE writes what Java putLong writes, for any safe integer', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.maxSafeInteger(),
          fc.constantFrom(0, 1, -1, 2 ** 32 - 1, 2 ** 32, -(2 ** 32), 2 ** 53 - 1, -(2 ** 53 - 1)),
        ),
        fc.nat(8),
        (value, pos) => {
          const buf = Buffer.alloc(16, 0xee);
          writeInt64BE(buf, value, pos);
          assert.equal(buf.readBigInt64BE(pos), BigInt(value), `value ${value}`);
          assert.equal(readInt64BE(buf, pos), value);
          assert.ok(
            buf.subarray(0, pos).every((b) => b === 0xee),
            'nothing written before',
          );
          assert.ok(
            buf.subarray(pos + 8).every((b) => b === 0xee),
            'nothing written after',
          );
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('readInt64BE reports values outside the safe range as NaN', () => {
    const buf = Buffer.alloc(8);
    for (const big of [2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n)]) {
      buf.writeBigInt64BE(big);
      assert.ok(Number.isNaN(readInt64BE(buf, 0)), String(big));
    }
    buf.writeBigInt64BE(2n ** 53n - 1n);
    assert.equal(readInt64BE(buf, 0), 2 ** 53 - 1);
  });
});
