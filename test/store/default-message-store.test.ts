import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FlushDiskType,
  type GetMessageResult,
  GetMessageStatus,
  type Message,
  MessageStore,
  type MessageStoreConfigInput,
  type PutMessageResult,
  StoreError,
  silentLogger,
} from '../../src/store/index.js';
import { FOO_BAR_BODY as BODY, fooBarMessage, FOO_BAR_TOPIC as TOPIC } from '../support/foo-bar-message.js';
import { onCleanup, openStore, prng, tempDir, testSeed, waitUntil } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';
import { expectedRecordLength } from '../support/record-layout.js';

/**
 * Ports of RocketMQ's `DefaultMessageStoreTest` and `BatchPutMessageTest` (store reference §6)
 * that apply to this store, through the public facade. RocketMQ runs them on a SYNC_FLUSH store
 * with 10 MiB segments; here the segments are tiny (4 KiB commit log, 8-unit consume queue files)
 * so every scenario crosses segment rolls.
 *
 * Expected offsets and sizes are computed here from the record layout (store reference §2.1 and
 * the table in src/store/message/message-format.ts) and the file-fit rule (§2.5), never taken
 * from the store: a record is `91 + body + topic + properties` bytes with IPv4 hosts, 12 more per
 * IPv6 host, and a record that would end closer than 8 bytes to its segment's end moves to the
 * next segment.
 */

const COMMIT_LOG_SEGMENT_BYTES = 4096;
const CQ_UNIT_BYTES = 20;
const CQ_FILE_BYTES = CQ_UNIT_BYTES * 8;
const END_FILE_MIN_BLANK_BYTES = 8;
const IPV6_BORN_HOST = '[::1]:1234';
const IPV6_STORE_HOST = '[::1]:10911';

/** Record bytes from the layout (V1 record, ASCII topic shorter than 128 bytes). */
function recordSize(
  bodyBytes: number,
  topic: string,
  propertiesBytes: number,
  v6: { born: boolean; store: boolean } = { born: false, store: false },
): number {
  return expectedRecordLength(v6.born, v6.store, bodyBytes, Buffer.byteLength(topic), propertiesBytes);
}

/** `name 0x01 value 0x02` per pair, the last pair included (store reference §2.4). */
function propertiesBytes(pairs: readonly (readonly [string, string])[]): number {
  return pairs.reduce(
    (n, [name, value]) => n + Buffer.byteLength(name) + 1 + Buffer.byteLength(value) + 1,
    0,
  );
}

/** Where records of these sizes land, appended one after another from `start` (file-fit rule). */
function layout(
  sizes: readonly number[],
  segmentBytes: number,
  start = 0,
): { offsets: number[]; end: number } {
  const offsets: number[] = [];
  let pos = start;
  for (const size of sizes) {
    const room = segmentBytes - (pos % segmentBytes);
    if (size + END_FILE_MIN_BLANK_BYTES > room) pos += room;
    offsets.push(pos);
    pos += size;
  }
  return { offsets, end: pos };
}

/** 29 bytes: `TAGS 0x01 TAG1 0x02 KEYS 0x01 <13 digits> 0x02`. */
const FOO_BAR_PROPERTIES_BYTES = propertiesBytes([
  ['TAGS', 'TAG1'],
  ['KEYS', '1700000000000'],
]);
/** 158 bytes with IPv4 hosts, as RocketMQ's ReputMessageServiceTest finds (1580 for 10). */
const FOO_BAR_RECORD_BYTES = recordSize(BODY.length, TOPIC, FOO_BAR_PROPERTIES_BYTES);

function config(root: string, extra: Partial<MessageStoreConfigInput> = {}): MessageStoreConfigInput {
  return {
    storePathRootDir: root,
    flushDiskType: FlushDiskType.SYNC_FLUSH,
    mappedFileSizeCommitLog: COMMIT_LOG_SEGMENT_BYTES,
    mappedFileSizeConsumeQueue: CQ_FILE_BYTES,
    ...extra,
  };
}

function assertPutOk(result: PutMessageResult, context: string): void {
  assert.equal(
    result.status,
    'PUT_OK',
    `${context}: ${result.status} ${result.reason ?? ''} ${result.error?.message ?? ''}`,
  );
}

/** Puts `count` messages made by `make`, all in one turn (one group commit), checks PUT_OK. */
async function putAll(
  store: MessageStore,
  count: number,
  make: (i: number) => Message,
): Promise<PutMessageResult[]> {
  const results = await Promise.all(Array.from({ length: count }, (_, i) => store.putMessage(make(i))));
  results.forEach((r, i) => {
    assertPutOk(r, `put ${i}`);
  });
  return results;
}

async function waitDispatched(
  store: MessageStore,
  topic: string,
  queueId: number,
  count: number,
): Promise<void> {
  await waitUntil(
    () => store.getMaxOffsetInQueue(topic, queueId) >= count,
    `${topic}/${queueId} to hold ${count} dispatched messages (has ${store.getMaxOffsetInQueue(topic, queueId)})`,
  );
}

function assertEmptyResult(
  result: GetMessageResult,
  expected: { status: GetMessageStatus; nextBeginOffset: number; minOffset: number; maxOffset: number },
  context: string,
): void {
  assert.deepEqual(
    {
      status: result.status,
      nextBeginOffset: result.nextBeginOffset,
      minOffset: result.minOffset,
      maxOffset: result.maxOffset,
      messages: result.messages.length,
    },
    { ...expected, messages: 0 },
    context,
  );
}

