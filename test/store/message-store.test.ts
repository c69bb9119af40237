import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MessageStore, type PutMessageResult, StoreError, silentLogger } from '../../src/store/index.js';
import { onCleanup, openStore, storedMessageCount, tempDir, tick, waitUntil } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';

const SEGMENT_BYTES = 2048;

function body(n: number, fill = 0x61): Buffer {
  return Buffer.alloc(n, fill);
}

function assertStatus(result: PutMessageResult, status: string, context: string): void {
  assert.equal(result.status, status, `${context}: ${result.reason ?? ''} ${result.error?.message ?? ''}`);
}

async function assertStillWorks(store: MessageStore, context: string): Promise<void> {
  const ok = await store.putMessage({ topic: 'StillWorks', queueId: 0, body: body(10) });
  assertStatus(ok, 'PUT_OK', `${context}: a valid put afterwards`);
  const back = await store.lookMessageByOffset(ok.appendResult?.wroteOffset ?? -1);
  assert.equal(back?.topic, 'StillWorks', `${context}: the valid message reads back`);
}

function errorCode(err: unknown): string | undefined {
  return err instanceof StoreError ? err.code : undefined;
}

describe('MessageStore: bad input gets a clear status and the store keeps working', () => {
  it('rejects an oversize body with MESSAGE_ILLEGAL, accepts exactly maxMessageSize', async (t) => {
    const store = await openStore(t, { storePathRootDir: tempDir(t), maxMessageSize: 1000 });
    const tooBig = await store.putMessage({ topic: 'T', queueId: 0, body: body(1001) });
    assertStatus(tooBig, 'MESSAGE_ILLEGAL', 'body 1001 > 1000');
    assert.match(tooBig.reason ?? '', /body is 1001 bytes.*maxMessageSize 1000/);
    assert.equal(tooBig.appendResult, null);
    const exact = await store.putMessage({ topic: 'T', queueId: 0, body: body(1000) });
    assertStatus(exact, 'PUT_OK', 'body of exactly maxMessageSize');
    // The rejected put did not consume a queue offset.
    assert.equal(exact.appendResult?.queueOffset, 0);
    await assertStillWorks(store, 'after an oversize body');
  });

  it('rejects properties over 32767 bytes with PROPERTIES_SIZE_EXCEEDED and keeps queue offsets', async (t) => {
    const store = await openStore(t, { storePathRootDir: tempDir(t) });
    // name(1) + 0x01 + value + 0x02 = 32768 bytes.
    const tooLong = await store.putMessage({
      topic: 'T',
      queueId: 1,
      body: body(1),
      properties: { p: 'x'.repeat(32765) },
    });
    assertStatus(tooLong, 'PROPERTIES_SIZE_EXCEEDED', 'properties of 32768 bytes');
    assert.match(tooLong.reason ?? '', /32768/);
    const fits = await store.putMessage({
      topic: 'T',
      queueId: 1,
      body: body(1),
      properties: { p: 'x'.repeat(32764) },
    });
    assertStatus(fits, 'PUT_OK', 'properties of 32767 bytes');
    assert.equal(fits.appendResult?.queueOffset, 0);
    assert.equal(store.getQueueOffset('T', 1), 1);
  });

  it('rejects empty, illegal and overlong topics', async (t) => {
    const store = await openStore(t, { storePathRootDir: tempDir(t) });
    const cases: [string, RegExp][] = [
      ['', /topic is empty/],
      ['a/b', /characters outside/],
      ['../etc', /characters outside/],
      ['x'.repeat(256), /more than 255/],
    ];
    for (const [topic, reason] of cases) {
      const result = await store.putMessage({ topic, queueId: 0, body: body(1) });
      assertStatus(result, 'MESSAGE_ILLEGAL', `topic ${JSON.stringify(topic.slice(0, 20))}`);
      assert.match(result.reason ?? '', reason);
    }
    // A 200-byte topic is legal and uses the V2 layout (2-byte topic length).
    const long = await store.putMessage({ topic: 'y'.repeat(200), queueId: 0, body: body(1) });
    assertStatus(long, 'PUT_OK', '200-byte topic');
    const back = await store.lookMessageByOffset(long.appendResult?.wroteOffset ?? -1);
    assert.equal(back?.version, 2);
    assert.equal(back?.topic, 'y'.repeat(200));
    await assertStillWorks(store, 'after illegal topics');
  });

  it('rejects invalid queue ids, flags, hosts and bodies', async (t) => {
    const store = await openStore(t, { storePathRootDir: tempDir(t) });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ queueId: -1 }, /queueId/],
      [{ queueId: 1.5 }, /queueId/],
      [{ queueId: 2 ** 31 }, /queueId/],
      [{ queueId: '0' }, /queueId/],
      [{ flag: 2 ** 31 }, /flag/],
      [{ bornHost: 'nohost' }, /bornHost/],
      [{ bornHost: '1.2.3.4:99999' }, /bornHost/],
      [{ storeHost: '300.1.1.1:1' }, /storeHost/],
      [{ body: 'not a buffer' }, /body/],
      [{ bornTimestamp: -5 }, /bornTimestamp/],
      [{ properties: { a: 'x\u0001y' } }, /separator/],
      [{ properties: { a: '' } }, /empty value/],
    ];
    for (const [override, reason] of bad) {
      const msg = { topic: 'T', queueId: 0, body: body(4), ...override };
      const result = await store.putMessage(msg as never);
      assertStatus(result, 'MESSAGE_ILLEGAL', JSON.stringify(override));
      assert.match(result.reason ?? '', reason, JSON.stringify(override));
    }
    assert.equal(store.getQueueOffset('T', 0), 0, 'no rejected put consumed a queue offset');
    await assertStillWorks(store, 'after invalid fields');
  });

  it('rejects a message that cannot fit in one segment', async (t) => {
    const store = await openStore(t, { storePathRootDir: tempDir(t), mappedFileSizeCommitLog: 1024 });
    const result = await store.putMessage({ topic: 'T', queueId: 0, body: body(1000) });
    assertStatus(result, 'MESSAGE_ILLEGAL', 'record larger than a segment');
    assert.match(result.reason ?? '', /cannot fit in a 1024-byte commit log segment/);
    await assertStillWorks(store, 'after a record larger than a segment');
  });

  it('answers SERVICE_NOT_AVAILABLE after shutdown, and shutdown is idempotent', async (t) => {
    const store = await MessageStore.open({ storePathRootDir: tempDir(t) }, { logger: silentLogger });
    const ok = await store.putMessage({ topic: 'T', queueId: 0, body: body(3) });
    assertStatus(ok, 'PUT_OK', 'before shutdown');
    await Promise.all([store.shutdown(), store.shutdown()]);
    await store.shutdown();
    const closed = await store.putMessage({ topic: 'T', queueId: 0, body: body(3) });
    assertStatus(closed, 'SERVICE_NOT_AVAILABLE', 'after shutdown');
    assert.match(closed.reason ?? '', /shut down/);
    const batch = await store.putMessages({ topic: 'T', queueId: 0, messages: [{ body: body(1) }] });
    assertStatus(batch, 'SERVICE_NOT_AVAILABLE', 'batch after shutdown');
  });

  it('refuses a read-only store directory with ERR_STORE_PATH_NOT_WRITABLE', async (t) => {
    const dir = tempDir(t);
    const readOnly = path.join(dir, 'ro');
    fs.mkdirSync(readOnly);
    makeReadOnly(t, readOnly);
    await assert.rejects(
      MessageStore.open({ storePathRootDir: path.join(readOnly, 'store') }, { logger: silentLogger }),
      (err: unknown) => {
        assert.equal(errorCode(err), 'ERR_STORE_PATH_NOT_WRITABLE');
        assert.match((err as Error).message, /ro/);
        return true;
      },
    );
    await assert.rejects(
      MessageStore.open({ storePathRootDir: readOnly }, { logger: silentLogger }),
      (err: unknown) => {
        assert.equal(errorCode(err), 'ERR_STORE_PATH_NOT_WRITABLE');
        return true;
      },
    );
    // The same process can open a writable store right after.
    const store = await openStore(t, { storePathRootDir: path.join(dir, 'rw') });
    await assertStillWorks(store, 'a writable store after a refused one');
  });

  it('refuses a store path under a regular file with ERR_STORE_PATH_NOT_WRITABLE', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, 'x');
    await assert.rejects(
      MessageStore.open({ storePathRootDir: path.join(file, 'store') }, { logger: silentLogger }),
      (err: unknown) => {
        assert.equal(errorCode(err), 'ERR_STORE_PATH_NOT_WRITABLE');
        return true;
      },
    );
  });

  it('refuses a commit log segment of the wrong size with ERR_STORE_FILE_INVALID', async (t) => {
    const root = tempDir(t);
    const first = await MessageStore.open(
      { storePathRootDir: root, mappedFileSizeCommitLog: 4096 },
      { logger: silentLogger },
    );
    assertStatus(await first.putMessage({ topic: 'T', queueId: 0, body: body(5) }), 'PUT_OK', 'put');
    await first.shutdown();
    await assert.rejects(
      MessageStore.open({ storePathRootDir: root, mappedFileSizeCommitLog: 8192 }, { logger: silentLogger }),
      (err: unknown) => {
        assert.equal(errorCode(err), 'ERR_STORE_FILE_INVALID');
        assert.match((err as Error).message, /4096 bytes but mappedFileSize is 8192/);
        return true;
      },
    );
    // The failed open released the lock: the right config opens.
    const again = await openStore(t, { storePathRootDir: root, mappedFileSizeCommitLog: 4096 });
    assert.equal(again.getQueueOffset('T', 0), 1);
  });
});

