import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { nodeStoreIO, StoreError, type StoreIO } from '../../src/store/index.js';
import {
  type AppendOutcome,
  MappedFile,
  OS_PAGE_SIZE_BYTES,
} from '../../src/store/mapped-file/mapped-file.js';
import { WriteBufferPool } from '../../src/store/mapped-file/write-buffer-pool.js';
import { prng, tempDir, testSeed, tick } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';
import {
  createQueue,
  deferred,
  maxConcurrentDatasyncs,
  patternBytes,
  segmentName,
  systemError,
} from '../support/mapped-file-helpers.js';

/** MappedFile invariants (store reference §4.3, DESIGN.md §4), on real files in temp dirs. */

type TestContext = { after: (fn: () => void | Promise<void>) => void };

interface Fixture {
  readonly dir: string;
  readonly file: MappedFile;
  readonly pool: WriteBufferPool;
}

function newFile(
  t: TestContext,
  options: { fileSize: number; bufferSize?: number; buffers?: number; io?: StoreIO; offset?: number },
): Fixture {
  const dir = tempDir(t);
  const pool = new WriteBufferPool(options.bufferSize ?? options.fileSize, options.buffers ?? 4);
  const fileName = path.join(dir, segmentName(options.offset ?? 0));
  const file = MappedFile.create(options.io ?? nodeStoreIO, fileName, options.fileSize, pool);
  t.after(() => file.close());
  return { dir, file, pool };
}

function positions(file: MappedFile): [number, number, number] {
  return [file.wrotePosition, file.committedPosition, file.flushedPosition];
}

function assertOrdered(file: MappedFile, context = ''): void {
  const [w, c, f] = positions(file);
  assert.ok(w <= file.fileSize, `wrote ${w} within the file ${context}`);
  assert.ok(w >= c, `wrote ${w} >= committed ${c} ${context}`);
  assert.ok(c >= f, `committed ${c} >= flushed ${f} ${context}`);
  assert.ok(f >= 0, `flushed ${f} >= 0 ${context}`);
  assert.equal(file.getReadPosition(), c, `read position is the committed position ${context}`);
}

function hasCode(code: string): (err: unknown) => boolean {
  return (err: unknown) => err instanceof StoreError && err.code === code;
}

function count(io: InstrumentedIO, op: string, filePath?: string): number {
  return io.events.filter((e) => e.op === op && (filePath === undefined || e.path === filePath)).length;
}

/** Lets pending I/O callbacks and promise continuations run (a number of loop turns, no timers). */
async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await tick();
}