/** The segment file holding commit log offset `offset`, and the position in it. */
function commitLogLocation(root: string, offset: number): { file: string; position: number } {
  const from = offset - (offset % COMMIT_LOG_SEGMENT_BYTES);
  return { file: path.join(root, 'commitlog', String(from).padStart(20, '0')), position: offset - from };
}

/** Overwrites bytes of a file in place (damage done while the store is shut down). */
function patchFile(file: string, position: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, position);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * RocketMQ's `damageCommitLog`: zeros from the topic-length byte of the record at `offset` on
 * (16 bytes: topic length, topic, properties length, part of the properties). The body and its CRC
 * stay intact; the record no longer adds up to its TOTALSIZE.
 */
function damageRecordAt(root: string, offset: number, bodyBytes: number): void {
  const { file, position } = commitLogLocation(root, offset);
  // BODY length at 84 (IPv4 hosts), body bytes from 88, topic length right after them.
  patchFile(file, position + 84 + 4 + bodyBytes, Buffer.alloc(16));
}

describe('DefaultMessageStoreTest: write and read', () => {
  it('testWriteAndRead: 10 IPv4 and 10 IPv6 messages come back through getMessage, byte for byte', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    // 100-byte bodies: the 20 records need more than one 4 KiB segment.
    const bodyOf = (kind: string, i: number): string => `${kind}-body-${i}`.padEnd(100, '.');
    const v4 = await putAll(store, 10, (i) => fooBarMessage(i, { body: Buffer.from(bodyOf('v4', i)) }));
    const v6 = await putAll(store, 10, (i) =>
      fooBarMessage(10 + i, {
        body: Buffer.from(bodyOf('v6', i)),
        bornHost: IPV6_BORN_HOST,
        storeHost: IPV6_STORE_HOST,
      }),
    );
    const sizes = [
      ...Array.from({ length: 10 }, () => recordSize(100, TOPIC, FOO_BAR_PROPERTIES_BYTES)),
      ...Array.from({ length: 10 }, () =>
        recordSize(100, TOPIC, FOO_BAR_PROPERTIES_BYTES, { born: true, store: true }),
      ),
    ];
    const expected = layout(sizes, COMMIT_LOG_SEGMENT_BYTES);
    [...v4, ...v6].forEach((r, i) => {
      assert.equal(r.appendResult?.wroteOffset, expected.offsets[i], `put ${i} offset`);
      assert.equal(r.appendResult?.wroteBytes, sizes[i], `put ${i} size`);
      assert.equal(r.appendResult?.queueOffset, i, `put ${i} queue offset`);
      assert.equal(r.appendResult?.msgId.length, i < 10 ? 32 : 56, `put ${i} msgId length`);
    });
    assert.equal(store.getMaxPhyOffset(), expected.end);
    assert.ok(expected.end > COMMIT_LOG_SEGMENT_BYTES, 'the 20 records roll to a second segment');
    await waitDispatched(store, TOPIC, 0, 20);

    const all = await store.getMessage('group', TOPIC, 0, 0, 32);
    assert.equal(all.status, GetMessageStatus.FOUND);
    assert.equal(all.messages.length, 20);
    assert.equal(all.nextBeginOffset, 20);
    for (const [i, message] of all.messages.entries()) {
      const ipv6 = i >= 10;
      assert.equal(message.body.toString(), ipv6 ? bodyOf('v6', i - 10) : bodyOf('v4', i), `message ${i}`);
      assert.equal(message.topic, TOPIC);
      assert.equal(message.queueId, 0);
      assert.equal(message.queueOffset, i);
      assert.equal(message.commitLogOffset, expected.offsets[i]);
      assert.equal(message.storeSize, sizes[i]);
      assert.equal(message.tags, 'TAG1');
      assert.equal(message.keys, String(1_700_000_000_000 + i));
      assert.equal(message.bornHost, ipv6 ? IPV6_BORN_HOST : '127.0.0.1:0');
      assert.equal(message.storeHost, ipv6 ? IPV6_STORE_HOST : '127.0.0.1:10911');
      // BORNHOST_V6 (0x10) and STOREHOSTADDRESS_V6 (0x20) are set by the store from the hosts.
      assert.equal(message.sysFlag, ipv6 ? 0x30 : 0, `sysFlag of message ${i}`);
    }
    // One at a time, from every offset.
    for (let i = 0; i < 20; i++) {
      const one = await store.getMessage('group', TOPIC, 0, i, 1);
      assert.equal(one.status, GetMessageStatus.FOUND, `offset ${i}`);
      assert.equal(one.messages[0]?.commitLogOffset, expected.offsets[i], `offset ${i}`);
      assert.equal(one.nextBeginOffset, i + 1);
    }
  });

  it('testLookMessageByOffset: the first and the last message by physical offset; the max offset gives null', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    const count = 30;
    await putAll(store, count, (i) =>
      i % 2 === 0
        ? fooBarMessage(i)
        : fooBarMessage(i, { bornHost: IPV6_BORN_HOST, storeHost: IPV6_STORE_HOST }),
    );
    const sizes = Array.from({ length: count }, (_, i) =>
      recordSize(BODY.length, TOPIC, FOO_BAR_PROPERTIES_BYTES, { born: i % 2 === 1, store: i % 2 === 1 }),
    );
    const expected = layout(sizes, COMMIT_LOG_SEGMENT_BYTES);
    assert.equal(store.getMaxPhyOffset(), expected.end);

    const first = await store.lookMessageByOffset(0);
    assert.ok(first !== null, 'the first message');
    assert.equal(first.queueOffset, 0);
    assert.equal(first.keys, String(1_700_000_000_000));
    assert.equal(first.storeSize, FOO_BAR_RECORD_BYTES);
    assert.equal(first.bornHost, '127.0.0.1:0');

    const lastOffset = expected.offsets[count - 1] as number;
    const last = await store.lookMessageByOffset(lastOffset);
    assert.ok(last !== null, 'the last message');
    assert.equal(last.queueOffset, count - 1);
    assert.equal(last.commitLogOffset, lastOffset);
    assert.equal(last.keys, String(1_700_000_000_000 + count - 1));
    assert.equal(last.bornHost, IPV6_BORN_HOST);
    assert.equal(last.storeHost, IPV6_STORE_HOST);
    assert.equal(last.body.toString(), BODY.toString());

    assert.equal(await store.lookMessageByOffset(expected.end), null, 'at the max offset');
    assert.equal(await store.lookMessageByOffset(expected.end + 1000), null, 'past the max offset');
    // Inside a record (not at its start): no record there.
    assert.equal(await store.lookMessageByOffset(7), null, 'in the middle of the first record');
  });

  it('testStorePathOK: the commitlog and consumequeue directories exist', async (t) => {
    const root = tempDir(t);
    const store = await openStore(t, config(root));
    assert.ok(fs.statSync(path.join(root, 'commitlog')).isDirectory(), 'commitlog/');
    assert.ok(fs.statSync(path.join(root, 'consumequeue')).isDirectory(), 'consumequeue/');
    await putAll(store, 1, (i) => fooBarMessage(i));
    await waitDispatched(store, TOPIC, 0, 1);
    assert.ok(fs.statSync(path.join(root, 'commitlog', '0'.repeat(20))).isFile(), 'the first segment');
    assert.ok(
      fs.statSync(path.join(root, 'consumequeue', TOPIC, '0', '0'.repeat(20))).isFile(),
      'consumequeue/FooBar/0/00000000000000000000',
    );
  });
});

