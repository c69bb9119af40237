import assert from 'node:assert/strict';
import path from 'node:path';
import { StoreError } from '../errors.js';
import type { StoreIO } from '../io/store-io.js';
import type { Logger } from '../logger.js';
import { offset2FileName } from '../message/message-format.js';
import type { AllocateMappedFileService } from './allocate-mapped-file-service.js';
import { MappedFile } from './mapped-file.js';
import type { WriteBufferPool } from './write-buffer-pool.js';

/**
 * RocketMQ's `MappedFileQueue` (store reference §4.6): the ordered segments of one log, and how far
 * the log is committed (`committedWhere`) and flushed (`flushedWhere`).
 *
 *   storePath/00000000000000000000  00000000000000001024  00000000000000002048 ...
 *             |<---- fileSize ---->|<---- fileSize ---->|<----
 *
 * `flush` and `commit` handle ONE file per call, the one holding `flushedWhere`/`committedWhere`,
 * exactly as RocketMQ: when that file is done, the position moves to the next file's start and the
 * next call handles it. Callers that need an offset durable loop until it is (GroupCommitService).
 */

/** Segment names are the 20-digit start offset; anything else in the directory is ignored. */
const SEGMENT_NAME_PATTERN = /^\d{20}$/;

export interface MappedFileQueueOptions {
  readonly storePath: string;
  readonly mappedFileSize: number;
  readonly io: StoreIO;
  readonly writeBufferPool: WriteBufferPool;
  readonly allocateMappedFileService?: AllocateMappedFileService | null;
  readonly logger: Logger;
  /**
   * Whether the content of a lone segment shorter than `mappedFileSize` proves it was cut short
   * (say, a record runs past its end) rather than written with another `mappedFileSize`.
   * Default: never (such a file is refused).
   */
  readonly isCutShort?: (filePath: string, sizeBytes: number) => boolean;
  /**
   * Whether a zero-length segment before others is kept (opened as it is, listed in
   * `emptySegments`) rather than refused. The commit log's segments are created by the allocator
   * one ahead and synced on their own, so a power loss can keep the later one and lose the size
   * of the earlier; its recovery decides (it cuts there, or refuses). A consume queue is rebuilt
   * from the log instead.
   */
  readonly keepEmptySegments?: boolean;
  /**
   * How a roll to a new segment is logged. The commit log's at info: an operator follows its
   * growth and wants to know which file is being written. A consume queue's at debug: every
   * queue rolls, and a busy broker has thousands. Default: debug, 'new segment'.
   */
  readonly rollLog?: SegmentRollLog;
}

export interface SegmentRollLog {
  readonly level: 'info' | 'debug';
  readonly msg: string;
}

const DEFAULT_ROLL_LOG: SegmentRollLog = { level: 'debug', msg: 'new segment' };

export class MappedFileQueue {
  readonly storePath: string;
  readonly mappedFileSize: number;
  /** Offset up to which the log is fdatasync'ed. */
  flushedWhere = 0;
  /** Offset up to which the log is written to its files. */
  committedWhere = 0;
  /** Store timestamp of the last record known flushed (copied to the checkpoint). */
  storeTimestamp = 0;

  readonly #io: StoreIO;
  readonly #pool: WriteBufferPool;
  readonly #allocator: AllocateMappedFileService | null;
  readonly #logger: Logger;
  readonly #isCutShort: (filePath: string, sizeBytes: number) => boolean;
  readonly #keepEmptySegments: boolean;
  readonly #rollLog: SegmentRollLog;
  #mappedFiles: MappedFile[] = [];
  /** RocketMQ marks commit and flush `synchronized`; these chains do the same for async calls. */
  #commitChain: Promise<unknown> = Promise.resolve();
  #flushChain: Promise<unknown> = Promise.resolve();
  #commitsQueued = 0;
  #flushesQueued = 0;
  /** Last segments found shorter than `mappedFileSize` at load and extended with zeros. */
  readonly extendedFiles: { readonly fileName: string; readonly sizeBytes: number }[] = [];
  /** Zero-length segments before others, kept as they are (`keepEmptySegments`). */
  readonly emptySegments: string[] = [];
  /** Why the last segment creation failed (for the put result). */
  lastCreateError: Error | null = null;

