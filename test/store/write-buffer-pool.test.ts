import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { silentLogger } from '../../src/store/index.js';
import { AllocateMappedFileService } from '../../src/store/mapped-file/allocate-mapped-file-service.js';
import { ReferenceResource } from '../../src/store/mapped-file/reference-resource.js';
import {
  TransientStorePool,
  WRITE_BUFFER_SIZE_DEFAULT_BYTES,
  writeBufferSizeFor,
} from '../../src/store/mapped-file/transient-store-pool.js';
import { WriteBufferPool } from '../../src/store/mapped-file/write-buffer-pool.js';
import { tempDir, tick, waitUntil } from '../support/helpers.js';
import { InstrumentedIO } from '../support/instrumented-io.js';
import { createQueue, patternBytes, segmentPath } from '../support/mapped-file-helpers.js';

/** Write buffer pools, AllocateMappedFileService and ReferenceResource (store reference §4.2, §4.4, §4.5). */

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('WriteBufferPool', () => {
  it('lends at most bufferCountMax buffers, then null', () => {
    const pool = new WriteBufferPool(64, 3);
    assert.equal(pool.availableBufferNums(), 3);
    const borrowed: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const b = pool.borrowBuffer();
      assert.ok(b !== null, `buffer ${i}`);
      assert.equal(b.length, 64);
      borrowed.push(b);
      assert.equal(pool.availableBufferNums(), 2 - i);
      assert.equal(pool.borrowedBufferNums(), i + 1);
    }
    assert.equal(new Set(borrowed).size, 3, 'distinct buffers');
    assert.equal(pool.borrowBuffer(), null);
    assert.equal(pool.borrowBuffer(), null);
    assert.equal(pool.borrowedBufferNums(), 3);

    pool.returnBuffer(borrowed[0] as Buffer);
    assert.equal(pool.availableBufferNums(), 1);
    assert.equal(pool.borrowBuffer(), borrowed[0]);
    assert.equal(pool.borrowBuffer(), null);
  });

  it('hands back the most recently returned buffer first (LIFO)', () => {
    const pool = new WriteBufferPool(16, 4);
    const a = pool.borrowBuffer() as Buffer;
    const b = pool.borrowBuffer() as Buffer;
    const c = pool.borrowBuffer() as Buffer;
    pool.returnBuffer(a);
    pool.returnBuffer(c);
    pool.returnBuffer(b);
    assert.equal(pool.borrowBuffer(), b);
    assert.equal(pool.borrowBuffer(), c);
    assert.equal(pool.borrowBuffer(), a);
  });

  it('allocates lazily, reuses returned buffers, and init() pre-allocates every buffer', (t) => {
    const alloc = t.mock.method(Buffer, 'allocUnsafeSlow');
    const lazy = new WriteBufferPool(32, 3);
    assert.equal(alloc.mock.callCount(), 0, 'nothing allocated up front');
    const first = lazy.borrowBuffer() as Buffer;
    assert.equal(alloc.mock.callCount(), 1);
    lazy.returnBuffer(first);
    assert.equal(lazy.borrowBuffer(), first, 'a returned buffer is reused');
    assert.equal(alloc.mock.callCount(), 1, 'no allocation for a reused buffer');

    alloc.mock.resetCalls();
    const eager = new WriteBufferPool(32, 3);
    eager.init();
    assert.equal(alloc.mock.callCount(), 3);
    eager.init();
    assert.equal(alloc.mock.callCount(), 3, 'a second init() allocates nothing more');
    assert.equal(eager.availableBufferNums(), 3);
    assert.equal(eager.borrowedBufferNums(), 0);
    for (let i = 0; i < 3; i++) assert.ok(eager.borrowBuffer() !== null);
    assert.equal(eager.borrowBuffer(), null);
    assert.equal(alloc.mock.callCount(), 3, 'borrowing after init() never allocates');
  });

  it('rejects buffers it did not lend and bad sizes', () => {
    const pool = new WriteBufferPool(16, 2);
    assert.throws(() => pool.returnBuffer(Buffer.alloc(16)), /more buffers returned than borrowed/);
    const b = pool.borrowBuffer() as Buffer;
    assert.throws(() => pool.returnBuffer(Buffer.alloc(8)), /must come from this pool/);
    pool.returnBuffer(b);
    assert.throws(() => pool.returnBuffer(b), /more buffers returned than borrowed/);
    assert.equal(pool.availableBufferNums(), 2);

    assert.throws(() => new WriteBufferPool(0, 1), /buffer size/);
    assert.throws(() => new WriteBufferPool(1.5, 1), /buffer size/);
    assert.throws(() => new WriteBufferPool(16, 0), /buffer count/);
  });

  it('TransientStorePool has the same bounds and always commits for real', (t) => {
    const alloc = t.mock.method(Buffer, 'allocUnsafeSlow');
    const pool = new TransientStorePool(128, 5);
    assert.ok(pool instanceof WriteBufferPool);
    assert.equal(pool.isRealCommit, true);
    pool.init();
    assert.equal(alloc.mock.callCount(), 5);
    assert.equal(pool.availableBufferNums(), 5);
    const out = Array.from({ length: 5 }, () => pool.borrowBuffer());
    assert.ok(out.every((b) => b !== null && b.length === 128));
    assert.equal(pool.borrowBuffer(), null);
    assert.equal(pool.availableBufferNums(), 0);
    pool.returnBuffer(out[4] as Buffer);
    pool.returnBuffer(out[2] as Buffer);
    assert.equal(pool.borrowBuffer(), out[2]);
  });
});