describe('DefaultMessageStoreTest: time and offset lookups', () => {
  /** Puts `count` messages to FooBar/0 a few ms apart, so every store timestamp differs by > 2 ms. */
  async function putSpaced(store: MessageStore, count: number): Promise<number[]> {
    const storeTimes: number[] = [];
    for (let i = 0; i < count; i++) {
      const before = Date.now();
      const result = await store.putMessage(fooBarMessage(i));
      assertPutOk(result, `put ${i}`);
      const storeTimestamp = result.appendResult?.storeTimestamp ?? -1;
      assert.ok(storeTimestamp >= before && storeTimestamp <= Date.now(), `store time of put ${i} is now`);
      storeTimes.push(storeTimestamp);
      await sleep(5);
    }
    for (let i = 1; i < count; i++) {
      assert.ok(
        (storeTimes[i] as number) - (storeTimes[i - 1] as number) > 2,
        `precondition: puts ${i - 1} and ${i} are more than 2 ms apart`,
      );
    }
    await waitDispatched(store, TOPIC, 0, count);
    return storeTimes;
  }

  it('testGetOffsetInQueueByTime: exact store time, skewed by 2 ms either way, 20 s early, unknown queue', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    const count = 10;
    const times = await putSpaced(store, count);
    for (let i = 0; i < count; i++) {
      const at = times[i] as number;
      // "The first queue offset stored at or after the time."
      assert.equal(await store.getOffsetInQueueByTime(TOPIC, 0, at), i, `exact store time of ${i}`);
      assert.equal(await store.getOffsetInQueueByTime(TOPIC, 0, at - 2), i, `2 ms before message ${i}`);
      assert.equal(await store.getOffsetInQueueByTime(TOPIC, 0, at + 2), i + 1, `2 ms after message ${i}`);
    }
    assert.equal(
      await store.getOffsetInQueueByTime(TOPIC, 0, (times[0] as number) - 20_000),
      0,
      '20 s early',
    );
    assert.equal(
      await store.getOffsetInQueueByTime(TOPIC, 0, (times[count - 1] as number) + 20_000),
      count,
      'after every message: the end of the queue',
    );
    assert.equal(await store.getOffsetInQueueByTime(TOPIC, 5, times[0] as number), 0, 'unknown queue id');
    assert.equal(
      await store.getOffsetInQueueByTime('NoSuchTopic', 0, times[0] as number),
      0,
      'unknown topic',
    );
  });

  it('testGetMessageStoreTimeStamp / testGetStoreTime: the store time by queue offset; -1 for negative, unknown, past the end', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    const count = 10;
    const times = await putSpaced(store, count);
    for (let i = 0; i < count; i++) {
      assert.equal(await store.getMessageStoreTimeStamp(TOPIC, 0, i), times[i], `store time of ${i}`);
    }
    assert.equal(await store.getMessageStoreTimeStamp(TOPIC, 0, -1), -1, 'negative offset');
    assert.equal(await store.getMessageStoreTimeStamp(TOPIC, 0, count), -1, 'the max offset');
    assert.equal(await store.getMessageStoreTimeStamp(TOPIC, 0, count + 100), -1, 'past the max offset');
    assert.equal(await store.getMessageStoreTimeStamp(TOPIC, 3, 0), -1, 'unknown queue');
    assert.equal(await store.getMessageStoreTimeStamp('NoSuchTopic', 0, 0), -1, 'unknown topic');
  });
});