  constructor(options: MappedFileQueueOptions) {
    this.storePath = options.storePath;
    this.mappedFileSize = options.mappedFileSize;
    this.#io = options.io;
    this.#pool = options.writeBufferPool;
    this.#allocator = options.allocateMappedFileService ?? null;
    this.#logger = options.logger;
    this.#isCutShort = options.isCutShort ?? (() => false);
    this.#keepEmptySegments = options.keepEmptySegments ?? false;
    this.#rollLog = options.rollLog ?? DEFAULT_ROLL_LOG;
  }

  /**
   * Opens every segment in the directory (creating the directory if needed). Zero-length files at
   * the end are deleted (a crash during creation, RocketMQ #6904). A shorter LAST file after
   * full-size ones (or with data cut off by its end) is extended with zeros and listed in
   * `extendedFiles`; recovery then cuts where its data ends. With `keepEmptySegments`, a
   * zero-length file before others is opened as it is and listed in `emptySegments`: a power
   * loss can lose the size of a segment whose ftruncate was never synced while a later,
   * pre-created one was synced (such a segment never held durable data: every flush syncs its
   * size), and the commit log's recovery decides what that means. Any other file of the wrong
   * size, or a missing segment between two others, fails the load with `ERR_STORE_FILE_INVALID`.
   * Every check comes before any change.
   */
  load(): void {
    this.#io.mkdirSync(this.storePath);
    const names = this.#io
      .readdirSync(this.storePath)
      .filter((name) => {
        if (SEGMENT_NAME_PATTERN.test(name)) return true;
        this.#logger.warn({ dir: this.storePath, name }, 'ignoring a file that is not a segment');
        return false;
      })
      .sort();
    // First every check, then any change: a load that refuses leaves the directory as it was.
    const segments: { filePath: string; size: number }[] = [];
    for (const name of names) {
      const filePath = path.join(this.storePath, name);
      const stat = this.#io.statSync(filePath);
      if (stat === null || stat.isDirectory) continue;
      segments.push({ filePath, size: stat.size });
    }
    let kept = segments.length;
    while (kept > 0 && (segments[kept - 1] as { size: number }).size === 0) kept--;
    const toExtend: { filePath: string; size: number }[] = [];
    const emptyKept: string[] = [];
    for (let i = 0; i < kept; i++) {
      const { filePath, size } = segments[i] as { filePath: string; size: number };
      const offset = Number(path.basename(filePath));
      if (offset % this.mappedFileSize !== 0) {
        throw new StoreError(
          'ERR_STORE_FILE_INVALID',
          `segment ${filePath} starts at ${offset}, not a multiple of mappedFileSize ${this.mappedFileSize}`,
        );
      }
      if (i > 0) {
        const expected =
          Number(path.basename((segments[i - 1] as { filePath: string }).filePath)) + this.mappedFileSize;
        if (expected !== offset) {
          throw new StoreError(
            'ERR_STORE_FILE_INVALID',
            `segment ${offset2FileName(expected)} is missing in ${this.storePath}`,
          );
        }
      }
      if (size === this.mappedFileSize) continue;
      if (size === 0 && this.#keepEmptySegments) {
        emptyKept.push(filePath);
        continue;
      }
      // Cut short behind the store's back (segments are pre-sized when created): extended with
      // zeros, so recovery finds where its data ends and cuts there, and says so. Only when that
      // is certain: last after full-size segments, or with data cut off by the end of the file.
      // A first file that ends cleanly may be a different mappedFileSize: refused.
      const last = i === kept - 1;
      const extend = size < this.mappedFileSize && last && (i > 0 || this.#isCutShort(filePath, size));
      if (!extend) {
        throw new StoreError(
          'ERR_STORE_FILE_INVALID',
          `segment ${filePath} is ${size} bytes but mappedFileSize is ${this.mappedFileSize}`,
        );
      }
      toExtend.push({ filePath, size });
    }
    for (const { filePath } of segments.slice(kept).reverse()) {
      this.#logger.warn({ filePath }, 'deleting a zero-length last segment (a crash during its creation)');
      this.#io.unlinkSync(filePath);
      this.#io.fsyncDirectorySync(this.storePath);
    }
    for (const { filePath, size } of toExtend) {
      this.#logger.warn(
        { filePath, size, mappedFileSize: this.mappedFileSize },
        'a segment is shorter than mappedFileSize; extending it with zeros for recovery',
      );
      const handle = this.#io.openSync(filePath, 'read-write');
      try {
        handle.truncateSync(this.mappedFileSize);
        handle.datasyncSync();
      } finally {
        handle.closeSync();
      }
      this.extendedFiles.push({ fileName: filePath, sizeBytes: size });
    }
    for (const filePath of emptyKept) {
      this.#logger.warn({ filePath }, 'a segment before others is empty (its size lost in a power loss?)');
      this.emptySegments.push(filePath);
    }
    const files: MappedFile[] = [];
    try {
      for (const { filePath } of segments.slice(0, kept)) {
        files.push(MappedFile.open(this.#io, filePath, this.mappedFileSize, this.#pool));
      }
    } catch (err) {
      for (const file of files) file.close();
      throw err;
    }
    this.#mappedFiles = files;
  }

  getMappedFiles(): readonly MappedFile[] {
    return this.#mappedFiles;
  }

  getFirstMappedFile(): MappedFile | null {
    return this.#mappedFiles[0] ?? null;
  }

  /**
   * Without arguments: the last segment or null. With `startOffset`: the segment to append to,
   * creating it (and pre-creating the next) when there is none or the last is full.
   */
  getLastMappedFile(): MappedFile | null;
  getLastMappedFile(startOffset: number, needCreate?: boolean): MappedFile | null;
  getLastMappedFile(startOffset?: number, needCreate = true): MappedFile | null {
    const last = this.#mappedFiles.at(-1) ?? null;
    if (startOffset === undefined) return last;
    let createOffset = -1;
    if (last === null) createOffset = startOffset - (startOffset % this.mappedFileSize);
    else if (last.isFull()) createOffset = last.fileFromOffset + this.mappedFileSize;
    if (createOffset === -1 || !needCreate) return last;
    return this.#createMappedFile(createOffset);
  }

  #createMappedFile(createOffset: number): MappedFile | null {
    const nextFilePath = path.join(this.storePath, offset2FileName(createOffset));
    const nextNextFilePath = path.join(this.storePath, offset2FileName(createOffset + this.mappedFileSize));
    let file: MappedFile;
    try {
      file =
        this.#allocator !== null
          ? this.#allocator.putRequestAndReturnMappedFile(
              nextFilePath,
              nextNextFilePath,
              this.mappedFileSize,
              this.#pool,
            )
          : MappedFile.create(this.#io, nextFilePath, this.mappedFileSize, this.#pool);
    } catch (err) {
      this.lastCreateError = err as Error;
      this.#logger.error({ err, filePath: nextFilePath }, 'creating a segment failed');
      return null;
    }
    file.firstCreateInQueue = this.#mappedFiles.length === 0;
    const previous = this.#mappedFiles.at(-1);
    this.#mappedFiles.push(file);
    this.lastCreateError = null;
    this.#logger[this.#rollLog.level](
      {
        file: path.basename(file.fileName),
        fromOffset: file.fileFromOffset,
        path: file.fileName,
        previousFile: previous === undefined ? null : path.basename(previous.fileName),
      },
      this.#rollLog.msg,
    );
    return file;
  }

