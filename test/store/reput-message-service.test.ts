import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FlushDiskType,
  GetMessageStatus,
  type MessageStoreConfigInput,
  type PutMessageResult,
  PutMessageStatus,
} from '../../src/store/index.js';
import {
  FOO_BAR_BODY as BODY,
  fooBarMessage as fooBar,
  FOO_BAR_TOPIC as TOPIC,
} from '../support/foo-bar-message.js';
import { onCleanup, openStore, prng, tempDir, testSeed, waitUntil } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';

/**
 * Ports of RocketMQ's `ReputMessageServiceTest` (store reference §4.12, §6), plus dispatch across
 * commit log segment rolls and consume queue file rolls, transaction records, the arrival
 * listener and `dispatchBehindBytes`.
 *
 * RocketMQ mocks the flush manager so nothing is ever flushed; here the real disk is wrapped by
 * InstrumentedIO and every commit log fdatasync is held open until the test releases it.
 *
 * Sizes, offsets, consume queue file names and tags codes are computed in this file from the
 * formats (store reference §2.1, §2.5, §2.7), not taken from the store.
 */

const CQ_UNIT_BYTES = 20;
const END_FILE_MIN_BLANK_BYTES = 8;
/** `name 0x01 value 0x02` per pair. */
const propertiesBytes = (pairs: readonly (readonly [string, string])[]): number =>
  pairs.reduce((n, [k, v]) => n + Buffer.byteLength(k) + 1 + Buffer.byteLength(v) + 1, 0);
/** Record bytes with IPv4 hosts: 4+4+4+4+4+8+8+4+8 + 8 + 8 + 8 + 4+8 + (4+body) + (1+topic) + (2+props). */
const recordSizeV4 = (bodyBytes: number, topic: string, props: number): number =>
  91 + bodyBytes + Buffer.byteLength(topic) + props;
/** 158 bytes: RocketMQ's test finds 1580 after 10 of them. */
const FOO_BAR_RECORD_BYTES = recordSizeV4(
  BODY.length,
  TOPIC,
  propertiesBytes([
    ['TAGS', 'TAG1'],
    ['KEYS', '1700000000000'],
  ]),
);

/** Java's String.hashCode, written out here: the consume queue's tags code. */
/** A store whose `onMessageArriving` calls are recorded, as [topic, queueId, maxOffset]. */
async function openRecordingArrivals(
  t: Parameters<typeof openStore>[0],
  config: MessageStoreConfigInput,
): Promise<{ store: Awaited<ReturnType<typeof openStore>>; arrivals: [string, number, number][] }> {
  const arrivals: [string, number, number][] = [];
  const store = await openStore(t, config, {
    onMessageArriving: (topic, queueId, max) => arrivals.push([topic, queueId, max]),
  });
  return { store, arrivals };
}

function javaHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

function syncConfig(root: string, extra: Partial<MessageStoreConfigInput> = {}): MessageStoreConfigInput {
  return { storePathRootDir: root, flushDiskType: FlushDiskType.SYNC_FLUSH, ...extra };
}

/** Holds every commit log fdatasync until `release()`; released at the end of the test anyway. */
function holdCommitLogFlush(
  t: Parameters<typeof tempDir>[0],
  io: InstrumentedIO,
  root: string,
): { release: () => void; started: () => number } {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  onCleanup(t, () => release());
  const dir = path.join(root, 'commitlog');
  let started = 0;
  io.hooks.beforeDatasync = (file) => {
    if (!file.startsWith(dir)) return undefined;
    started++;
    return held;
  };
  return { release, started: () => started };
}

