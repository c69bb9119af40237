import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  FlushDiskType,
  type Message,
  type MessageStore,
  type MessageStoreConfigInput,
  PutMessageStatus,
  StoreError,
} from '../../src/store/index.js';
import { openStore, tempDir, tick, waitUntil } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';
import {
  type AckedPut,
  datasyncSpans,
  durabilityViolation,
  locate,
  overlappingWrites,
} from '../support/io-events.js';

/**
 * SYNC_FLUSH through the real MessageStore (store reference §4.9, DESIGN.md §1.2): a put is
 * acknowledged PUT_OK only after an fdatasync of its segment that started after its bytes were
 * written. The disk is the real one, wrapped by InstrumentedIO to record the order of writes,
 * fdatasyncs and acknowledgements, and to make an fdatasync hang or fail.
 */

const TOPIC = 'GroupCommitTopic';

function message(i: number, bodyBytes = 64, extra: Partial<Message> = {}): Message {
  return { topic: TOPIC, queueId: i % 4, body: Buffer.alloc(bodyBytes, i & 0xff), ...extra };
}

/** Puts and takes a sequence number when the put resolves: the acknowledgement in the event order. */
function putAcked(store: MessageStore, io: InstrumentedIO, msg: Message): Promise<AckedPut> {
  return store.putMessage(msg).then((result) => ({ result, ackSeq: io.nextSeq() }));
}

function syncConfig(dir: string, extra: Partial<MessageStoreConfigInput> = {}): MessageStoreConfigInput {
  return {
    storePathRootDir: dir,
    flushDiskType: FlushDiskType.SYNC_FLUSH,
    mappedFileSizeCommitLog: 1024,
    ...extra,
  };
}

function isCommitLogFile(store: MessageStore, file: string): boolean {
  return path.dirname(file) === store.getMessageStoreConfig().storePathCommitLog;
}

/** Checks every acknowledged put against the event log: PUT_OK and durable before its ack. */
function assertAllDurable(store: MessageStore, io: InstrumentedIO, puts: readonly AckedPut[]): void {
  const config = store.getMessageStoreConfig();
  const notOk = puts.filter((p) => p.result.status !== PutMessageStatus.PUT_OK);
  assert.deepEqual(
    notOk.slice(0, 5).map((p) => [p.result.status, p.result.reason, p.result.error?.message]),
    [],
    `${notOk.length} of ${puts.length} puts were not PUT_OK`,
  );
  const spans = datasyncSpans(io.events); // throws if two fdatasyncs overlapped on one file
  const violations: string[] = [];
  const files = new Set<string>();
  for (const { result, ackSeq } of puts) {
    const append = result.appendResult;
    assert.ok(append !== null);
    const loc = locate(
      config.storePathCommitLog,
      config.mappedFileSizeCommitLog,
      append.wroteOffset,
      append.wroteBytes,
    );
    files.add(loc.file);
    const violation = durabilityViolation(io.events, spans, loc, ackSeq);
    if (violation !== null) violations.push(`put at ${append.wroteOffset}: ${violation}`);
  }
  assert.deepEqual(
    violations.slice(0, 5),
    [],
    `${violations.length} puts were acknowledged before they were durable`,
  );
  for (const file of files)
    assert.deepEqual(overlappingWrites(io.events, file), [], `no byte of ${file} is written twice`);
}

