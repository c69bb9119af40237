import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import fc from 'fast-check';
import {
  type AppendMessageResult,
  DefaultAppendMessageCallback,
  WRITE_BUFFER_BUSY,
} from '../../src/store/commitlog/append-message-callback.js';
import type { AppendTarget, WritableRegion } from '../../src/store/mapped-file/mapped-file.js';
import { type HostAddress, parseHost } from '../../src/store/message/host.js';
import type { BatchMessageItem } from '../../src/store/message/message.js';
import { decodeMessage } from '../../src/store/message/message-decoder.js';
import {
  type EncodedBatch,
  type EncodedMessage,
  type EncodedRecord,
  type EncoderConfig,
  encodeBatch,
  encodeMessage,
} from '../../src/store/message/message-ext-encoder.js';
import { decodeOffsetMessageId } from '../../src/store/message/message-id.js';
import { AppendMessageStatus } from '../../src/store/status.js';

/**
 * Ports of RocketMQ's AppendCallbackTest (store reference §6, §4.7) against
 * DefaultAppendMessageCallback, with an in-memory AppendTarget instead of a mapped file.
 */

const BLANK_MAGIC = 0xcbd43194 | 0; // -875286124
const FILL = 0xee;

/** An AppendTarget over a Buffer: reservations are handed out back to back from `base`. */
class MemoryTarget implements AppendTarget {
  readonly buffer: Buffer;
  readonly base: number;
  written = 0;
  reservations = 0;
  busy = false;

  constructor(size: number, base = 0) {
    this.buffer = Buffer.alloc(base + size, FILL);
    this.base = base;
  }

  reserve(length: number): WritableRegion | null {
    this.reservations++;
    if (this.busy) return null;
    assert.ok(length > 0, 'a reservation is for at least one byte');
    assert.ok(
      this.base + this.written + length <= this.buffer.length,
      'a reservation must fit in the target',
    );
    const region = { buffer: this.buffer, offset: this.base + this.written };
    this.written += length;
    return region;
  }

  /** Bytes of the target that are no longer the fill value. */
  touched(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.buffer.length; i++) if (this.buffer[i] !== FILL) out.push(i);
    return out;
  }
}

function host(text: string): HostAddress {
  const parsed = parseHost(text);
  assert.ok(parsed !== null, `test setup: ${text} must parse`);
  return parsed;
}

const CONFIG: EncoderConfig = {
  maxMessageSize: 4 * 1024 * 1024,
  autoMessageVersionOnTopicLen: true,
  enabledAppendPropCRC: false,
  mappedFileSizeCommitLog: 1024 * 1024 * 1024,
  defaultStoreHost: host('127.0.0.1:10911'),
};

const TOPIC = 'test-topic';

interface Variant {
  readonly name: string;
  readonly bornHost: string;
  readonly storeHost: string;
  readonly idLength: number;
}

// AppendCallbackTest uses 127.0.0.1:123 / 127.0.0.1:124 and their IPv6 counterparts.
const VARIANTS: readonly Variant[] = [
  { name: 'IPv4', bornHost: '127.0.0.1:123', storeHost: '127.0.0.1:124', idLength: 32 },
  { name: 'IPv6', bornHost: '[::1]:123', storeHost: '[fe80::1234:5678]:124', idLength: 56 },
];

function items(count: number, bodySize: number): BatchMessageItem[] {
  return Array.from({ length: count }, (_, i) => ({
    body: Buffer.from(`body-${i}-`.padEnd(bodySize, String.fromCharCode(97 + (i % 26)))),
    tags: `TAG${i}`,
    keys: [`key-${i}`, `k${i}`],
    flag: i,
  }));
}

function batchOf(
  variant: Variant,
  messages: BatchMessageItem[],
  bornTimestamp = 1_650_000_000_000,
): EncodedBatch {
  const result = encodeBatch(
    {
      topic: TOPIC,
      queueId: 3,
      messages,
      bornTimestamp,
      bornHost: variant.bornHost,
      storeHost: variant.storeHost,
    },
    CONFIG,
    1,
  );
  assert.equal(result.kind, 'batch', `test setup: ${JSON.stringify(result)}`);
  return result as EncodedBatch;
}