describe('writeBufferSizeFor', () => {
  it('follows the chunk size rules', () => {
    assert.equal(WRITE_BUFFER_SIZE_DEFAULT_BYTES, 16 * MiB);
    // The default chunk when the largest record is smaller.
    assert.equal(writeBufferSizeFor(GiB, 4 * MiB + 512), 16 * MiB);
    // A chunk holds the largest record.
    assert.equal(writeBufferSizeFor(GiB, 32 * MiB), 32 * MiB);
    // Never larger than a segment.
    assert.equal(writeBufferSizeFor(8 * MiB, 4 * MiB), 8 * MiB);
    assert.equal(writeBufferSizeFor(1024, 10), 1024);
    assert.equal(writeBufferSizeFor(16 * MiB, 16 * MiB), 16 * MiB);
  });

  it('is at most a segment and holds the largest record whenever a segment can', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 * GiB }),
        fc.integer({ min: 1, max: 2 * GiB }),
        (size, record) => {
          const chunk = writeBufferSizeFor(size, record);
          assert.ok(chunk <= size);
          assert.ok(chunk >= Math.min(size, record));
          assert.ok(chunk >= Math.min(size, WRITE_BUFFER_SIZE_DEFAULT_BYTES));
          assert.ok(Number.isInteger(chunk) && chunk > 0);
        },
      ),
    );
  });
});

describe('AllocateMappedFileService', () => {
  const FILE_SIZE = 1024;

  function setup(t: { after: (fn: () => void | Promise<void>) => void }) {
    const dir = tempDir(t);
    const io = new InstrumentedIO();
    const allocator = new AllocateMappedFileService(io, silentLogger);
    const queue = createQueue({
      storePath: dir,
      mappedFileSize: FILE_SIZE,
      io,
      pool: new WriteBufferPool(FILE_SIZE, 8),
      allocator,
    });
    t.after(async () => {
      await allocator.shutdown();
      queue.shutdown();
    });
    const opens = (offset: number) =>
      io.events.filter((e) => e.op === 'open' && e.path === segmentPath(dir, offset));
    return { dir, io, allocator, queue, opens };
  }

  function fillLast(queue: ReturnType<typeof createQueue>, seed: number): void {
    const last = queue.getLastMappedFile();
    assert.ok(last !== null);
    assert.ok(last.appendBytes(patternBytes(FILE_SIZE - last.wrotePosition, seed)));
    assert.ok(last.isFull());
  }

  it('pre-creates the next segment in the background and hands it out on the next roll', async (t) => {
    const { dir, io, allocator, queue, opens } = setup(t);
    const first = queue.getLastMappedFile(0);
    assert.equal(first?.fileFromOffset, 0);
    assert.equal(queue.getMappedFiles().length, 1);

    await waitUntil(() => allocator.readyFileCount() === 1, 'segment 1024 to be pre-created');
    assert.equal(fs.statSync(segmentPath(dir, FILE_SIZE)).size, FILE_SIZE, 'pre-created at full size');
    assert.equal(queue.getMappedFiles().length, 1, 'a pre-created segment is not in the queue yet');
    await waitUntil(
      () => io.events.some((e) => e.op === 'datasync-end' && e.path === segmentPath(dir, FILE_SIZE)),
      'the pre-created segment to be synced',
    );
    assert.equal(opens(FILE_SIZE).length, 1);

    fillLast(queue, 1);
    const rollSeq = io.nextSeq();
    const second = queue.getLastMappedFile(0);
    assert.equal(second?.fileFromOffset, FILE_SIZE);
    assert.equal(opens(FILE_SIZE).length, 1, 'the roll created no new file');
    assert.ok(
      (opens(FILE_SIZE)[0]?.seq ?? Number.POSITIVE_INFINITY) < rollSeq,
      'the file was opened before the roll',
    );
    assert.equal(allocator.readyFileCount(), 0, 'handed out');

    // The roll scheduled the next-next segment.
    await waitUntil(() => allocator.readyFileCount() === 1, 'segment 2048 to be pre-created');
    assert.ok(fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));
    assert.deepEqual(
      queue.getMappedFiles().map((f) => f.fileFromOffset),
      [0, FILE_SIZE],
    );

    // The handed-out segment works like any other.
    fillLast(queue, 2);
    while (!(await queue.commit(0))) {}
    assert.deepEqual(fs.readFileSync(segmentPath(dir, FILE_SIZE)), patternBytes(FILE_SIZE, 2));
  });

  it('shutdown deletes pre-created segments that were never handed out, and stops pre-creating', async (t) => {
    const { dir, allocator, queue, opens } = setup(t);
    queue.getLastMappedFile(0);
    fillLast(queue, 1);
    queue.getLastMappedFile(0);
    await waitUntil(() => allocator.readyFileCount() === 1, 'segment 2048 to be pre-created');
    assert.ok(fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));

    await allocator.shutdown();
    assert.equal(allocator.readyFileCount(), 0);
    assert.ok(!fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)), 'the unused segment is deleted');
    assert.ok(fs.existsSync(segmentPath(dir, 0)), 'handed-out segments stay');
    assert.ok(fs.existsSync(segmentPath(dir, FILE_SIZE)));

    // After shutdown a roll still works (created in the put path) but nothing is pre-created.
    fillLast(queue, 2);
    assert.equal(queue.getLastMappedFile(0)?.fileFromOffset, 2 * FILE_SIZE);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(allocator.readyFileCount(), 0);
    assert.ok(!fs.existsSync(segmentPath(dir, 3 * FILE_SIZE)));
    assert.equal(opens(3 * FILE_SIZE).length, 0);
  });

  it('shutdown right after a roll waits for the scheduled pre-creation and leaves no file behind', async (t) => {
    const { dir, allocator, queue } = setup(t);
    queue.getLastMappedFile(0);
    // The pre-creation of 1024 is scheduled but has not run yet.
    await allocator.shutdown();
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(allocator.readyFileCount(), 0);
    assert.deepEqual(fs.readdirSync(dir), [segmentPath(dir, 0).slice(dir.length + 1)]);
  });

  it('lets the put path create the file itself when it outruns the background', async (t) => {
    const { dir, allocator, queue, opens } = setup(t);
    queue.getLastMappedFile(0);
    // Roll before the scheduled pre-creation of 1024 has had a chance to run.
    fillLast(queue, 1);
    assert.equal(queue.getLastMappedFile(0)?.fileFromOffset, FILE_SIZE);
    await waitUntil(() => allocator.readyFileCount() === 1, 'segment 2048 to be pre-created');
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(opens(FILE_SIZE).length, 1, 'segment 1024 was created once');
    assert.equal(allocator.readyFileCount(), 1, 'only 2048 is waiting');
    assert.ok(fs.existsSync(segmentPath(dir, 2 * FILE_SIZE)));
    fillLast(queue, 2);
    assert.equal(queue.getLastMappedFile(0)?.fileFromOffset, 2 * FILE_SIZE);
    assert.equal(opens(2 * FILE_SIZE).length, 1);
  });
});

