import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { nodeStoreIO, StoreError } from '../../src/store/index.js';
import { SimulatedDisk } from '../../src/store/io/simulated-disk.js';
import type { MappedFile } from '../../src/store/mapped-file/mapped-file.js';
import type { MappedFileQueue } from '../../src/store/mapped-file/mapped-file-queue.js';
import { WriteBufferPool } from '../../src/store/mapped-file/write-buffer-pool.js';
import { offset2FileName } from '../../src/store/message/message-format.js';
import { tempDir } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';
import { createQueue, patternBytes, segmentName, segmentPath } from '../support/mapped-file-helpers.js';

/**
 * Ports of RocketMQ's MappedFileQueueTest (store reference §6) onto 1024-byte segments, so every
 * scenario crosses many rolls. Appends are raw (`appendBytes`), as RocketMQ's test appends raw bytes.
 */

const FILE_SIZE = 1024;
/** Enough write buffers for a dozen or so full segments that are not committed yet. */
const POOL_BUFFERS = 64;

type TestContext = { after: (fn: () => void | Promise<void>) => void };

function newQueue(t: TestContext, storePath: string, io = nodeStoreIO): MappedFileQueue {
  const pool = new WriteBufferPool(FILE_SIZE, POOL_BUFFERS);
  const queue = createQueue({ storePath, mappedFileSize: FILE_SIZE, io, pool });
  t.after(() => queue.shutdown());
  return queue;
}

/** A queue that keeps empty segments before others, as the commit log's does. */
function newCommitLogLikeQueue(t: TestContext, storePath: string): MappedFileQueue {
  const pool = new WriteBufferPool(FILE_SIZE, POOL_BUFFERS);
  const queue = createQueue({
    storePath,
    mappedFileSize: FILE_SIZE,
    io: nodeStoreIO,
    pool,
    keepEmptySegments: true,
  });
  t.after(() => queue.shutdown());
  return queue;
}

/** Appends `data` to the segment `getLastMappedFile(startOffset)` returns (rolling as needed). */
function append(queue: MappedFileQueue, data: Buffer, startOffset = 0, storeTimestamp = 0): MappedFile {
  const file = queue.getLastMappedFile(startOffset);
  assert.ok(file !== null, 'getLastMappedFile must return a segment');
  assert.ok(file.appendBytes(data, storeTimestamp), `append of ${data.length} bytes to ${file.fileName}`);
  return file;
}

/** Fills `files` whole segments with distinct patterns, starting the queue at `startOffset`. */
function fillFiles(queue: MappedFileQueue, files: number, startOffset = 0): void {
  for (let i = 0; i < files; i++) append(queue, patternBytes(FILE_SIZE, i), startOffset);
}

/** Commits until the queue reports no progress; returns how many calls made progress. */
async function commitAll(queue: MappedFileQueue): Promise<number> {
  let progressed = 0;
  for (let guard = 0; guard < 1000; guard++) {
    if (await queue.commit(0)) return progressed;
    progressed++;
  }
  assert.fail('commit never stopped making progress');
}

async function flushAll(queue: MappedFileQueue): Promise<number> {
  let progressed = 0;
  for (let guard = 0; guard < 1000; guard++) {
    if (await queue.flush(0)) return progressed;
    progressed++;
  }
  assert.fail('flush never stopped making progress');
}

function offsets(queue: MappedFileQueue): number[] {
  return queue.getMappedFiles().map((f) => f.fileFromOffset);
}

function isInvalidFileError(err: unknown): boolean {
  return err instanceof StoreError && err.code === 'ERR_STORE_FILE_INVALID';
}

/** Writes a segment file directly, the way an earlier run would have left it. */
function writeSegment(dir: string, offset: number, size: number): Buffer {
  const content = patternBytes(size, offset / FILE_SIZE + 7);
  fs.writeFileSync(segmentPath(dir, offset), content);
  return content;
}