describe('DefaultMessageStoreTest: pull size and offsets', () => {
  it('testPullSize: getMessage honours maxMsgNums 32, 20 and 10 (and the 32-message in-memory cap)', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    const topic = 'pullSizeTopic';
    await putAll(store, 40, (i) => fooBarMessage(i, { topic }));
    await waitDispatched(store, topic, 0, 40);
    for (const max of [32, 20, 10, 1]) {
      const result = await store.getMessage('simple', topic, 0, 0, max);
      assert.equal(result.status, GetMessageStatus.FOUND, `maxMsgNums ${max}`);
      assert.equal(result.messages.length, max, `maxMsgNums ${max}`);
      assert.deepEqual(
        result.messages.map((m) => m.queueOffset),
        Array.from({ length: max }, (_, i) => i),
      );
      assert.equal(result.nextBeginOffset, max);
    }
    // maxTransferCountOnMessageInMemory (32 by default) caps a larger request.
    const capped = await store.getMessage('simple', topic, 0, 0, 100);
    assert.equal(capped.messages.length, 32);
    assert.equal(capped.nextBeginOffset, 32);
    // From the middle: only what is left.
    const rest = await store.getMessage('simple', topic, 0, 32, 32);
    assert.equal(rest.messages.length, 8);
    assert.equal(rest.nextBeginOffset, 40);
  });

  it('testMaxOffset: the dispatched max (committed=true) trails the assigned max (committed=false) while the flush is held', async (t) => {
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const store = await openStore(t, config(root), { io });
    await putAll(store, 3, (i) => fooBarMessage(i));
    await waitDispatched(store, TOPIC, 0, 3);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0, true), 3);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0, false), 3);

    // Hold every commit log fdatasync: under SYNC_FLUSH dispatch stops at the flushed offset.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    onCleanup(t, () => release());
    const commitLogDir = path.join(root, 'commitlog');
    io.hooks.beforeDatasync = (file) => (file.startsWith(commitLogDir) ? held : undefined);
    // Puts that do not wait for the flush: acknowledged once written to the file.
    const unflushed = await putAll(store, 2, (i) => fooBarMessage(3 + i, { waitStoreMsgOK: false }));
    assert.deepEqual(
      unflushed.map((r) => r.appendResult?.queueOffset),
      [3, 4],
    );
    await sleep(250); // several dispatch passes (the idle wait is 100 ms)
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0, true), 3, 'committed: what dispatch made readable');
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0, false), 5, 'not committed: offsets assigned to puts');
    assert.equal(store.getQueueOffset(TOPIC, 0), 5);
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, 3, 32),
      { status: GetMessageStatus.OFFSET_OVERFLOW_ONE, nextBeginOffset: 3, minOffset: 0, maxOffset: 3 },
      'the unflushed messages are not readable',
    );
    // Unknown queues: 0 both ways.
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 9, true), 0);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 9, false), 0);

    release();
    await waitDispatched(store, TOPIC, 0, 5);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0, true), 5);
    const all = await store.getMessage('g', TOPIC, 0, 0, 32);
    assert.deepEqual(
      all.messages.map((m) => m.queueOffset),
      [0, 1, 2, 3, 4],
    );
  });
});

describe('getMaxPhyOffset while writes are pending', () => {
  it('is the end of the readable log, also when the appended records rolled to a new segment before their write', async (t) => {
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const store = await openStore(t, config(root, { flushDiskType: FlushDiskType.ASYNC_FLUSH }), { io });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    onCleanup(t, () => release());
    const commitLogDir = path.join(root, 'commitlog');
    io.hooks.beforeWrite = (file, _position, _length, sync) =>
      file.startsWith(commitLogDir) && !sync ? held : undefined;
    // 30 records of 158 bytes in one turn: 25 fill segment 0, 5 go to segment 4096. None is
    // written to its file while the write is held.
    const puts = Array.from({ length: 30 }, (_, i) => store.putMessage(fooBarMessage(i)));
    await sleep(50);
    assert.equal(store.getCommitLog().mappedFileQueue.committedWhere, 0, 'precondition: nothing written yet');
    assert.equal(await store.lookMessageByOffset(0), null, 'nothing readable');
    assert.equal(store.getMaxPhyOffset(), 0, '"end of the readable log" while nothing is readable');
    release();
    for (const r of await Promise.all(puts)) assertPutOk(r, 'a held put');
    const end = layout(Array<number>(30).fill(FOO_BAR_RECORD_BYTES), COMMIT_LOG_SEGMENT_BYTES).end;
    assert.equal(store.getMaxPhyOffset(), end);
  });
});