  /**
   * The segment holding `offset`, or null. The index is computed from the first file's offset;
   * if the list does not match (it never should), a linear scan still finds the file.
   */
  findMappedFileByOffset(offset: number, returnFirstOnNotFound = false): MappedFile | null {
    const first = this.#mappedFiles[0];
    const last = this.#mappedFiles.at(-1);
    if (first === undefined || last === undefined) return null;
    if (offset >= first.fileFromOffset && offset < last.fileFromOffset + this.mappedFileSize) {
      const index =
        Math.floor(offset / this.mappedFileSize) - Math.floor(first.fileFromOffset / this.mappedFileSize);
      const candidate = this.#mappedFiles[index];
      if (
        candidate !== undefined &&
        offset >= candidate.fileFromOffset &&
        offset < candidate.fileFromOffset + this.mappedFileSize
      ) {
        return candidate;
      }
      for (const file of this.#mappedFiles) {
        if (offset >= file.fileFromOffset && offset < file.fileFromOffset + this.mappedFileSize) return file;
      }
    }
    return returnFirstOnNotFound ? first : null;
  }

  /**
   * End of the readable (committed) bytes of the log; 0 when empty. Appends can roll into a new
   * file before the previous one is committed to its end, so the end is in the first file not
   * fully committed, found walking back from the last (usually the last itself).
   */
  getMaxOffset(): number {
    const files = this.#mappedFiles;
    let index = files.length - 1;
    if (index < 0) return 0;
    while (index > 0 && (files[index - 1] as MappedFile).getReadPosition() < this.mappedFileSize) index--;
    const file = files[index] as MappedFile;
    return file.fileFromOffset + file.getReadPosition();
  }

