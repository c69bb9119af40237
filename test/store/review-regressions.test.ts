import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import {
  type MessageExt,
  MessageStore,
  type MessageStoreConfigInput,
  type PutMessageResult,
  StoreError,
  silentLogger,
} from '../../src/store/index.js';
import { onCleanup, openStore, storedMessageCount, tempDir, tick, waitUntil } from '../support/helpers.js';
import { InstrumentedIO, type IoEvent } from '../support/instrumented-io.js';
import type { LockWorkerResult } from '../support/lock-worker.js';
import { exitOf, firstMessage, startTsWorker } from '../support/ts-worker.js';

/**
 * Regression tests for the review fixed in "Fix what the review found: recovery, statuses,
 * shutdown, busy, lock, encoder re-entrancy". Each test says what the code before that commit did
 * and which assertion that behaviour breaks.
 */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CRASH_CHILD = fileURLToPath(new URL('../support/crash-child.ts', import.meta.url));
const LOCK_WORKER = new URL('../support/lock-worker.ts', import.meta.url);

const SMALL_SEGMENT_BYTES = 4096;
const FIRST_SEGMENT = '00000000000000000000';
/** Record layout with IPv4 hosts: the body starts after TOTALSIZE..PREPARED TX OFFSET and its length. */
const BODY_POSITION = 88;
const BLANK_MAGIC_CODE = 0xcbd43194 | 0;

function assertStatus(result: PutMessageResult, status: string, context: string): void {
  assert.equal(
    result.status,
    status,
    `${context}: got ${result.status} (${result.reason ?? ''} ${result.error?.message ?? ''})`,
  );
}

function appendOf(result: PutMessageResult, context: string): { wroteOffset: number; wroteBytes: number } {
  assert.ok(result.appendResult !== null, `${context}: the put was appended`);
  return result.appendResult;
}

function commitLogDir(root: string): string {
  return path.join(root, 'commitlog');
}

/** Every file of a directory with its bytes. */
function snapshot(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of fs.readdirSync(dir).sort()) files.set(name, fs.readFileSync(path.join(dir, name)));
  return files;
}

function assertSameFiles(before: Map<string, Buffer>, dir: string, context: string): void {
  const after = snapshot(dir);
  assert.deepEqual([...after.keys()], [...before.keys()], `${context}: no segment was added or deleted`);
  for (const [name, bytes] of before) {
    const now = after.get(name) as Buffer;
    assert.equal(now.length, bytes.length, `${context}: ${name} kept its size`);
    assert.ok(now.equals(bytes), `${context}: ${name} kept every byte`);
  }
}

/** Overwrites bytes of a commit log segment in place (damage done behind the store's back). */
function patchSegment(root: string, segment: string, position: number, bytes: Buffer): Buffer {
  const file = path.join(commitLogDir(root), segment);
  const fd = fs.openSync(file, 'r+');
  try {
    const old = Buffer.alloc(bytes.length);
    fs.readSync(fd, old, 0, old.length, position);
    fs.writeSync(fd, bytes, 0, bytes.length, position);
    return old;
  } finally {
    fs.closeSync(fd);
  }
}

function segmentOf(offset: number): { name: string; position: number } {
  const from = offset - (offset % SMALL_SEGMENT_BYTES);
  return { name: String(from).padStart(20, '0'), position: offset - from };
}

function isStoreError(code: string, ...messageParts: RegExp[]): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    for (const part of messageParts) assert.match(err.message, part);
    return true;
  };
}

async function putAll(
  store: MessageStore,
  count: number,
  bodyOf: (i: number) => Buffer,
  topic = 'R',
): Promise<{ wroteOffset: number; wroteBytes: number }[]> {
  const out: { wroteOffset: number; wroteBytes: number }[] = [];
  for (let i = 0; i < count; i++) {
    const result = await store.putMessage({ topic, queueId: 0, body: bodyOf(i) });
    assertStatus(result, 'PUT_OK', `put ${i}`);
    out.push(appendOf(result, `put ${i}`));
  }
  return out;
}

function hundredBytes(i: number): Buffer {
  return Buffer.alloc(100, 0x20 + (i % 90));
}