describe('DefaultMessageStoreTest: testRecover', () => {
  const COUNT = 60;
  /** 25 records of 158 bytes fit a 4096-byte segment (25 * 158 + 158 + 8 > 4096): 3 segments. */
  const expected = layout(Array<number>(COUNT).fill(FOO_BAR_RECORD_BYTES), COMMIT_LOG_SEGMENT_BYTES);
  const LAST = expected.offsets[COUNT - 1] as number;

  async function writeAndShutDown(root: string): Promise<void> {
    const store = await MessageStore.open(config(root), { logger: silentLogger });
    try {
      const results = await putAll(store, COUNT, (i) => fooBarMessage(i));
      results.forEach((r, i) => {
        assert.equal(r.appendResult?.wroteOffset, expected.offsets[i], `put ${i}`);
      });
      await waitDispatched(store, TOPIC, 0, COUNT);
    } finally {
      await store.shutdown();
    }
    assert.equal(fs.existsSync(path.join(root, 'abort')), false, 'a clean shutdown');
  }

  async function assertContinues(store: MessageStore, context: string): Promise<void> {
    const next = await store.putMessage(fooBarMessage(1000));
    assertPutOk(next, context);
    assert.equal(next.appendResult?.queueOffset, COUNT - 1, `${context}: the next queue offset`);
    assert.equal(next.appendResult?.wroteOffset, LAST, `${context}: written where the cut record was`);
    const other = await store.putMessage(fooBarMessage(1001, { queueId: 1 }));
    assert.equal(other.appendResult?.queueOffset, 0, `${context}: a new queue starts at 0`);
    await waitDispatched(store, TOPIC, 0, COUNT);
    const read = await store.getMessage('g', TOPIC, 0, COUNT - 2, 32);
    assert.deepEqual(
      read.messages.map((m) => [m.queueOffset, m.keys]),
      [
        [COUNT - 2, String(1_700_000_000_000 + COUNT - 2)],
        [COUNT - 1, String(1_700_000_001_000)],
      ],
      `${context}: the old message before the cut and the new one after it`,
    );
  }

  it('1. a clean restart keeps maxPhyOffset and the consume queue max', async (t) => {
    const root = tempDir(t);
    await writeAndShutDown(root);
    assert.ok(expected.end > 2 * COMMIT_LOG_SEGMENT_BYTES, 'three segments');
    const store = await openStore(t, config(root));
    const report = store.getRecoveryReport();
    assert.equal(report.lastExitOK, true);
    assert.equal(report.commitLog.truncatedBytes, 0);
    assert.equal(store.getMaxPhyOffset(), expected.end);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0), COUNT);
    assert.equal(store.getMinOffsetInQueue(TOPIC, 0), 0);
    const next = await store.putMessage(fooBarMessage(COUNT));
    assert.equal(next.appendResult?.queueOffset, COUNT);
    assert.equal(next.appendResult?.wroteOffset, expected.end);
  });

  it('2. the last record corrupted, normal restart: commit log and consume queue are cut back to the message before', async (t) => {
    const root = tempDir(t);
    await writeAndShutDown(root);
    damageRecordAt(root, LAST, BODY.length);
    const store = await openStore(t, config(root));
    const report = store.getRecoveryReport();
    assert.equal(report.lastExitOK, true);
    assert.equal(report.commitLog.maxPhyOffset, LAST);
    assert.ok(report.commitLog.stopReason !== null, 'recovery names why it stopped');
    assert.equal(store.getMaxPhyOffset(), LAST);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0), COUNT - 1);
    assert.equal(store.getQueueOffset(TOPIC, 0), COUNT - 1);
    assert.equal(await store.lookMessageByOffset(LAST), null);
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, COUNT - 1, 32),
      {
        status: GetMessageStatus.OFFSET_OVERFLOW_ONE,
        nextBeginOffset: COUNT - 1,
        minOffset: 0,
        maxOffset: COUNT - 1,
      },
      'the cut message is gone from the queue',
    );
    await assertContinues(store, 'after a normal recovery');
  });

  it('3. the same corruption plus an abort file: abnormal recovery cuts at the same point and writing continues', async (t) => {
    const root = tempDir(t);
    await writeAndShutDown(root);
    damageRecordAt(root, LAST, BODY.length);
    fs.writeFileSync(path.join(root, 'abort'), '12345');
    const store = await openStore(t, config(root));
    const report = store.getRecoveryReport();
    assert.equal(report.lastExitOK, false, 'the abort file means a crash');
    assert.equal(report.commitLog.maxPhyOffset, LAST);
    assert.equal(store.getMaxPhyOffset(), LAST);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0), COUNT - 1);
    assert.equal(store.getQueueOffset(TOPIC, 0), COUNT - 1);
    assert.equal(await store.lookMessageByOffset(LAST), null);
    await assertContinues(store, 'after an abnormal recovery');
    // Every message before the cut is still there and in order.
    const all: number[] = [];
    for (let next = 0; next < COUNT; ) {
      const r = await store.getMessage('g', TOPIC, 0, next, 32);
      assert.equal(r.status, GetMessageStatus.FOUND);
      all.push(...r.messages.map((m) => m.commitLogOffset));
      next = r.nextBeginOffset;
    }
    assert.deepEqual(all, [...expected.offsets.slice(0, COUNT - 1), LAST]);
  });

  it('a queue whose only message was cut exists but is empty: NO_MESSAGE_IN_QUEUE, and its next put takes offset 0', async (t) => {
    const root = tempDir(t);
    const first = await MessageStore.open(config(root), { logger: silentLogger });
    await putAll(first, 5, (i) => fooBarMessage(i));
    const lonely = await first.putMessage(fooBarMessage(5, { topic: 'Lonely' }));
    assertPutOk(lonely, 'the lonely message');
    const lonelyOffset = 5 * FOO_BAR_RECORD_BYTES;
    assert.equal(lonely.appendResult?.wroteOffset, lonelyOffset);
    await waitDispatched(first, 'Lonely', 0, 1);
    await first.shutdown();
    damageRecordAt(root, lonelyOffset, BODY.length);
    const store = await openStore(t, config(root));
    assert.equal(store.getMaxPhyOffset(), lonelyOffset);
    assertEmptyResult(
      await store.getMessage('g', 'Lonely', 0, 0, 32),
      { status: GetMessageStatus.NO_MESSAGE_IN_QUEUE, nextBeginOffset: 0, minOffset: 0, maxOffset: 0 },
      'the emptied queue',
    );
    const again = await store.putMessage(fooBarMessage(6, { topic: 'Lonely' }));
    assert.equal(again.appendResult?.queueOffset, 0);
    assert.equal(again.appendResult?.wroteOffset, lonelyOffset);
  });
});