class TestResource extends ReferenceResource {
  cleanups: number[] = [];

  protected cleanup(currentRef: number): boolean {
    this.cleanups.push(currentRef);
    return true;
  }
}

describe('ReferenceResource', () => {
  it('counts references and cleans up when the last one is released after shutdown', () => {
    const r = new TestResource();
    assert.equal(r.getRefCount(), 1);
    assert.ok(r.isAvailable());
    assert.ok(r.hold());
    assert.ok(r.hold());
    assert.equal(r.getRefCount(), 3);
    r.release();
    assert.equal(r.getRefCount(), 2);

    r.shutdown(60 * 1000, 1000);
    assert.equal(r.isAvailable(), false);
    assert.equal(r.getRefCount(), 1, 'shutdown drops the owner reference');
    assert.deepEqual(r.cleanups, []);
    assert.equal(r.isCleanupOver(), false);

    r.release();
    assert.deepEqual(r.cleanups, [0]);
    assert.ok(r.isCleanupOver());
  });

  it('refuses hold() after shutdown and leaves the count alone', () => {
    const r = new TestResource();
    assert.ok(r.hold());
    r.shutdown(1000, 0);
    assert.equal(r.hold(), false);
    assert.equal(r.getRefCount(), 1);
    r.release();
    assert.equal(r.hold(), false, 'nor after cleanup');
    assert.equal(r.getRefCount(), 0);
  });

  it('cleans up at once when nobody holds it, only once', () => {
    const r = new TestResource();
    r.shutdown(1000, 0);
    assert.deepEqual(r.cleanups, [0]);
    assert.ok(r.isCleanupOver());
    r.shutdown(1000, 5000);
    assert.deepEqual(r.cleanups, [0]);
  });

  it('forces the cleanup once intervalForcibly has passed since the first shutdown', () => {
    const r = new TestResource();
    assert.ok(r.hold()); // a reader that never releases
    const t0 = 10_000;
    r.shutdown(1000, t0);
    assert.equal(r.cleanups.length, 0);
    r.shutdown(1000, t0 + 999);
    assert.equal(r.cleanups.length, 0, 'not before intervalForcibly');
    assert.equal(r.isCleanupOver(), false);

    r.shutdown(1000, t0 + 1000);
    assert.equal(r.cleanups.length, 1, 'forced');
    assert.ok((r.cleanups[0] as number) <= 0);
    assert.ok(r.isCleanupOver());
    assert.ok(r.getRefCount() < 0);

    // The reader's late release and further shutdowns do not clean up again.
    r.release();
    r.shutdown(1000, t0 + 5000);
    assert.equal(r.cleanups.length, 1);
    assert.ok(r.isCleanupOver());
  });
});
