import assert from 'node:assert/strict';
import path from 'node:path';
import { errnoCode, isDiskFullError, StoreError } from '../errors.js';
import type { StoreFileHandle, StoreIO } from '../io/store-io.js';
import { NumberPairQueue } from '../util/fixed-deque.js';
import { ReferenceResource } from './reference-resource.js';
import type { WriteBufferPool } from './write-buffer-pool.js';

/**
 * One pre-sized segment file, named by the 20-digit offset of its first byte in the whole log
 * (RocketMQ's `DefaultMappedFile`, store reference §4.3). Node has no mmap, so the segment keeps
 * write-buffer chunks instead (DESIGN.md §4):
 *
 *   file:      |<------------------------- fileSize ------------------------->|
 *              0          flushed        committed           wrote
 *              |=============|================|==================|............|
 *               fdatasync'ed   pwrite'n to the  only in the write
 *                              file (readable)  buffer chunks
 *
 *   chunks:                              [chunk k: fileStart .. fileStart+used) ...
 *
 * - append (synchronous, in the put section): the record is written into the last chunk at
 *   `wrotePosition`; a record never spans chunks, so a new chunk starts where the old one has no
 *   room. A chunk is borrowed from the pool; when none is free the append fails (busy).
 * - commit: pwrite of `[committedPosition, wrotePosition)` from the chunks, then
 *   `committedPosition = wrotePosition` (the value captured before the write). Chunks whose bytes
 *   are all committed go back to the pool, except the one still being appended to.
 * - flush: fdatasync, then `flushedPosition = committedPosition` (captured before the call), and
 *   only if the sync succeeded (RocketMQ #9713). A failed sync poisons the file: every later
 *   flush fails with the same error, because Linux may have dropped the dirty pages.
 * - read: pread, only below `getReadPosition()` = `committedPosition`.
 *
 * Invariant, asserted where positions move: wrote >= committed >= flushed, all within the file.
 */

/** RocketMQ counts dirty data in OS pages of this size (`isAbleToFlush`, `isAbleToCommit`). */
export const OS_PAGE_SIZE_BYTES = 4096;

interface WriteChunk {
  readonly buffer: Buffer;
  /** Position in the file of `buffer[0]`. */
  readonly fileStart: number;
  /** Bytes of `buffer` holding data. */
  used: number;
}

/**
 * Where the append callback writes: `length` bytes at `buffer[offset]`. Valid until the next
 * reservation (MappedFile hands out the same object each time).
 */
export interface WritableRegion {
  readonly buffer: Buffer;
  readonly offset: number;
}

/** What the append callback sees of the segment (RocketMQ hands it a positioned ByteBuffer). */
export interface AppendTarget {
  /** Reserves `length` bytes at the current write position, or null when no write buffer is free. */
  reserve(length: number): WritableRegion | null;
}

/** Result of the append callback: how far the write position moves and when the record was stored. */
export interface AppendOutcome {
  readonly ok: boolean;
  /** Bytes the write position advances by (for END_OF_FILE, the rest of the file). */
  readonly wroteBytes: number;
  readonly storeTimestamp: number;
  /** True for the BLANK that ends the file: it stores no message, so no timestamp moves. */
  readonly endOfFile?: boolean;
}

export class MappedFile extends ReferenceResource implements AppendTarget {
  readonly fileName: string;
  readonly fileFromOffset: number;
  readonly fileSize: number;
  /** True when this was the first file created in its queue (consume queues use it). */
  firstCreateInQueue = false;

  readonly #io: StoreIO;
  readonly #file: StoreFileHandle;
  readonly #pool: WriteBufferPool;
  readonly #chunks: WriteChunk[] = [];
  #wrotePosition = 0;
  #committedPosition = 0;
  #flushedPosition = 0;
  /** Store timestamp of the last appended record. */
  #storeTimestamp = 0;
  /** Store timestamp of the last record below `committedPosition` / `flushedPosition`. */
  #committedStoreTimestamp = 0;
  #flushedStoreTimestamp = 0;
  /**
   * End position and store timestamp of every append not yet committed, oldest first. A commit
   * may stop at any append boundary; this tells it which timestamp the committed bytes end with.
   */
  readonly #appendEnds = new NumberPairQueue(256);
  #commitInFlight: Promise<void> | null = null;
  #flushInFlight: Promise<void> | null = null;
  /** The fdatasync failure that stopped this file, if any. */
  #flushError: StoreError | null = null;
  /** A new file's directory entry is made durable by its first flush. */
  #directorySynced: boolean;
  #closed = false;

