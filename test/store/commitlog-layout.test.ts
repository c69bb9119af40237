import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { FlushDiskType, type MessageStore, PutMessageStatus } from '../../src/store/index.js';
import { openStore, storedMessageCount, tempDir } from '../support/helpers.js';

/**
 * Puts messages through a real MessageStore, then reads the commit log segments as raw bytes and
 * checks every field at the offsets of the store reference §2.1, with expected values written
 * from first principles (no decoder from src is used for the check).
 */

const SEGMENT_SIZE = 2048;
const BLANK_MAGIC = -875286124; // 0xCBD43194
const MAGIC_V1 = -626843481; // 0xDAA320A7
const MAGIC_V2 = -626843477; // 0xDAA320AB
const BORN_TIMESTAMP = 1_600_000_000_123;

// Hosts as stored: address bytes, then the port as a big-endian int32.
const BORN_V4 = { text: '10.0.0.1:5555', hex: '0a000001' + '000015b3' };
const STORE_V4 = { text: '192.168.1.2:10911', hex: 'c0a80102' + '00002a9f' };
const BORN_V6 = {
  text: '[2001:db8::1]:6000',
  hex: '20010db8000000000000000000000001' + '00001770',
};
const STORE_V6 = {
  text: '[2001:db8::2]:10911',
  hex: '20010db8000000000000000000000002' + '00002a9f',
};

interface Spec {
  readonly topic: string;
  readonly queueId: number;
  readonly body: Buffer;
  readonly flag: number;
  readonly tags: string;
  readonly keys: readonly string[];
  readonly properties: Readonly<Record<string, string>>;
  readonly born: { text: string; hex: string };
  /** undefined: the store's configured storeHost. */
  readonly store: { text: string; hex: string } | undefined;
  readonly sysFlag: number;
}

function specs(): Spec[] {
  const out: Spec[] = [];
  for (let i = 0; i < 16; i++) {
    const bodyLength = 60 + ((i * 37) % 200);
    const body = Buffer.alloc(bodyLength);
    for (let j = 0; j < bodyLength; j++) body[j] = (i * 7 + j) & 0xff;
    out.push({
      topic: i === 12 ? `LongTopic_${'x'.repeat(120)}` : i % 3 === 2 ? 'LayoutTopicB' : 'LayoutTopicA',
      queueId: i % 2,
      body,
      flag: i * 1000 - 3,
      tags: `Tag${i % 4}`,
      keys: [`order-${i}`, `user-${i * 3}`],
      properties: { seq: String(i), 'x-trace': 'abc€' },
      born: i === 7 ? BORN_V6 : BORN_V4,
      store: i === 7 ? STORE_V6 : i === 3 ? STORE_V4 : undefined,
      // Message 10 is a PREPARED transaction half message: QUEUEOFFSET 0, no queue offset taken.
      sysFlag: i === 10 ? 0x4 : 0,
    });
  }
  return out;
}

/** The properties bytes: user properties in order, then TAGS, then KEYS (space-joined). */
function expectedPropertiesBytes(spec: Spec): Buffer {
  let text = '';
  for (const [name, value] of Object.entries(spec.properties)) text += `${name}\u0001${value}\u0002`;
  text += `TAGS\u0001${spec.tags}\u0002`;
  text += `KEYS\u0001${spec.keys.join(' ')}\u0002`;
  return Buffer.from(text, 'utf8');
}

function isV6(host: { text: string }): boolean {
  return host.text.startsWith('[');
}

/** §2.1: 74 + bornHost + storeHost + body + topic length size + topic + properties. */
function expectedLength(spec: Spec): number {
  const storeHost = spec.store ?? STORE_V4;
  const topicLength = Buffer.byteLength(spec.topic);
  return (
    74 +
    (isV6(spec.born) ? 20 : 8) +
    (isV6(storeHost) ? 20 : 8) +
    spec.body.length +
    (topicLength > 127 ? 2 : 1) +
    topicLength +
    expectedPropertiesBytes(spec).length
  );
}

interface Placed {
  readonly spec: Spec;
  readonly offset: number;
  readonly length: number;
  readonly queueOffset: number;
}