/** A gate a hook can wait on; released once, by the test. */
function gate(): { promise: Promise<void>; release: () => void } {
  let release: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

function isCommitLog(file: string): boolean {
  return file.includes(`${path.sep}commitlog${path.sep}`);
}

/** Deletes the consume queues: the next open rebuilds them with a scan of the whole commit log. */
function removeConsumeQueues(root: string): void {
  fs.rmSync(path.join(root, 'consumequeue'), { recursive: true, force: true });
}

async function readBack(store: MessageStore, offset: number, context: string): Promise<MessageExt> {
  const message = await store.lookMessageByOffset(offset);
  assert.ok(message !== null, `${context}: the message at ${offset} reads back`);
  return message;
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

describe('review regressions: recovery', () => {
  it('1. after a crash, recovery fdatasyncs every kept segment before a SYNC put is acknowledged', async (t) => {
    // Before the fix recovery set flushedWhere to the end of the log without syncing anything:
    // segments the crashed process wrote but never fdatasync'ed were then treated as durable, and
    // a SYNC_FLUSH put after reopen was acknowledged after syncing only its own (last) segment.
    // The assertion "every kept segment had a datasync-end before the ack" failed for all earlier
    // segments.
    const root = tempDir(t);
    const child = spawn(process.execPath, ['--import', 'tsx', CRASH_CHILD, root, '80'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    onCleanup(t, async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited(child);
      }
    });
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    const exit = await exited(child);
    assert.equal(exit.signal, 'SIGKILL', `the child killed itself (exit ${exit.code}, output ${stdout})`);
    const match = /count (\d+) maxPhyOffset (\d+) flushedWhere (\d+)/.exec(stdout);
    assert.ok(match !== null, `the child reported its puts: ${stdout}`);
    const count = Number(match[1]);
    const childMaxPhyOffset = Number(match[2]);
    assert.equal(count, 80);
    assert.ok(fs.existsSync(path.join(root, 'abort')), 'the crash left the abort file');
    const childSegments = fs.readdirSync(commitLogDir(root)).sort();
    assert.ok(childSegments.length >= 3, `the child filled several segments (${childSegments.join(', ')})`);

    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      { storePathRootDir: root, mappedFileSizeCommitLog: SMALL_SEGMENT_BYTES, flushDiskType: 'SYNC_FLUSH' },
      { io },
    );
    const report = store.getRecoveryReport();
    assert.equal(report.lastExitOK, false);
    assert.equal(storedMessageCount(store), count, 'every acknowledged put survived the crash');
    assert.equal(report.commitLog.maxPhyOffset, childMaxPhyOffset);
    const deleted = new Set(report.commitLog.deletedFiles.map((f) => path.basename(f)));
    const kept = childSegments.filter((name) => !deleted.has(name));
    assert.ok(kept.length >= 3, 'recovery kept the segments with data');

    const put = await store.putMessage({ topic: 'Crash', queueId: 0, body: Buffer.from('after the crash') });
    const ackSeq = io.nextSeq();
    assertStatus(put, 'PUT_OK', 'a SYNC put after recovery');
    assert.equal(put.appendResult?.queueOffset, count, 'queue offsets continue after the recovered ones');
    for (const name of kept) {
      const file = path.join(commitLogDir(root), name);
      const synced = io.events.some((e) => e.op === 'datasync-end' && e.path === file && e.seq < ackSeq);
      assert.ok(synced, `segment ${name} was fdatasync'ed before the first SYNC put was acknowledged`);
    }
  });

  it('2. damage in the middle of durable data is refused, not cut; a damaged last record is still cut', async (t) => {
    // Before the fix the first record failing its CRC ended the log wherever it was: one flipped
    // byte in segment 0 cut every later message and deleted every later segment (open resolved
    // with messagesRecovered 1). Here open must reject and leave every file as it was.
    const root = tempDir(t);
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: SMALL_SEGMENT_BYTES };
    const first = await MessageStore.open(config, { logger: silentLogger });
    const puts = await putAll(first, 100, hundredBytes);
    const maxPhyOffset = first.getMaxPhyOffset();
    await first.shutdown();

    const victim = puts[1] as { wroteOffset: number };
    const where = segmentOf(victim.wroteOffset + BODY_POSITION + 2);
    assert.equal(where.name, FIRST_SEGMENT, 'the damaged record is in the first segment');
    const original = patchSegment(root, where.name, where.position, Buffer.from([0xff ^ 0x21]));
    const damaged = snapshot(commitLogDir(root));
    assert.ok(damaged.size >= 4, `several segments (${[...damaged.keys()].join(', ')})`);

    // With the consume queues intact, a clean-shutdown recovery scans only the last segment (as
    // RocketMQ's does): the store opens, and the read path refuses to serve the damaged record.
    const reading = await MessageStore.open(config, { logger: silentLogger });
    const read = await reading.getMessage('g', 'R', 0, 0, 32);
    assert.equal(read.status, 'FOUND');
    assert.equal(read.skippedDamaged, 1, 'the damaged record is skipped, not served');
    assert.deepEqual(
      read.messages.map((m) => m.queueOffset),
      [0, ...Array.from({ length: read.nextBeginOffset - 2 }, (_, i) => i + 2)],
      'every other message is served',
    );
    assert.equal(await reading.lookMessageByOffset(victim.wroteOffset), null);
    await reading.shutdown();

    // Without them, recovery rebuilds them from a scan of the whole log: that scan meets the
    // damage, with valid records after it, and must refuse to open rather than cut.
    removeConsumeQueues(root);
    await assert.rejects(
      MessageStore.open(config, { logger: silentLogger }),
      isStoreError(
        'ERR_STORE_FILE_INVALID',
        new RegExp(`offset ${victim.wroteOffset}\\b`),
        /00000000000000000000/,
      ),
    );
    assertSameFiles(damaged, commitLogDir(root), 'after the refused open');
    assert.equal(fs.existsSync(path.join(root, 'lock')), false, 'the refused open released the lock');

    // Repaired, the store opens with everything.
    patchSegment(root, where.name, where.position, original);
    const repaired = await MessageStore.open(config, { logger: silentLogger });
    let report = repaired.getRecoveryReport();
    assert.equal(report.lastExitOK, true);
    assert.equal(storedMessageCount(repaired), 100);
    assert.equal(report.commitLog.maxPhyOffset, maxPhyOffset);
    assert.equal(report.commitLog.truncatedBytes, 0);
    assert.deepEqual(report.commitLog.deletedFiles, []);
    for (const [i, put] of puts.entries()) {
      const message = await readBack(repaired, put.wroteOffset, `message ${i}`);
      assert.ok(message.body.equals(hundredBytes(i)), `message ${i} has its body`);
    }
    await repaired.shutdown();

    // The last record damaged, nothing valid after it: that is what a torn write looks like, and
    // it is cut even after a clean shutdown (RocketMQ's testRecover, part 2).
    const last = puts[99] as { wroteOffset: number };
    const lastWhere = segmentOf(last.wroteOffset + BODY_POSITION + 2);
    patchSegment(root, lastWhere.name, lastWhere.position, Buffer.from([0x00]));
    const cut = await openStore(t, config);
    report = cut.getRecoveryReport();
    assert.equal(report.lastExitOK, true);
    assert.equal(storedMessageCount(cut), 99);
    assert.equal(report.commitLog.maxPhyOffset, last.wroteOffset);
    assert.ok(report.commitLog.truncatedBytes > 0, 'the report counts the cut bytes');
    assert.match(report.commitLog.stopReason ?? '', /CRC/);
    assert.equal(await cut.lookMessageByOffset(last.wroteOffset), null);
    assert.equal(cut.getQueueOffset('R', 0), 99);
  });

  it('2b. a damaged TOTALSIZE in the middle of durable data is refused, not cut', async (t) => {
    // The same damage as in test 2, in the one field the refusal's probes depend on. The fix
    // looks for valid data after a bad record in three places: the record itself (body CRC), the
    // record at position + TOTALSIZE, and the first record of a later segment. With TOTALSIZE
    // itself damaged in the last segment none of them finds the 17 valid records that follow, and
    // recovery cuts them although a clean shutdown said they were durable.
    const root = tempDir(t);
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: 1 << 20 };
    const writer = await MessageStore.open(config, { logger: silentLogger });
    const puts = await putAll(writer, 20, hundredBytes);
    await writer.shutdown();
    const victim = puts[2] as { wroteOffset: number };
    // The high byte of TOTALSIZE: the record now claims ~2 GiB.
    const original = patchSegment(root, FIRST_SEGMENT, victim.wroteOffset, Buffer.from([0x7f]));
    const damaged = snapshot(commitLogDir(root));
    let outcome: unknown;
    try {
      const store = await MessageStore.open(config, { logger: silentLogger });
      outcome = store.getRecoveryReport().commitLog;
      await store.shutdown();
    } catch (err) {
      outcome = err;
    }
    assert.ok(
      outcome instanceof StoreError,
      `open must refuse; it cut the log instead: ${JSON.stringify(outcome)}`,
    );
    isStoreError('ERR_STORE_FILE_INVALID', new RegExp(`offset ${victim.wroteOffset}\\b`))(outcome);
    assertSameFiles(damaged, commitLogDir(root), 'after the refused open');
    patchSegment(root, FIRST_SEGMENT, victim.wroteOffset, original);
    const repaired = await openStore(t, config);
    assert.equal(storedMessageCount(repaired), 20);
  });

  it('3. records larger than the scan window survive a reopen with a smaller maxMessageSize', async (t) => {
    // Before the fix the scan window was max(8 MiB, 2 x today's maxMessageSize): with the default
    // 4 MiB a 10 MiB record written under maxMessageSize 12 MiB did not fit the window, was judged
    // invalid, and recovery cut the log before it (messagesRecovered 1 here).
    const root = tempDir(t);
    const big = { storePathRootDir: root, mappedFileSizeCommitLog: 64 << 20, maxMessageSize: 12 << 20 };
    const writer = await MessageStore.open(big, { logger: silentLogger });
    // Small records around the big ones: a big record then starts inside a scan window as well as
    // at the start of one.
    const bodies = [
      Buffer.from('small before'),
      Buffer.alloc(10 << 20, 0x41),
      Buffer.alloc(10 << 20, 0x42),
      Buffer.from('small after'),
    ];
    const offsets: number[] = [];
    for (const body of bodies) {
      const result = await writer.putMessage({ topic: 'Big', queueId: 0, body });
      assertStatus(result, 'PUT_OK', `a put of ${body.length} bytes`);
      offsets.push(appendOf(result, `a put of ${body.length} bytes`).wroteOffset);
    }
    const end = writer.getMaxPhyOffset();
    await writer.shutdown();

    const reopened = await MessageStore.open(
      { storePathRootDir: root, mappedFileSizeCommitLog: 64 << 20 },
      { logger: silentLogger },
    );
    const report = reopened.getRecoveryReport().commitLog;
    assert.equal(storedMessageCount(reopened), bodies.length);
    assert.equal(report.maxPhyOffset, end);
    assert.equal(report.truncatedBytes, 0);
    assert.equal(report.stopReason, null);
    assert.equal(reopened.getMaxPhyOffset(), end);
    assert.equal(reopened.getQueueOffset('Big', 0), bodies.length);
    await reopened.shutdown();

    const reader = await openStore(t, big);
    assert.equal(storedMessageCount(reader), bodies.length);
    for (const [i, offset] of offsets.entries()) {
      const message = await readBack(reader, offset, `message ${i}`);
      assert.ok(message.body.equals(bodies[i] as Buffer), `message ${i} has its body`);
      assert.equal(message.queueOffset, i);
    }
  });

  it('4. turning forceVerifyPropCRC on over records written without it refuses to open instead of cutting', async (t) => {
    // Before the fix the first record without a property CRC failed the scan and recovery cut
    // the log there: every message written before the switch was deleted (messagesRecovered 0).
    for (const count of [1, 5]) {
      const root = tempDir(t);
      const config = { storePathRootDir: root, mappedFileSizeCommitLog: SMALL_SEGMENT_BYTES };
      const writer = await MessageStore.open(config, { logger: silentLogger });
      await putAll(writer, count, hundredBytes);
      await writer.shutdown();
      const before = snapshot(commitLogDir(root));

      await assert.rejects(
        MessageStore.open(
          { ...config, enabledAppendPropCRC: true, forceVerifyPropCRC: true },
          { logger: silentLogger },
        ),
        isStoreError('ERR_STORE_FILE_INVALID', /offset 0\b/),
        `${count} record(s) without a property CRC`,
      );
      assertSameFiles(before, commitLogDir(root), `${count} record(s): after the refused open`);

      const reopened = await MessageStore.open(config, { logger: silentLogger });
      assert.equal(storedMessageCount(reopened), count);
      await reopened.shutdown();
    }
  });

  it('5. a BLANK record that does not end at the segment end is not a segment end', async (t) => {
    // Before the fix any BLANK made recovery jump to the next segment. A BLANK in the middle of
    // segment 0 silently dropped the rest of that segment while later segments were served (open
    // resolved); a BLANK over the last record made the log end at the end of its segment, so the
    // next put went to a new segment instead of the BLANK's offset.
    const root = tempDir(t);
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: SMALL_SEGMENT_BYTES };
    const writer = await MessageStore.open(config, { logger: silentLogger });
    const puts = await putAll(writer, 60, hundredBytes);
    await writer.shutdown();
    const blankHeader = (size: number): Buffer => {
      const header = Buffer.alloc(8);
      header.writeInt32BE(size, 0);
      header.writeInt32BE(BLANK_MAGIC_CODE, 4);
      return header;
    };

    // In the middle of the first segment, with valid records after it: refused, nothing touched.
    const middle = puts[3] as { wroteOffset: number; wroteBytes: number };
    const middleWhere = segmentOf(middle.wroteOffset);
    assert.equal(middleWhere.name, FIRST_SEGMENT);
    const original = patchSegment(
      root,
      middleWhere.name,
      middleWhere.position,
      blankHeader(middle.wroteBytes),
    );
    const damaged = snapshot(commitLogDir(root));
    // A recovery that scans segment 0: one that rebuilds the consume queues from the start.
    removeConsumeQueues(root);
    await assert.rejects(
      MessageStore.open(config, { logger: silentLogger }),
      isStoreError('ERR_STORE_FILE_INVALID', new RegExp(`offset ${middle.wroteOffset}\\b`), /BLANK/),
    );
    assertSameFiles(damaged, commitLogDir(root), 'after refusing the BLANK in the middle');
    patchSegment(root, middleWhere.name, middleWhere.position, original);

    // Over the last record (zeros after it): the end of the log, cut there.
    const last = puts[59] as { wroteOffset: number; wroteBytes: number };
    const lastWhere = segmentOf(last.wroteOffset);
    assert.ok(
      lastWhere.position + last.wroteBytes < SMALL_SEGMENT_BYTES - 8,
      'the last record leaves room in its segment',
    );
    patchSegment(root, lastWhere.name, lastWhere.position, blankHeader(last.wroteBytes));
    const store = await openStore(t, config);
    const report = store.getRecoveryReport().commitLog;
    assert.equal(storedMessageCount(store), 59);
    assert.equal(report.maxPhyOffset, last.wroteOffset, 'the log ends at the BLANK, not at the segment end');
    assert.ok(report.truncatedBytes > 0);
    assert.match(report.stopReason ?? '', /BLANK/);
    assert.equal(store.getMaxPhyOffset(), last.wroteOffset);
    assert.equal(await store.lookMessageByOffset(last.wroteOffset), null, 'nothing is served at the BLANK');
    for (const [i, put] of puts.slice(0, 59).entries()) {
      assert.ok((await readBack(store, put.wroteOffset, `message ${i}`)).body.equals(hundredBytes(i)));
    }
    const next = await store.putMessage({ topic: 'R', queueId: 0, body: Buffer.from('next') });
    assertStatus(next, 'PUT_OK', 'a put after the cut');
    assert.equal(next.appendResult?.wroteOffset, last.wroteOffset, 'the next put takes the BLANK’s place');
    assert.equal(next.appendResult?.queueOffset, 59);
  });
});

