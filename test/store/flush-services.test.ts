import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  FlushDiskType,
  type Message,
  MessageStore,
  type MessageStoreConfigInput,
  PutMessageStatus,
  silentLogger,
} from '../../src/store/index.js';
import { openStore, tempDir, waitUntil } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';
import { type AckedPut, datasyncSpans, lastWriteCovering, locate } from '../support/io-events.js';

/**
 * ASYNC_FLUSH: FlushRealTimeService (least pages, thorough interval, final flush on shutdown, the
 * checkpoint's physicMsgTimestamp) and CommitRealTimeService with the write-buffer pool (store
 * reference §4.9, DESIGN.md §1.2). Only event order and positions decide; where a test has to show
 * that something does NOT happen, it gives the service many of its (short) intervals to do it.
 */

const TOPIC = 'FlushServicesTopic';
const ONE_HOUR_MS = 60 * 60 * 1000;
const SEGMENT_SIZE = 64 * 1024;
/** RocketMQ's page unit for least-pages decisions. */
const OS_PAGE_BYTES = 4096;

function message(i: number, bodyBytes = 64): Message {
  return { topic: TOPIC, queueId: 0, body: Buffer.alloc(bodyBytes, i & 0xff) };
}

function putAcked(store: MessageStore, io: InstrumentedIO, msg: Message): Promise<AckedPut> {
  return store.putMessage(msg).then((result) => ({ result, ackSeq: io.nextSeq() }));
}