interface Layout {
  readonly records: Placed[];
  readonly blanks: { offset: number; size: number }[];
  readonly end: number;
  readonly queueNext: Map<string, number>;
}

/** Where RocketMQ's rules put each record: a record never ends closer than 8 bytes to a file's end. */
function expectedLayout(list: readonly Spec[]): Layout {
  const records: Placed[] = [];
  const blanks: { offset: number; size: number }[] = [];
  const queueNext = new Map<string, number>();
  let pos = 0;
  for (const spec of list) {
    const length = expectedLength(spec);
    const remaining = SEGMENT_SIZE - (pos % SEGMENT_SIZE);
    if (length + 8 > remaining) {
      blanks.push({ offset: pos, size: remaining });
      pos += remaining;
    }
    const key = `${spec.topic}-${spec.queueId}`;
    const prepared = (spec.sysFlag & 0xc) === 0x4;
    const queueOffset = prepared ? 0 : (queueNext.get(key) ?? 0);
    if (!prepared) queueNext.set(key, queueOffset + 1);
    records.push({ spec, offset: pos, length, queueOffset });
    pos += length;
  }
  return { records, blanks, end: pos, queueNext };
}

interface Segment {
  readonly name: string;
  readonly from: number;
  readonly bytes: Buffer;
}

function readSegments(root: string): Segment[] {
  const dir = path.join(root, 'commitlog');
  const names = fs.readdirSync(dir).sort();
  return names.map((name) => {
    assert.match(name, /^\d{20}$/, `segment file name ${name} is a 20-digit offset`);
    const bytes = fs.readFileSync(path.join(dir, name));
    assert.equal(bytes.length, SEGMENT_SIZE, `segment ${name} is exactly mappedFileSizeCommitLog bytes`);
    return { name, from: Number(name), bytes };
  });
}

function segmentOf(segments: readonly Segment[], offset: number): { seg: Segment; pos: number } {
  const seg = segments.find((s) => offset >= s.from && offset < s.from + SEGMENT_SIZE);
  assert.ok(seg !== undefined, `a segment holds offset ${offset}`);
  return { seg, pos: offset - seg.from };
}

function allZero(buf: Buffer): boolean {
  return buf.every((b) => b === 0);
}

interface PutRecord {
  readonly before: number;
  readonly after: number;
  readonly storeTimestamp: number;
  readonly wroteOffset: number;
  readonly queueOffset: number;
}

async function putAll(store: MessageStore, list: readonly Spec[]): Promise<PutRecord[]> {
  const out: PutRecord[] = [];
  for (const spec of list) {
    const before = Date.now();
    const result = await store.putMessage({
      topic: spec.topic,
      queueId: spec.queueId,
      body: spec.body,
      flag: spec.flag,
      tags: spec.tags,
      keys: spec.keys,
      properties: spec.properties,
      bornTimestamp: BORN_TIMESTAMP,
      bornHost: spec.born.text,
      ...(spec.store === undefined ? {} : { storeHost: spec.store.text }),
      sysFlag: spec.sysFlag,
    });
    const after = Date.now();
    assert.equal(result.status, PutMessageStatus.PUT_OK, `put: ${result.reason ?? ''}`);
    assert.ok(result.appendResult !== null);
    out.push({
      before,
      after,
      storeTimestamp: result.appendResult.storeTimestamp,
      wroteOffset: result.appendResult.wroteOffset,
      queueOffset: result.appendResult.queueOffset,
    });
  }
  return out;
}