describe('review regressions: put statuses', () => {
  it('6. a put whose write or fdatasync outlasts syncFlushTimeout is FLUSH_DISK_TIMEOUT (stored), never SERVICE_NOT_AVAILABLE', async (t) => {
    // Before the fix a timed-out put whose bytes were not yet in the file was answered
    // SERVICE_NOT_AVAILABLE ("not stored"), although the bytes sat in the write buffer and were
    // written moments later: the first and the second SYNC put below got SERVICE_NOT_AVAILABLE.
    {
      const io = new InstrumentedIO();
      const slowWrite = gate();
      const store = await openStore(
        t,
        { storePathRootDir: tempDir(t), mappedFileSizeCommitLog: 1 << 20, syncFlushTimeout: 200 },
        { io },
      );
      onCleanup(t, slowWrite.release);
      io.hooks.beforeWrite = (file, _position, _length, sync) =>
        isCommitLog(file) && !sync ? slowWrite.promise : undefined;
      const result = await store.putMessage({ topic: 'Slow', queueId: 0, body: Buffer.from('slow write') });
      assertStatus(result, 'FLUSH_DISK_TIMEOUT', 'ASYNC_FLUSH put whose write is delayed');
      assert.match(result.reason ?? '', /syncFlushTimeout/);
      const append = appendOf(result, 'the timed-out put');
      assert.equal(store.isWriteable(), true, 'a slow write does not stop the store');
      slowWrite.release();
      io.hooks = {};
      await waitUntil(
        () => store.getMaxPhyOffset() >= append.wroteOffset + append.wroteBytes,
        'the delayed write to complete',
      );
      const message = await readBack(store, append.wroteOffset, 'the timed-out put');
      assert.equal(message.body.toString(), 'slow write');
    }
    {
      const io = new InstrumentedIO();
      const stuckSync = gate();
      const store = await openStore(
        t,
        {
          storePathRootDir: tempDir(t),
          mappedFileSizeCommitLog: 1 << 20,
          flushDiskType: 'SYNC_FLUSH',
          syncFlushTimeout: 200,
        },
        { io },
      );
      onCleanup(t, stuckSync.release);
      io.hooks.beforeDatasync = (file) => (isCommitLog(file) ? stuckSync.promise : undefined);
      const results: PutMessageResult[] = [];
      for (const text of ['first', 'second']) {
        const result = await store.putMessage({ topic: 'Stuck', queueId: 0, body: Buffer.from(text) });
        assertStatus(result, 'FLUSH_DISK_TIMEOUT', `SYNC put "${text}" while fdatasync is stuck`);
        assert.match(result.reason ?? '', /syncFlushTimeout/);
        appendOf(result, text);
        results.push(result);
      }
      stuckSync.release();
      io.hooks = {};
      for (const [i, result] of results.entries()) {
        const append = appendOf(result, `put ${i}`);
        // Under SYNC_FLUSH a message becomes readable once flushed (RocketMQ #8239).
        await waitUntil(
          () => store.getCommitLog().getVisibleOffset() >= append.wroteOffset + append.wroteBytes,
          `put ${i} to be written and flushed`,
        );
        assert.equal(
          (await readBack(store, append.wroteOffset, `put ${i}`)).body.toString(),
          i === 0 ? 'first' : 'second',
        );
      }
    }
  });

  it('7. after a fatal write error nothing more is written to the commit log', async (t) => {
    // Before the fix a failed pwrite made the waiting put SERVICE_NOT_AVAILABLE ("not stored"),
    // but the flush services kept calling commit: the next (successful) write put the very bytes
    // of that put into the file, and after reopening the "unavailable" message was there.
    for (const flushDiskType of ['ASYNC_FLUSH', 'SYNC_FLUSH'] as const) {
      const root = tempDir(t);
      const io = new InstrumentedIO();
      const config: MessageStoreConfigInput = {
        storePathRootDir: root,
        mappedFileSizeCommitLog: 1 << 20,
        flushDiskType,
        flushIntervalCommitLog: 10,
      };
      const store = await MessageStore.open(config, { io, logger: silentLogger });
      let failedAtSeq = -1;
      const failedWrites: boolean[] = [];
      // One EIO, on whichever kind of write comes first (async under ASYNC_FLUSH, a synchronous
      // pwrite under SYNC_FLUSH); later writes would succeed, if the store made any.
      io.hooks.beforeWrite = (file, _position, _length, sync) => {
        if (!isCommitLog(file) || failedAtSeq >= 0) return undefined;
        failedAtSeq = io.nextSeq();
        failedWrites.push(sync);
        throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
      };
      const failed = await store.putMessage({ topic: 'Eio', queueId: 0, body: Buffer.from('lost') });
      assertStatus(failed, 'SERVICE_NOT_AVAILABLE', `${flushDiskType}: the put whose write failed`);
      assert.equal(failed.error?.code, 'ERR_COMMIT_FAILED', `${flushDiskType}: ${failed.error?.message}`);
      assert.deepEqual(failedWrites, [flushDiskType === 'SYNC_FLUSH'], `${flushDiskType}: the failed write`);
      const refused = await store.putMessage({ topic: 'Eio', queueId: 0, body: Buffer.from('after') });
      assertStatus(refused, 'SERVICE_NOT_AVAILABLE', `${flushDiskType}: a put after the failure`);
      assert.equal(refused.appendResult, null);
      // Give the flush services (10 ms interval) many turns to (wrongly) commit again.
      await sleep(200);
      await store.shutdown();
      const writesAfter = io.events.filter(
        (e: IoEvent) => e.op === 'write' && isCommitLog(e.path) && e.seq > failedAtSeq,
      );
      assert.deepEqual(writesAfter, [], `${flushDiskType}: no commit log write after the fatal error`);
      assert.ok(fs.existsSync(path.join(root, 'abort')), `${flushDiskType}: abort stays after an I/O error`);

      const reopened = await openStore(t, config);
      assert.equal(reopened.getRecoveryReport().lastExitOK, false);
      assert.equal(
        storedMessageCount(reopened),
        0,
        `${flushDiskType}: the put answered SERVICE_NOT_AVAILABLE is not stored`,
      );
      await reopened.shutdown();
    }
  });

  it('11. a slow fdatasync under SYNC_FLUSH does not make puts OS_PAGE_CACHE_BUSY', async (t) => {
    // Before the fix a put appended while GroupCommitService waited for a slow fdatasync counted
    // as a stuck commit: once it had waited osPageCacheBusyTimeOutMills (1000 ms), new puts were
    // refused OS_PAGE_CACHE_BUSY although nothing was stuck and the sync completed in ~1.2 s.
    const io = new InstrumentedIO();
    const store = await openStore(
      t,
      { storePathRootDir: tempDir(t), mappedFileSizeCommitLog: 1 << 20, flushDiskType: 'SYNC_FLUSH' },
      { io },
    );
    const slowSync = gate();
    onCleanup(t, slowSync.release);
    let delayed = false;
    io.hooks.beforeDatasync = (file) => {
      if (!isCommitLog(file) || delayed) return undefined;
      delayed = true;
      return slowSync.promise;
    };
    const first = store.putMessage({ topic: 'Busy', queueId: 0, body: Buffer.from('first') });
    await waitUntil(() => delayed, 'the first fdatasync to start');
    const second = store.putMessage({ topic: 'Busy', queueId: 0, body: Buffer.from('second') });
    // Longer than osPageCacheBusyTimeOutMills (default 1000 ms): the condition the old code
    // mistook for a stuck commit.
    await sleep(1200);
    const third = store.putMessage({ topic: 'Busy', queueId: 0, body: Buffer.from('third') });
    slowSync.release();
    const results = await Promise.all([first, second, third]);
    for (const [i, result] of results.entries()) assertStatus(result, 'PUT_OK', `put ${i}`);
    assert.deepEqual(
      results.map((r) => r.appendResult?.queueOffset),
      [0, 1, 2],
    );
  });

  it('12. a properties getter that puts a message does not corrupt the outer put', async (t) => {
    // Before the fix the encoder filled its shared scratch fields (topic, queueId, hosts) first and
    // read the properties afterwards: the inner put overwrote them, and the outer message was
    // stored under the inner one's topic/queue with the inner queue's offset.
    const store = await openStore(t, { storePathRootDir: tempDir(t), mappedFileSizeCommitLog: 1 << 20 });
    let inner: Promise<PutMessageResult> | undefined;
    const properties: Record<string, string> = {};
    Object.defineProperty(properties, 'k', {
      enumerable: true,
      get() {
        inner ??= store.putMessage({ topic: 'Inner', queueId: 5, body: Buffer.from('inner') });
        return 'v';
      },
    });
    const outer = await store.putMessage({
      topic: 'Outer',
      queueId: 0,
      body: Buffer.from('outer'),
      properties,
    });
    assertStatus(outer, 'PUT_OK', 'the outer put');
    assert.ok(inner !== undefined, 'the getter ran and put the inner message');
    const innerResult = await inner;
    assertStatus(innerResult, 'PUT_OK', 'the inner put');

    const outerMessage = await readBack(store, appendOf(outer, 'outer').wroteOffset, 'outer');
    assert.equal(outerMessage.topic, 'Outer');
    assert.equal(outerMessage.queueId, 0);
    assert.equal(outerMessage.queueOffset, 0);
    assert.equal(outerMessage.body.toString(), 'outer');
    assert.equal(outerMessage.properties.k, 'v');
    const innerMessage = await readBack(store, appendOf(innerResult, 'inner').wroteOffset, 'inner');
    assert.equal(innerMessage.topic, 'Inner');
    assert.equal(innerMessage.queueId, 5);
    assert.equal(innerMessage.queueOffset, 0);
    assert.equal(innerMessage.body.toString(), 'inner');
    assert.equal(store.getQueueOffset('Outer', 0), 1);
    assert.equal(store.getQueueOffset('Inner', 5), 1);

    const again = await store.putMessage({ topic: 'Outer', queueId: 0, body: Buffer.from('again') });
    assert.equal(again.appendResult?.queueOffset, 1, 'the outer queue continues at 1');
  });
});