function asyncConfig(dir: string, extra: Partial<MessageStoreConfigInput> = {}): MessageStoreConfigInput {
  return {
    storePathRootDir: dir,
    flushDiskType: FlushDiskType.ASYNC_FLUSH,
    mappedFileSizeCommitLog: SEGMENT_SIZE,
    ...extra,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function segmentFile(store: MessageStore, offset: number): string {
  const config = store.getMessageStoreConfig();
  return locate(config.storePathCommitLog, config.mappedFileSizeCommitLog, offset, 0).file;
}

function segmentSyncs(io: InstrumentedIO, file: string) {
  return datasyncSpans(io.events).filter((s) => s.file === file);
}

/**
 * FlushRealTimeService's first pass is always thorough (RocketMQ's lastFlushTimestamp starts at 0).
 * A message put in the same turn as the open is appended before that pass flushes, so it is
 * flushed by it: once it is durable, the first pass is over and every later pass obeys the least
 * pages rule until the thorough interval comes round. Call right after `openStore`, no await between.
 */
async function primeFirstThoroughFlush(
  store: MessageStore,
): Promise<{ end: number; storeTimestamp: number }> {
  const result = await store.putMessage(message(255));
  const append = result.appendResult;
  assert.ok(append);
  const end = append.wroteOffset + append.wroteBytes;
  const mfq = store.getCommitLog().mappedFileQueue;
  await waitUntil(() => mfq.flushedWhere >= end, 'the first (thorough) flush pass');
  assert.equal(mfq.flushedWhere, end);
  return { end, storeTimestamp: append.storeTimestamp };
}

describe('FlushRealTimeService (ASYNC_FLUSH)', () => {
  it('does not flush fewer than flushCommitLogLeastPages dirty pages until a thorough flush is due; enough pages flush at once', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      asyncConfig(dir, {
        flushIntervalCommitLog: 20,
        flushCommitLogLeastPages: 4,
        flushCommitLogThoroughInterval: ONE_HOUR_MS,
      }),
      { io },
    );
    const mfq = store.getCommitLog().mappedFileQueue;
    const checkpoint = store.getStoreCheckpoint();
    const primed = await primeFirstThoroughFlush(store);

    const small = await Promise.all([0, 1, 2].map((i) => putAcked(store, io, message(i))));
    assert.ok(small.every((p) => p.result.status === PutMessageStatus.PUT_OK));
    const file = segmentFile(store, 0);
    assert.ok(store.getMaxPhyOffset() < OS_PAGE_BYTES, 'less than one page is dirty');
    const smallAck = Math.max(...small.map((p) => p.ackSeq));

    // Many flush intervals pass; none may flush less than 4 pages (the thorough flush is an hour away).
    await sleep(20 * 15);
    assert.equal(mfq.flushedWhere, primed.end, 'a few small messages are not flushed');
    assert.deepEqual(
      segmentSyncs(io, file).filter((s) => s.startSeq > smallAck),
      [],
      'no fdatasync of the segment after the small puts',
    );
    assert.equal(
      checkpoint.physicMsgTimestamp,
      primed.storeTimestamp,
      'the checkpoint claims nothing that is not durable',
    );

    // At least 4 pages dirty: the next periodic flush syncs them (no thorough flush needed).
    // Put in one turn, so the dirty region jumps past 4 pages at once (a flush between puts could
    // otherwise leave a tail of fewer than 4 pages that waits for the hour-long thorough flush).
    const big = await Promise.all(
      Array.from({ length: 20 }, (_, i) => putAcked(store, io, message(i, 1000))),
    );
    const target = store.getMaxPhyOffset();
    assert.ok(target - primed.end >= 4 * OS_PAGE_BYTES, 'at least 4 pages are dirty');
    await waitUntil(() => mfq.flushedWhere >= target, 'the least-pages flush');
    assert.ok(
      segmentSyncs(io, file).some((s) => s.ok),
      'an fdatasync of the segment did it',
    );
    const last = big.at(-1)?.result.appendResult;
    assert.ok(last);
    assert.equal(
      checkpoint.physicMsgTimestamp,
      last.storeTimestamp,
      'physicMsgTimestamp is the last flushed message',
    );
  });

  it('a thorough flush (flushCommitLogThoroughInterval) syncs even a few small messages, and the checkpoint gets the last flushed storeTimestamp', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      asyncConfig(dir, {
        flushIntervalCommitLog: 20,
        flushCommitLogLeastPages: 4,
        flushCommitLogThoroughInterval: 200,
      }),
      { io },
    );
    const mfq = store.getCommitLog().mappedFileQueue;
    const primed = await primeFirstThoroughFlush(store);
    const puts = await Promise.all([0, 1, 2].map((i) => putAcked(store, io, message(i))));
    assert.ok(puts.every((p) => p.result.status === PutMessageStatus.PUT_OK));
    const end = store.getMaxPhyOffset();
    assert.ok(end < OS_PAGE_BYTES, 'less than one page: only a thorough flush can sync it');
    assert.ok(primed.end < end);

    await waitUntil(() => mfq.flushedWhere >= end, 'the thorough flush');
    const config = store.getMessageStoreConfig();
    const written = puts.map((p) => {
      const append = p.result.appendResult;
      assert.ok(append);
      const loc = locate(
        config.storePathCommitLog,
        config.mappedFileSizeCommitLog,
        append.wroteOffset,
        append.wroteBytes,
      );
      return lastWriteCovering(io.events, loc, Number.POSITIVE_INFINITY) ?? Number.POSITIVE_INFINITY;
    });
    assert.ok(
      segmentSyncs(io, segmentFile(store, 0)).some((s) => s.ok && s.startSeq > Math.max(...written)),
      'an fdatasync that started after the writes made them durable',
    );
    const last = puts.map((p) => p.result.appendResult?.storeTimestamp ?? 0).reduce((a, b) => Math.max(a, b));
    await waitUntil(() => store.getStoreCheckpoint().physicMsgTimestamp === last, 'the checkpoint timestamp');
    assert.equal(store.getStoreCheckpoint().physicMsgTimestamp, last);
  });

  it('shutdown flushes everything, and the checkpoint written at shutdown names the last message', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const config = asyncConfig(dir, {
      flushIntervalCommitLog: ONE_HOUR_MS,
      flushCommitLogLeastPages: 4,
      flushCommitLogThoroughInterval: ONE_HOUR_MS,
    });
    const store = await MessageStore.open(config, { io, logger: silentLogger });
    const puts: AckedPut[] = [];
    // Across a segment roll, so the final flush has more than one file to sync.
    while (store.getMaxPhyOffset() < SEGMENT_SIZE + 500)
      puts.push(await putAcked(store, io, message(puts.length, 2000)));
    const mfq = store.getCommitLog().mappedFileQueue;
    assert.equal(mfq.flushedWhere, 0, 'nothing is flushed before the shutdown (the interval is an hour)');
    const maxOffset = store.getMaxPhyOffset();
    const shutdownSeq = io.nextSeq();
    await store.shutdown();

    assert.equal(mfq.flushedWhere, maxOffset, 'shutdown flushed up to the end of the log');
    const commitLogDir = store.getMessageStoreConfig().storePathCommitLog;
    for (const offset of [0, SEGMENT_SIZE]) {
      const file = path.join(commitLogDir, String(offset).padStart(20, '0'));
      const lastWrite = io.events.filter((e) => e.op === 'write' && e.path === file).at(-1);
      assert.ok(lastWrite);
      assert.ok(
        segmentSyncs(io, file).some((s) => s.ok && s.startSeq > Math.max(shutdownSeq, lastWrite.seq)),
        `shutdown synced ${file} after its last write`,
      );
    }
    const lastTimestamp = puts.at(-1)?.result.appendResult?.storeTimestamp;
    assert.ok(lastTimestamp !== undefined);

    const reopened = await openStore(t, config);
    assert.equal(reopened.getRecoveryReport().lastExitOK, true);
    assert.equal(reopened.getStoreCheckpoint().physicMsgTimestamp, lastTimestamp);
    assert.equal(reopened.getMaxPhyOffset(), maxOffset);
  });

  it('without the pool, a put is acknowledged only after the write of its bytes, and without waiting for a flush', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(t, asyncConfig(dir, { flushIntervalCommitLog: ONE_HOUR_MS }), { io });
    const config = store.getMessageStoreConfig();
    const pending: Promise<AckedPut>[] = [];
    for (let i = 0; i < 50; i++) pending.push(putAcked(store, io, message(i, 100 + i)));
    const puts = await Promise.all(pending);
    const spans = datasyncSpans(io.events);
    for (const { result, ackSeq } of puts) {
      assert.equal(result.status, PutMessageStatus.PUT_OK);
      const append = result.appendResult;
      assert.ok(append);
      const loc = locate(
        config.storePathCommitLog,
        config.mappedFileSizeCommitLog,
        append.wroteOffset,
        append.wroteBytes,
      );
      assert.notEqual(
        lastWriteCovering(io.events, loc, ackSeq),
        null,
        `put at ${append.wroteOffset} acknowledged before its write`,
      );
      assert.deepEqual(
        spans.filter((s) => s.file === loc.file && s.endSeq < ackSeq),
        [],
        'no fdatasync was waited for',
      );
    }
    assert.equal(store.getCommitLog().mappedFileQueue.flushedWhere, 0);
    const first = await store.lookMessageByOffset(0);
    assert.ok(first !== null, 'acknowledged bytes are readable at once');
  });
});