/** A real read-only directory: a read-only tmpfs mount as root, else chmod. */
function makeReadOnly(t: { after: (fn: () => void) => void }, dir: string): void {
  if (process.getuid?.() === 0) {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', dir]);
    onCleanup(t, () => {
      execFileSync('umount', [dir]);
    });
  } else {
    fs.chmodSync(dir, 0o555);
    onCleanup(t, () => fs.chmodSync(dir, 0o755));
  }
}

describe('MessageStore: puts, batches and reopening', () => {
  it('assigns queue offsets per queue and keeps store timestamps non-decreasing across rolls', async (t) => {
    const store = await openStore(t, {
      storePathRootDir: tempDir(t),
      mappedFileSizeCommitLog: SEGMENT_BYTES,
    });
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        store.putMessage({ topic: 'Order', queueId: i % 3, body: body(20 + (i % 50)) }),
      ),
    );
    const nextByQueue = [0, 0, 0];
    let lastStoreTimestamp = 0;
    let lastEnd = 0;
    for (const [i, result] of results.entries()) {
      assertStatus(result, 'PUT_OK', `put ${i}`);
      const append = result.appendResult;
      assert.ok(append !== null);
      assert.equal(append.queueOffset, nextByQueue[i % 3], `queue offset of put ${i}`);
      nextByQueue[i % 3] = (nextByQueue[i % 3] ?? 0) + 1;
      assert.ok(append.storeTimestamp >= lastStoreTimestamp, 'store timestamps never go back');
      lastStoreTimestamp = append.storeTimestamp;
      assert.ok(append.wroteOffset >= lastEnd, 'records are in put order');
      // A record never straddles a segment end (rolls put it whole into the next one).
      assert.equal(
        Math.floor(append.wroteOffset / SEGMENT_BYTES),
        Math.floor((append.wroteOffset + append.wroteBytes + 7) / SEGMENT_BYTES),
      );
      lastEnd = append.wroteOffset + append.wroteBytes;
      assert.equal(append.msgId.length, 32);
    }
    const files = fs.readdirSync(path.join(store.getMessageStoreConfig().storePathCommitLog));
    assert.ok(files.length >= 5, `several rolls happened (${files.length} segments)`);
  });

  it('puts a batch with consecutive queue offsets, whole in one segment, each record readable', async (t) => {
    const store = await openStore(t, {
      storePathRootDir: tempDir(t),
      mappedFileSizeCommitLog: SEGMENT_BYTES,
    });
    // Fill part of the first segment so the batch has to roll.
    for (let i = 0; i < 12; i++)
      assertStatus(await store.putMessage({ topic: 'B', queueId: 0, body: body(60) }), 'PUT_OK', 'fill');
    const messages = Array.from({ length: 10 }, (_, i) => ({
      body: Buffer.from(`batch-${i}`),
      tags: `tag${i}`,
      keys: [`k${i}`],
    }));
    const result = await store.putMessages({ topic: 'B', queueId: 0, messages, bornHost: '[::1]:1234' });
    assertStatus(result, 'PUT_OK', 'batch');
    const append = result.appendResult;
    assert.ok(append !== null);
    assert.equal(append.msgNum, 10);
    assert.equal(append.queueOffset, 12);
    assert.equal(store.getQueueOffset('B', 0), 22);
    const ids = append.msgId.split(',');
    assert.equal(ids.length, 10);
    const segment = Math.floor(append.wroteOffset / SEGMENT_BYTES);
    assert.equal(
      Math.floor((append.wroteOffset + append.wroteBytes - 1) / SEGMENT_BYTES),
      segment,
      'the batch lies in one segment',
    );
    let offset = append.wroteOffset;
    for (let i = 0; i < 10; i++) {
      const message = await store.lookMessageByOffset(offset);
      assert.ok(message !== null, `batch record ${i} at ${offset}`);
      assert.equal(message.body.toString(), `batch-${i}`);
      assert.equal(message.queueOffset, 12 + i);
      assert.equal(message.tags, `tag${i}`);
      assert.equal(message.bornHost, '[::1]:1234');
      assert.equal(message.storeTimestamp, append.storeTimestamp);
      assert.equal(message.msgId, ids[i]);
      offset += message.storeSize;
    }
    assert.equal(offset, append.wroteOffset + append.wroteBytes);
  });

  it('rejects bad batches: empty, oversize in total, with a delay level', async (t) => {
    const store = await openStore(t, { storePathRootDir: tempDir(t), maxMessageSize: 100 });
    const empty = await store.putMessages({ topic: 'B', queueId: 0, messages: [] });
    assertStatus(empty, 'MESSAGE_ILLEGAL', 'empty batch');
    const tooMuch = await store.putMessages({
      topic: 'B',
      queueId: 0,
      messages: [{ body: body(60) }, { body: body(60) }],
    });
    assertStatus(tooMuch, 'MESSAGE_ILLEGAL', 'batch bodies over maxMessageSize');
    assert.match(tooMuch.reason ?? '', /batch bodies total 120 bytes/);
    const delayed = await store.putMessages({
      topic: 'B',
      queueId: 0,
      messages: [{ body: body(1), properties: { DELAY: '3' } }],
    });
    assertStatus(delayed, 'MESSAGE_ILLEGAL', 'batch with a delay level');
    assert.equal(store.getQueueOffset('B', 0), 0);
    await assertStillWorks(store, 'after bad batches');
  });

  it('reopens after a clean shutdown with the same end offset and continuing queue offsets', async (t) => {
    const root = tempDir(t);
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: SEGMENT_BYTES };
    const first = await MessageStore.open(config, { logger: silentLogger });
    const written: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await first.putMessage({ topic: 'R', queueId: i % 2, body: Buffer.from(`m${i}`) });
      assertStatus(r, 'PUT_OK', `put ${i}`);
      written.push(r.appendResult?.wroteOffset ?? -1);
    }
    const end = first.getMaxPhyOffset();
    await first.shutdown();
    assert.equal(fs.existsSync(path.join(root, 'abort')), false, 'a clean shutdown removes the abort file');
    const second = await openStore(t, config);
    const report = second.getRecoveryReport();
    assert.equal(report.lastExitOK, true);
    assert.equal(storedMessageCount(second), 50);
    assert.equal(report.commitLog.truncatedBytes, 0);
    assert.equal(second.getMaxPhyOffset(), end);
    assert.equal(second.getQueueOffset('R', 0), 25);
    assert.equal(second.getQueueOffset('R', 1), 25);
    for (const [i, offset] of written.entries()) {
      assert.equal((await second.lookMessageByOffset(offset))?.body.toString(), `m${i}`);
    }
    const next = await second.putMessage({ topic: 'R', queueId: 1, body: Buffer.from('after') });
    assert.equal(next.appendResult?.queueOffset, 25);
    assert.equal(next.appendResult?.wroteOffset, end);
    assert.ok(fs.existsSync(path.join(root, 'abort')), 'a running store has an abort file');
  });

  it('cuts a corrupt tail on reopen and reports it', async (t) => {
    const root = tempDir(t);
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: SEGMENT_BYTES };
    const first = await MessageStore.open(config, { logger: silentLogger });
    const offsets: number[] = [];
    for (let i = 0; i < 5; i++)
      offsets.push(
        (await first.putMessage({ topic: 'C', queueId: 0, body: body(30) })).appendResult?.wroteOffset ?? -1,
      );
    await first.shutdown();
    // Flip a body byte of the last record: its CRC no longer matches.
    const segment = path.join(root, 'commitlog', '00000000000000000000');
    const fd = fs.openSync(segment, 'r+');
    const lastOffset = offsets[4] ?? 0;
    fs.writeSync(fd, Buffer.from([0x00]), 0, 1, lastOffset + 90);
    fs.closeSync(fd);
    const second = await openStore(t, config);
    const report = second.getRecoveryReport().commitLog;
    assert.equal(storedMessageCount(second), 4);
    assert.equal(report.maxPhyOffset, lastOffset);
    assert.ok(report.truncatedBytes > 0);
    assert.match(report.stopReason ?? '', /CRC/);
    assert.equal(second.getQueueOffset('C', 0), 4);
    assert.equal(await second.lookMessageByOffset(lastOffset), null);
    // The cut bytes are gone from the file: zeros after the last good record.
    const bytes = fs.readFileSync(segment);
    assert.ok(
      bytes.subarray(lastOffset).every((b) => b === 0),
      'bytes after the cut read as zeros',
    );
    const next = await second.putMessage({ topic: 'C', queueId: 0, body: body(30) });
    assert.equal(next.appendResult?.queueOffset, 4);
    assert.equal(next.appendResult?.wroteOffset, lastOffset);
  });
});