describe('review regressions: shutdown', () => {
  it('8. shutdown with a stuck fdatasync is bounded, keeps abort and releases the lock', {
    timeout: 60_000,
  }, async (t) => {
    // Before the fix shutdown awaited the flush service, which awaited the stuck fdatasync
    // forever: the promise never settled (this test timed out) and the lock was never released.
    // Every commit log fdatasync hangs here, the pre-created next segment's too, so shutdown
    // waits out two join timeouts (the services', then the allocator's): about 10 s.
    const root = tempDir(t);
    const io = new InstrumentedIO();
    const stuck = gate();
    onCleanup(t, stuck.release);
    const config = {
      storePathRootDir: root,
      mappedFileSizeCommitLog: 1 << 20,
      flushDiskType: 'SYNC_FLUSH' as const,
      syncFlushTimeout: 300,
    };
    const store = await MessageStore.open(config, { io, logger: silentLogger });
    io.hooks.beforeDatasync = (file) => (isCommitLog(file) ? stuck.promise : undefined);
    const put = await store.putMessage({ topic: 'Stuck', queueId: 0, body: Buffer.from('stuck') });
    assertStatus(put, 'FLUSH_DISK_TIMEOUT', 'a put while fdatasync is stuck');
    const append = appendOf(put, 'the stuck put');

    await assert.rejects(store.shutdown(), isStoreError('ERR_SHUTDOWN_TIMEOUT'));
    await assert.rejects(store.shutdown(), isStoreError('ERR_SHUTDOWN_TIMEOUT'), 'shutdown is idempotent');
    assert.ok(fs.existsSync(path.join(root, 'abort')), 'the abort file stays');
    assert.equal(fs.existsSync(path.join(root, 'lock')), false, 'the lock was released');

    // The disk is still stuck for the old instance; the directory is free all the same.
    const reopened = await MessageStore.open(config, { logger: silentLogger });
    try {
      assert.equal(reopened.getRecoveryReport().lastExitOK, false);
      assert.equal(storedMessageCount(reopened), 1);
      assert.equal((await readBack(reopened, append.wroteOffset, 'the stuck put')).body.toString(), 'stuck');
      assertStatus(
        await reopened.putMessage({ topic: 'Stuck', queueId: 0, body: Buffer.from('after') }),
        'PUT_OK',
        'a put on the reopened store',
      );
    } finally {
      stuck.release();
      await reopened.shutdown();
    }
    await tick();
  });

  it('8b. a shutdown that timed out leaves no descriptor open once the stuck disk returns', {
    timeout: 60_000,
  }, async (t) => {
    // The timed-out path of MessageStore.shutdown skips the checkpoint's flush AND its close: the
    // checkpoint file stays open for the life of the process (one descriptor per timed-out
    // shutdown), although nothing about the checkpoint was stuck. The segments themselves are
    // closed as soon as their stuck fdatasync returns.
    const root = tempDir(t);
    const io = new InstrumentedIO();
    const instrumented = io;
    const stuck = gate();
    onCleanup(t, stuck.release);
    const store = await MessageStore.open(
      {
        storePathRootDir: root,
        mappedFileSizeCommitLog: 1 << 20,
        flushDiskType: 'SYNC_FLUSH',
        syncFlushTimeout: 300,
      },
      { io, logger: silentLogger },
    );
    // Only the first segment's fdatasync hangs (not the pre-created next one): one join timeout.
    const firstSegment = path.join(commitLogDir(root), FIRST_SEGMENT);
    instrumented.hooks.beforeDatasync = (file) => (file === firstSegment ? stuck.promise : undefined);
    assertStatus(
      await store.putMessage({ topic: 'Stuck', queueId: 0, body: Buffer.from('stuck') }),
      'FLUSH_DISK_TIMEOUT',
      'a put while fdatasync is stuck',
    );
    await assert.rejects(store.shutdown(), isStoreError('ERR_SHUTDOWN_TIMEOUT'));
    stuck.release();
    await waitUntil(
      () => io.handles.every((h) => !isCommitLog(h.path) || h.closed),
      'the segments to close once their fdatasync returned',
    );
    const open = io.handles.filter((h) => !h.closed).map((h) => path.relative(root, h.path));
    assert.deepEqual(open, [], 'no descriptor of the shut-down store stays open');
  });

  it('9. shutdown while a read is in flight: the read settles without an AssertionError and no descriptor leaks', async (t) => {
    // Before the fix the read's release ran the segment's cleanup after shutdown had destroyed
    // the write-buffer pool: returnBuffer threw an AssertionError ("more buffers returned than
    // borrowed") out of lookMessageByOffset, and the descriptor was never closed.
    {
      const io = new InstrumentedIO();
      const root = tempDir(t);
      const store = await MessageStore.open(
        { storePathRootDir: root, mappedFileSizeCommitLog: 1 << 20 },
        { io, logger: silentLogger },
      );
      const put = await store.putMessage({ topic: 'Read', queueId: 0, body: Buffer.from('hello') });
      assertStatus(put, 'PUT_OK', 'the put');
      const slowRead = gate();
      onCleanup(t, slowRead.release);
      let readStarted = false;
      io.hooks.beforeRead = (file) => {
        if (!isCommitLog(file)) return undefined;
        readStarted = true;
        return slowRead.promise;
      };
      const read = store.lookMessageByOffset(appendOf(put, 'the put').wroteOffset);
      await waitUntil(() => readStarted, 'the read to start');
      await store.shutdown();
      delete io.hooks.beforeRead;
      slowRead.release();
      const message = await read;
      assert.ok(
        message === null || message.body.toString() === 'hello',
        'the read resolves to the message or null',
      );
      // The dispatch service's own read of the segment (gated too) may finish a moment later.
      const openHandles = (): string[] =>
        io.handles.filter((h) => isCommitLog(h.path) && !h.closed).map((h) => h.path);
      await waitUntil(() => openHandles().length === 0, 'every commit log descriptor to close', 5000).catch(
        () => undefined,
      );
      assert.deepEqual(openHandles(), [], 'every commit log descriptor is closed once the reads finished');
    }
    {
      // The same without a delay: read and shutdown started in the same tick.
      const store = await MessageStore.open(
        { storePathRootDir: tempDir(t), mappedFileSizeCommitLog: 1 << 20 },
        { logger: silentLogger },
      );
      const put = await store.putMessage({ topic: 'Read', queueId: 0, body: Buffer.from('hello') });
      const read = store.lookMessageByOffset(appendOf(put, 'the put').wroteOffset);
      const shutdown = store.shutdown();
      const [message] = await Promise.all([read, shutdown]);
      assert.ok(
        message === null || message.body.toString() === 'hello',
        'the read resolves to the message or null',
      );
    }
  });

  it('10. a clean shutdown fdatasyncs every segment written, however many', async (t) => {
    // Before the fix shutdown relied on the flush service's final passes, which flush one
    // segment per call at most 10 times: with ~25 small segments written and never flushed, most
    // of them were never fdatasync'ed although the abort file was deleted (a "clean" exit).
    const root = tempDir(t);
    const io = new InstrumentedIO();
    const store = await MessageStore.open(
      {
        storePathRootDir: root,
        mappedFileSizeCommitLog: SMALL_SEGMENT_BYTES,
        flushDiskType: 'ASYNC_FLUSH',
        flushIntervalCommitLog: 60_000,
        flushCommitLogThoroughInterval: 60_000,
      },
      { io, logger: silentLogger },
    );
    await putAll(store, 500, hundredBytes);
    const written = new Set(
      io.events.filter((e) => e.op === 'write' && isCommitLog(e.path)).map((e) => e.path),
    );
    assert.ok(written.size >= 20, `many segments were written (${written.size})`);
    await store.shutdown();
    for (const file of written) {
      const lastWrite = Math.max(
        ...io.events.filter((e) => e.op === 'write' && e.path === file).map((e) => e.seq),
      );
      const syncedAfter = io.events.some(
        (e) => e.op === 'datasync-end' && e.path === file && e.seq > lastWrite,
      );
      assert.ok(syncedAfter, `${path.basename(file)} was fdatasync'ed after its last write`);
    }
    assert.equal(fs.existsSync(path.join(root, 'abort')), false, 'a clean shutdown deletes abort');
  });
});