describe('CommitRealTimeService (transientStorePoolEnable)', () => {
  it('acknowledges puts before any write of their bytes; they become readable once committed', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      asyncConfig(dir, {
        transientStorePoolEnable: true,
        commitIntervalCommitLog: 20,
        commitCommitLogThoroughInterval: 20,
      }),
      { io },
    );
    const config = store.getMessageStoreConfig();
    const mfq = store.getCommitLog().mappedFileQueue;

    const pending: Promise<AckedPut>[] = [];
    const looks: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const put = putAcked(store, io, message(i, 100));
      pending.push(put);
      // Looked up in the same turn as the put: the bytes are only in the write buffer.
      looks.push(put.then((p) => store.lookMessageByOffset(p.result.appendResult?.wroteOffset ?? -1)));
    }
    const puts = await Promise.all(pending);
    const early = await Promise.all(looks);
    for (const { result, ackSeq } of puts) {
      assert.equal(result.status, PutMessageStatus.PUT_OK);
      const append = result.appendResult;
      assert.ok(append);
      const loc = locate(
        config.storePathCommitLog,
        config.mappedFileSizeCommitLog,
        append.wroteOffset,
        append.wroteBytes,
      );
      const writesBefore = io.events.filter(
        (e) =>
          e.op === 'write' &&
          e.path === loc.file &&
          e.seq < ackSeq &&
          (e.from as number) < loc.to &&
          (e.to as number) > loc.from,
      );
      assert.deepEqual(writesBefore, [], 'acknowledged while only in the write buffer');
    }
    // Not committed when they were looked up: invisible to readers.
    assert.ok(
      early.every((m) => m === null),
      'a message looked up in the turn of its acknowledgement is not committed, so not readable',
    );

    const last = puts.at(-1)?.result.appendResult;
    assert.ok(last);
    const end = last.wroteOffset + last.wroteBytes;
    await waitUntil(() => mfq.committedWhere >= end, 'CommitRealTimeService committing the buffer');
    for (const { result } of puts) {
      const append = result.appendResult;
      assert.ok(append);
      const msg = await store.lookMessageByOffset(append.wroteOffset);
      assert.ok(msg !== null, 'readable after the commit');
      assert.equal(msg.storeTimestamp, append.storeTimestamp);
      assert.equal(msg.body.length, 100);
    }
    const loc = locate(
      config.storePathCommitLog,
      config.mappedFileSizeCommitLog,
      last.wroteOffset,
      last.wroteBytes,
    );
    assert.notEqual(
      lastWriteCovering(io.events, loc, Number.POSITIVE_INFINITY),
      null,
      'the commit wrote the bytes',
    );
  });

  it('a put returns before the commit: lookMessageByOffset is null until CommitRealTimeService commits it', async (t) => {
    const dir = tempDir(t);
    const store = await openStore(
      t,
      asyncConfig(dir, {
        transientStorePoolEnable: true,
        commitIntervalCommitLog: 20,
        commitCommitLogThoroughInterval: 20,
      }),
    );
    const result = await store.putMessage(message(7, 123));
    assert.equal(result.status, PutMessageStatus.PUT_OK);
    const append = result.appendResult;
    assert.ok(append);
    // Same turn as the acknowledgement: no commit can have run yet.
    const before = store.lookMessageByOffset(append.wroteOffset);
    assert.equal(store.getCommitLog().mappedFileQueue.committedWhere, 0);
    assert.equal(await before, null);

    const mfq = store.getCommitLog().mappedFileQueue;
    await waitUntil(() => mfq.committedWhere >= append.wroteOffset + append.wroteBytes, 'the commit');
    const after = await store.lookMessageByOffset(append.wroteOffset);
    assert.ok(after !== null);
    assert.deepEqual(after.body, Buffer.alloc(123, 7));
  });

  it('wakes the flush service after a commit (untimed flush with an hour-long interval)', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      asyncConfig(dir, {
        transientStorePoolEnable: true,
        commitIntervalCommitLog: 20,
        commitCommitLogThoroughInterval: 20,
        flushCommitLogTimed: false,
        flushIntervalCommitLog: ONE_HOUR_MS,
        flushCommitLogLeastPages: 0,
        flushCommitLogThoroughInterval: ONE_HOUR_MS,
      }),
      { io },
    );
    const mfq = store.getCommitLog().mappedFileQueue;
    for (let round = 0; round < 3; round++) {
      const result = await store.putMessage(message(round, 200));
      const append = result.appendResult;
      assert.ok(append);
      const end = append.wroteOffset + append.wroteBytes;
      // Only a wakeup from CommitRealTimeService can end the flush service's hour-long wait.
      await waitUntil(() => mfq.flushedWhere >= end, `the flush woken by the commit (round ${round})`);
      assert.ok(mfq.committedWhere >= end, 'the flush never passes the commit');
    }
    assert.ok(
      segmentSyncs(io, segmentFile(store, 0)).filter((s) => s.ok).length >= 3,
      'one fdatasync per woken flush',
    );
  });

  it('shutdown commits and flushes what is still only in the write buffer', async (t) => {
    const dir = tempDir(t);
    const config = asyncConfig(dir, {
      transientStorePoolEnable: true,
      commitIntervalCommitLog: ONE_HOUR_MS,
      commitCommitLogThoroughInterval: ONE_HOUR_MS,
      wakeCommitWhenPutMessage: false,
      flushIntervalCommitLog: ONE_HOUR_MS,
      flushCommitLogThoroughInterval: ONE_HOUR_MS,
    });
    const store = await MessageStore.open(config, { logger: silentLogger });
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await store.putMessage(message(i, 300)));
    assert.ok(results.every((r) => r.status === PutMessageStatus.PUT_OK));
    const end = store.getCommitLog().mappedFileQueue.getMaxWrotePosition();
    assert.ok(end > 0);
    await store.shutdown();
    const mfq = store.getCommitLog().mappedFileQueue;
    assert.equal(mfq.committedWhere, end, 'shutdown committed the buffered bytes');
    assert.equal(mfq.flushedWhere, end, 'and flushed them');

    const reopened = await openStore(t, config);
    assert.equal(reopened.getMaxPhyOffset(), end);
    const lastOffset = results.at(-1)?.appendResult?.wroteOffset;
    assert.ok(lastOffset !== undefined);
    const msg = await reopened.lookMessageByOffset(lastOffset);
    assert.ok(msg !== null);
    assert.deepEqual(msg.body, Buffer.alloc(300, 9));
  });
});