describe('getMessage: every GetMessageStatus the store produces (store reference §4.17, §5.2)', () => {
  async function tenMessages(t: Parameters<typeof tempDir>[0]): Promise<MessageStore> {
    const store = await openStore(t, config(tempDir(t)));
    await putAll(store, 10, (i) => fooBarMessage(i));
    await waitDispatched(store, TOPIC, 0, 10);
    return store;
  }

  it('FOUND: the messages from the offset, nextBeginOffset after the last one', async (t) => {
    const store = await tenMessages(t);
    const result = await store.getMessage('g', TOPIC, 0, 3, 4);
    assert.equal(result.status, GetMessageStatus.FOUND);
    assert.deepEqual(
      result.messages.map((m) => m.queueOffset),
      [3, 4, 5, 6],
    );
    assert.deepEqual(
      result.messages.map((m) => m.commitLogOffset),
      [3, 4, 5, 6].map((i) => i * FOO_BAR_RECORD_BYTES),
    );
    assert.equal(result.nextBeginOffset, 7);
    assert.equal(result.minOffset, 0);
    assert.equal(result.maxOffset, 10);
    assert.equal(result.skippedDamaged, 0);
  });

  it('OFFSET_OVERFLOW_ONE: offset == max, nextBeginOffset stays', async (t) => {
    const store = await tenMessages(t);
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, 10, 32),
      { status: GetMessageStatus.OFFSET_OVERFLOW_ONE, nextBeginOffset: 10, minOffset: 0, maxOffset: 10 },
      'offset 10 of 10',
    );
  });

  it('OFFSET_OVERFLOW_BADLY: offset > max, nextBeginOffset = max (RocketMQ 5, fix of apache/rocketmq#4215)', async (t) => {
    const store = await tenMessages(t);
    for (const offset of [11, 1000]) {
      assertEmptyResult(
        await store.getMessage('g', TOPIC, 0, offset, 32),
        { status: GetMessageStatus.OFFSET_OVERFLOW_BADLY, nextBeginOffset: 10, minOffset: 0, maxOffset: 10 },
        `offset ${offset} of 10 (min 0): a consumer must not be sent back to 0 to re-read the whole queue`,
      );
    }
  });

  it('NO_MATCHED_LOGIC_QUEUE: a queue never written', async (t) => {
    const store = await tenMessages(t);
    for (const [topic, queueId] of [
      [TOPIC, 7],
      ['NoSuchTopic', 0],
    ] as const) {
      assertEmptyResult(
        await store.getMessage('g', topic, queueId, 0, 32),
        { status: GetMessageStatus.NO_MATCHED_LOGIC_QUEUE, nextBeginOffset: 0, minOffset: 0, maxOffset: 0 },
        `${topic}/${queueId}`,
      );
    }
  });

  it('NO_MATCHED_MESSAGE: a tag filter that matches none; nextBeginOffset moves past the scanned units', async (t) => {
    const store = await tenMessages(t);
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, 0, 32, { tags: ['TAG2'] }),
      { status: GetMessageStatus.NO_MATCHED_MESSAGE, nextBeginOffset: 10, minOffset: 0, maxOffset: 10 },
      'TAG2 among ten TAG1 messages',
    );
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, 4, 32, { tags: ['TAG2', 'TAG3'] }),
      { status: GetMessageStatus.NO_MATCHED_MESSAGE, nextBeginOffset: 10, minOffset: 0, maxOffset: 10 },
      'from the middle',
    );
    const star = await store.getMessage('g', TOPIC, 0, 0, 32, { tags: ['*'] });
    assert.equal(star.status, GetMessageStatus.FOUND);
    assert.equal(star.messages.length, 10, '* matches everything');
    const tag1 = await store.getMessage('g', TOPIC, 0, 0, 32, { tags: ['TAG1'] });
    assert.equal(tag1.messages.length, 10);
  });

  it('NO_MESSAGE_IN_QUEUE: a queue with puts not yet dispatched (SYNC_FLUSH, fdatasync held)', async (t) => {
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const store = await openStore(t, config(root, { syncFlushTimeout: 100 }), { io });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    onCleanup(t, () => release());
    const commitLogDir = path.join(root, 'commitlog');
    io.hooks.beforeDatasync = (file) => (file.startsWith(commitLogDir) ? held : undefined);
    const result = await store.putMessage(fooBarMessage(0));
    assert.equal(result.status, 'FLUSH_DISK_TIMEOUT');
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, 0, 32),
      { status: GetMessageStatus.NO_MESSAGE_IN_QUEUE, nextBeginOffset: 0, minOffset: 0, maxOffset: 0 },
      'put but not dispatched',
    );
    release();
    await waitDispatched(store, TOPIC, 0, 1);
    assert.equal((await store.getMessage('g', TOPIC, 0, 0, 32)).status, GetMessageStatus.FOUND);
  });

  it('OFFSET_TOO_SMALL: old commit log segments and consume queue files removed; min > 0, nextBeginOffset = min', async (t) => {
    const root = tempDir(t);
    const count = 60;
    const first = await MessageStore.open(config(root), { logger: silentLogger });
    await putAll(first, count, (i) => fooBarMessage(i));
    await waitDispatched(first, TOPIC, 0, count);
    await first.shutdown();
    // What retention does (RocketMQ's CleanCommitLogService, then CleanConsumeQueueService): the
    // first commit log segment goes, then the consume queue files whose units all point into it.
    const offsets = layout(Array<number>(count).fill(FOO_BAR_RECORD_BYTES), COMMIT_LOG_SEGMENT_BYTES).offsets;
    const inFirstSegment = offsets.filter((o) => o < COMMIT_LOG_SEGMENT_BYTES).length;
    assert.equal(inFirstSegment, 25);
    fs.unlinkSync(path.join(root, 'commitlog', '0'.repeat(20)));
    const unitsPerFile = CQ_FILE_BYTES / CQ_UNIT_BYTES;
    const cqFilesGone = Math.floor(inFirstSegment / unitsPerFile); // files 0..2 hold units 0..23
    for (let f = 0; f < cqFilesGone; f++) {
      fs.unlinkSync(path.join(root, 'consumequeue', TOPIC, '0', String(f * CQ_FILE_BYTES).padStart(20, '0')));
    }

    const store = await openStore(t, config(root));
    assert.equal(store.getMinPhyOffset(), COMMIT_LOG_SEGMENT_BYTES);
    assert.equal(store.getMinOffsetInQueue(TOPIC, 0), inFirstSegment);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0), count);
    for (const offset of [0, cqFilesGone * unitsPerFile, inFirstSegment - 1]) {
      assertEmptyResult(
        await store.getMessage('g', TOPIC, 0, offset, 32),
        {
          status: GetMessageStatus.OFFSET_TOO_SMALL,
          nextBeginOffset: inFirstSegment,
          minOffset: inFirstSegment,
          maxOffset: count,
        },
        `offset ${offset} below the minimum`,
      );
    }
    const found = await store.getMessage('g', TOPIC, 0, inFirstSegment, 1);
    assert.equal(found.status, GetMessageStatus.FOUND);
    assert.equal(found.messages[0]?.commitLogOffset, COMMIT_LOG_SEGMENT_BYTES);
    assert.equal(found.messages[0]?.queueOffset, inFirstSegment);
    // With min > 0, RocketMQ 4 and 5 agree on OFFSET_OVERFLOW_BADLY: nextBeginOffset = max.
    assertEmptyResult(
      await store.getMessage('g', TOPIC, 0, count + 5, 32),
      {
        status: GetMessageStatus.OFFSET_OVERFLOW_BADLY,
        nextBeginOffset: count,
        minOffset: inFirstSegment,
        maxOffset: count,
      },
      'past the end of a queue with min > 0',
    );
    const next = await store.putMessage(fooBarMessage(count));
    assert.equal(next.appendResult?.queueOffset, count);
  });

  it('the tag filter returns exactly the matching messages across many, in order (seeded)', async (t) => {
    const seed = testSeed();
    const random = prng(seed);
    const store = await openStore(t, config(tempDir(t), { flushDiskType: FlushDiskType.ASYNC_FLUSH }));
    const tagNames = ['TagA', 'TagB', 'TagC', 'TagD'];
    const count = 300;
    const tags = Array.from(
      { length: count },
      () => tagNames[Math.floor(random() * tagNames.length)] as string,
    );
    await putAll(store, count, (i) => ({
      topic: 'Filter',
      queueId: 2,
      body: Buffer.from(`m${i}`),
      tags: tags[i] as string,
    }));
    await waitDispatched(store, 'Filter', 2, count);
    for (const wanted of [['TagB'], ['TagA', 'TagD'], ['TagC']]) {
      const got: number[] = [];
      let next = 0;
      for (let reads = 0; next < count && reads < 100; reads++) {
        const r = await store.getMessage('g', 'Filter', 2, next, 16, { tags: wanted });
        assert.ok(
          r.status === GetMessageStatus.FOUND || r.status === GetMessageStatus.NO_MATCHED_MESSAGE,
          `seed ${seed}: ${r.status}`,
        );
        for (const m of r.messages) {
          assert.ok(
            wanted.includes(m.tags ?? ''),
            `seed ${seed}: ${m.tags} is not one of ${wanted.join(',')}`,
          );
          got.push(m.queueOffset);
        }
        assert.ok(r.nextBeginOffset > next, `seed ${seed}: the read moved on`);
        next = r.nextBeginOffset;
      }
      const expectedOffsets = tags.flatMap((tag, i) => (wanted.includes(tag) ? [i] : []));
      assert.deepEqual(got, expectedOffsets, `seed ${seed}: ${wanted.join(',')}`);
    }
  });
});