describe('MappedFile', () => {
  it('keeps wrote >= committed >= flushed through a seeded mix of appends, commits and flushes', async (t) => {
    const seed = testSeed();
    const random = prng(seed);
    const ctx = `(seed ${seed}; rerun with TEST_SEED=${seed})`;
    const fileSize = 16 * 1024;
    const { file, pool } = newFile(t, { fileSize, bufferSize: 1024, buffers: 3 });
    const expected = Buffer.alloc(fileSize);
    let lastCommitted = 0;
    let lastFlushed = 0;
    let busyAppends = 0;

    for (let step = 0; step < 400 && !file.isFull(); step++) {
      const r = random();
      if (r < 0.55) {
        const room = fileSize - file.wrotePosition;
        const length = Math.min(room, 1 + Math.floor(random() * 400));
        const data = patternBytes(length, step);
        const before = file.wrotePosition;
        if (file.appendBytes(data, step + 1)) {
          data.copy(expected, before);
          assert.equal(file.wrotePosition, before + length, ctx);
        } else {
          busyAppends++;
          assert.equal(file.wrotePosition, before, `a refused append moves nothing ${ctx}`);
          assert.equal(
            pool.availableBufferNums(),
            0,
            `an append is refused only when the pool is empty ${ctx}`,
          );
        }
      } else if (r < 0.7) {
        await file.commit(Math.floor(random() * 3));
      } else if (r < 0.85) {
        await file.flush(Math.floor(random() * 3));
      } else {
        // Overlapping calls, as the commit and flush services and group commit make them.
        await Promise.all([file.commit(0), file.flush(0), file.commit(1), file.flush(0), file.commit(0)]);
      }
      assertOrdered(file, `at step ${step} ${ctx}`);
      assert.ok(file.committedPosition >= lastCommitted, `committed never moves back ${ctx}`);
      assert.ok(file.flushedPosition >= lastFlushed, `flushed never moves back ${ctx}`);
      lastCommitted = file.committedPosition;
      lastFlushed = file.flushedPosition;
      if (lastCommitted > 0) {
        assert.deepEqual(file.readSync(0, lastCommitted), expected.subarray(0, lastCommitted), ctx);
      }
    }

    await file.commit(0);
    await file.flush(0);
    const end = file.wrotePosition;
    assert.deepEqual(positions(file), [end, end, end], ctx);
    assert.deepEqual(fs.readFileSync(file.fileName), expected, ctx);
    // Everything is committed: at most the chunk still being appended to is kept.
    assert.ok(pool.borrowedBufferNums() <= (file.isFull() ? 0 : 1), ctx);
    t.diagnostic(`seed ${seed}, ${busyAppends} appends refused for lack of a buffer`);
  });

  it('is created pre-sized (ftruncate) and named by the offset of its first byte', (t) => {
    const io = new InstrumentedIO();
    const fileSize = 64 * 1024;
    const { file, dir } = newFile(t, { fileSize, io, offset: 3 * fileSize });
    assert.equal(file.fileFromOffset, 3 * fileSize);
    assert.equal(file.fileSize, fileSize);
    assert.equal(fs.statSync(file.fileName).size, fileSize);
    assert.ok(
      io.events.some((e) => e.op === 'truncate' && e.path === file.fileName && e.from === fileSize),
      'the file is ftruncate()d to its size',
    );
    assert.deepEqual(positions(file), [0, 0, 0]);
    assert.ok(!file.isFull());

    // An existing segment is never overwritten by a create.
    fs.writeFileSync(path.join(dir, segmentName(0)), 'precious');
    const pool = new WriteBufferPool(fileSize, 1);
    assert.throws(() => MappedFile.create(io, path.join(dir, segmentName(0)), fileSize, pool), /EEXIST/);
    assert.equal(fs.readFileSync(path.join(dir, segmentName(0)), 'utf8'), 'precious');
  });

  it('opens an existing segment with every position at the end', (t) => {
    const dir = tempDir(t);
    const fileName = path.join(dir, segmentName(4096));
    const content = patternBytes(4096, 3);
    fs.writeFileSync(fileName, content);
    const file = MappedFile.open(nodeStoreIO, fileName, 4096, new WriteBufferPool(4096, 1));
    t.after(() => file.close());
    assert.equal(file.fileFromOffset, 4096);
    assert.deepEqual(positions(file), [4096, 4096, 4096]);
    assert.ok(file.isFull());
    assert.deepEqual(file.readSync(0, 4096), content);
  });

  describe('isAbleToCommit / isAbleToFlush (RocketMQ page counting)', () => {
    const FILE_SIZE = 64 * 1024;
    const PAGE = OS_PAGE_SIZE_BYTES;

    it('counts whole 4 KiB pages between the positions, or anything dirty with leastPages 0', async (t) => {
      assert.equal(PAGE, 4096);
      const { file } = newFile(t, { fileSize: FILE_SIZE });
      assert.equal(file.isAbleToCommit(0), false, 'nothing written');
      assert.equal(file.isAbleToCommit(1), false);
      assert.equal(file.isAbleToFlush(0), false);

      assert.ok(file.appendBytes(Buffer.alloc(1, 1)));
      assert.equal(file.isAbleToCommit(0), true, 'one dirty byte is enough for leastPages 0');
      assert.equal(file.isAbleToCommit(1), false, 'one byte is not a page');
      assert.ok(file.appendBytes(Buffer.alloc(PAGE - 2, 2)));
      assert.equal(file.wrotePosition, PAGE - 1);
      assert.equal(file.isAbleToCommit(1), false, '4095 bytes are not a page');
      assert.ok(file.appendBytes(Buffer.alloc(1, 3)));
      assert.equal(file.isAbleToCommit(1), true, 'the first page boundary is crossed');
      assert.equal(file.isAbleToCommit(2), false);
      // Flushing looks at the committed (readable) position, not at the write position.
      assert.equal(file.isAbleToFlush(0), false, 'nothing committed yet');

      assert.ok(file.appendBytes(Buffer.alloc(2 * PAGE, 4)));
      assert.equal(file.isAbleToCommit(3), true);
      assert.equal(file.isAbleToCommit(4), false);
      assert.equal(await file.commit(4), 0, 'commit(4) with three dirty pages writes nothing');
      assert.equal(await file.commit(3), 3 * PAGE);
      assert.equal(file.isAbleToCommit(0), false);
      assert.equal(file.isAbleToFlush(3), true);
      assert.equal(file.isAbleToFlush(4), false);

      // Two bytes that straddle a page boundary count as one page.
      assert.ok(file.appendBytes(Buffer.alloc(PAGE - 1, 5)));
      assert.equal(await file.commit(0), 4 * PAGE - 1);
      assert.ok(file.appendBytes(Buffer.alloc(2, 6)));
      assert.equal(file.wrotePosition, 4 * PAGE + 1);
      assert.equal(file.isAbleToCommit(1), true);
      assert.equal(file.isAbleToCommit(2), false);
    });

    it('says yes for a full file whatever leastPages is', async (t) => {
      const { file } = newFile(t, { fileSize: FILE_SIZE });
      assert.ok(file.appendBytes(Buffer.alloc(FILE_SIZE - 10, 1)));
      assert.equal(file.isAbleToCommit(1000), false);
      assert.ok(file.appendBytes(Buffer.alloc(10, 2)));
      assert.ok(file.isFull());
      assert.equal(file.isAbleToCommit(1000), true);
      assert.equal(file.isAbleToFlush(1000), true, 'a full file may always be flushed');
      assert.equal(await file.commit(1000), FILE_SIZE);
      assert.equal(file.isAbleToCommit(1000), true, 'still full, still true (RocketMQ)');
      assert.equal(file.isAbleToCommit(0), true);
      assert.equal(await file.flush(1000), FILE_SIZE);
      assert.equal(file.isAbleToFlush(0), true);
    });

    it('lets flush(leastPages) and commit(leastPages) do nothing below the threshold', async (t) => {
      const io = new InstrumentedIO();
      const { file } = newFile(t, { fileSize: FILE_SIZE, io });
      assert.ok(file.appendBytes(patternBytes(2 * PAGE + 100, 1)));

      assert.equal(await file.commit(3), 0);
      assert.equal(count(io, 'write'), 0, 'no pwrite below commitLeastPages');
      assert.equal(await file.commit(2), 2 * PAGE + 100);
      assert.equal(count(io, 'write'), 1);

      assert.equal(await file.flush(3), 0);
      assert.equal(count(io, 'datasync-start'), 0, 'no fdatasync below flushLeastPages');
      assert.equal(await file.flush(2), 2 * PAGE + 100);
      assert.equal(count(io, 'datasync-start'), 1);
      assert.equal(await file.flush(0), 2 * PAGE + 100);
      assert.equal(count(io, 'datasync-start'), 1, 'nothing dirty: no fdatasync');
    });
  });

  describe('reads', () => {
    it('only serve committed bytes: getReadPosition() == committedPosition', async (t) => {
      const { file } = newFile(t, { fileSize: 4096 });
      const data = patternBytes(100, 9);
      assert.ok(file.appendBytes(data));
      assert.equal(file.getReadPosition(), 0);
      assert.equal(file.readSync(0, 1), null, 'appended but not committed: not readable');
      assert.equal(await file.selectMappedBuffer(0, 1), null);

      await file.commit(0);
      assert.equal(file.getReadPosition(), 100);
      assert.deepEqual(file.readSync(0, 100), data);
      assert.deepEqual(await file.selectMappedBuffer(0, 100), data);
      assert.deepEqual(await file.selectMappedBuffer(40, 60), data.subarray(40));
      assert.equal(file.readSync(0, 101), null);
      assert.equal(file.readSync(50, 51), null);
      assert.equal(await file.selectMappedBuffer(90, 11), null);
      assert.equal(await file.selectMappedBuffer(100, 1), null);
      assert.equal(file.readSync(-1, 10), null);
      assert.equal(file.readSync(0, 0), null);

      // More appended, not committed: the old limit holds.
      assert.ok(file.appendBytes(patternBytes(50, 10)));
      assert.equal(file.readSync(100, 1), null);
      assert.equal(file.getReadPosition(), 100);
    });
  });

  describe('write-buffer chunks', () => {
    it('never splits a record across chunks and commits the bytes contiguously', async (t) => {
      const { file, pool } = newFile(t, { fileSize: 4096, bufferSize: 100, buffers: 8 });
      const regions: Array<{ buffer: Buffer; offset: number; length: number }> = [];
      const appendVia = (data: Buffer): void => {
        const result = file.appendMessage((target): AppendOutcome => {
          const region = target.reserve(data.length);
          assert.ok(region !== null);
          regions.push({ ...region, length: data.length });
          data.copy(region.buffer, region.offset);
          return { ok: true, wroteBytes: data.length, storeTimestamp: 1 };
        });
        assert.ok(result.ok);
      };
      const records = [60, 30, 60, 100, 1, 99, 45].map((n, i) => patternBytes(n, i));
      for (const record of records) appendVia(record);

      for (const region of regions) {
        assert.equal(region.buffer.length, 100);
        assert.ok(region.offset + region.length <= region.buffer.length, 'a region lies inside one chunk');
      }
      // 60+30 share a chunk; 60 needs a new one; 100 fills a whole one; 1+99 share; 45 a new one.
      assert.deepEqual(
        regions.map((r) => r.offset),
        [0, 60, 0, 0, 0, 1, 0],
      );
      assert.equal(new Set(regions.map((r) => r.buffer)).size, 5);
      assert.equal(pool.borrowedBufferNums(), 5);

      const total = records.reduce((n, r) => n + r.length, 0);
      assert.equal(await file.commit(0), total);
      assert.deepEqual(file.readSync(0, total), Buffer.concat(records));
      assert.deepEqual(fs.readFileSync(file.fileName).subarray(0, total), Buffer.concat(records));
      // Every chunk is committed; only the one still appended to stays out of the pool.
      assert.equal(pool.borrowedBufferNums(), 1);
      assert.equal(file.getWriteBufferBytes(), 100);
    });

    it('keeps appending into the kept chunk after a commit', async (t) => {
      const { file, pool } = newFile(t, { fileSize: 4096, bufferSize: 100, buffers: 2 });
      const a = patternBytes(40, 1);
      const b = patternBytes(30, 2);
      assert.ok(file.appendBytes(a));
      await file.commit(0);
      assert.ok(file.appendBytes(b));
      assert.equal(pool.borrowedBufferNums(), 1, 'b went into the same chunk');
      await file.commit(0);
      assert.deepEqual(file.readSync(0, 70), Buffer.concat([a, b]));
    });

    it('returns chunks to the pool after the commit, and every chunk once the file is full', async (t) => {
      const { file, pool } = newFile(t, { fileSize: 1000, bufferSize: 100, buffers: 4 });
      for (let i = 0; i < 3; i++) assert.ok(file.appendBytes(patternBytes(100, i)));
      assert.equal(pool.borrowedBufferNums(), 3);
      assert.equal(pool.availableBufferNums(), 1);
      await file.commit(0);
      assert.equal(pool.borrowedBufferNums(), 1, 'committed chunks go back, the last one stays');

      for (let i = 3; i < 10; i++) {
        assert.ok(file.appendBytes(patternBytes(100, i)), `append ${i}`);
        await file.commit(0);
      }
      assert.ok(file.isFull());
      assert.equal(pool.borrowedBufferNums(), 0, 'a full, committed file keeps no chunk');
      assert.equal(pool.availableBufferNums(), 4);
      assert.equal(file.getWriteBufferBytes(), 0);
      const expected = Buffer.concat(Array.from({ length: 10 }, (_, i) => patternBytes(100, i)));
      assert.deepEqual(fs.readFileSync(file.fileName), expected);
    });

    it('refuses appends while the pool is exhausted: reserve() returns null', async (t) => {
      const { file, pool } = newFile(t, { fileSize: 4096, bufferSize: 100, buffers: 2 });
      assert.ok(file.appendBytes(patternBytes(60, 1)));
      assert.ok(file.appendBytes(patternBytes(60, 2)));
      assert.equal(pool.availableBufferNums(), 0);

      assert.equal(file.appendBytes(patternBytes(60, 3)), false);
      assert.equal(file.wrotePosition, 120);
      let seen: unknown = 'not called';
      const result = file.appendMessage((target): AppendOutcome => {
        seen = target.reserve(60);
        return { ok: false, wroteBytes: 0, storeTimestamp: 0 };
      });
      assert.equal(result.ok, false);
      assert.equal(seen, null);
      assert.equal(file.wrotePosition, 120);
      // What still fits in the current chunk is accepted.
      assert.ok(file.appendBytes(patternBytes(40, 4)));

      await file.commit(0);
      assert.equal(pool.availableBufferNums(), 1);
      assert.ok(file.appendBytes(patternBytes(60, 3)));
      await file.commit(0);
      assert.deepEqual(
        file.readSync(0, 220),
        Buffer.concat([patternBytes(60, 1), patternBytes(60, 2), patternBytes(40, 4), patternBytes(60, 3)]),
      );
    });

    it('rejects a record larger than one write buffer', (t) => {
      const { file } = newFile(t, { fileSize: 4096, bufferSize: 100, buffers: 2 });
      assert.throws(() => file.appendBytes(Buffer.alloc(101)), /fit in one write buffer/);
      assert.equal(file.wrotePosition, 0);
      assert.equal(file.appendBytes(Buffer.alloc(4097)), false, 'more than the file: refused');
    });

    it('an append whose callback reserved room but failed leaves no trace in the file', async (t) => {
      const { file } = newFile(t, { fileSize: 4096, bufferSize: 100, buffers: 4 });
      const a = patternBytes(10, 1);
      const b = patternBytes(15, 2);
      assert.ok(file.appendBytes(a));
      const failed = file.appendMessage((target): AppendOutcome => {
        const region = target.reserve(20);
        assert.ok(region !== null);
        region.buffer.fill(0xff, region.offset, region.offset + 20);
        return { ok: false, wroteBytes: 0, storeTimestamp: 0 };
      });
      assert.equal(failed.ok, false);
      assert.equal(file.wrotePosition, 10);
      assert.ok(file.appendBytes(b));
      assert.equal(file.wrotePosition, 25);
      await file.commit(0);
      assert.equal(file.committedPosition, 25);
      assert.deepEqual(file.readSync(0, 25), Buffer.concat([a, b]), 'b is where its append said it is');
      assert.deepEqual(
        fs.readFileSync(file.fileName).subarray(25, 64),
        Buffer.alloc(39),
        'nothing past wrote',
      );
    });
  });

  describe('flush', () => {
    it('moves flushedPosition to the committed position captured before the fdatasync', async (t) => {
      const io = new InstrumentedIO();
      const { file } = newFile(t, { fileSize: 4096, io });
      assert.ok(file.appendBytes(patternBytes(100, 1), 11));
      await file.commit(0);
      assert.equal(file.flushedStoreTimestamp, 0);

      const gate = deferred();
      io.hooks.beforeDatasync = () => gate.promise;
      const flushing = file.flush(0);
      await settle();
      assert.equal(count(io, 'datasync-start'), 1);
      // Committed while the sync runs: not covered by it.
      assert.ok(file.appendBytes(patternBytes(50, 2), 22));
      await file.commit(0);
      assert.equal(file.flushedPosition, 0, 'nothing is flushed before fdatasync returns');
      gate.resolve();
      assert.equal(await flushing, 100);
      assert.equal(file.flushedStoreTimestamp, 11);
      io.hooks = {};
      assert.equal(await file.flush(0), 150);
      assert.equal(file.flushedStoreTimestamp, 22);
    });

    it('does not advance on a failed fdatasync and stays failed (poisoned, never retried)', async (t) => {
      const io = new InstrumentedIO();
      const { file } = newFile(t, { fileSize: 4096, io });
      assert.ok(file.appendBytes(patternBytes(100, 1)));
      await file.commit(0);
      io.hooks.beforeDatasync = () => {
        throw systemError('EIO', 'EIO: i/o error, fdatasync');
      };

      let first: unknown;
      await assert.rejects(file.flush(0), (err: unknown) => {
        first = err;
        return hasCode('ERR_FLUSH_FAILED')(err) && (err as Error).cause instanceof Error;
      });
      assert.equal(((first as Error).cause as NodeJS.ErrnoException).code, 'EIO');
      assert.equal(file.flushedPosition, 0);
      assert.equal(file.flushError, first);

      io.hooks = {};
      const syncsBefore = count(io, 'datasync-start');
      for (let i = 0; i < 3; i++) {
        await assert.rejects(file.flush(0), (err: unknown) => err === first);
      }
      // Even with new data committed, and with a healthy disk again.
      assert.ok(file.appendBytes(patternBytes(10, 2)));
      await file.commit(0);
      await assert.rejects(file.flush(0), (err: unknown) => err === first);
      await file.syncCreation();
      assert.equal(count(io, 'datasync-start'), syncsBefore, 'a failed fdatasync is never retried');
      assert.equal(file.flushedPosition, 0);
      assertOrdered(file);
    });

    it('keeps the queue flushedWhere when the file flush fails', async (t) => {
      const io = new InstrumentedIO();
      const dir = tempDir(t);
      const queue = createQueue({
        storePath: dir,
        mappedFileSize: 1024,
        io,
        pool: new WriteBufferPool(1024, 4),
      });
      t.after(() => queue.shutdown());
      const file = queue.getLastMappedFile(0);
      assert.ok(file?.appendBytes(patternBytes(1024, 1)));
      assert.equal(await queue.commit(0), false);
      io.hooks.beforeDatasync = () => {
        throw systemError('EIO');
      };
      await assert.rejects(queue.flush(0), hasCode('ERR_FLUSH_FAILED'));
      assert.equal(queue.flushedWhere, 0);
      io.hooks = {};
      await assert.rejects(queue.flush(0), hasCode('ERR_FLUSH_FAILED'));
      assert.equal(queue.flushedWhere, 0);
    });

    it('never has two fdatasyncs in flight on one file', async (t) => {
      const io = new InstrumentedIO();
      const { file } = newFile(t, { fileSize: 64 * 1024, io });
      const gate = deferred();
      let hookCalls = 0;
      io.hooks.beforeDatasync = () => {
        hookCalls++;
        return hookCalls === 1 ? gate.promise : undefined;
      };

      assert.ok(file.appendBytes(patternBytes(100, 1)));
      await file.commit(0);
      const calls: Array<Promise<unknown>> = [file.syncCreation(), file.flush(0)];
      await settle();
      assert.ok(file.appendBytes(patternBytes(100, 2)));
      await file.commit(0);
      calls.push(file.flush(0), file.flush(0));
      assert.ok(file.appendBytes(patternBytes(100, 3)));
      await file.commit(0);
      calls.push(file.flush(1), file.flush(0));
      await settle();
      assert.equal(count(io, 'datasync-start'), 1, 'the others wait for the blocked fdatasync');

      gate.resolve();
      await Promise.all(calls);
      assert.equal(file.flushedPosition, 300);
      assert.ok(count(io, 'datasync-start') >= 2, 'later flushes did sync the newer bytes');
      const max = maxConcurrentDatasyncs(io.events);
      assert.equal(max.get(file.fileName), 1);
    });
  });

  describe('commit', () => {
    it('fails with ERR_DISK_FULL on ENOSPC, keeps committedPosition, and a later commit writes the same bytes', async (t) => {
      const io = new InstrumentedIO();
      const { file, pool } = newFile(t, { fileSize: 4096, bufferSize: 1024, buffers: 4, io });
      const data = patternBytes(300, 5);
      assert.ok(file.appendBytes(data));
      const attempts: Array<[number, number]> = [];
      io.hooks.beforeWrite = (_path, position, length) => {
        attempts.push([position, length]);
        throw systemError('ENOSPC', 'ENOSPC: no space left on device, write');
      };
      await assert.rejects(
        file.commit(0),
        (err: unknown) =>
          hasCode('ERR_DISK_FULL')(err) && ((err as Error).cause as NodeJS.ErrnoException).code === 'ENOSPC',
      );
      assert.deepEqual(positions(file), [300, 0, 0]);
      assert.equal(file.readSync(0, 1), null);
      assert.equal(pool.borrowedBufferNums(), 1, 'the buffered bytes are kept');
      assert.equal(count(io, 'write'), 0);

      io.hooks = {};
      assert.equal(await file.commit(0), 300);
      const writes = io.events.filter((e) => e.op === 'write');
      assert.deepEqual(
        writes.map((e) => [e.from, e.to]),
        [[0, 300]],
      );
      assert.deepEqual(attempts, [[0, 300]], 'the retry wrote the range the failed commit tried');
      assert.deepEqual(file.readSync(0, 300), data);
      assert.deepEqual(fs.readFileSync(file.fileName).subarray(0, 300), data);
    });

    it('fails with ERR_COMMIT_FAILED on other write errors and recovers the same way', async (t) => {
      const io = new InstrumentedIO();
      const { file } = newFile(t, { fileSize: 4096, io });
      const a = patternBytes(100, 1);
      assert.ok(file.appendBytes(a));
      io.hooks.beforeWrite = () => {
        throw systemError('EIO');
      };
      await assert.rejects(file.commit(0), hasCode('ERR_COMMIT_FAILED'));
      assert.equal(file.committedPosition, 0);
      // Appends continue into the write buffer meanwhile.
      const b = patternBytes(50, 2);
      assert.ok(file.appendBytes(b));
      io.hooks = {};
      assert.equal(await file.commit(0), 150);
      assert.deepEqual(file.readSync(0, 150), Buffer.concat([a, b]));
      assert.equal(await file.flush(0), 150);
    });

    it('runs one pwrite at a time per file', async (t) => {
      const io = new InstrumentedIO();
      const { file } = newFile(t, { fileSize: 4096, bufferSize: 1024, buffers: 4, io });
      const gate = deferred();
      let started = 0;
      io.hooks.beforeWrite = () => {
        started++;
        return started === 1 ? gate.promise : undefined;
      };
      assert.ok(file.appendBytes(patternBytes(100, 1)));
      const first = file.commit(0);
      await settle();
      assert.ok(file.appendBytes(patternBytes(100, 2)));
      const second = file.commit(0);
      const third = file.commit(0);
      await settle();
      assert.equal(started, 1, 'later commits wait for the running pwrite');
      gate.resolve();
      assert.deepEqual(await Promise.all([first, second, third]), [100, 200, 200]);
      const writes = io.events.filter((e) => e.op === 'write').map((e) => [e.from, e.to]);
      assert.deepEqual(writes, [
        [0, 100],
        [100, 200],
      ]);
    });
  });

  describe('references and destroy (MappedFileTest)', () => {
    it('cannot be destroyed while a reader holds it; can be once released', async (t) => {
      const { file } = newFile(t, { fileSize: 4096 });
      const data = Buffer.from('RocketMQ is a message store');
      assert.ok(file.appendBytes(data));
      await file.commit(0);
      assert.equal(file.getRefCount(), 1, 'the owner reference');

      assert.ok(file.hold(), 'a reader takes a reference');
      assert.equal(file.getRefCount(), 2);
      assert.deepEqual(await file.selectMappedBuffer(0, data.length), data);
      assert.equal(file.getRefCount(), 2, 'a completed read gives its own reference back');

      assert.equal(file.destroy(60 * 1000), false);
      assert.equal(file.isAvailable(), false);
      assert.equal(file.isCleanupOver(), false);
      assert.ok(fs.existsSync(file.fileName), 'the held file is still there');
      assert.equal(file.hold(), false, 'no new references after shutdown');
      assert.equal(await file.selectMappedBuffer(0, 1), null);
      assert.equal(file.readSync(0, 1), null);

      file.release();
      assert.ok(file.isCleanupOver());
      assert.equal(file.destroy(60 * 1000), true);
      assert.ok(!fs.existsSync(file.fileName));
    });

    it('is destroyed at once when nobody holds it, and forcibly after intervalForcibly', (t) => {
      const a = newFile(t, { fileSize: 4096 }).file;
      assert.equal(a.destroy(60 * 1000), true);
      assert.ok(!fs.existsSync(a.fileName));

      const b = newFile(t, { fileSize: 4096 }).file;
      assert.ok(b.hold());
      assert.equal(b.destroy(0), false, 'the first destroy only shuts it down');
      assert.equal(b.destroy(0), true, 'intervalForcibly 0 has passed: forced');
      assert.ok(!fs.existsSync(b.fileName));
      b.release(); // the reader's late release must not break anything
      assert.ok(b.isCleanupOver());
    });

    it('returns its write buffer chunks to the pool when it is cleaned up', (t) => {
      const { file, pool } = newFile(t, { fileSize: 4096, bufferSize: 100, buffers: 3 });
      assert.ok(file.appendBytes(Buffer.alloc(80)));
      assert.ok(file.appendBytes(Buffer.alloc(80)));
      assert.equal(pool.borrowedBufferNums(), 2);
      assert.equal(file.destroy(0), true);
      assert.equal(pool.borrowedBufferNums(), 0);
    });
  });

  describe('recovery helpers', () => {
    it('discardAfter(pos) makes every byte after pos read as zero, durably', async (t) => {
      const io = new InstrumentedIO();
      const fileSize = 8192;
      const { file } = newFile(t, { fileSize, io });
      const content = patternBytes(fileSize, 4);
      for (let off = 0; off < fileSize; off += 1024)
        assert.ok(file.appendBytes(content.subarray(off, off + 1024)));
      await file.commit(0);
      await file.flush(0);
      const syncsBefore = count(io, 'datasync-start', file.fileName);

      file.discardAfter(100);
      assert.equal(fs.statSync(file.fileName).size, fileSize, 'still pre-sized');
      const onDisk = fs.readFileSync(file.fileName);
      assert.deepEqual(onDisk.subarray(0, 100), content.subarray(0, 100));
      assert.deepEqual(onDisk.subarray(100), Buffer.alloc(fileSize - 100));
      assert.deepEqual(file.readSync(100, 200), Buffer.alloc(200));
      assert.ok(count(io, 'datasync-start', file.fileName) > syncsBefore, 'the discard is synced');
    });

    it('refuses discardAfter and setPositions over bytes still in the write buffer', (t) => {
      const { file } = newFile(t, { fileSize: 4096 });
      assert.ok(file.appendBytes(Buffer.alloc(10)));
      assert.throws(() => file.discardAfter(0), /discard only before appends resume/);
      assert.throws(() => file.setPositions(0), /buffered bytes/);
      assert.equal(file.wrotePosition, 10);
    });

    it('setPositions moves all three positions and appends resume there', async (t) => {
      const { file, pool } = newFile(t, { fileSize: 4096, bufferSize: 1024, buffers: 2 });
      assert.ok(file.appendBytes(patternBytes(500, 1)));
      await file.commit(0);
      await file.flush(0);
      file.setPositions(200);
      assert.deepEqual(positions(file), [200, 200, 200]);
      assert.equal(pool.borrowedBufferNums(), 0);
      const tail = patternBytes(30, 2);
      assert.ok(file.appendBytes(tail));
      await file.commit(0);
      assert.deepEqual(file.readSync(0, 230), Buffer.concat([patternBytes(500, 1).subarray(0, 200), tail]));
    });
  });
});