describe('MessageStore: a disk that is full or backed up', () => {
  /** A store whose commit log writes fail with ENOSPC while `full()` says so. */
  async function diskFullStore(
    t: Parameters<typeof tempDir>[0],
    syncFlushTimeout: number,
  ): Promise<{ store: MessageStore; setFull: (full: boolean) => void }> {
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      {
        storePathRootDir: tempDir(t),
        flushIntervalCommitLog: 20,
        flushCommitLogTimed: true,
        syncFlushTimeout,
      },
      { io },
    );
    assertStatus(
      await store.putMessage({ topic: 'D', queueId: 0, body: body(10) }),
      'PUT_OK',
      'before the disk fills',
    );
    let full = false;
    io.hooks.beforeWrite = (file) => {
      if (full && file.includes('commitlog')) {
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      }
    };
    return {
      store,
      setFull: (value) => {
        full = value;
      },
    };
  }

  it('ENOSPC on commit: new puts are refused, a waiting put gets PUT_OK once space returns in time', async (t) => {
    const { store, setFull } = await diskFullStore(t, 60_000);
    setFull(true);
    const waiting = store.putMessage({ topic: 'D', queueId: 0, body: body(10) });
    await waitUntil(() => !store.isWriteable(), 'the disk-full flag');
    assert.equal(store.getRunningFlags().cause?.code, 'ERR_DISK_FULL');
    const refused = await store.putMessage({ topic: 'D', queueId: 0, body: body(10) });
    assertStatus(refused, 'SERVICE_NOT_AVAILABLE', 'a put while the disk is full');
    assert.match(refused.reason ?? '', /ENOSPC/);
    assert.equal(refused.appendResult, null, 'a refused put is not appended');
    setFull(false);
    // FlushRealTimeService retries the commit on its interval; success clears DISK_FULL and the
    // appended put, which kept waiting, is written and acknowledged.
    const acked = await waiting;
    assertStatus(acked, 'PUT_OK', 'the put appended before the disk filled');
    assert.equal(store.isWriteable(), true);
    assert.ok((await store.lookMessageByOffset(acked.appendResult?.wroteOffset ?? -1)) !== null);
    const after = await store.putMessage({ topic: 'D', queueId: 0, body: body(10) });
    assertStatus(after, 'PUT_OK', 'after space returned');
    assert.equal(after.appendResult?.queueOffset, 2, 'the refused put took no queue offset');
  });

  it('ENOSPC on commit for longer than syncFlushTimeout: the waiting put ends FLUSH_DISK_TIMEOUT, and is stored later', async (t) => {
    const { store, setFull } = await diskFullStore(t, 200);
    setFull(true);
    const timedOut = await store.putMessage({ topic: 'D', queueId: 0, body: body(10) });
    assertStatus(timedOut, 'FLUSH_DISK_TIMEOUT', 'a put whose write cannot complete in time');
    assert.match(timedOut.reason ?? '', /not written to its file within syncFlushTimeout \(200 ms\)/);
    assert.ok(timedOut.appendResult !== null, 'FLUSH_DISK_TIMEOUT means stored');
    setFull(false);
    await waitUntil(() => store.isWriteable(), 'the disk-full flag to clear');
    // The message was in the write buffer all along and is written once space returns.
    await waitUntil(
      () =>
        store.getMaxPhyOffset() >=
        (timedOut.appendResult?.wroteOffset ?? 0) + (timedOut.appendResult?.wroteBytes ?? 0),
      'the buffered message to be written',
    );
    assert.ok((await store.lookMessageByOffset(timedOut.appendResult?.wroteOffset ?? -1)) !== null);
  });

  it('a write that hangs makes new puts OS_PAGE_CACHE_BUSY instead of queueing forever', async (t) => {
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      { storePathRootDir: tempDir(t), osPageCacheBusyTimeOutMills: 50, syncFlushTimeout: 60_000 },
      { io },
    );
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    io.hooks.beforeWrite = (file) => (file.includes('commitlog') ? gate : undefined);
    const stuck = store.putMessage({ topic: 'P', queueId: 0, body: body(10) });
    await waitUntil(() => store.getCommitLog().isOSPageCacheBusy(), 'the commit to count as stuck');
    const busy = await store.putMessage({ topic: 'P', queueId: 0, body: body(10) });
    assertStatus(busy, 'OS_PAGE_CACHE_BUSY', 'a put while the commit is stuck');
    assert.match(busy.reason ?? '', /no progress/);
    release();
    assertStatus(await stuck, 'PUT_OK', 'the stuck put, once the write completes');
    await tick();
    assertStatus(
      await store.putMessage({ topic: 'P', queueId: 0, body: body(10) }),
      'PUT_OK',
      'after the write completed',
    );
    // The refused put consumed no queue offset.
    assert.equal(store.getQueueOffset('P', 0), 2);
  });

  it('exhausted write buffers make puts OS_PAGE_CACHE_BUSY (pool on), nothing acknowledged is lost', async (t) => {
    const io = new InstrumentedIO();
    const root = tempDir(t);
    const config = {
      storePathRootDir: root,
      mappedFileSizeCommitLog: 1024,
      transientStorePoolEnable: true,
      transientStorePoolSize: 2,
      osPageCacheBusyTimeOutMills: 60_000,
    };
    const store = await MessageStore.open(config, { io, logger: silentLogger });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    io.hooks.beforeWrite = (file) => (file.includes('commitlog') ? gate : undefined);
    const acked: number[] = [];
    let busy: PutMessageResult | null = null;
    for (let i = 0; i < 100 && busy === null; i++) {
      const result = await store.putMessage({ topic: 'X', queueId: 0, body: body(100, 0x30 + (i % 10)) });
      if (result.status === 'PUT_OK') acked.push(result.appendResult?.wroteOffset ?? -1);
      else busy = result;
    }
    assert.ok(busy !== null, 'the pool ran out');
    assertStatus(busy, 'OS_PAGE_CACHE_BUSY', 'a put with no write buffer left');
    assert.match(busy.reason ?? '', /write buffer/);
    assert.ok(acked.length >= 2, `some puts fit before (${acked.length})`);
    release();
    await store.shutdown();
    const reopened = await openStore(t, config);
    for (const offset of acked)
      assert.ok((await reopened.lookMessageByOffset(offset)) !== null, `acked message at ${offset}`);
    assert.equal(reopened.getQueueOffset('X', 0), acked.length);
  });
});