describe('review regressions: lock', () => {
  it('13. a worker thread cannot open a directory the main thread holds; a dead process’s lock is taken over', async (t) => {
    // Before the fix the lock named only the process: a worker thread saw its own pid, took the
    // main thread's lock for a leftover of this process, deleted it and opened the store, so two
    // stores wrote the same files (the worker reported opened: true, the main lock file was gone).
    const root = tempDir(t);
    const store = await openStore(t, { storePathRootDir: root, mappedFileSizeCommitLog: 1 << 20 });
    const lockPath = path.join(root, 'lock');
    const lockBefore = fs.readFileSync(lockPath, 'utf8');
    const worker = startTsWorker(LOCK_WORKER, { root });
    onCleanup(t, async () => {
      await worker.terminate();
    });
    const result = await firstMessage<LockWorkerResult>(worker);
    assert.equal(result.opened, false, `the worker must not open the held directory: ${result.message}`);
    assert.equal(result.code, 'ERR_STORE_LOCKED', result.message);
    assert.equal(await exitOf(worker), 0);
    assert.equal(fs.readFileSync(lockPath, 'utf8'), lockBefore, 'the main thread’s lock is untouched');
    assertStatus(
      await store.putMessage({ topic: 'Lock', queueId: 0, body: Buffer.from('main') }),
      'PUT_OK',
      'the main store still works',
    );
    await store.shutdown();
    assert.equal(fs.existsSync(lockPath), false);

    // A lock left by a process that no longer exists is taken over.
    const staleRoot = tempDir(t);
    const staleLock = path.join(staleRoot, 'lock');
    fs.writeFileSync(staleLock, '999999999 1 0\n');
    const taker = await openStore(t, { storePathRootDir: staleRoot, mappedFileSizeCommitLog: 1 << 20 });
    assert.match(fs.readFileSync(staleLock, 'utf8'), new RegExp(`^${process.pid} \\S+ ${threadId}\\n$`));
    assert.deepEqual(
      fs.readdirSync(staleRoot).filter((name) => name.startsWith('lock.')),
      [],
      'no stale lock left beside it',
    );
    assertStatus(
      await taker.putMessage({ topic: 'Lock', queueId: 0, body: Buffer.from('taken over') }),
      'PUT_OK',
      'the store that took the stale lock over',
    );
    await taker.shutdown();
    assert.equal(fs.existsSync(staleLock), false);
  });
});