/** Checks one record's bytes field by field (§2.1). Returns its STORETIMESTAMP. */
function checkRecordBytes(seg: Segment, pos: number, placed: Placed, what: string): number {
  const b = seg.bytes;
  const { spec, length } = placed;
  const storeHost = spec.store ?? STORE_V4;
  const bornLen = isV6(spec.born) ? 20 : 8;
  const storeLen = isV6(storeHost) ? 20 : 8;
  const topicBytes = Buffer.from(spec.topic, 'utf8');
  const v2 = topicBytes.length > 127;
  assert.equal(b.readInt32BE(pos + 0), length, `${what}: TOTALSIZE`);
  assert.equal(b.readInt32BE(pos + 4), v2 ? MAGIC_V2 : MAGIC_V1, `${what}: MAGICCODE`);
  assert.equal(b.readInt32BE(pos + 8), zlib.crc32(spec.body) & 0x7fffffff, `${what}: BODYCRC`);
  assert.equal(b.readInt32BE(pos + 12), spec.queueId, `${what}: QUEUEID`);
  assert.equal(b.readInt32BE(pos + 16), spec.flag, `${what}: FLAG`);
  assert.equal(b.readBigInt64BE(pos + 20), BigInt(placed.queueOffset), `${what}: QUEUEOFFSET`);
  assert.equal(
    b.readBigInt64BE(pos + 28),
    BigInt(seg.from + pos),
    `${what}: PHYSICALOFFSET = file offset + position`,
  );
  const sysFlag = spec.sysFlag | (isV6(spec.born) ? 0x10 : 0) | (isV6(storeHost) ? 0x20 : 0);
  assert.equal(b.readInt32BE(pos + 36), sysFlag, `${what}: SYSFLAG`);
  assert.equal(b.readBigInt64BE(pos + 40), BigInt(BORN_TIMESTAMP), `${what}: BORNTIMESTAMP`);
  assert.equal(b.toString('hex', pos + 48, pos + 48 + bornLen), spec.born.hex, `${what}: BORNHOST`);
  let p = pos + 48 + bornLen;
  const storeTimestamp = Number(b.readBigInt64BE(p));
  p += 8;
  assert.equal(b.toString('hex', p, p + storeLen), storeHost.hex, `${what}: STOREHOSTADDRESS`);
  p += storeLen;
  assert.equal(b.readInt32BE(p), 0, `${what}: RECONSUMETIMES`);
  assert.equal(b.readBigInt64BE(p + 4), 0n, `${what}: PREPARED TRANSACTION OFFSET`);
  assert.equal(b.readInt32BE(p + 12), spec.body.length, `${what}: BODY length`);
  p += 16;
  assert.deepEqual(b.subarray(p, p + spec.body.length), spec.body, `${what}: BODY bytes`);
  p += spec.body.length;
  if (v2) {
    assert.equal(b.readInt16BE(p), topicBytes.length, `${what}: TOPIC length (int16)`);
    p += 2;
  } else {
    assert.equal(b.readInt8(p), topicBytes.length, `${what}: TOPIC length (int8)`);
    p += 1;
  }
  assert.deepEqual(b.subarray(p, p + topicBytes.length), topicBytes, `${what}: TOPIC bytes`);
  p += topicBytes.length;
  const props = expectedPropertiesBytes(spec);
  assert.equal(b.readInt16BE(p), props.length, `${what}: PROPERTIES length`);
  p += 2;
  assert.equal(
    b.toString('latin1', p, p + props.length),
    props.toString('latin1'),
    `${what}: PROPERTIES bytes (name 0x01 value 0x02 ...)`,
  );
  p += props.length;
  assert.equal(p - pos, length, `${what}: the fields add up to TOTALSIZE`);
  return storeTimestamp;
}