function assertBlankOnly(
  target: MemoryTarget,
  result: AppendMessageResult,
  maxBlank: number,
  what: string,
): void {
  assert.equal(result.status, AppendMessageStatus.END_OF_FILE, `${what}: status`);
  assert.equal(result.ok, true, `${what}: the write position moves`);
  assert.equal(result.wroteBytes, maxBlank, `${what}: wroteBytes is the rest of the segment`);
  assert.equal(result.msgNum, 0, `${what}: no message written`);
  assert.deepEqual(result.recordOffsets, [], `${what}: no record offsets`);
  assert.equal(target.written, 8, `${what}: exactly 8 bytes reserved`);
  const b = target.base;
  assert.equal(target.buffer.readInt32BE(b), maxBlank, `${what}: BLANK TOTALSIZE = maxBlank`);
  assert.equal(target.buffer.readInt32BE(b + 4), BLANK_MAGIC, `${what}: BLANK magic 0xCBD43194`);
  assert.equal(target.buffer.readUInt32BE(b + 4), 0xcbd43194);
  const touched = target.touched();
  assert.ok(
    touched.every((i) => i >= b && i < b + 8),
    `${what}: nothing written outside the 8 BLANK bytes (touched ${touched.length} bytes)`,
  );
}

describe('AppendCallbackTest: testAppendMessageBatchEndOfFile', () => {
  for (const variant of VARIANTS) {
    it(`${variant.name}: a batch that does not fit maxBlank=1000 writes only the BLANK`, () => {
      const batch = batchOf(variant, items(10, 100));
      assert.ok(batch.totalLength + 8 > 1000, 'test setup: the batch is bigger than 1000 bytes');
      const target = new MemoryTarget(4096);
      const result = new DefaultAppendMessageCallback().doAppendBatch(
        0,
        target,
        1000,
        batch,
        0,
        1_700_000_000_000,
      );
      assertBlankOnly(target, result, 1000, variant.name);
      assert.equal(result.wroteOffset, 0, 'wroteOffset');
      assert.equal(result.queueOffset, 0, 'logicsOffset');
      assert.equal(result.msgId, '', 'no message ids for a BLANK');
    });
  }

  it('the BLANK goes to the reserved region, at the write position (wroteOffset reported as given)', () => {
    const batch = batchOf(VARIANTS[0] as Variant, items(10, 100));
    const target = new MemoryTarget(512, 300);
    const wroteOffset = 5 * 2 ** 32 + 700;
    const result = new DefaultAppendMessageCallback().doAppendBatch(wroteOffset, target, 1000, batch, 42, 7);
    assertBlankOnly(target, result, 1000, 'offset region');
    assert.equal(result.wroteOffset, wroteOffset);
    assert.equal(result.queueOffset, 42);
    assert.equal(result.storeTimestamp, 7);
  });
});

/** Walks the written records, checking each against its batch element; returns the bytes walked. */
function checkWrittenBatch(
  target: MemoryTarget,
  batch: EncodedBatch,
  messages: readonly BatchMessageItem[],
  variant: Variant,
  result: AppendMessageResult,
  expected: { wroteOffset: number; queueOffset: number; storeTimestamp: number; bornTimestamp: number },
): void {
  let pos = target.base;
  let physical = expected.wroteOffset;
  for (let i = 0; i < messages.length; i++) {
    const item = messages[i] as BatchMessageItem;
    const size = target.buffer.readInt32BE(pos);
    assert.equal(size, batch.records[i]?.msgLength, `record ${i}: TOTALSIZE`);
    assert.equal(
      target.buffer.readInt32BE(pos + 8),
      zlib.crc32(item.body) & 0x7fffffff,
      `record ${i}: BODYCRC`,
    );
    const decoded = decodeMessage(target.buffer, pos, target.base + target.written, {
      checkCRC: true,
      expectedPhysicalOffset: physical,
    });
    assert.ok(decoded !== null, `record ${i} decodes`);
    assert.deepEqual(decoded.body, Buffer.from(item.body), `record ${i}: body`);
    assert.equal(decoded.tags, item.tags, `record ${i}: tags`);
    assert.equal(decoded.keys, (item.keys as string[]).join(' '), `record ${i}: keys`);
    assert.equal(decoded.flag, item.flag, `record ${i}: flag`);
    assert.equal(decoded.topic, TOPIC);
    assert.equal(decoded.queueId, 3);
    assert.equal(decoded.bornHost, variant.bornHost, `record ${i}: born host`);
    assert.equal(decoded.storeHost, variant.storeHost, `record ${i}: store host`);
    assert.equal(decoded.bornTimestamp, expected.bornTimestamp);
    assert.equal(decoded.queueOffset, expected.queueOffset + i, `record ${i}: consecutive queue offsets`);
    assert.equal(decoded.commitLogOffset, physical, `record ${i}: PHYSICALOFFSET`);
    assert.equal(
      decoded.storeTimestamp,
      expected.storeTimestamp,
      `record ${i}: one store timestamp per batch`,
    );
    assert.equal(decoded.preparedTransactionOffset, 0, `record ${i}: PREPARED TX OFFSET is 0 in a batch`);
    assert.equal(result.recordOffsets[i], physical, `record ${i}: reported offset`);
    pos += size;
    physical += size;
  }
  assert.equal(pos - target.base, target.written, 'the records fill exactly what was reserved');
  assert.ok(
    target.buffer.subarray(pos).every((b) => b === FILL),
    'nothing is written after the last record',
  );
  assert.ok(
    target.buffer.subarray(0, target.base).every((b) => b === FILL),
    'nothing is written before the region',
  );
}