describe('BatchPutMessageTest', () => {
  it('putMessages of 10 (IPv4, IPv6, and one that rolls): every element found by physical offset and by queue offset', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    const topic = 'batch-write-topic';
    const batches = [
      { v6: false, prefix: 'a' },
      { v6: true, prefix: 'b' },
      { v6: false, prefix: 'c' },
    ];
    const elementSizes: number[][] = [];
    const batchSizes: number[] = [];
    for (const [b, { v6, prefix }] of batches.entries()) {
      const keys = (i: number): string => String(1_700_000_000_000 + b * 10 + i);
      const messages = Array.from({ length: 10 }, (_, i) => ({
        body: Buffer.from(`${prefix}body${i}`),
        tags: 'TAG1',
        keys: keys(i),
      }));
      const sizes = messages.map((m) =>
        recordSize(
          m.body.length,
          topic,
          propertiesBytes([
            ['TAGS', 'TAG1'],
            ['KEYS', m.keys],
          ]),
          { born: v6, store: v6 },
        ),
      );
      elementSizes.push(sizes);
      batchSizes.push(sizes.reduce((a, s) => a + s, 0));
      const result = await store.putMessages({
        topic,
        queueId: 0,
        messages,
        ...(v6 ? { bornHost: IPV6_BORN_HOST, storeHost: IPV6_STORE_HOST } : {}),
      });
      assertPutOk(result, `batch ${b}`);
      assert.equal(result.appendResult?.msgNum, 10);
      assert.equal(result.appendResult?.queueOffset, b * 10);
      assert.equal(result.appendResult?.wroteBytes, batchSizes[b]);
      const ids = result.appendResult?.msgId.split(',') ?? [];
      assert.equal(ids.length, 10);
      assert.ok(
        ids.every((id) => id.length === (v6 ? 56 : 32)),
        `batch ${b}: offset msgIds are ${v6 ? 56 : 32} hex chars`,
      );
    }
    // A batch lands whole in one segment (§2.5 applies to the batch as a whole).
    const batchStarts = layout(batchSizes, COMMIT_LOG_SEGMENT_BYTES).offsets;
    assert.equal(batchStarts[2], COMMIT_LOG_SEGMENT_BYTES, 'the third batch rolled to the second segment');
    await waitDispatched(store, topic, 0, 30);

    for (const [b, { v6, prefix }] of batches.entries()) {
      let offset = batchStarts[b] as number;
      for (let i = 0; i < 10; i++) {
        const queueOffset = b * 10 + i;
        const context = `batch ${b} element ${i}`;
        const byOffset = await store.lookMessageByOffset(offset);
        assert.ok(byOffset !== null, `${context}: found at physical offset ${offset}`);
        assert.equal(byOffset.body.toString(), `${prefix}body${i}`, context);
        assert.equal(byOffset.queueOffset, queueOffset, context);
        assert.equal(byOffset.storeSize, elementSizes[b]?.[i], context);
        assert.equal(byOffset.bornHost, v6 ? IPV6_BORN_HOST : '127.0.0.1:0', context);
        assert.equal(byOffset.storeHost, v6 ? IPV6_STORE_HOST : '127.0.0.1:10911', context);
        assert.equal(byOffset.tags, 'TAG1');
        const byQueue = await store.getMessage('batch_write_group', topic, 0, queueOffset, 1024 * 1024);
        assert.equal(byQueue.status, GetMessageStatus.FOUND, context);
        assert.equal(byQueue.messages[0]?.commitLogOffset, offset, context);
        assert.equal(byQueue.messages[0]?.body.toString(), `${prefix}body${i}`, context);
        offset += elementSizes[b]?.[i] as number;
      }
    }
  });
});