describe('commit log on disk, byte for byte', () => {
  it('records, BLANKs, file names and sizes match RocketMQ’s layout across segment rolls', async (t) => {
    const root = tempDir(t);
    const config = {
      storePathRootDir: root,
      mappedFileSizeCommitLog: SEGMENT_SIZE,
      flushDiskType: FlushDiskType.ASYNC_FLUSH,
      storeHost: STORE_V4.text,
    };
    const list = specs();
    const layout = expectedLayout(list);
    assert.ok(layout.blanks.length >= 1, 'test setup: at least one segment roll');
    assert.ok(
      list.some((s) => isV6(s.born)) && list.some((s) => s.topic.length > 127),
      'test setup: an IPv6 and a V2 message',
    );

    const store = await openStore(t, config);
    const puts = await putAll(store, list);
    puts.forEach((put, i) => {
      const placed = layout.records[i] as Placed;
      assert.equal(put.wroteOffset, placed.offset, `message ${i}: the store reports the expected offset`);
      assert.equal(put.queueOffset, placed.queueOffset, `message ${i}: queue offset`);
    });
    assert.equal(store.getMaxPhyOffset(), layout.end);
    await store.shutdown();

    const segments = readSegments(root);
    const lastDataSegment = Math.floor((layout.end - 1) / SEGMENT_SIZE);
    assert.ok(segments.length >= lastDataSegment + 1, `at least ${lastDataSegment + 1} segments`);
    segments.forEach((seg, i) => {
      assert.equal(seg.from, i * SEGMENT_SIZE, `segment ${i} starts at ${i} x ${SEGMENT_SIZE}`);
      assert.equal(seg.name, String(i * SEGMENT_SIZE).padStart(20, '0'));
    });

    let lastStoreTimestamp = 0;
    layout.records.forEach((placed, i) => {
      const { seg, pos } = segmentOf(segments, placed.offset);
      const what = `message ${i} at ${placed.offset} (${seg.name}+${pos})`;
      const storeTimestamp = checkRecordBytes(seg, pos, placed, what);
      const put = puts[i] as PutRecord;
      assert.equal(storeTimestamp, put.storeTimestamp, `${what}: STORETIMESTAMP is what the put reported`);
      assert.ok(
        storeTimestamp >= lastStoreTimestamp,
        `${what}: STORETIMESTAMP never decreases in file order`,
      );
      assert.ok(storeTimestamp <= put.after, `${what}: STORETIMESTAMP is not in the future`);
      assert.ok(storeTimestamp >= put.before, `${what}: STORETIMESTAMP is taken during the put`);
      lastStoreTimestamp = storeTimestamp;
    });

    // Every full segment ends with a BLANK: int32 remaining bytes, int32 0xCBD43194, then zeros.
    for (const blank of layout.blanks) {
      const { seg, pos } = segmentOf(segments, blank.offset);
      assert.equal(pos + blank.size, SEGMENT_SIZE, 'a BLANK runs to the end of its segment');
      assert.equal(seg.bytes.readInt32BE(pos), blank.size, `${seg.name}+${pos}: BLANK TOTALSIZE`);
      assert.equal(seg.bytes.readInt32BE(pos + 4), BLANK_MAGIC, `${seg.name}+${pos}: BLANK magic`);
      assert.ok(allZero(seg.bytes.subarray(pos + 8)), `${seg.name}: zeros after the BLANK header`);
    }
    assert.equal(layout.blanks.length, lastDataSegment, 'every segment before the last one ends in a BLANK');

    // After the last record: zeros to the end of its segment, and any pre-allocated segment is empty.
    const { seg: lastSeg, pos: endPos } = segmentOf(segments, layout.end);
    assert.ok(allZero(lastSeg.bytes.subarray(endPos)), 'zeros after the last record');
    for (const seg of segments.slice(lastDataSegment + 1)) {
      assert.ok(allZero(seg.bytes), `pre-allocated segment ${seg.name} is all zeros`);
    }

    const reopened = await openStore(t, config);
    assert.equal(
      reopened.getMaxPhyOffset(),
      layout.end,
      'maxPhyOffset after reopen = end of the last record',
    );
    const report = reopened.getRecoveryReport();
    assert.equal(report.lastExitOK, true);
    // Every message but the PREPARED half message (no consume queue unit, as in RocketMQ).
    assert.equal(storedMessageCount(reopened), list.filter((s) => s.sysFlag !== 0x4).length);
    assert.equal(report.commitLog.truncatedBytes, 0);
    for (const [key, next] of layout.queueNext) {
      const dash = key.lastIndexOf('-');
      assert.equal(
        reopened.getQueueOffset(key.slice(0, dash), Number(key.slice(dash + 1))),
        next,
        `next queue offset of ${key} after reopen`,
      );
    }
    await reopened.shutdown();
  });

  it('RocketMQ reference: 10 x (32-byte body, topic FooBar, TAGS=TAG1, 13-digit KEYS) = 158 bytes each, 1580 total', async (t) => {
    const root = tempDir(t);
    const config = {
      storePathRootDir: root,
      mappedFileSizeCommitLog: 4096,
      flushDiskType: FlushDiskType.ASYNC_FLUSH,
    };
    const store = await openStore(t, config);
    const keys: string[] = [];
    for (let i = 0; i < 10; i++) {
      const key = String(1_700_000_000_000 + i);
      assert.equal(key.length, 13);
      keys.push(key);
      const result = await store.putMessage({
        topic: 'FooBar',
        queueId: 0,
        body: Buffer.alloc(32, 0x41 + i),
        tags: 'TAG1',
        keys: key,
      });
      assert.equal(result.status, PutMessageStatus.PUT_OK, result.reason);
      // 91 (header, IPv4 hosts, V1) + 32 (body) + 6 (FooBar) + 29 (TAGS\1TAG1\2KEYS\1<13>\2)
      assert.equal(result.appendResult?.wroteBytes, 91 + 32 + 6 + 29);
      assert.equal(result.appendResult?.wroteBytes, 158);
      assert.equal(result.appendResult?.wroteOffset, 158 * i);
      assert.equal(result.appendResult?.queueOffset, i);
    }
    assert.equal(store.getMaxPhyOffset(), 1580);
    await store.shutdown();

    const file = fs.readFileSync(path.join(root, 'commitlog', '00000000000000000000'));
    assert.equal(file.length, 4096);
    for (let i = 0; i < 10; i++) {
      const pos = 158 * i;
      assert.equal(file.readInt32BE(pos), 158, `record ${i}: TOTALSIZE`);
      assert.equal(file.readInt32BE(pos + 4), MAGIC_V1, `record ${i}: magic`);
      assert.equal(file.readBigInt64BE(pos + 28), BigInt(pos), `record ${i}: PHYSICALOFFSET`);
      assert.equal(file.readInt32BE(pos + 84), 32, `record ${i}: body length`);
      assert.equal(file.readInt8(pos + 88 + 32), 6, `record ${i}: topic length`);
      assert.equal(file.toString('latin1', pos + 89 + 32, pos + 95 + 32), 'FooBar');
      assert.equal(file.readInt16BE(pos + 95 + 32), 29, `record ${i}: properties length`);
      assert.equal(
        file.toString('latin1', pos + 97 + 32, pos + 158),
        `TAGS\u0001TAG1\u0002KEYS\u0001${keys[i]}\u0002`,
        `record ${i}: properties`,
      );
    }
    assert.ok(allZero(file.subarray(1580)), 'nothing after the 10th record');

    const reopened = await openStore(t, config);
    assert.equal(reopened.getMaxPhyOffset(), 1580);
    assert.equal(reopened.getQueueOffset('FooBar', 0), 10);
  });

  it('a rejected put writes nothing and takes no queue offset (testPutMessage_whenMessagePropertyIsTooLong)', async (t) => {
    const root = tempDir(t);
    const store = await openStore(t, {
      storePathRootDir: root,
      mappedFileSizeCommitLog: 128 * 1024,
      flushDiskType: FlushDiskType.ASYNC_FLUSH,
    });
    const tooLong = await store.putMessage({
      topic: 'FooBar',
      queueId: 0,
      body: Buffer.from('x'),
      properties: { P: 'v'.repeat(32765) }, // 3 + 32765 = 32768 bytes
    });
    assert.equal(tooLong.status, PutMessageStatus.PROPERTIES_SIZE_EXCEEDED);
    assert.equal(tooLong.appendResult, null);
    assert.equal(store.getMaxPhyOffset(), 0, 'nothing appended');
    assert.equal(store.getQueueOffset('FooBar', 0), 0, 'no queue offset taken');
    const ok = await store.putMessage({
      topic: 'FooBar',
      queueId: 0,
      body: Buffer.from('x'),
      properties: { P: 'v'.repeat(97) }, // 100 bytes
    });
    assert.equal(ok.status, PutMessageStatus.PUT_OK, ok.reason);
    assert.equal(ok.appendResult?.queueOffset, 0);
    assert.equal(store.getQueueOffset('FooBar', 0), 1);
    assert.equal(store.getMaxPhyOffset(), 91 + 1 + 6 + 100);
  });
});