describe('ReputMessageServiceTest', () => {
  it('testReputEndOffset_whenSyncFlush: nothing past flushedWhere is dispatched while fdatasync never completes', async (t) => {
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const store = await openStore(t, syncConfig(root, { syncFlushTimeout: 200 }), { io });
    const flush = holdCommitLogFlush(t, io, root);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.putMessage(fooBar(i))));
    for (const [i, r] of results.entries()) {
      // Stored, but never known durable: the flush never returned.
      assert.equal(r.status, PutMessageStatus.FLUSH_DISK_TIMEOUT, `put ${i}`);
      assert.equal(r.appendResult?.wroteOffset, i * FOO_BAR_RECORD_BYTES, `put ${i}`);
    }
    assert.ok(flush.started() >= 1, 'an fdatasync was started and is held');
    await sleep(250); // more than two idle dispatch passes
    assert.equal(store.getMaxPhyOffset(), 10 * FOO_BAR_RECORD_BYTES);
    assert.equal(store.getMaxPhyOffset(), 1580);
    assert.equal(store.getCommitLog().mappedFileQueue.flushedWhere, 0);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0), 0);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0, false), 10, 'the offsets were assigned');
    const result = await store.getMessage('group', TOPIC, 0, 0, 32);
    assert.equal(result.status, GetMessageStatus.NO_MESSAGE_IN_QUEUE);
    assert.equal(result.messages.length, 0);
    assert.equal(await store.lookMessageByOffset(0), null, 'unflushed bytes are not visible either');
    assert.equal(store.dispatchBehindBytes(), 0, 'nothing readable is waiting for dispatch');

    flush.release();
    await waitUntil(() => store.getMaxOffsetInQueue(TOPIC, 0) === 10, 'dispatch after the flush');
    assert.equal(store.getCommitLog().mappedFileQueue.flushedWhere, 1580);
    const all = await store.getMessage('group', TOPIC, 0, 0, 32);
    assert.equal(all.status, GetMessageStatus.FOUND);
    assert.deepEqual(
      all.messages.map((m) => m.commitLogOffset),
      Array.from({ length: 10 }, (_, i) => i * FOO_BAR_RECORD_BYTES),
    );
    await waitUntil(() => store.dispatchBehindBytes() === 0, 'dispatch to catch up');
  });

  it('SYNC_FLUSH with puts that do not wait (WAIT=false): acknowledged at once, still not dispatched until flushed', async (t) => {
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const store = await openStore(t, syncConfig(root), { io });
    const flush = holdCommitLogFlush(t, io, root);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => store.putMessage(fooBar(i, { waitStoreMsgOK: false }))),
    );
    // The record carries WAIT=false: 11 more property bytes than RocketMQ's test message.
    const size = FOO_BAR_RECORD_BYTES + propertiesBytes([['WAIT', 'false']]);
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, PutMessageStatus.PUT_OK, `put ${i}`);
      assert.equal(r.appendResult?.wroteBytes, size, `put ${i}`);
    }
    await sleep(250);
    assert.equal(store.getMaxPhyOffset(), 10 * size);
    assert.equal(store.getCommitLog().mappedFileQueue.flushedWhere, 0);
    assert.equal(store.getMaxOffsetInQueue(TOPIC, 0), 0);
    assert.equal((await store.getMessage('g', TOPIC, 0, 0, 32)).status, GetMessageStatus.NO_MESSAGE_IN_QUEUE);
    flush.release();
    await waitUntil(() => store.getMaxOffsetInQueue(TOPIC, 0) === 10, 'dispatch after the flush');
    assert.equal((await store.getMessage('g', TOPIC, 0, 0, 32)).messages.length, 10);
  });

  it('testReputEndOffset_whenAsyncFlush: the queue reaches 10 and 10 messages come back', async (t) => {
    const store = await openStore(t, {
      storePathRootDir: tempDir(t),
      flushDiskType: FlushDiskType.ASYNC_FLUSH,
    });
    for (let i = 0; i < 10; i++) {
      const r = await store.putMessage(fooBar(i));
      assert.equal(r.status, PutMessageStatus.PUT_OK, `put ${i}`);
      assert.equal(r.appendResult?.wroteOffset, i * FOO_BAR_RECORD_BYTES);
    }
    assert.equal(store.getMaxPhyOffset(), 1580);
    await waitUntil(() => store.getMaxOffsetInQueue(TOPIC, 0) === 10, 'dispatch');
    const result = await store.getMessage('group', TOPIC, 0, 0, 32);
    assert.equal(result.status, GetMessageStatus.FOUND);
    assert.equal(result.messages.length, 10);
    assert.deepEqual(
      result.messages.map((m) => m.keys),
      Array.from({ length: 10 }, (_, i) => String(1_700_000_000_000 + i)),
    );
  });
});