describe('GroupCommitService (SYNC_FLUSH)', () => {
  it('acknowledges every put only after an fdatasync that started after its write and ended before the ack, across many segment rolls', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const segmentSize = 1024;
    const store = await openStore(t, syncConfig(dir, { mappedFileSizeCommitLog: segmentSize }), { io });

    const PUTS = 1200;
    const BURST = 30;
    const pending: Promise<AckedPut>[] = [];
    for (let i = 0; i < PUTS; i++) {
      // Bodies of varying size, so records end at every kind of position and rolls happen often.
      pending.push(putAcked(store, io, message(i, 16 + ((i * 37) % 240))));
      // Bursts over several event-loop turns: new requests arrive while a group commit is busy.
      if (i % BURST === BURST - 1) await tick();
    }
    const puts = await Promise.all(pending);

    assertAllDurable(store, io, puts);

    // The interesting case is covered: puts that rolled to a fresh segment (the record starts at
    // the segment's first byte, so its nextOffset is in the new file).
    const rolled = puts.filter((p) => {
      const offset = p.result.appendResult?.wroteOffset ?? 0;
      return offset > 0 && offset % segmentSize === 0;
    });
    assert.ok(rolled.length >= 50, `only ${rolled.length} puts started a fresh segment`);
    assert.ok(store.getMaxPhyOffset() >= segmentSize * 100, 'the log spans many segments');

    // The acknowledged messages read back.
    for (const p of [puts[0], rolled[0], puts.at(-1)]) {
      const append = p?.result.appendResult;
      assert.ok(append);
      const msg = await store.lookMessageByOffset(append.wroteOffset);
      assert.ok(msg !== null);
      assert.equal(msg.commitLogOffset, append.wroteOffset);
      assert.equal(msg.storeSize, append.wroteBytes);
    }
    assert.ok(
      store.getCommitLog().mappedFileQueue.flushedWhere >=
        (puts.at(-1)?.result.appendResult?.wroteOffset ?? 0),
    );
  });

  it('a put that rolls to a fresh segment is PUT_OK, not a false FLUSH_DISK_TIMEOUT (RocketMQ #2274/#3408)', async (t) => {
    // One put at a time: each request is alone in its group commit, and flushedWhere sits at the
    // end of the previous record. A put that rolls writes a BLANK to the old segment and its record
    // to the new one, so the first flush only finishes the old segment; a second is needed.
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const segmentSize = 1024;
    const store = await openStore(t, syncConfig(dir, { mappedFileSizeCommitLog: segmentSize }), { io });
    const puts: AckedPut[] = [];
    let rolls = 0;
    for (let i = 0; rolls < 20; i++) {
      const put = await putAcked(store, io, message(i, 150 + ((i * 53) % 200)));
      puts.push(put);
      const offset = put.result.appendResult?.wroteOffset ?? 0;
      if (offset > 0 && offset % segmentSize === 0) rolls++;
      assert.equal(put.result.status, PutMessageStatus.PUT_OK, `put ${i} at ${offset}`);
    }
    assertAllDurable(store, io, puts);
  });

  it('2000 puts issued in one turn, across hundreds of segments, are all PUT_OK and durable before their acks', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const segmentSize = 2048;
    const store = await openStore(t, syncConfig(dir, { mappedFileSizeCommitLog: segmentSize }), { io });
    const pending: Promise<AckedPut>[] = [];
    for (let i = 0; i < 2000; i++) pending.push(putAcked(store, io, message(i, 32 + ((i * 29) % 160))));
    const puts = await Promise.all(pending);
    assertAllDurable(store, io, puts);
    assert.ok(store.getMaxPhyOffset() > segmentSize * 150, 'the puts rolled over many segments');
  });

  it('serves many waiting puts with few fdatasync calls (group commit)', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(t, syncConfig(dir, { mappedFileSizeCommitLog: 1024 * 1024 }), { io });

    const PUTS = 100;
    const startSeq = io.nextSeq();
    const pending: Promise<AckedPut>[] = [];
    for (let i = 0; i < PUTS; i++) pending.push(putAcked(store, io, message(i)));
    const puts = await Promise.all(pending);
    assertAllDurable(store, io, puts);

    const lastAck = Math.max(...puts.map((p) => p.ackSeq));
    const syncs = datasyncSpans(io.events).filter(
      (s) => isCommitLogFile(store, s.file) && s.startSeq > startSeq && s.startSeq < lastAck,
    );
    assert.ok(syncs.length >= 1, 'at least one fdatasync made them durable');
    assert.ok(
      syncs.length <= PUTS / 10,
      `${syncs.length} fdatasync calls for ${PUTS} puts is not a group commit`,
    );
  });

  it('answers FLUSH_DISK_TIMEOUT (not a hang) when fdatasync is stuck; the message is stored and the store still shuts down', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    let release!: () => void;
    const stuck = new Promise<void>((resolve) => {
      release = resolve;
    });
    const store = await openStore(t, syncConfig(dir, { syncFlushTimeout: 300 }), { io });
    io.hooks.beforeDatasync = (file) => (isCommitLogFile(store, file) ? stuck : undefined);
    try {
      const result = await store.putMessage(message(1, 100));
      assert.equal(result.status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
      assert.ok(result.appendResult !== null, 'the append happened: the message is stored');
      assert.equal(result.appendResult.wroteOffset, 0);
      const { wroteOffset, wroteBytes } = result.appendResult;
      assert.ok(
        store.getCommitLog().mappedFileQueue.committedWhere >= wroteOffset + wroteBytes,
        'it is in the file',
      );
      assert.ok(
        store.getCommitLog().mappedFileQueue.flushedWhere < wroteOffset + wroteBytes,
        'it was not flushed',
      );
      // Under SYNC_FLUSH readers see only flushed bytes (RocketMQ #8239).
      assert.equal(await store.lookMessageByOffset(wroteOffset), null, 'not visible before its fdatasync');
      assert.ok(store.isWriteable(), 'a slow disk is not an I/O error');
    } finally {
      release();
    }
    await waitUntil(
      () => store.getCommitLog().mappedFileQueue.flushedWhere > 0,
      'the flush once the disk answers',
    );
    const stored = await store.lookMessageByOffset(0);
    assert.ok(stored !== null, 'the message is readable once flushed');
    assert.deepEqual(stored.body, Buffer.alloc(100, 1));
    await store.shutdown();
    assert.equal(fs.existsSync(path.join(dir, 'abort')), false, 'a clean shutdown after the disk recovered');
    assert.ok(
      store.getCommitLog().mappedFileQueue.flushedWhere > 0,
      'shutdown flushed once the disk answered',
    );
  });

  it('returns PUT_OK without waiting for fdatasync when waitStoreMsgOK is false', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    let release!: () => void;
    const stuck = new Promise<void>((resolve) => {
      release = resolve;
    });
    const store = await openStore(t, syncConfig(dir, { syncFlushTimeout: 60 * 60 * 1000 }), { io });
    io.hooks.beforeDatasync = (file) => (isCommitLogFile(store, file) ? stuck : undefined);
    try {
      const puts = await Promise.all([
        putAcked(store, io, message(1, 100, { waitStoreMsgOK: false })),
        putAcked(store, io, message(2, 100, { properties: { WAIT: 'false' } })),
      ]);
      const config = store.getMessageStoreConfig();
      for (const { result, ackSeq } of puts) {
        assert.equal(result.status, PutMessageStatus.PUT_OK);
        const append = result.appendResult;
        assert.ok(append !== null);
        const loc = locate(
          config.storePathCommitLog,
          config.mappedFileSizeCommitLog,
          append.wroteOffset,
          append.wroteBytes,
        );
        const ended = datasyncSpans(io.events).filter((s) => s.file === loc.file && s.endSeq < ackSeq);
        assert.deepEqual(ended, [], 'no fdatasync of the segment had finished when the put was acknowledged');
      }
      assert.equal(
        store.getCommitLog().mappedFileQueue.flushedWhere,
        0,
        'nothing is flushed: the disk is stuck',
      );
    } finally {
      release();
    }
    await store.shutdown();
    assert.ok(store.getCommitLog().mappedFileQueue.flushedWhere > 0);
  });

  it('a failed fdatasync (EIO) fails the waiting puts, stops writes with the cause, and keeps the abort file', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(t, syncConfig(dir), { io });
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    io.hooks.beforeDatasync = (file) => {
      if (isCommitLogFile(store, file)) throw eio;
    };

    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.putMessage(message(i))));
    for (const result of results) {
      assert.equal(
        result.status,
        PutMessageStatus.FLUSH_DISK_TIMEOUT,
        'a put whose sync failed is not PUT_OK',
      );
      assert.ok(result.appendResult !== null, 'its bytes were appended');
      assert.ok(result.error instanceof StoreError);
      assert.equal(result.error.code, 'ERR_FLUSH_FAILED');
      assert.equal((result.error.cause as { code?: string } | undefined)?.code, 'EIO');
    }
    assert.equal(store.isWriteable(), false);
    const cause = store.getRunningFlags().cause;
    assert.ok(cause !== null);
    assert.equal(cause, results[0]?.error, 'the running flags keep the error the puts got');
    assert.equal(cause.code, 'ERR_FLUSH_FAILED');

    for (let i = 0; i < 3; i++) {
      const later = await store.putMessage(message(100 + i));
      assert.equal(later.status, PutMessageStatus.SERVICE_NOT_AVAILABLE);
      assert.equal(later.appendResult, null);
      assert.ok(later.reason?.includes(cause.message), `reason ${later.reason} names the cause`);
      assert.equal(later.error, cause);
    }

    await store.shutdown();
    assert.ok(
      fs.existsSync(path.join(dir, 'abort')),
      'the abort file is kept: the next open recovers as after a crash',
    );
  });

  it('a failed write (EIO) answers the waiting puts SERVICE_NOT_AVAILABLE with the cause and stops writes', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(t, syncConfig(dir), { io });
    const eio = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    io.hooks.beforeWrite = (file) => {
      if (isCommitLogFile(store, file)) throw eio;
    };
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => store.putMessage(message(i))));
    for (const result of results) {
      // The bytes never reached the file: neither PUT_OK nor "stored but not flushed".
      assert.equal(result.status, PutMessageStatus.SERVICE_NOT_AVAILABLE);
      assert.ok(result.error instanceof StoreError);
      assert.equal(result.error.code, 'ERR_COMMIT_FAILED');
    }
    assert.equal(store.isWriteable(), false);
    assert.equal(store.getRunningFlags().cause?.code, 'ERR_COMMIT_FAILED');
    const later = await store.putMessage(message(9));
    assert.equal(later.status, PutMessageStatus.SERVICE_NOT_AVAILABLE);
    assert.equal(later.appendResult, null);
    await store.shutdown();
    assert.ok(fs.existsSync(path.join(dir, 'abort')));
  });

  it('with the write-buffer pool, SYNC_FLUSH puts end PUT_OK: the flush waits for CommitRealTimeService (#7523)', async (t) => {
    for (const wakeCommitWhenPutMessage of [true, false]) {
      await t.test(`wakeCommitWhenPutMessage=${wakeCommitWhenPutMessage}`, async (t) => {
        const dir = tempDir(t);
        const io = new InstrumentedIO();
        const store = await openStore(
          t,
          syncConfig(dir, {
            mappedFileSizeCommitLog: 4096,
            transientStorePoolEnable: true,
            transientStorePoolSize: 8,
            commitIntervalCommitLog: 20,
            commitCommitLogThoroughInterval: 20,
            wakeCommitWhenPutMessage,
          }),
          { io },
        );
        const puts: AckedPut[] = [];
        for (let wave = 0; wave < 5; wave++) {
          const pending: Promise<AckedPut>[] = [];
          for (let i = 0; i < 20; i++) pending.push(putAcked(store, io, message(wave * 20 + i, 100)));
          puts.push(...(await Promise.all(pending)));
        }
        assertAllDurable(store, io, puts);
        assert.ok(store.getMaxPhyOffset() > 4096, 'the puts crossed a segment roll');
      });
    }
  });

  it('never acknowledges a put before its bytes are written, even when the write is slow', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const store = await openStore(t, syncConfig(dir), { io });
    let writes = 0;
    io.hooks.beforeWrite = (file, _position, _length, sync) => {
      if (!isCommitLogFile(store, file) || writes++ % 2 !== 0) return undefined;
      if (sync) {
        // A synchronous write (a small group commit) is slowed down synchronously.
        const until = performance.now() + 2;
        while (performance.now() < until) {}
        return undefined;
      }
      return (async () => {
        for (let i = 0; i < 3; i++) await tick();
      })();
    };
    const pending: Promise<AckedPut>[] = [];
    for (let i = 0; i < 60; i++) {
      pending.push(putAcked(store, io, message(i, 80)));
      if (i % 7 === 6) await tick();
    }
    const puts = await Promise.all(pending);
    assertAllDurable(store, io, puts);
    await waitUntil(
      () => store.getCommitLog().mappedFileQueue.flushedWhere >= store.getMaxPhyOffset(),
      'the last flush',
    );
  });
});