  private constructor(
    io: StoreIO,
    file: StoreFileHandle,
    fileName: string,
    fileSize: number,
    pool: WriteBufferPool,
  ) {
    super();
    this.#io = io;
    this.#file = file;
    this.#pool = pool;
    this.fileName = fileName;
    this.fileSize = fileSize;
    this.fileFromOffset = Number(path.basename(fileName));
    assert.ok(Number.isSafeInteger(this.fileFromOffset), `segment name ${fileName} is not an offset`);
    this.#directorySynced = true;
  }

  /**
   * Creates a new segment, pre-sized to `fileSize` (sparse, zero-filled) as RocketMQ's are. The
   * open and the ftruncate are synchronous and cheap; the directory entry becomes durable on the
   * first flush (or earlier, through `syncCreation`).
   */
  static create(io: StoreIO, fileName: string, fileSize: number, pool: WriteBufferPool): MappedFile {
    const file = io.openSync(fileName, 'create-new');
    try {
      file.truncateSync(fileSize);
    } catch (err) {
      file.closeSync();
      io.unlinkSync(fileName);
      throw err;
    }
    const mappedFile = new MappedFile(io, file, fileName, fileSize, pool);
    mappedFile.#directorySynced = false;
    return mappedFile;
  }

  /** Opens an existing segment; positions start at the end, recovery moves them back. */
  static open(io: StoreIO, fileName: string, fileSize: number, pool: WriteBufferPool): MappedFile {
    const file = io.openSync(fileName, 'read-write');
    const mappedFile = new MappedFile(io, file, fileName, fileSize, pool);
    mappedFile.#wrotePosition = fileSize;
    mappedFile.#committedPosition = fileSize;
    mappedFile.#flushedPosition = fileSize;
    return mappedFile;
  }

  get wrotePosition(): number {
    return this.#wrotePosition;
  }

  get committedPosition(): number {
    return this.#committedPosition;
  }

  get flushedPosition(): number {
    return this.#flushedPosition;
  }

  /** Store timestamp of the last appended record. */
  get storeTimestamp(): number {
    return this.#storeTimestamp;
  }

  /** Store timestamp of the last record known durable (below `flushedPosition`). */
  get flushedStoreTimestamp(): number {
    return this.#flushedStoreTimestamp;
  }

  /** The fdatasync error that stopped this file, or null. */
  get flushError(): StoreError | null {
    return this.#flushError;
  }

  /** The highest position readers may see: only bytes that reached the file. */
  getReadPosition(): number {
    return this.#committedPosition;
  }

  isFull(): boolean {
    return this.#wrotePosition === this.fileSize;
  }

  /** True while bytes wait in the write buffer. */
  hasUncommittedData(): boolean {
    return this.#wrotePosition > this.#committedPosition;
  }