describe('AppendCallbackTest: testAppendMessageBatchSucc', () => {
  for (const variant of VARIANTS) {
    it(`${variant.name}: a batch of 10 that fits is PUT_OK with 10 distinct ${variant.idLength}-char ids`, () => {
      const messages = items(10, 40);
      const batch = batchOf(variant, messages);
      const target = new MemoryTarget(batch.totalLength + 64, 16);
      const wroteOffset = 3 * 1024 * 1024 * 1024 + 123;
      const storeTimestamp = 1_700_000_000_123;
      const result = new DefaultAppendMessageCallback().doAppendBatch(
        wroteOffset,
        target,
        1024 * 1024,
        batch,
        500,
        storeTimestamp,
      );
      assert.equal(result.status, AppendMessageStatus.PUT_OK);
      assert.equal(result.ok, true);
      assert.equal(result.msgNum, 10);
      assert.equal(result.wroteBytes, target.written, 'wroteBytes == bytes written');
      assert.equal(result.wroteBytes, batch.totalLength);
      assert.equal(
        batch.totalLength,
        batch.records.reduce((n, r) => n + r.msgLength, 0),
        'the batch length is the sum of its records',
      );
      assert.equal(target.reservations, 1, 'one reservation for the whole batch');
      assert.equal(result.wroteOffset, wroteOffset);
      assert.equal(result.queueOffset, 500, 'logicsOffset is the first queue offset');
      assert.equal(result.storeTimestamp, storeTimestamp);
      checkWrittenBatch(target, batch, messages, variant, result, {
        wroteOffset,
        queueOffset: 500,
        storeTimestamp,
        bornTimestamp: 1_650_000_000_000,
      });

      const ids = result.msgId.split(',');
      assert.equal(ids.length, 10);
      assert.equal(new Set(ids).size, 10, 'distinct message ids');
      const storeHostHex = host(variant.storeHost).bytes.toString('hex').toUpperCase();
      ids.forEach((id, i) => {
        assert.equal(id.length, variant.idLength, `id ${i} length`);
        assert.ok(id.startsWith(storeHostHex), `id ${i} starts with the store host bytes`);
        assert.deepEqual(decodeOffsetMessageId(id), {
          storeHost: variant.storeHost,
          commitLogOffset: result.recordOffsets[i],
        });
      });
    });
  }

  it('a single message: PUT_OK writes one record at the given offsets', () => {
    const enc = encodeMessage(
      {
        topic: TOPIC,
        queueId: 1,
        body: Buffer.from('single'),
        tags: 'T',
        bornHost: '10.0.0.1:5555',
        storeHost: '192.168.1.2:10911',
        bornTimestamp: 11,
      },
      CONFIG,
      1,
    ) as EncodedMessage;
    assert.equal(enc.kind, 'single');
    const target = new MemoryTarget(1024);
    const result = new DefaultAppendMessageCallback().doAppend(2048, target, 1024, enc, 9, 12);
    assert.equal(result.status, AppendMessageStatus.PUT_OK);
    assert.equal(result.msgNum, 1);
    assert.equal(result.wroteBytes, enc.record.msgLength);
    assert.equal(target.written, enc.record.msgLength);
    assert.deepEqual(result.recordOffsets, [2048]);
    assert.equal(result.msgId, 'C0A8010200002A9F0000000000000800');
    const decoded = decodeMessage(target.buffer, 0, target.written, { checkCRC: true });
    assert.equal(decoded?.queueOffset, 9);
    assert.equal(decoded?.commitLogOffset, 2048);
    assert.equal(decoded?.storeTimestamp, 12);
    assert.equal(decoded?.body.toString(), 'single');
  });
});