describe('ReputMessageService: dispatch across rolls, transactions, listener, lag', () => {
  const SEGMENT_BYTES = 4096;
  const CQ_FILE_BYTES = CQ_UNIT_BYTES * 8;

  interface Expected {
    queueId: number;
    queueOffset: number;
    commitLogOffset: number;
    size: number;
    tags: string;
  }

  it('dispatches every record across commit log segment rolls and consume queue file rolls; the files hold the right units', async (t) => {
    const seed = testSeed();
    const random = prng(seed);
    const root = tempDir(t);
    const { store, arrivals } = await openRecordingArrivals(t, {
      storePathRootDir: root,
      mappedFileSizeCommitLog: SEGMENT_BYTES,
      mappedFileSizeConsumeQueue: CQ_FILE_BYTES,
    });
    const queues = 3;
    const count = 240;
    const nextQueueOffset = Array<number>(queues).fill(0);
    const expected: Expected[] = [];
    let pos = 0;
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const queueId = Math.floor(random() * queues);
      const bodyBytes = 1 + Math.floor(random() * 200);
      const tags = `tag-${Math.floor(random() * 5)}`;
      const size = recordSizeV4(bodyBytes, 'Roll', propertiesBytes([['TAGS', tags]]));
      const room = SEGMENT_BYTES - (pos % SEGMENT_BYTES);
      if (size + END_FILE_MIN_BLANK_BYTES > room) pos += room;
      const queueOffset = nextQueueOffset[queueId] as number;
      nextQueueOffset[queueId] = queueOffset + 1;
      expected.push({ queueId, queueOffset, commitLogOffset: pos, size, tags });
      pos += size;
      pending.push(
        store
          .putMessage({ topic: 'Roll', queueId, body: Buffer.alloc(bodyBytes, i & 0xff), tags })
          .then((r) => {
            assert.equal(r.status, PutMessageStatus.PUT_OK, `seed ${seed}: put ${i}`);
            assert.equal(
              r.appendResult?.wroteOffset,
              expected[i]?.commitLogOffset,
              `seed ${seed}: put ${i} offset`,
            );
          }),
      );
      // Several turns: dispatch runs while puts are still arriving.
      if (i % 40 === 39) {
        await Promise.all(pending.splice(0));
        await sleep(1);
      }
    }
    await Promise.all(pending);
    assert.equal(store.getMaxPhyOffset(), pos, `seed ${seed}: the end of the log`);
    assert.ok(pos > 10 * SEGMENT_BYTES, `seed ${seed}: many segment rolls (${pos} bytes)`);
    await waitUntil(
      () => nextQueueOffset.every((n, q) => store.getMaxOffsetInQueue('Roll', q) === n),
      'every queue dispatched',
    );
    await waitUntil(() => store.dispatchBehindBytes() === 0, 'dispatchBehindBytes to reach 0');

    // Read back through getMessage, queue by queue, in pages that cross consume queue files.
    for (let q = 0; q < queues; q++) {
      const want = expected.filter((e) => e.queueId === q);
      const got: Expected[] = [];
      for (let next = 0; next < want.length; ) {
        const r = await store.getMessage('g', 'Roll', q, next, 7);
        assert.equal(r.status, GetMessageStatus.FOUND, `seed ${seed}: queue ${q} at ${next}`);
        for (const m of r.messages) {
          got.push({
            queueId: m.queueId,
            queueOffset: m.queueOffset,
            commitLogOffset: m.commitLogOffset,
            size: m.storeSize,
            tags: m.tags ?? '',
          });
        }
        next = r.nextBeginOffset;
      }
      assert.deepEqual(got, want, `seed ${seed}: queue ${q}`);
      assert.ok(
        want.length > 2 * (CQ_FILE_BYTES / CQ_UNIT_BYTES),
        `seed ${seed}: queue ${q} spans several files`,
      );
    }

    // The listener heard of every queue, its reported max offsets never went back and ended at the
    // queue's size.
    for (let q = 0; q < queues; q++) {
      const heard = arrivals
        .filter(([topic, queueId]) => topic === 'Roll' && queueId === q)
        .map(([, , max]) => max);
      assert.ok(heard.length > 0, `seed ${seed}: queue ${q} announced`);
      for (let k = 1; k < heard.length; k++) {
        assert.ok(
          (heard[k] as number) >= (heard[k - 1] as number),
          `seed ${seed}: queue ${q} max never goes back`,
        );
      }
      assert.equal(heard.at(-1), nextQueueOffset[q], `seed ${seed}: queue ${q} last announced max`);
    }

    // The consume queue files themselves, after a clean shutdown: names and 20-byte units.
    await store.shutdown();
    for (let q = 0; q < queues; q++) {
      const want = expected.filter((e) => e.queueId === q);
      const dir = path.join(root, 'consumequeue', 'Roll', String(q));
      const fileCount = Math.ceil((want.length * CQ_UNIT_BYTES) / CQ_FILE_BYTES);
      const names = Array.from({ length: fileCount }, (_, f) => String(f * CQ_FILE_BYTES).padStart(20, '0'));
      assert.deepEqual(fs.readdirSync(dir).sort(), names, `seed ${seed}: queue ${q} file names`);
      const bytes = Buffer.concat(names.map((n) => fs.readFileSync(path.join(dir, n))));
      for (const [k, e] of want.entries()) {
        const at = k * CQ_UNIT_BYTES;
        assert.equal(
          Number(bytes.readBigInt64BE(at)),
          e.commitLogOffset,
          `seed ${seed}: q${q} unit ${k} offset`,
        );
        assert.equal(bytes.readInt32BE(at + 8), e.size, `seed ${seed}: q${q} unit ${k} size`);
        assert.equal(
          Number(bytes.readBigInt64BE(at + 12)),
          javaHash(e.tags),
          `seed ${seed}: q${q} unit ${k} tags code`,
        );
      }
      assert.ok(
        bytes.subarray(want.length * CQ_UNIT_BYTES).every((b) => b === 0),
        `seed ${seed}: q${q} nothing after the last unit`,
      );
    }
  });

  it('transaction PREPARED (0x4) and ROLLBACK (0xC) records get no unit; NOT and COMMIT (0x8) do, with consecutive offsets', async (t) => {
    const root = tempDir(t);
    const { store, arrivals } = await openRecordingArrivals(t, {
      storePathRootDir: root,
      mappedFileSizeCommitLog: SEGMENT_BYTES,
      mappedFileSizeConsumeQueue: CQ_FILE_BYTES,
    });
    const flags = [0, 0x4, 0, 0xc, 0x8, 0x4, 0x4, 0, 0xc, 0x8, 0];
    const results: PutMessageResult[] = [];
    for (const [i, sysFlag] of flags.entries()) {
      const r = await store.putMessage({ topic: 'Tx', queueId: 0, body: Buffer.from(`tx-${i}`), sysFlag });
      assert.equal(r.status, PutMessageStatus.PUT_OK, `put ${i}`);
      results.push(r);
    }
    // Only PREPARED/ROLLBACK-only traffic on another queue: no consume queue at all.
    for (const sysFlag of [0x4, 0xc, 0x4]) {
      const r = await store.putMessage({ topic: 'TxHalf', queueId: 0, body: Buffer.from('half'), sysFlag });
      assert.equal(r.status, PutMessageStatus.PUT_OK);
      assert.equal(r.appendResult?.queueOffset, 0, 'a prepared/rollback record takes queue offset 0');
    }
    const visible = flags.flatMap((f, i) => (f === 0x4 || f === 0xc ? [] : [i]));
    await waitUntil(() => store.getMaxOffsetInQueue('Tx', 0) === visible.length, 'dispatch');
    await waitUntil(() => store.dispatchBehindBytes() === 0, 'dispatch to catch up');
    assert.equal(store.getQueueOffset('Tx', 0), visible.length, 'only NOT and COMMIT consume queue offsets');
    const read = await store.getMessage('g', 'Tx', 0, 0, 32);
    assert.deepEqual(
      read.messages.map((m) => m.body.toString()),
      visible.map((i) => `tx-${i}`),
    );
    assert.deepEqual(
      read.messages.map((m) => m.queueOffset),
      visible.map((_, k) => k),
    );
    assert.deepEqual(
      read.messages.map((m) => m.commitLogOffset),
      visible.map((i) => results[i]?.appendResult?.wroteOffset),
    );
    // The half messages are in the commit log, readable by offset, but in no queue.
    const half = results[1]?.appendResult;
    assert.ok(half);
    const halfMessage = await store.lookMessageByOffset(half.wroteOffset);
    assert.equal(halfMessage?.sysFlag, 0x4);
    assert.equal(halfMessage?.queueOffset, 0);
    assert.equal(store.getMaxOffsetInQueue('TxHalf', 0), 0);
    assert.equal(
      (await store.getMessage('g', 'TxHalf', 0, 0, 32)).status,
      GetMessageStatus.NO_MATCHED_LOGIC_QUEUE,
    );
    assert.equal(fs.existsSync(path.join(root, 'consumequeue', 'TxHalf')), false, 'no directory for TxHalf');
    assert.equal(
      arrivals.some(([topic]) => topic === 'TxHalf'),
      false,
      'no arrival announced for records without a unit',
    );
  });

  it('onMessageArriving: told topic, queue id and the new max offset as messages become readable', async (t) => {
    const { store, arrivals } = await openRecordingArrivals(t, { storePathRootDir: tempDir(t) });
    assert.equal(arrivals.length, 0, 'nothing announced before any put');
    await store.putMessage({ topic: 'L', queueId: 3, body: Buffer.from('one') });
    await waitUntil(() => arrivals.length > 0, 'the first announcement');
    assert.deepEqual(arrivals.slice(), [['L', 3, 1]]);
    arrivals.length = 0;
    await Promise.all([
      store.putMessage({ topic: 'L', queueId: 3, body: Buffer.from('two') }),
      store.putMessage({ topic: 'M', queueId: 0, body: Buffer.from('m') }),
      store.putMessage({ topic: 'L', queueId: 3, body: Buffer.from('three') }),
    ]);
    await waitUntil(
      () =>
        arrivals.some(([t2, q, m]) => t2 === 'L' && q === 3 && m === 3) &&
        arrivals.some(([t2]) => t2 === 'M'),
      'both queues announced',
    );
    for (const [topic, queueId, max] of arrivals) {
      // Every announcement names a queue that really holds that many readable units.
      assert.ok(store.getMaxOffsetInQueue(topic, queueId) >= max, `${topic}/${queueId} holds ${max}`);
      assert.ok(topic === 'L' ? queueId === 3 && max >= 2 && max <= 3 : queueId === 0 && max === 1);
    }
  });

  it('units dispatched across a consume queue file roll do not count as readable before their commit', async (t) => {
    // The consume queue's write (its commit) is held: the units sit in its write buffers.
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const store = await openStore(
      t,
      {
        storePathRootDir: root,
        mappedFileSizeCommitLog: SEGMENT_BYTES,
        mappedFileSizeConsumeQueue: CQ_FILE_BYTES,
      },
      { io },
    );
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    onCleanup(t, () => release());
    const cqDir = path.join(root, 'consumequeue');
    io.hooks.beforeWrite = (file, _position, _length, sync) =>
      file.startsWith(cqDir) && !sync ? held : undefined;
    // 12 units: file 0 (8 units) fills, file 160 takes 4.
    const puts = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        store.putMessage({ topic: 'Held', queueId: 0, body: Buffer.from(`h${i}`) }),
      ),
    );
    for (const r of puts) assert.equal(r.status, PutMessageStatus.PUT_OK);
    await waitUntil(
      () => store.getConsumeQueueStore().find('Held', 0)?.getWrittenOffsetInQueue() === 12,
      'the 12 units to be appended',
    );
    const queue = store.getConsumeQueueStore().find('Held', 0);
    assert.ok(queue !== null);
    assert.deepEqual(await queue.getUnits(0, 1), [], 'unit 0 is not readable: its write is held');
    const read = await store.getMessage('g', 'Held', 0, 0, 32);
    assert.deepEqual(
      {
        maxOffsetInQueue: store.getMaxOffsetInQueue('Held', 0),
        getMessage: [read.status, read.nextBeginOffset, read.maxOffset],
        waitForMessages: await store.waitForMessages('Held', 0, 0, 50),
      },
      {
        // "The queue offset after the last readable message": none is readable.
        maxOffsetInQueue: 0,
        getMessage: [GetMessageStatus.NO_MESSAGE_IN_QUEUE, 0, 0],
        // "Resolves true as soon as the queue holds a readable message at offset or later".
        waitForMessages: false,
      },
      'while the consume queue commit is held',
    );
    release();
    await waitUntil(() => store.getMaxOffsetInQueue('Held', 0) === 12, 'the units to become readable');
    assert.equal((await store.getMessage('g', 'Held', 0, 0, 32)).messages.length, 12);
  });

  it('a throwing onMessageArriving does not stop dispatch', async (t) => {
    let calls = 0;
    const store = await openStore(
      t,
      { storePathRootDir: tempDir(t) },
      {
        onMessageArriving: () => {
          calls++;
          throw new Error('listener bug');
        },
      },
    );
    for (let i = 0; i < 3; i++) {
      await store.putMessage({ topic: 'X', queueId: 0, body: Buffer.from(`x${i}`) });
      await waitUntil(() => store.getMaxOffsetInQueue('X', 0) === i + 1, `dispatch of ${i}`);
    }
    assert.ok(calls >= 3, 'the listener was called for each pass');
    assert.equal(store.isWriteable(), true);
  });

  it('dispatchBehindBytes: never negative, never more than the readable log, 0 once everything is dispatched', async (t) => {
    const store = await openStore(t, {
      storePathRootDir: tempDir(t),
      mappedFileSizeCommitLog: SEGMENT_BYTES,
    });
    const samples: number[] = [];
    let end = 0;
    for (let burst = 0; burst < 10; burst++) {
      const puts = Array.from({ length: 20 }, (_, i) =>
        store.putMessage({ topic: 'Lag', queueId: burst % 2, body: Buffer.alloc(100, i) }),
      );
      samples.push(store.dispatchBehindBytes());
      for (const r of await Promise.all(puts)) assert.equal(r.status, PutMessageStatus.PUT_OK);
      samples.push(store.dispatchBehindBytes());
      end = store.getMaxPhyOffset();
      assert.ok(
        samples.every((s) => s >= 0 && s <= end),
        `samples within [0, ${end}]: ${samples.join(',')}`,
      );
    }
    const size = recordSizeV4(100, 'Lag', 0);
    const perSegment = Math.floor((SEGMENT_BYTES - END_FILE_MIN_BLANK_BYTES) / size);
    const segments = Math.ceil(200 / perSegment);
    assert.equal(end, (segments - 1) * SEGMENT_BYTES + (200 - (segments - 1) * perSegment) * size);
    await waitUntil(() => store.dispatchBehindBytes() === 0, 'dispatch to catch up');
    await waitUntil(
      () => store.getMaxOffsetInQueue('Lag', 0) === 100 && store.getMaxOffsetInQueue('Lag', 1) === 100,
      'both queues readable',
    );
  });
});