describe('MappedFileQueue', () => {
  it('rolls to a new pre-sized segment whenever the last is full (testGetLastMappedFile)', async (t) => {
    const dir = tempDir(t);
    const queue = newQueue(t, dir);
    const msg = Buffer.from('0123456789abcdef'); // 16 bytes: 64 appends per segment
    for (let i = 0; i < 1024; i++) {
      const file = append(queue, msg);
      assert.equal(file.fileFromOffset, Math.floor((i * msg.length) / FILE_SIZE) * FILE_SIZE);
    }

    const files = queue.getMappedFiles();
    assert.equal(files.length, 16);
    const expectedNames = Array.from({ length: 16 }, (_, i) => segmentName(i * FILE_SIZE));
    assert.deepEqual(
      files.map((f) => path.basename(f.fileName)),
      expectedNames,
    );
    assert.deepEqual(fs.readdirSync(dir).sort(), expectedNames);
    for (const [i, file] of files.entries()) {
      assert.match(path.basename(file.fileName), /^\d{20}$/);
      assert.equal(file.fileFromOffset, i * FILE_SIZE);
      assert.ok(file.isFull(), `${file.fileName} is full`);
      assert.equal(file.firstCreateInQueue, i === 0);
      assert.equal(fs.statSync(file.fileName).size, FILE_SIZE, `${file.fileName} is pre-sized`);
    }
    assert.equal(queue.getMaxWrotePosition(), 16 * FILE_SIZE);

    // A full last segment is only replaced when the caller asks for creation.
    assert.equal(queue.getLastMappedFile(0, false), files[15]);
    assert.equal(queue.getMappedFiles().length, 16);

    assert.equal(await commitAll(queue), 16);
    const onDisk = fs.readFileSync(segmentPath(dir, 5 * FILE_SIZE));
    assert.deepEqual(onDisk, Buffer.from(msg.toString().repeat(FILE_SIZE / msg.length)));
  });

  it('returns the last segment without creating one while it still has room', (t) => {
    const queue = newQueue(t, tempDir(t));
    assert.equal(queue.getLastMappedFile(), null);
    const first = append(queue, Buffer.alloc(1000, 1));
    assert.equal(queue.getLastMappedFile(0), first);
    assert.equal(queue.getLastMappedFile(), first);
    // 24 bytes left: a 25-byte raw append does not fit and does not roll by itself.
    assert.equal(first.appendBytes(Buffer.alloc(25)), false);
    assert.equal(first.wrotePosition, 1000);
    assert.equal(queue.getMappedFiles().length, 1);
  });

  it('finds the segment holding an offset, and null past the ends (testFindMappedFileByOffset)', (t) => {
    const queue = newQueue(t, tempDir(t));
    const msg = Buffer.from('abcd');
    for (let i = 0; i < 1024; i++) append(queue, msg);
    const files = queue.getMappedFiles();
    assert.equal(files.length, 4);

    const cases: Array<[number, number]> = [
      [0, 0],
      [100, 0],
      [FILE_SIZE - 1, 0],
      [FILE_SIZE, 1],
      [FILE_SIZE + 100, 1],
      [FILE_SIZE * 2, 2],
      [FILE_SIZE * 2 + 100, 2],
      [FILE_SIZE * 3, 3],
      [FILE_SIZE * 3 + 100, 3],
      [FILE_SIZE * 4 - 1, 3],
    ];
    for (const [offset, index] of cases) {
      const found = queue.findMappedFileByOffset(offset);
      assert.equal(found, files[index], `offset ${offset}`);
      assert.equal(found?.fileFromOffset, index * FILE_SIZE);
    }
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 4), null);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 4 + 100), null);
    assert.equal(queue.findMappedFileByOffset(-1), null);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 4 + 100, true), files[0]);
    // In range, the flag changes nothing.
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 2 + 5, true), files[2]);
  });

  it('finds nothing in an empty queue, whatever returnFirstOnNotFound says', (t) => {
    const queue = newQueue(t, tempDir(t));
    assert.equal(queue.findMappedFileByOffset(0), null);
    assert.equal(queue.findMappedFileByOffset(0, true), null);
    assert.equal(queue.getMinOffset(), -1);
    assert.equal(queue.getMaxOffset(), 0);
    assert.equal(queue.getMaxWrotePosition(), 0);
  });

  it('starts at a non-zero offset with returnFirstOnNotFound semantics (..._StartOffsetIsNonZero)', async (t) => {
    const dir = tempDir(t);
    const queue = newQueue(t, dir);
    const first = queue.getLastMappedFile(FILE_SIZE);
    assert.ok(first !== null);
    assert.equal(first.fileFromOffset, FILE_SIZE);
    assert.equal(path.basename(first.fileName), segmentName(FILE_SIZE));
    assert.ok(first.firstCreateInQueue);
    assert.equal(queue.getMinOffset(), FILE_SIZE);

    assert.equal(queue.findMappedFileByOffset(FILE_SIZE + 1), first);
    assert.equal(queue.findMappedFileByOffset(0), null);
    assert.equal(queue.findMappedFileByOffset(123, false), null);
    assert.equal(queue.findMappedFileByOffset(123, true), first);
    assert.equal(queue.findMappedFileByOffset(0, true), first);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 2), null);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 2, true), first);

    fillFiles(queue, 3, FILE_SIZE);
    assert.deepEqual(offsets(queue), [FILE_SIZE, FILE_SIZE * 2, FILE_SIZE * 3]);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 2 + 10)?.fileFromOffset, FILE_SIZE * 2);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 4 - 1)?.fileFromOffset, FILE_SIZE * 3);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE * 4), null);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE - 1, true), first);

    // committedWhere / flushedWhere start at 0: the first file is found through the same rule.
    assert.equal(await queue.commit(0), false);
    assert.equal(queue.committedWhere, FILE_SIZE * 2);
    assert.equal(await queue.flush(0), false);
    assert.equal(queue.flushedWhere, FILE_SIZE * 2);
    assert.equal(await commitAll(queue), 2);
    assert.equal(queue.committedWhere, FILE_SIZE * 4);
  });

  it('creates the first segment at the start of the file holding startOffset', (t) => {
    const queue = newQueue(t, tempDir(t));
    const file = queue.getLastMappedFile(FILE_SIZE * 2 + 500);
    assert.equal(file?.fileFromOffset, FILE_SIZE * 2);
    assert.equal(file?.wrotePosition, 0);
  });

  it('commits and flushes one segment per call (testAppendMessage)', async (t) => {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const queue = newQueue(t, dir, io);
    const fullFiles = 6;
    const tail = 300;
    // Four 256-byte records per segment, each with its own store timestamp.
    let ts = 1000;
    for (let i = 0; i < fullFiles * 4; i++) append(queue, patternBytes(256, i), 0, ++ts);
    append(queue, patternBytes(tail, 99), 0, ++ts);
    assert.equal(queue.getMappedFiles().length, fullFiles + 1);
    assert.equal(queue.getMaxWrotePosition(), fullFiles * FILE_SIZE + tail);

    // Nothing committed yet: a flush makes no progress and flushedWhere cannot pass committedWhere.
    assert.equal(await queue.flush(0), true);
    assert.equal(queue.flushedWhere, 0);
    assert.equal(queue.remainHowManyDataToCommit(), fullFiles * FILE_SIZE + tail);

    for (let i = 1; i <= fullFiles; i++) {
      const writesBefore = io.events.filter((e) => e.op === 'write').length;
      assert.equal(await queue.commit(0), false, `commit call ${i} makes progress`);
      assert.equal(queue.committedWhere, i * FILE_SIZE, `commit call ${i} moves exactly one file`);
      const writes = io.events.filter((e) => e.op === 'write').slice(writesBefore);
      assert.deepEqual(
        writes.map((e) => [e.path, e.from, e.to]),
        [[segmentPath(dir, (i - 1) * FILE_SIZE), 0, FILE_SIZE]],
      );
    }
    assert.equal(await queue.commit(0), false);
    assert.equal(queue.committedWhere, fullFiles * FILE_SIZE + tail);
    assert.equal(await queue.commit(0), true);
    assert.equal(queue.committedWhere, fullFiles * FILE_SIZE + tail);
    assert.equal(queue.getMaxOffset(), fullFiles * FILE_SIZE + tail);

    for (let i = 1; i <= fullFiles; i++) {
      const syncsBefore = io.events.filter((e) => e.op === 'datasync-start').length;
      assert.equal(await queue.flush(0), false, `flush call ${i} makes progress`);
      assert.equal(queue.flushedWhere, i * FILE_SIZE, `flush call ${i} moves exactly one file`);
      const syncs = io.events.filter((e) => e.op === 'datasync-start').slice(syncsBefore);
      assert.deepEqual(
        syncs.map((e) => e.path),
        [segmentPath(dir, (i - 1) * FILE_SIZE)],
      );
      // The timestamp of the last record of the file just flushed (four records per file).
      assert.equal(queue.storeTimestamp, 1000 + i * 4);
    }
    assert.equal(await queue.flush(0), false);
    assert.equal(queue.flushedWhere, fullFiles * FILE_SIZE + tail);
    assert.equal(queue.storeTimestamp, ts);
    assert.equal(await queue.flush(0), true);
    assert.equal(queue.remainHowManyDataToFlush(), 0);
    for (const file of queue.getMappedFiles()) {
      assert.ok(file.wrotePosition >= file.committedPosition);
      assert.ok(file.committedPosition >= file.flushedPosition);
      assert.equal(file.flushedPosition, file.fileFromOffset === fullFiles * FILE_SIZE ? tail : FILE_SIZE);
    }
  });

  it('reports the bytes of its segments (testGetMappedMemorySize)', async (t) => {
    const queue = newQueue(t, tempDir(t));
    assert.equal(queue.getMappedMemorySize(), 0);
    const msg = Buffer.from('abcd');
    for (let i = 0; i < 1024; i++) append(queue, msg);
    assert.equal(queue.getMappedMemorySize(), 4 * FILE_SIZE);
    append(queue, msg);
    assert.equal(queue.getMappedMemorySize(), 5 * FILE_SIZE);
    await commitAll(queue);
    assert.equal(queue.deleteExpiredFileByTime(0, 0, true, 2, Date.now()), 2);
    assert.equal(queue.getMappedMemorySize(), 3 * FILE_SIZE);
  });

  describe('deleteExpiredFileByOffset', () => {
    /** 16-byte units: an 8-byte physical offset, then filler. 64 units per segment. */
    const UNIT = 16;
    const UNITS_PER_FILE = FILE_SIZE / UNIT;

    function unit(phyOffset: number): Buffer {
      const b = Buffer.alloc(UNIT, 0xee);
      b.writeBigInt64BE(BigInt(phyOffset), 0);
      return b;
    }

    async function unitQueue(t: TestContext, dir: string, files: number): Promise<MappedFileQueue> {
      const queue = newQueue(t, dir);
      for (let k = 0; k < files * UNITS_PER_FILE; k++) append(queue, unit(k * 100));
      await commitAll(queue);
      return queue;
    }

    it('is blocked by a held first segment and deletes it once released', async (t) => {
      const dir = tempDir(t);
      const queue = await unitQueue(t, dir, 6);
      // The last unit of file i points at 100 * (64 * (i + 1) - 1): files 0, 1 and 2 are below this.
      const minPhyOffset = 100 * UNITS_PER_FILE * 3;
      const first = queue.getFirstMappedFile();
      assert.ok(first !== null);
      assert.ok(first.hold(), 'a reader holds the first segment');

      assert.equal(queue.deleteExpiredFileByOffset(minPhyOffset, UNIT), 0);
      assert.equal(queue.getMappedFiles().length, 6);
      assert.ok(fs.existsSync(segmentPath(dir, 0)), 'a held segment stays on disk');
      assert.equal(first.isAvailable(), false, 'the failed destroy has shut the segment down');
      assert.equal(first.hold(), false);

      first.release();
      assert.equal(queue.deleteExpiredFileByOffset(minPhyOffset, UNIT), 3);
      assert.deepEqual(
        offsets(queue),
        [3, 4, 5].map((i) => i * FILE_SIZE),
      );
      for (const i of [0, 1, 2]) assert.ok(!fs.existsSync(segmentPath(dir, i * FILE_SIZE)));
      assert.ok(fs.existsSync(segmentPath(dir, 3 * FILE_SIZE)));
      assert.equal(queue.getMinOffset(), 3 * FILE_SIZE);
    });

    it('stops at the first segment still needed and never deletes the last', async (t) => {
      const dir = tempDir(t);
      const queue = await unitQueue(t, dir, 4);
      // Exactly the last unit of file 1 (6300 + 6400 = 12700) is not below: only file 0 goes.
      assert.equal(queue.deleteExpiredFileByOffset(100 * (2 * UNITS_PER_FILE - 1), UNIT), 1);
      assert.deepEqual(
        offsets(queue),
        [1, 2, 3].map((i) => i * FILE_SIZE),
      );
      assert.equal(queue.deleteExpiredFileByOffset(Number.MAX_SAFE_INTEGER, UNIT), 2);
      assert.deepEqual(offsets(queue), [3 * FILE_SIZE]);
      assert.equal(queue.deleteExpiredFileByOffset(Number.MAX_SAFE_INTEGER, UNIT), 0);
      assert.ok(fs.existsSync(segmentPath(dir, 3 * FILE_SIZE)));
    });
  });

  describe('deleteExpiredFileByTime', () => {
    const HOUR_MS = 3600 * 1000;

    function setMtime(filePath: string, mtimeMs: number): void {
      const when = new Date(mtimeMs);
      fs.utimesSync(filePath, when, when);
    }

    it('deletes leading expired segments and stops at the first unexpired one', async (t) => {
      const dir = tempDir(t);
      const queue = newQueue(t, dir);
      fillFiles(queue, 10);
      await commitAll(queue);
      await flushAll(queue);
      const now = Date.now();
      for (let i = 0; i < 10; i++) {
        const fresh = i === 5;
        setMtime(segmentPath(dir, i * FILE_SIZE), fresh ? now - 1000 : now - HOUR_MS);
      }
      const expiredMs = 60 * 1000;
      assert.equal(queue.deleteExpiredFileByTime(expiredMs, 1000, false, 100, now), 5);
      assert.deepEqual(
        offsets(queue),
        [5, 6, 7, 8, 9].map((i) => i * FILE_SIZE),
      );
      for (let i = 0; i < 5; i++) assert.ok(!fs.existsSync(segmentPath(dir, i * FILE_SIZE)));
      assert.ok(fs.existsSync(segmentPath(dir, 5 * FILE_SIZE)));
      // File 5 still blocks the expired files behind it.
      assert.equal(queue.deleteExpiredFileByTime(expiredMs, 1000, false, 100, now), 0);
      assert.equal(queue.getMappedFiles().length, 5);
      // Once file 5 has expired as well, everything but the last segment goes.
      assert.equal(queue.deleteExpiredFileByTime(expiredMs, 1000, false, 100, now + expiredMs), 4);
      assert.deepEqual(offsets(queue), [9 * FILE_SIZE]);
      assert.ok(fs.existsSync(segmentPath(dir, 9 * FILE_SIZE)), 'the last segment is never deleted');
      assert.equal(queue.deleteExpiredFileByTime(0, 0, true, 100, now + HOUR_MS), 0);
    });

    it('deletes at most deleteFilesBatchMax per call and stops at a held segment', async (t) => {
      const dir = tempDir(t);
      const queue = newQueue(t, dir);
      fillFiles(queue, 6);
      await commitAll(queue);
      const now = Date.now();
      // cleanImmediately ignores the age.
      assert.equal(queue.deleteExpiredFileByTime(HOUR_MS, 1000, true, 2, now), 2);
      assert.deepEqual(
        offsets(queue),
        [2, 3, 4, 5].map((i) => i * FILE_SIZE),
      );

      const held = queue.getFirstMappedFile();
      assert.ok(held !== null);
      assert.ok(held.hold());
      assert.equal(queue.deleteExpiredFileByTime(HOUR_MS, 60 * 1000, true, 10, now), 0);
      assert.ok(fs.existsSync(held.fileName));
      held.release();
      assert.equal(queue.deleteExpiredFileByTime(HOUR_MS, 60 * 1000, true, 10, now), 3);
      assert.deepEqual(offsets(queue), [5 * FILE_SIZE]);
    });
  });

  it('resetOffset drops later segments and moves the positions back (testReset)', async (t) => {
    const dir = tempDir(t);
    const queue = newQueue(t, dir);
    fillFiles(queue, 2);
    append(queue, patternBytes(512, 2));
    await commitAll(queue);
    await flushAll(queue);
    assert.equal(queue.flushedWhere, 2 * FILE_SIZE + 512);

    // More than two segments' worth back: refused, nothing touched.
    assert.equal(queue.resetOffset(100), false);
    assert.deepEqual(offsets(queue), [0, FILE_SIZE, 2 * FILE_SIZE]);
    assert.equal(queue.getMaxOffset(), 2 * FILE_SIZE + 512);

    const target = FILE_SIZE + 100;
    assert.equal(queue.resetOffset(target), true);
    assert.deepEqual(offsets(queue), [0, FILE_SIZE]);
    assert.ok(!fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));
    const last = queue.getLastMappedFile();
    assert.ok(last !== null);
    assert.deepEqual([last.wrotePosition, last.committedPosition, last.flushedPosition], [100, 100, 100]);
    assert.equal(queue.getMaxOffset(), target);
    assert.equal(queue.flushedWhere, target);
    assert.equal(queue.committedWhere, target);

    // Appending resumes at the reset point.
    const more = patternBytes(50, 42);
    assert.equal(append(queue, more), last);
    await commitAll(queue);
    assert.equal(queue.committedWhere, target + 50);
    assert.deepEqual(last.readSync(100, 50), more);

    assert.equal(queue.resetOffset(0), true);
    assert.deepEqual(offsets(queue), [0]);
    assert.equal(queue.getMaxOffset(), 0);
    assert.equal(queue.flushedWhere, 0);
    assert.ok(!fs.existsSync(segmentPath(dir, FILE_SIZE)));
  });

  it('truncateDirtyFiles keeps the segment holding the offset and deletes the later ones', async (t) => {
    const dir = tempDir(t);
    const queue = newQueue(t, dir);
    fillFiles(queue, 5);
    await commitAll(queue);

    queue.truncateDirtyFiles(2 * FILE_SIZE + 300);
    assert.deepEqual(offsets(queue), [0, FILE_SIZE, 2 * FILE_SIZE]);
    assert.ok(!fs.existsSync(segmentPath(dir, 3 * FILE_SIZE)));
    assert.ok(!fs.existsSync(segmentPath(dir, 4 * FILE_SIZE)));
    const [f0, f1, f2] = queue.getMappedFiles() as [MappedFile, MappedFile, MappedFile];
    assert.equal(f0.wrotePosition, FILE_SIZE);
    assert.equal(f1.wrotePosition, FILE_SIZE);
    assert.deepEqual([f2.wrotePosition, f2.committedPosition, f2.flushedPosition], [300, 300, 300]);
    assert.equal(queue.getMaxOffset(), 2 * FILE_SIZE + 300);
    assert.equal(f2.readSync(300, 1), null, 'bytes past the cut are not readable');
    // As in RocketMQ, the bytes past the cut are not zeroed by the truncation itself.
    assert.deepEqual(fs.readFileSync(f2.fileName).subarray(300), patternBytes(FILE_SIZE, 2).subarray(300));

    // An offset on a segment boundary keeps the earlier segment whole and empties the next.
    queue.truncateDirtyFiles(FILE_SIZE);
    assert.deepEqual(offsets(queue), [0, FILE_SIZE]);
    assert.equal(f0.wrotePosition, FILE_SIZE);
    assert.deepEqual([f1.wrotePosition, f1.committedPosition, f1.flushedPosition], [0, 0, 0]);
    assert.ok(!fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));

    // Appends continue in the emptied segment.
    const data = patternBytes(FILE_SIZE, 77);
    assert.equal(append(queue, data), f1);
    queue.committedWhere = FILE_SIZE;
    await commitAll(queue);
    assert.deepEqual(f1.readSync(0, FILE_SIZE), data);
  });

  describe('load', () => {
    it('opens the segments in offset order and ignores names that are not segments', async (t) => {
      const dir = tempDir(t);
      const contents = new Map<number, Buffer>();
      for (const offset of [2 * FILE_SIZE, 0, FILE_SIZE])
        contents.set(offset, writeSegment(dir, offset, FILE_SIZE));
      fs.writeFileSync(path.join(dir, 'checkpoint'), 'x');
      fs.writeFileSync(path.join(dir, `${segmentName(3 * FILE_SIZE)}.tmp`), 'x');
      fs.writeFileSync(path.join(dir, segmentName(3 * FILE_SIZE).slice(1)), 'x'); // 19 digits
      fs.mkdirSync(path.join(dir, segmentName(5 * FILE_SIZE))); // a directory with a segment's name

      const queue = newQueue(t, dir);
      queue.load();
      assert.deepEqual(offsets(queue), [0, FILE_SIZE, 2 * FILE_SIZE]);
      for (const file of queue.getMappedFiles()) {
        assert.deepEqual(
          [file.wrotePosition, file.committedPosition, file.flushedPosition],
          [FILE_SIZE, FILE_SIZE, FILE_SIZE],
        );
        assert.deepEqual(await file.selectMappedBuffer(0, FILE_SIZE), contents.get(file.fileFromOffset));
      }
      assert.equal(queue.getMaxOffset(), 3 * FILE_SIZE);
      assert.ok(fs.existsSync(path.join(dir, 'checkpoint')), 'other files are left alone');
      assert.ok(fs.existsSync(path.join(dir, `${segmentName(3 * FILE_SIZE)}.tmp`)));

      // The loaded queue rolls on from its last segment.
      const next = queue.getLastMappedFile(0);
      assert.equal(next?.fileFromOffset, 3 * FILE_SIZE);
      assert.equal(fs.statSync(segmentPath(dir, 3 * FILE_SIZE)).size, FILE_SIZE);
    });

    it('creates a missing directory and loads nothing', (t) => {
      const dir = path.join(tempDir(t), 'commitlog');
      const queue = newQueue(t, dir);
      queue.load();
      assert.ok(fs.statSync(dir).isDirectory());
      assert.equal(queue.getMappedFiles().length, 0);
    });

    it('deletes a zero-length last segment (a crash while creating it)', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, FILE_SIZE, FILE_SIZE);
      writeSegment(dir, 2 * FILE_SIZE, 0);
      const queue = newQueue(t, dir);
      queue.load();
      assert.deepEqual(offsets(queue), [0, FILE_SIZE]);
      assert.ok(!fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));
    });

    it('deletes a lone zero-length segment', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, 0);
      const queue = newQueue(t, dir);
      queue.load();
      assert.equal(queue.getMappedFiles().length, 0);
      assert.ok(!fs.existsSync(segmentPath(dir, 0)));
    });

    it('fails on a zero-length segment that is not the last', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, FILE_SIZE, 0);
      writeSegment(dir, 2 * FILE_SIZE, FILE_SIZE);
      const queue = newQueue(t, dir);
      assert.throws(() => queue.load(), isInvalidFileError);
      assert.equal(queue.getMappedFiles().length, 0);
      assert.ok(fs.existsSync(segmentPath(dir, FILE_SIZE)), 'a load failure deletes nothing');
    });

    it('deleteLastMappedFile is durable: the file does not come back after a power loss', async () => {
      const disk = new SimulatedDisk();
      disk.mkdirSync('/q');
      disk.fsyncDirectorySync('/');
      const pool = new WriteBufferPool(FILE_SIZE, POOL_BUFFERS);
      const queue = createQueue({ storePath: '/q', mappedFileSize: FILE_SIZE, io: disk, pool });

      for (let i = 0; i < 3; i++) append(queue, Buffer.alloc(FILE_SIZE, i + 1), 0);
      for (let i = 0; i < 4 && queue.committedWhere < 3 * FILE_SIZE; i++) await queue.commit(0);
      for (let i = 0; i < 4 && queue.flushedWhere < 3 * FILE_SIZE; i++) await queue.flush(0);
      assert.equal(queue.flushedWhere, 3 * FILE_SIZE);
      queue.deleteLastMappedFile();
      queue.shutdown();
      disk.crash({ seed: 7 });
      const after = disk.reboot();
      assert.deepEqual(after.readdirSync('/q'), [offset2FileName(0), offset2FileName(FILE_SIZE)]);
    });

    it('deletes every zero-length segment at the end, last first', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, FILE_SIZE, 0);
      writeSegment(dir, 2 * FILE_SIZE, 0);
      const queue = newQueue(t, dir);
      queue.load();
      assert.deepEqual(offsets(queue), [0]);
      assert.ok(!fs.existsSync(segmentPath(dir, FILE_SIZE)));
      assert.ok(!fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));
    });

    it('with keepEmptySegments (the commit log), keeps a zero-length segment before others as it is and lists it', (t) => {
      // A power loss can keep a later pre-created segment while losing the size of an earlier one
      // that was never synced: the commit log's recovery gets to see the files and decides.
      const dir = tempDir(t);
      writeSegment(dir, 0, 0);
      writeSegment(dir, FILE_SIZE, FILE_SIZE);
      writeSegment(dir, 2 * FILE_SIZE, 0);
      writeSegment(dir, 3 * FILE_SIZE, FILE_SIZE);
      const queue = newCommitLogLikeQueue(t, dir);
      queue.load();
      assert.deepEqual(offsets(queue), [0, FILE_SIZE, 2 * FILE_SIZE, 3 * FILE_SIZE]);
      assert.deepEqual(queue.emptySegments, [segmentPath(dir, 0), segmentPath(dir, 2 * FILE_SIZE)]);
      assert.deepEqual(queue.extendedFiles, []);
      for (const offset of [0, 2 * FILE_SIZE]) assert.equal(fs.statSync(segmentPath(dir, offset)).size, 0);
    });

    it('a load that refuses changes nothing: no trailing empty file deleted, no short file extended', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, FILE_SIZE, 0);
      writeSegment(dir, 2 * FILE_SIZE, FILE_SIZE - 100);
      writeSegment(dir, 4 * FILE_SIZE, FILE_SIZE); // segment 3 missing
      writeSegment(dir, 5 * FILE_SIZE, 0);
      const queue = newCommitLogLikeQueue(t, dir);
      assert.throws(() => queue.load(), isInvalidFileError);
      const sizes = [0, 1, 2, 4, 5].map((i) => fs.statSync(segmentPath(dir, i * FILE_SIZE)).size);
      assert.deepEqual(sizes, [FILE_SIZE, 0, FILE_SIZE - 100, FILE_SIZE, 0]);
    });

    it('with keepEmptySegments, still refuses a short (not empty) segment before others', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, FILE_SIZE, FILE_SIZE - 512);
      writeSegment(dir, 2 * FILE_SIZE, FILE_SIZE);
      const queue = newCommitLogLikeQueue(t, dir);
      assert.throws(() => queue.load(), isInvalidFileError);
      assert.equal(
        fs.statSync(segmentPath(dir, FILE_SIZE)).size,
        FILE_SIZE - 512,
        'a load failure changes nothing',
      );
    });

    it('extends a short last segment after full-size ones with zeros, and lists it', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, FILE_SIZE, FILE_SIZE);
      const cut = Buffer.alloc(1000, 0x5a);
      fs.writeFileSync(segmentPath(dir, 2 * FILE_SIZE), cut);
      const queue = newQueue(t, dir);
      queue.load();
      assert.deepEqual(offsets(queue), [0, FILE_SIZE, 2 * FILE_SIZE]);
      assert.deepEqual(
        queue.extendedFiles.map((f) => [f.fileName, f.sizeBytes]),
        [[segmentPath(dir, 2 * FILE_SIZE), 1000]],
      );
      const bytes = fs.readFileSync(segmentPath(dir, 2 * FILE_SIZE));
      assert.equal(bytes.length, FILE_SIZE);
      assert.ok(bytes.subarray(0, 1000).equals(cut), 'the data stays');
      assert.ok(
        bytes.subarray(1000).every((b) => b === 0),
        'the rest reads as zeros',
      );
    });

    it('a lone short segment: refused unless its content proves it was cut short', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, 1000);
      assert.throws(() => newQueue(t, dir).load(), isInvalidFileError);
      assert.equal(fs.statSync(segmentPath(dir, 0)).size, 1000, 'a refused load changes nothing');
      const asked: number[] = [];
      const pool = new WriteBufferPool(FILE_SIZE, POOL_BUFFERS);
      const queue = createQueue({
        storePath: dir,
        mappedFileSize: FILE_SIZE,
        io: nodeStoreIO,
        pool,
        isCutShort: (_file, size) => {
          asked.push(size);
          return true;
        },
      });
      t.after(() => queue.shutdown());
      queue.load();
      assert.deepEqual(asked, [1000]);
      assert.equal(fs.statSync(segmentPath(dir, 0)).size, FILE_SIZE);
    });

    for (const [label, sizes] of [
      ['a long last segment', [FILE_SIZE, FILE_SIZE, 2 * FILE_SIZE]],
      ['a long segment in the middle', [FILE_SIZE, 2 * FILE_SIZE, FILE_SIZE]],
      ['a short first segment', [1, FILE_SIZE]],
    ] as const) {
      it(`fails on ${label}`, (t) => {
        const dir = tempDir(t);
        for (const [i, size] of sizes.entries()) writeSegment(dir, i * FILE_SIZE, size);
        const queue = newQueue(t, dir);
        assert.throws(() => queue.load(), isInvalidFileError);
        assert.equal(queue.getMappedFiles().length, 0);
      });
    }

    it('fails when a segment between two others is missing', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 0, FILE_SIZE);
      writeSegment(dir, 2 * FILE_SIZE, FILE_SIZE);
      const queue = newQueue(t, dir);
      assert.throws(() => queue.load(), isInvalidFileError);
      assert.equal(queue.getMappedFiles().length, 0);
    });

    it('fails on a segment whose name is not a multiple of the segment size', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, FILE_SIZE, FILE_SIZE);
      fs.writeFileSync(segmentPath(dir, 2 * FILE_SIZE + 100), Buffer.alloc(FILE_SIZE));
      const queue = newQueue(t, dir);
      assert.throws(() => queue.load(), isInvalidFileError);
    });

    it('loads a queue that starts at a non-zero offset', (t) => {
      const dir = tempDir(t);
      writeSegment(dir, 3 * FILE_SIZE, FILE_SIZE);
      writeSegment(dir, 4 * FILE_SIZE, FILE_SIZE);
      const queue = newQueue(t, dir);
      queue.load();
      assert.deepEqual(offsets(queue), [3 * FILE_SIZE, 4 * FILE_SIZE]);
      assert.equal(queue.getMinOffset(), 3 * FILE_SIZE);
      assert.equal(queue.findMappedFileByOffset(0), null);
      assert.equal(queue.findMappedFileByOffset(4 * FILE_SIZE + 1)?.fileFromOffset, 4 * FILE_SIZE);
    });
  });

  it('checkSelf reports non-adjacent segments; lookups fall back to a scan (..._ByIteration)', (t) => {
    const queue = newQueue(t, tempDir(t));
    fillFiles(queue, 4);
    assert.deepEqual(queue.checkSelf(), []);

    // Break the list the way RocketMQ's test does: take a segment out from the middle.
    const list = queue.getMappedFiles() as MappedFile[];
    const [removed] = list.splice(1, 1);
    assert.ok(removed !== undefined);
    t.after(() => removed.close());

    const problems = queue.checkSelf();
    assert.equal(problems.length, 1);
    assert.ok(problems[0]?.includes(segmentName(0)) && problems[0].includes(segmentName(2 * FILE_SIZE)));
    // The computed index (2) now holds the segment at 3072: the scan must find 2048 instead.
    assert.equal(queue.findMappedFileByOffset(2 * FILE_SIZE + 5)?.fileFromOffset, 2 * FILE_SIZE);
    assert.equal(queue.findMappedFileByOffset(3 * FILE_SIZE + 5)?.fileFromOffset, 3 * FILE_SIZE);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE + 5), null);
    assert.equal(queue.findMappedFileByOffset(FILE_SIZE + 5, true)?.fileFromOffset, 0);
  });

  it('destroy deletes every segment and resets the positions', async (t) => {
    const dir = tempDir(t);
    const queue = newQueue(t, dir);
    fillFiles(queue, 3);
    await commitAll(queue);
    await flushAll(queue);
    queue.destroy();
    assert.equal(queue.getMappedFiles().length, 0);
    assert.deepEqual(fs.readdirSync(dir), []);
    assert.equal(queue.flushedWhere, 0);
    assert.equal(queue.committedWhere, 0);
  });
});