describe('waitForMessages (long polling)', () => {
  it('resolves true when a message arrives, false after the timeout, at once when one is there', async (t) => {
    const store = await openStore(t, config(tempDir(t), { flushDiskType: FlushDiskType.ASYNC_FLUSH }));
    const waiting = store.waitForMessages('W', 0, 0, 10_000);
    let settled: boolean | null = null;
    void waiting.then((v) => {
      settled = v;
    });
    await sleep(30);
    assert.equal(settled, null, 'nothing arrived yet');
    const started = performance.now();
    assertPutOk(await store.putMessage({ topic: 'W', queueId: 0, body: Buffer.from('x') }), 'put');
    assert.equal(await waiting, true, 'the arrival');
    assert.ok(performance.now() - started < 5_000, 'resolved by the arrival, not the timeout');

    assert.equal(await store.waitForMessages('W', 0, 0, 10_000), true, 'already there');
    const before = performance.now();
    assert.equal(await store.waitForMessages('W', 0, 1, 60), false, 'nothing at offset 1');
    assert.ok(performance.now() - before >= 50, 'waited for the timeout');
    // Another queue's message does not wake a waiter.
    const other = store.waitForMessages('W', 1, 0, 150);
    assertPutOk(await store.putMessage({ topic: 'W', queueId: 0, body: Buffer.from('y') }), 'put to queue 0');
    assert.equal(await other, false, 'queue 1 got nothing');
    const atTwo = store.waitForMessages('W', 0, 2, 10_000);
    assertPutOk(await store.putMessage({ topic: 'W', queueId: 0, body: Buffer.from('z') }), 'third put');
    assert.equal(await atTwo, true, 'offset 2 arrived');
  });
});

describe('getMessage: bad arguments', () => {
  it('throws StoreError ERR_INVALID_ARGUMENT, and the store keeps working', async (t) => {
    const store = await openStore(t, config(tempDir(t)));
    await putAll(store, 2, (i) => fooBarMessage(i));
    await waitDispatched(store, TOPIC, 0, 2);
    const bad: [string, string, number, number, number][] = [
      ['negative offset', TOPIC, 0, -1, 32],
      ['fractional offset', TOPIC, 0, 1.5, 32],
      ['NaN offset', TOPIC, 0, Number.NaN, 32],
      ['infinite offset', TOPIC, 0, Number.POSITIVE_INFINITY, 32],
      ['maxMsgNums 0', TOPIC, 0, 0, 0],
      ['negative maxMsgNums', TOPIC, 0, 0, -3],
      ['fractional maxMsgNums', TOPIC, 0, 0, 2.5],
      ['empty topic', '', 0, 0, 32],
      ['negative queue id', TOPIC, -1, 0, 32],
      ['fractional queue id', TOPIC, 0.5, 0, 32],
    ];
    for (const [what, topic, queueId, offset, max] of bad) {
      await assert.rejects(store.getMessage('g', topic, queueId, offset, max), (err: unknown) => {
        assert.ok(err instanceof StoreError, what);
        assert.equal(err.code, 'ERR_INVALID_ARGUMENT', what);
        return true;
      });
    }
    const ok = await store.getMessage('g', TOPIC, 0, 0, 32);
    assert.equal(ok.status, GetMessageStatus.FOUND);
    assert.equal(ok.messages.length, 2);
    assertPutOk(await store.putMessage(fooBarMessage(2)), 'a put afterwards');
    await waitDispatched(store, TOPIC, 0, 3);
  });
});