  /** End of everything appended, committed or not; 0 when empty. */
  getMaxWrotePosition(): number {
    const last = this.#mappedFiles.at(-1);
    return last === undefined ? 0 : last.fileFromOffset + last.wrotePosition;
  }

  /** Start offset of the first segment, -1 when empty. */
  getMinOffset(): number {
    const first = this.#mappedFiles[0];
    return first === undefined ? -1 : first.fileFromOffset;
  }

  /** Bytes the log's segments take on disk (RocketMQ's `getMappedMemorySize`). */
  getMappedMemorySize(): number {
    return this.#mappedFiles.length * this.mappedFileSize;
  }

  /** Bytes appended but not committed yet. */
  remainHowManyDataToCommit(): number {
    return this.getMaxWrotePosition() - this.committedWhere;
  }

  /** Bytes committed but not flushed yet. */
  remainHowManyDataToFlush(): number {
    return this.getMaxOffset() - this.flushedWhere;
  }

  /** Flushes the file holding `flushedWhere`. Returns true when nothing moved (RocketMQ's sense). */
  flush(flushLeastPages: number): Promise<boolean> {
    // Started at once when nothing is queued: going through the chain would push the fdatasync
    // behind every microtask already queued.
    const next =
      this.#flushesQueued === 0
        ? this.#flush0(flushLeastPages)
        : this.#flushChain.then(() => this.#flush0(flushLeastPages));
    this.#flushesQueued++;
    this.#flushChain = next.then(
      () => {
        this.#flushesQueued--;
      },
      () => {
        this.#flushesQueued--;
      },
    );
    return next;
  }

  async #flush0(flushLeastPages: number): Promise<boolean> {
    const file = this.findMappedFileByOffset(this.flushedWhere, this.flushedWhere === 0);
    if (file === null) return true;
    const offset = await file.flush(flushLeastPages);
    const where = file.fileFromOffset + offset;
    const noProgress = where === this.flushedWhere;
    assert.ok(where >= this.flushedWhere || this.flushedWhere === 0, 'flushedWhere never moves back');
    this.flushedWhere = where;
    // RocketMQ copies the file's timestamp only on full flushes because it captures it before the
    // sync and cannot tell what the sync covered; ours is the timestamp of the last flushed record.
    this.storeTimestamp = Math.max(this.storeTimestamp, file.flushedStoreTimestamp);
    return noProgress;
  }

  /**
   * Commits the file holding `committedWhere` (at most `writeSizeMaxBytes` of whole appends, see
   * `MappedFile.commit`). Returns true when nothing moved.
   */
  commit(
    commitLeastPages: number,
    writeSizeMaxBytes = Number.POSITIVE_INFINITY,
    syncWriteMaxBytes = 0,
  ): Promise<boolean> {
    // Started at once when nothing is queued, so the write is on its way to the thread pool before
    // the caller's next line runs (the put path relies on this to overlap writing with encoding).
    const next =
      this.#commitsQueued === 0
        ? this.#commit0(commitLeastPages, writeSizeMaxBytes, syncWriteMaxBytes)
        : this.#commitChain.then(() => this.#commit0(commitLeastPages, writeSizeMaxBytes, syncWriteMaxBytes));
    this.#commitsQueued++;
    this.#commitChain = next.then(
      () => {
        this.#commitsQueued--;
      },
      () => {
        this.#commitsQueued--;
      },
    );
    return next;
  }

  async #commit0(
    commitLeastPages: number,
    writeSizeMaxBytes: number,
    syncWriteMaxBytes: number,
  ): Promise<boolean> {
    const file = this.findMappedFileByOffset(this.committedWhere, this.committedWhere === 0);
    if (file === null) return true;
    const offset = await file.commit(commitLeastPages, writeSizeMaxBytes, syncWriteMaxBytes);
    const where = file.fileFromOffset + offset;
    const noProgress = where === this.committedWhere;
    this.committedWhere = where;
    return noProgress;
  }

  /**
   * Recovery: everything at or after `offset` goes. Files that start after it are deleted; the
   * file holding it gets its positions moved back (its bytes past `offset` stay on disk).
   */
  truncateDirtyFiles(offset: number): void {
    const keep: MappedFile[] = [];
    let deleted = false;
    for (const file of this.#mappedFiles) {
      const fileTail = file.fileFromOffset + this.mappedFileSize;
      if (fileTail <= offset) {
        keep.push(file);
      } else if (offset >= file.fileFromOffset) {
        file.setPositions(offset % this.mappedFileSize);
        keep.push(file);
      } else {
        this.#destroyOrThrow(file);
        deleted = true;
      }
    }
    this.#mappedFiles = keep;
    // The deletions must be durable before anything is written after the cut.
    if (deleted) this.#io.fsyncDirectorySync(this.storePath);
  }

  #destroyOrThrow(file: MappedFile): void {
    if (!file.destroy(1000)) {
      throw new StoreError(
        'ERR_STORE_FILE_INVALID',
        `segment ${file.fileName} is still in use and cannot be deleted`,
      );
    }
  }

  /**
   * Deletes the last segment (consume queue truncation), durably: a deletion the directory does
   * not remember would bring the file back after a power loss, its stale units pointing into
   * whatever the log holds there by then.
   */
  deleteLastMappedFile(): void {
    const last = this.#mappedFiles.at(-1);
    if (last === undefined) return;
    this.#destroyOrThrow(last);
    this.#mappedFiles.pop();
    this.#io.fsyncDirectorySync(this.storePath);
  }

  /**
   * Retention by age (store reference §4.6): deletes leading files, never the last one, whose
   * mtime is older than `expiredTimeMs` (or all of them when `cleanImmediately`), at most
   * `deleteFilesBatchMax`, stopping at the first file that is not expired or still in use.
   */
  deleteExpiredFileByTime(
    expiredTimeMs: number,
    intervalForciblyMs: number,
    cleanImmediately: boolean,
    deleteFilesBatchMax: number,
    now: number = Date.now(),
  ): number {
    const deleted: MappedFile[] = [];
    for (const file of this.#mappedFiles.slice(0, -1)) {
      const stat = this.#io.statSync(file.fileName);
      const expired = stat !== null && now >= stat.mtimeMs + expiredTimeMs;
      if (!expired && !cleanImmediately) break;
      if (!file.destroy(intervalForciblyMs)) break;
      deleted.push(file);
      if (deleted.length >= deleteFilesBatchMax) break;
    }
    this.#removeDeleted(deleted);
    return deleted.length;
  }

  /**
   * Retention by offset, for logs of fixed-size units (consume queues): deletes leading files,
   * never the last, whose last unit points below `minPhyOffset` (its first 8 bytes).
   */
  deleteExpiredFileByOffset(minPhyOffset: number, unitSizeBytes: number): number {
    const deleted: MappedFile[] = [];
    for (const file of this.#mappedFiles.slice(0, -1)) {
      const unit = file.readSync(this.mappedFileSize - unitSizeBytes, unitSizeBytes);
      let destroy: boolean;
      if (unit !== null) {
        const hi = unit.readInt32BE(0);
        const lo = unit.readUInt32BE(4);
        destroy = hi * 2 ** 32 + lo < minPhyOffset;
      } else {
        // A file that cannot be read any more is a "hanged" one from an earlier failed destroy.
        destroy = !file.isAvailable();
      }
      if (!destroy || !file.destroy(60 * 1000)) break;
      deleted.push(file);
    }
    this.#removeDeleted(deleted);
    return deleted.length;
  }

  /** Retries deleting the first file when an earlier destroy left it unavailable but referenced. */
  retryDeleteFirstFile(intervalForciblyMs: number): boolean {
    const first = this.#mappedFiles[0];
    if (first === undefined || first.isAvailable()) return false;
    if (!first.destroy(intervalForciblyMs)) return false;
    this.#removeDeleted([first]);
    return true;
  }

  #removeDeleted(deleted: readonly MappedFile[]): void {
    if (deleted.length === 0) return;
    const gone = new Set(deleted);
    this.#mappedFiles = this.#mappedFiles.filter((file) => !gone.has(file));
    this.#io.fsyncDirectorySync(this.storePath);
  }

  /**
   * Drops every file after `offset` and moves the positions of the file holding it there. Refuses
   * (returns false) to throw away more than two files' worth, as RocketMQ does.
   */
  resetOffset(offset: number): boolean {
    const last = this.#mappedFiles.at(-1);
    if (last === undefined) return true;
    const lastOffset = last.fileFromOffset + last.wrotePosition;
    if (lastOffset - offset > this.mappedFileSize * 2) return false;
    while (this.#mappedFiles.length > 0) {
      const file = this.#mappedFiles.at(-1) as MappedFile;
      if (offset >= file.fileFromOffset) {
        file.setPositions(offset - file.fileFromOffset);
        break;
      }
      this.#destroyOrThrow(file);
      this.#mappedFiles.pop();
    }
    this.flushedWhere = Math.min(this.flushedWhere, offset);
    this.committedWhere = Math.min(this.committedWhere, offset);
    return true;
  }

  /** Problems in the file list (RocketMQ's `checkSelf` logs them as "[BUG]"). */
  checkSelf(): string[] {
    const problems: string[] = [];
    for (let i = 1; i < this.#mappedFiles.length; i++) {
      const previous = this.#mappedFiles[i - 1] as MappedFile;
      const current = this.#mappedFiles[i] as MappedFile;
      if (current.fileFromOffset - previous.fileFromOffset !== this.mappedFileSize) {
        problems.push(`${previous.fileName} and ${current.fileName} are not adjacent`);
      }
    }
    return problems;
  }

  /** Closes every file, keeping them on disk. */
  /**
   * Closes every segment; one that fails to close (a dead disk) does not keep the others open.
   * Throws the first failure once all were tried.
   */
  shutdown(): void {
    let failure: unknown = null;
    for (const file of this.#mappedFiles) {
      try {
        file.close();
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== null) throw failure;
  }

  /** Deletes every file and the directory's contents (tests, topic deletion). */
  destroy(): void {
    for (const file of this.#mappedFiles) this.#destroyOrThrow(file);
    if (this.#mappedFiles.length > 0) this.#io.fsyncDirectorySync(this.storePath);
    this.#mappedFiles = [];
    this.flushedWhere = 0;
    this.committedWhere = 0;
  }
}