  /** Bytes of write buffer this segment holds now. */
  getWriteBufferBytes(): number {
    let n = 0;
    for (const chunk of this.#chunks) n += chunk.buffer.length;
    return n;
  }

  reserve(length: number): WritableRegion | null {
    assert.ok(
      length > 0 && this.#wrotePosition + length <= this.fileSize,
      'a reservation must fit in the file',
    );
    const last = this.#chunks.at(-1);
    if (last !== undefined && last.fileStart + last.used === this.#wrotePosition) {
      if (last.used + length <= last.buffer.length) {
        return this.#regionAt(last, length);
      }
    }
    if (length > this.#pool.bufferSizeBytes) assert.fail('a record must fit in one write buffer');
    const buffer = this.#pool.borrowBuffer();
    if (buffer === null) return null;
    const chunk: WriteChunk = { buffer, fileStart: this.#wrotePosition, used: 0 };
    this.#chunks.push(chunk);
    return this.#regionAt(chunk, length);
  }

  /**
   * One region object per file, rewritten by every reservation: the append callback uses it at
   * once, and the put path then allocates nothing for it.
   */
  readonly #region: { buffer: Buffer; offset: number } = { buffer: Buffer.alloc(0), offset: 0 };

  #regionAt(chunk: WriteChunk, length: number): WritableRegion {
    const region = this.#region;
    region.buffer = chunk.buffer;
    region.offset = chunk.used;
    chunk.used += length;
    return region;
  }

  /**
   * RocketMQ's `appendMessagesInner`: hands the callback this file as its target and the room
   * left (`maxBlank`), then moves the write position by what the callback wrote.
   */
  appendMessage<T extends AppendOutcome>(doAppend: (target: AppendTarget, maxBlank: number) => T): T {
    if (this.#wrotePosition >= this.fileSize) assert.fail('append to a full segment');
    const chunkCount = this.#chunks.length;
    const lastUsed = this.#chunks.at(-1)?.used ?? 0;
    let result: T;
    try {
      result = doAppend(this, this.fileSize - this.#wrotePosition);
    } catch (err) {
      this.#undoReservations(chunkCount, lastUsed);
      throw err;
    }
    if (!result.ok) {
      // Room a failed callback reserved must not linger: the next record goes exactly there.
      this.#undoReservations(chunkCount, lastUsed);
      return result;
    }
    this.#wrotePosition += result.wroteBytes;
    if (result.endOfFile !== true) this.#storeTimestamp = result.storeTimestamp;
    this.#appendEnds.push(this.#wrotePosition, this.#storeTimestamp);
    this.#checkPositions();
    const last = this.#chunks.at(-1);
    if (last !== undefined && last.fileStart + last.used > this.#wrotePosition)
      assert.fail('buffered bytes end by wrotePosition');
    return result;
  }

  #undoReservations(chunkCount: number, lastUsed: number): void {
    while (this.#chunks.length > chunkCount) {
      const chunk = this.#chunks.pop() as WriteChunk;
      this.#pool.returnBuffer(chunk.buffer);
    }
    const last = this.#chunks.at(-1);
    if (last !== undefined) last.used = lastUsed;
  }

  /** Raw append of bytes (consume queue units); false when it does not fit or no buffer is free. */
  appendBytes(data: Buffer, storeTimestamp = 0): boolean {
    if (this.#wrotePosition + data.length > this.fileSize) return false;
    const region = this.reserve(data.length);
    if (region === null) return false;
    // TypedArray.set: for the 20-byte units of a consume queue cheaper than Buffer.copy's native call.
    region.buffer.set(data, region.offset);
    this.#wrotePosition += data.length;
    if (storeTimestamp > 0) this.#storeTimestamp = storeTimestamp;
    // Raw appends (consume queue units, committed whole) need no boundary per append: one entry
    // per run of the same store time keeps a rebuild of a million units from growing the list.
    const ends = this.#appendEnds;
    if (ends.size > 0 && ends.secondAt(ends.size - 1) === this.#storeTimestamp)
      ends.setLastFirst(this.#wrotePosition);
    else ends.push(this.#wrotePosition, this.#storeTimestamp);
    this.#checkPositions();
    return true;
  }

  /** RocketMQ's rule: a full file, at least `leastPages` dirty pages, or (least 0) anything dirty. */
  isAbleToCommit(commitLeastPages: number): boolean {
    return this.#isAble(this.#committedPosition, this.#wrotePosition, commitLeastPages);
  }

  isAbleToFlush(flushLeastPages: number): boolean {
    return this.#isAble(this.#flushedPosition, this.getReadPosition(), flushLeastPages);
  }

  #isAble(done: number, target: number, leastPages: number): boolean {
    if (this.isFull()) return true;
    if (leastPages > 0) {
      return Math.floor(target / OS_PAGE_SIZE_BYTES) - Math.floor(done / OS_PAGE_SIZE_BYTES) >= leastPages;
    }
    return target > done;
  }

  /**
   * Writes the buffered bytes to the file: all of them, or with `writeSizeMaxBytes` only as many
   * whole appends as fit in that many bytes (at least one), so a long backlog is written in pieces
   * and the puts of the first piece can be answered while the next is written. A write of at most
   * `syncWriteMaxBytes` is made synchronously on the event loop, others on the thread pool. One commit runs at
   * a time per file; a caller that arrives while one is running waits for it and then decides for
   * itself. Throws `StoreError` (`ERR_COMMIT_FAILED` or `ERR_DISK_FULL`) and leaves
   * `committedPosition` unchanged on failure.
   */
  async commit(
    commitLeastPages: number,
    writeSizeMaxBytes = Number.POSITIVE_INFINITY,
    syncWriteMaxBytes = 0,
  ): Promise<number> {
    while (this.#commitInFlight !== null) await this.#commitInFlight.catch(() => undefined);
    if (this.isAbleToCommit(commitLeastPages) && this.hold()) {
      const inFlight = this.#commit0(writeSizeMaxBytes, syncWriteMaxBytes);
      this.#commitInFlight = inFlight;
      try {
        await inFlight;
      } finally {
        this.#commitInFlight = null;
        this.release();
      }
    }
    return this.#committedPosition;
  }

  async #commit0(writeSizeMaxBytes: number, syncWriteMaxBytes: number): Promise<void> {
    const from = this.#committedPosition;
    // Commit up to an append boundary: everything, or the appends that fit in the size cap.
    const ends = this.#appendEnds;
    let write = this.#wrotePosition;
    let storeTimestamp = this.#committedStoreTimestamp;
    let covered = 0;
    while (covered < ends.size) {
      const end = ends.firstAt(covered);
      if (covered > 0 && end - from > writeSizeMaxBytes) break;
      storeTimestamp = ends.secondAt(covered);
      write = end;
      covered++;
    }
    const slices: Buffer[] = [];
    for (const chunk of this.#chunks) {
      const start = Math.max(from, chunk.fileStart);
      const end = Math.min(write, chunk.fileStart + chunk.used);
      if (end > start) slices.push(chunk.buffer.subarray(start - chunk.fileStart, end - chunk.fileStart));
    }
    if (slices.length > 0) {
      try {
        if (write - from <= syncWriteMaxBytes) {
          // Small enough to write on the event loop: cheaper than the thread-pool round trip.
          let position = from;
          for (const slice of slices) {
            this.#file.writeSync(slice, position);
            position += slice.length;
          }
        } else {
          await this.#file.write(slices, from);
        }
      } catch (err) {
        const code = isDiskFullError(err) ? 'ERR_DISK_FULL' : 'ERR_COMMIT_FAILED';
        throw new StoreError(
          code,
          `pwrite of ${this.fileName} at ${from} failed: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    }
    assert.ok(this.#committedPosition === from, 'commits of one file never overlap');
    this.#committedPosition = write;
    this.#committedStoreTimestamp = storeTimestamp;
    this.#appendEnds.drop(covered);
    this.#checkPositions();
    this.#returnCommittedChunks();
  }

  /** Gives back chunks whose bytes are all in the file, keeping the one still appended to. */
  #returnCommittedChunks(): void {
    while (this.#chunks.length > 0) {
      const first = this.#chunks[0] as WriteChunk;
      const fullyCommitted = first.fileStart + first.used <= this.#committedPosition;
      const stillAppending = this.#chunks.length === 1 && !this.isFull();
      if (!fullyCommitted || stillAppending) break;
      this.#chunks.shift();
      this.#pool.returnBuffer(first.buffer);
    }
  }

  /**
   * fdatasync, then `flushedPosition` = the committed position captured before it. Throws
   * `StoreError('ERR_FLUSH_FAILED')` when the sync fails, now and on every later call.
   */
  async flush(flushLeastPages: number): Promise<number> {
    while (this.#flushInFlight !== null) await this.#flushInFlight.catch(() => undefined);
    if (this.#flushError !== null) throw this.#flushError;
    if (this.isAbleToFlush(flushLeastPages)) {
      if (this.hold()) {
        const inFlight = this.#flush0();
        this.#flushInFlight = inFlight;
        try {
          await inFlight;
        } finally {
          this.#flushInFlight = null;
          this.release();
        }
      } else {
        // Being destroyed: nothing to make durable any more.
        this.#flushedPosition = this.getReadPosition();
      }
    }
    return this.#flushedPosition;
  }

  async #flush0(): Promise<void> {
    const value = this.getReadPosition();
    const storeTimestamp = this.#committedStoreTimestamp;
    try {
      await this.#file.datasync();
      if (!this.#directorySynced) {
        await this.#io.fsyncDirectory(path.dirname(this.fileName));
        this.#directorySynced = true;
      }
    } catch (err) {
      this.#flushError = new StoreError(
        'ERR_FLUSH_FAILED',
        `fdatasync of ${this.fileName} failed: ${(err as Error).message}; writes stop because the data may be lost`,
        { cause: err },
      );
      throw this.#flushError;
    }
    if (value > this.#flushedPosition) {
      this.#flushedPosition = value;
      this.#flushedStoreTimestamp = storeTimestamp;
    }
    this.#checkPositions();
  }

  /**
   * Makes a new file's existence durable now (fdatasync of its size, fsync of the directory), so
   * the first flush of real data does not pay for it. Used by AllocateMappedFileService. Shares
   * the flush slot: two fdatasync calls never run on one file at once.
   */
  async syncCreation(): Promise<void> {
    while (this.#flushInFlight !== null) await this.#flushInFlight.catch(() => undefined);
    if (this.#directorySynced || this.#flushError !== null || !this.hold()) return;
    const inFlight = (async () => {
      try {
        await this.#file.datasync();
        await this.#io.fsyncDirectory(path.dirname(this.fileName));
        this.#directorySynced = true;
      } catch (err) {
        this.#flushError = new StoreError(
          'ERR_FLUSH_FAILED',
          `syncing the new segment ${this.fileName} failed: ${(err as Error).message}`,
          { cause: err },
        );
        throw this.#flushError;
      }
    })();
    this.#flushInFlight = inFlight;
    try {
      await inFlight;
    } finally {
      this.#flushInFlight = null;
      this.release();
    }
  }

  /** Reads `size` bytes at `pos`, only from committed bytes; null when out of range or closing. */
  async selectMappedBuffer(pos: number, size: number): Promise<Buffer | null> {
    if (pos < 0 || size <= 0 || pos + size > this.getReadPosition()) return null;
    const out = Buffer.allocUnsafe(size);
    return (await this.readInto(pos, size, out, 0)) ? out : null;
  }

  /**
   * `readSync` into the caller's buffer (a scan reuses one window instead of allocating one per
   * read). Returns false where `readSync` returns null.
   */
  readIntoSync(pos: number, size: number, out: Buffer): boolean {
    assert.ok(size <= out.length, 'the buffer must hold what is read');
    if (pos < 0 || size <= 0 || pos + size > this.getReadPosition()) return false;
    if (!this.hold()) return false;
    try {
      let done = 0;
      while (done < size) {
        const n = this.#file.readSync(out, done, size - done, pos + done);
        if (n === 0) return false;
        done += n;
      }
      return true;
    } finally {
      this.release();
    }
  }

  /**
   * `readIntoSync` on the thread pool, into `out` at `outOffset` (a recovery scan reads its next
   * window while it checks the current one).
   */
  async readInto(pos: number, size: number, out: Buffer, outOffset: number): Promise<boolean> {
    assert.ok(outOffset + size <= out.length, 'the buffer must hold what is read');
    if (pos < 0 || size <= 0 || pos + size > this.getReadPosition()) return false;
    if (!this.hold()) return false;
    try {
      let done = 0;
      while (done < size) {
        const n = await this.#file.read(out, outOffset + done, size - done, pos + done);
        if (n === 0) return false;
        done += n;
      }
      return true;
    } finally {
      this.release();
    }
  }

  /** Synchronous read of committed bytes (recovery and inspection). */
  readSync(pos: number, size: number): Buffer | null {
    if (pos < 0 || size <= 0 || pos + size > this.getReadPosition()) return null;
    const out = Buffer.allocUnsafe(size);
    return this.readIntoSync(pos, size, out) ? out : null;
  }

  /**
   * Recovery and truncation: sets all three positions (nothing buffered may remain). Bytes past
   * `position` stay in the file; callers that need them gone overwrite them.
   */
  setPositions(position: number): void {
    assert.ok(position >= 0 && position <= this.fileSize, 'a position must lie within the file');
    assert.ok(!this.hasUncommittedData(), 'cannot move positions over buffered bytes');
    this.#wrotePosition = position;
    this.#committedPosition = position;
    this.#flushedPosition = position;
    this.#appendEnds.clear();
    this.#releaseAllChunks();
  }

  /** Restores the store timestamp of the last record (recovery). */
  setStoreTimestamp(storeTimestamp: number): void {
    this.#storeTimestamp = storeTimestamp;
    this.#committedStoreTimestamp = storeTimestamp;
    this.#flushedStoreTimestamp = storeTimestamp;
  }

  /**
   * Recovery: makes every byte from `position` to the end of the file read as zero, durably, by
   * truncating the file there and pre-sizing it again. A stale record behind a recovery cut can
   * then never be mistaken for a live one by a later recovery. Costs no data writes.
   */
  /** The file's size on disk (a segment found empty at load is shorter until recovery cuts it). */
  diskSizeSync(): number {
    return this.#file.sizeSync();
  }

  discardAfter(position: number): void {
    assert.ok(position >= 0 && position <= this.fileSize, 'a discard must start within the file');
    assert.ok(!this.hasUncommittedData(), 'discard only before appends resume');
    this.#file.truncateSync(position);
    this.#file.truncateSync(this.fileSize);
    this.#file.datasyncSync();
  }

  /**
   * Recovery, before any service runs: fdatasync the file (and its directory entry), so that
   * positions recovery sets as flushed are. A failure poisons the file like a failed flush.
   */
  datasyncForRecovery(): void {
    try {
      this.#file.datasyncSync();
      this.#io.fsyncDirectorySync(path.dirname(this.fileName));
      this.#directorySynced = true;
    } catch (err) {
      this.#flushError = new StoreError(
        'ERR_FLUSH_FAILED',
        `fdatasync of ${this.fileName} during recovery failed: ${(err as Error).message}`,
        { cause: err },
      );
      throw this.#flushError;
    }
  }

  /** Deletes the file once no reference remains; false while one still does (retry later). */
  destroy(intervalForciblyMs: number): boolean {
    this.shutdown(intervalForciblyMs);
    if (!this.isCleanupOver()) return false;
    this.#closeFile();
    try {
      this.#io.unlinkSync(this.fileName);
    } catch (err) {
      // Already gone (removed by hand or with its directory): the goal is reached.
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    return true;
  }

  /**
   * Closes the file without deleting it (store shutdown). The descriptor is closed when the last
   * reference goes: a read still in flight finishes on the file it started on, never on a closed
   * (or reused) descriptor.
   */
  close(): void {
    this.shutdown(0);
  }

  protected cleanup(_currentRef: number): boolean {
    try {
      this.#releaseAllChunks();
    } finally {
      this.#closeFile();
    }
    return true;
  }

  #closeFile(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#releaseAllChunks();
    this.#file.closeSync();
  }

  #releaseAllChunks(): void {
    for (const chunk of this.#chunks) this.#pool.returnBuffer(chunk.buffer);
    this.#chunks.length = 0;
  }

  #checkPositions(): void {
    // Written as plain checks: this runs on every append.
    if (this.#wrotePosition > this.fileSize) assert.fail('wrotePosition must not pass the file size');
    if (this.#wrotePosition < this.#committedPosition) assert.fail('wrote >= committed');
    if (this.#committedPosition < this.#flushedPosition) assert.fail('committed >= flushed');
  }

  override toString(): string {
    return `MappedFile(${this.fileName}, wrote=${this.#wrotePosition}, committed=${this.#committedPosition}, flushed=${this.#flushedPosition})`;
  }
}