describe('the file-fit rule (msgLen + 8 > maxBlank -> END_OF_FILE)', () => {
  for (const variant of VARIANTS) {
    it(`${variant.name}: a batch ending exactly 8 bytes before the end fits; 1 byte more does not`, () => {
      const messages = items(10, 30);
      const batch = batchOf(variant, messages);
      const exact = batch.totalLength + 8;
      const fits = new MemoryTarget(exact);
      const ok = new DefaultAppendMessageCallback().doAppendBatch(0, fits, exact, batch, 0, 5);
      assert.equal(ok.status, AppendMessageStatus.PUT_OK, `maxBlank = totalLength + 8 = ${exact}`);
      assert.equal(fits.written, batch.totalLength);
      const tight = new MemoryTarget(exact);
      const eof = new DefaultAppendMessageCallback().doAppendBatch(0, tight, exact - 1, batch, 0, 5);
      assertBlankOnly(tight, eof, exact - 1, `maxBlank = totalLength + 7 = ${exact - 1}`);
    });
  }

  it('single messages follow the same rule', () => {
    const enc = encodeMessage(
      { topic: TOPIC, queueId: 0, body: Buffer.alloc(50, 1) },
      CONFIG,
      1,
    ) as EncodedMessage;
    assert.equal(enc.kind, 'single');
    const len = enc.record.msgLength;
    assert.equal(len, 91 + 50 + TOPIC.length);
    const fits = new MemoryTarget(len + 8);
    assert.equal(
      new DefaultAppendMessageCallback().doAppend(0, fits, len + 8, enc, 0, 1).status,
      AppendMessageStatus.PUT_OK,
    );
    const tight = new MemoryTarget(len + 8);
    const eof = new DefaultAppendMessageCallback().doAppend(100, tight, len + 7, enc, 4, 1);
    assertBlankOnly(tight, eof, len + 7, 'single message, maxBlank = len + 7');
    assert.equal(eof.wroteOffset, 100);
    assert.equal(eof.queueOffset, 4);
  });

  it('property: PUT_OK iff totalLength + 8 <= maxBlank, else only an 8-byte BLANK', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 8, max: 5000 }),
        fc.constantFrom(...VARIANTS),
        fc.maxSafeNat(),
        (bodies, maxBlank, variant, queueOffset) => {
          const messages = bodies.map((body) => ({ body }));
          const batch = batchOf(variant, messages);
          const target = new MemoryTarget(Math.max(maxBlank, 8));
          const wroteOffset = 1_000_000;
          const result = new DefaultAppendMessageCallback().doAppendBatch(
            wroteOffset,
            target,
            maxBlank,
            batch,
            queueOffset,
            99,
          );
          if (batch.totalLength + 8 <= maxBlank) {
            assert.equal(result.status, AppendMessageStatus.PUT_OK);
            assert.equal(result.wroteBytes, batch.totalLength);
            assert.equal(target.written, batch.totalLength);
            assert.equal(result.msgNum, messages.length);
            let offset = wroteOffset;
            batch.records.forEach((r, i) => {
              assert.equal(result.recordOffsets[i], offset);
              assert.equal(target.buffer.readBigInt64BE(offset - wroteOffset + 20), BigInt(queueOffset + i));
              assert.equal(target.buffer.readBigInt64BE(offset - wroteOffset + 28), BigInt(offset));
              offset += r.msgLength;
            });
          } else {
            assertBlankOnly(
              target,
              result,
              maxBlank,
              `totalLength ${batch.totalLength}, maxBlank ${maxBlank}`,
            );
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('AppendPropCRCTest: batch with enabledAppendPropCRC', () => {
  it('every record of an appended batch verifies; flipping one properties byte fails that record only', () => {
    const crcConfig: EncoderConfig = { ...CONFIG, enabledAppendPropCRC: true };
    const messages = items(10, 40);
    const encodedBatch = encodeBatch(
      { topic: TOPIC, queueId: 0, messages, bornHost: '127.0.0.1:123', storeHost: '127.0.0.1:124' },
      crcConfig,
      1,
    );
    assert.equal(encodedBatch.kind, 'batch');
    const batch = encodedBatch as EncodedBatch;
    const target = new MemoryTarget(batch.totalLength);
    const result = new DefaultAppendMessageCallback().doAppendBatch(4096, target, 1024 * 1024, batch, 0, 77);
    assert.equal(result.status, AppendMessageStatus.PUT_OK);
    const options = { checkCRC: true, forceVerifyPropCRC: true } as const;
    const starts: number[] = [];
    let pos = 0;
    for (const record of batch.records) {
      starts.push(pos);
      assert.equal(
        target.buffer.toString('latin1', pos + record.msgLength - 20, pos + record.msgLength - 11),
        '__CRC32#\u0001',
      );
      assert.notEqual(
        decodeMessage(target.buffer, pos, target.written, options),
        null,
        `record at ${pos} verifies`,
      );
      pos += record.msgLength;
    }
    // Flip one byte inside the user properties of record 4 (the TAGS value "TAG4").
    const victim = starts[4] as number;
    const victimLength = (batch.records[4] as EncodedRecord).msgLength;
    const at = target.buffer.indexOf('TAG4', victim) + 3;
    assert.ok(at > victim && at < victim + victimLength, 'test setup: TAG4 lies inside record 4');
    target.buffer[at] = (target.buffer[at] as number) ^ 0x01;
    starts.forEach((start, i) => {
      const checked = decodeMessage(target.buffer, start, target.written, options);
      assert.equal(checked === null, i === 4, `record ${i} verification after flipping a byte of record 4`);
    });
    // Body-CRC mode does not look at the properties: the flipped record still passes it.
    assert.notEqual(decodeMessage(target.buffer, victim, target.written, { checkCRC: true }), null);
  });
});

describe('no write buffer available', () => {
  it('reserve() returning null: WRITE_BUFFER_BUSY and nothing written', () => {
    const batch = batchOf(VARIANTS[0] as Variant, items(10, 40));
    const target = new MemoryTarget(8192);
    target.busy = true;
    const result = new DefaultAppendMessageCallback().doAppendBatch(0, target, 8192, batch, 0, 1);
    assert.equal(result.status, WRITE_BUFFER_BUSY);
    assert.equal(result.ok, false, 'the write position must not move');
    assert.equal(result.wroteBytes, 0);
    assert.equal(result.msgNum, 0);
    assert.deepEqual(result.recordOffsets, []);
    assert.equal(target.reservations, 1, 'the callback asked for a region');
    assert.deepEqual(target.touched(), [], 'nothing written');
  });

  it('also when only the BLANK was needed', () => {
    const batch = batchOf(VARIANTS[0] as Variant, items(10, 100));
    const target = new MemoryTarget(1000);
    target.busy = true;
    const result = new DefaultAppendMessageCallback().doAppendBatch(0, target, 1000, batch, 0, 1);
    assert.equal(result.status, WRITE_BUFFER_BUSY);
    assert.equal(result.ok, false);
    assert.equal(result.wroteBytes, 0);
    assert.deepEqual(target.touched(), []);
  });

  it('single message too', () => {
    const enc = encodeMessage(
      { topic: TOPIC, queueId: 0, body: Buffer.from('x') },
      CONFIG,
      1,
    ) as EncodedMessage;
    const target = new MemoryTarget(1024);
    target.busy = true;
    const result = new DefaultAppendMessageCallback().doAppend(0, target, 1024, enc, 0, 1);
    assert.equal(result.status, WRITE_BUFFER_BUSY);
    assert.equal(result.ok, false);
    assert.equal(result.wroteBytes, 0);
    assert.deepEqual(target.touched(), []);
  });
});
