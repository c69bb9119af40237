import path from 'node:path';
import { CQ_STORE_UNIT_SIZE_BYTES } from '../config/message-store-config.js';
import type { StoreIO } from '../io/store-io.js';
import type { Logger } from '../logger.js';
import type { MappedFile } from '../mapped-file/mapped-file.js';
import { MappedFileQueue } from '../mapped-file/mapped-file-queue.js';
import type { WriteBufferPool } from '../mapped-file/write-buffer-pool.js';
import { readInt64BE, setInt64, writeInt64BE } from '../message/int64.js';

/**
 * RocketMQ's `ConsumeQueue` (store reference §2.7, §4.13): the index of one topic/queue into the
 * commit log, one fixed-size unit per message, unit `i` at byte `i * 20` of the queue's files.
 *
 *   consumequeue/{topic}/{queueId}/00000000000000000000  00000000000006000000 ...
 *
 *   unit (20 bytes, big-endian):
 *   +------------------------+-------------+------------------------+
 *   | commit log offset (8)  |  size (4)   |  tags code (8)         |
 *   +------------------------+-------------+------------------------+
 *
 * A unit is only ever written at `queueOffset * 20`: putting an existing one again is accepted
 * and ignored (dispatch after recovery repeats itself), and a unit that would leave a hole is
 * refused and reported, never shifted to the current end (RocketMQ #7355, "[BUG]logic queue
 * order maybe wrong"). A queue whose first file starts past offset 0 (its older files were
 * deleted) is filled up to its first unit with blank units (offset 0, size 2^31-1).
 *
 * Units are appended to the files' write buffers and become readable when committed; the
 * dispatcher commits after each pass.
 */

export const CQ_BLANK_UNIT_SIZE = 0x7fffffff;

/** What recovery found of one unit: it points elsewhere, it is right, or it is right and was flushed before the crash. */
export type TailUnitVerdict = 'BAD' | 'GOOD' | 'DURABLE';
/** Bytes read per step when recovery scans a consume queue file. */
const CQ_RECOVER_WINDOW_BYTES = 256 * 1024;
const ZEROS = Buffer.alloc(CQ_RECOVER_WINDOW_BYTES);

/** Whether any byte of `file` from `position` to its end is not zero. */
function hasNonZeroAfter(file: MappedFile, position: number): boolean {
  for (let at = position; at < file.fileSize; at += CQ_RECOVER_WINDOW_BYTES) {
    const length = Math.min(CQ_RECOVER_WINDOW_BYTES, file.fileSize - at);
    const bytes = file.readSync(at, length);
    if (bytes === null) return false;
    if (!bytes.equals(ZEROS.subarray(0, length))) return true;
  }
  return false;
}

export type PutPositionResult =
  /** The unit was appended. */
  | 'PUT_OK'
  /** The unit (or a later one) is already there: dispatch repeated itself. */
  | 'ALREADY_BUILT'
  /** The unit would leave a hole (queue offset past the end): refused. */
  | 'GAP'
  /** No write buffer or file could be had. */
  | 'FAILED';

export interface ConsumeQueueUnit {
  readonly commitLogOffset: number;
  readonly size: number;
  readonly tagsCode: number;
}

export interface ConsumeQueueOptions {
  readonly topic: string;
  readonly queueId: number;
  /** The `consumequeue` root. */
  readonly rootPath: string;
  readonly mappedFileSize: number;
  readonly io: StoreIO;
  readonly writeBufferPool: WriteBufferPool;
  readonly logger: Logger;
}

export class ConsumeQueue {
  readonly topic: string;
  readonly queueId: number;
  readonly mappedFileQueue: MappedFileQueue;
  readonly #mappedFileSize: number;
  readonly #logger: Logger;
  /** End (offset + size) of the message of the highest unit, -1 with none. */
  #maxPhysicOffset = -1;
  /** Units read by the last `getUnits` that went to the file (see there). */
  #readAhead: { readonly logicOffset: number; readonly bytes: Buffer } | null = null;
  /** Byte offset of the first unit still pointing into the commit log. */
  #minLogicOffset = 0;
  readonly #unit = Buffer.alloc(CQ_STORE_UNIT_SIZE_BYTES);
  /** DataView writes inline; Buffer's writeInt32BE calls do not (a rebuild writes a million units). */
  readonly #unitView = new DataView(this.#unit.buffer, this.#unit.byteOffset, CQ_STORE_UNIT_SIZE_BYTES);
  /** Units `verifyTail` dropped, still in the file until `applyPendingDiscard`. */
  #pendingDiscard: { readonly file: MappedFile; readonly position: number } | null = null;

  constructor(options: ConsumeQueueOptions) {
    this.topic = options.topic;
    this.queueId = options.queueId;
    this.#mappedFileSize = options.mappedFileSize;
    this.#logger = options.logger;
    this.mappedFileQueue = new MappedFileQueue({
      storePath: path.join(options.rootPath, options.topic, String(options.queueId)),
      mappedFileSize: options.mappedFileSize,
      io: options.io,
      writeBufferPool: options.writeBufferPool,
      logger: options.logger,
      rollLog: { level: 'debug', msg: 'consume queue rolled to a new segment' },
    });
  }

  load(): void {
    this.mappedFileQueue.load();
  }

  /**
   * RocketMQ's `ConsumeQueue.recover`: scans the last three files for valid units (offset >= 0,
   * size > 0) and cuts the queue after the last one. Reads in windows and stops at the first
   * invalid unit, as RocketMQ's mmap scan touches only what it needs.
   *
   * After a crash (`afterCrash`), a torn write may have left units behind a hole: sectors that
   * reached the disk after a sector that did not. Those are zeroed (the file is truncated at the
   * cut and re-extended, durably), or a later recovery could read them as live once new units
   * fill the hole. Returns whether it zeroed anything.
   */
  recover(afterCrash: boolean): boolean {
    this.#readAhead = null;
    this.#maxPhysicOffset = -1;
    const files = this.mappedFileQueue.getMappedFiles();
    if (files.length === 0) return false;
    let index = Math.max(0, files.length - 3);
    let file = files[index] as MappedFile;
    let validBytes = 0;
    // A file found short and extended at load: only its original bytes can hold units (a unit
    // cut by the end of the file is not one).
    const extendedFiles = this.mappedFileQueue.extendedFiles;
    for (;;) {
      validBytes = this.#scanValidUnits(file);
      const extended = extendedFiles.find((f) => f.fileName === file.fileName);
      if (extended !== undefined) {
        const whole = extended.sizeBytes - (extended.sizeBytes % CQ_STORE_UNIT_SIZE_BYTES);
        if (validBytes > whole) {
          validBytes = whole;
          this.#recomputeMaxPhysicOffsetBelow(file, whole);
        }
      }
      if (validBytes === this.#mappedFileSize && index + 1 < files.length) {
        index++;
        file = files[index] as MappedFile;
        continue;
      }
      break;
    }
    const processOffset = file.fileFromOffset + validBytes;
    // Looked at before the cut: reads only see bytes below the positions.
    const stale = afterCrash && validBytes < this.#mappedFileSize && hasNonZeroAfter(file, validBytes);
    this.mappedFileQueue.truncateDirtyFiles(processOffset);
    this.mappedFileQueue.flushedWhere = processOffset;
    this.mappedFileQueue.committedWhere = processOffset;
    if (stale) {
      this.#logger.warn(
        { topic: this.topic, queueId: this.queueId, file: file.fileName, position: validBytes },
        'zeroing consume queue bytes behind a hole a crash left',
      );
      file.discardAfter(validBytes);
      return true;
    }
    return false;
  }

  /** Bytes of valid units from the start of `file`; tracks the highest unit's message end. */
  #scanValidUnits(file: MappedFile): number {
    const window = CQ_RECOVER_WINDOW_BYTES - (CQ_RECOVER_WINDOW_BYTES % CQ_STORE_UNIT_SIZE_BYTES);
    let end = 0;
    for (let position = 0; position < this.#mappedFileSize; position += window) {
      const bytes = file.readSync(position, Math.min(window, this.#mappedFileSize - position));
      if (bytes === null) return end;
      for (let at = 0; at + CQ_STORE_UNIT_SIZE_BYTES <= bytes.length; at += CQ_STORE_UNIT_SIZE_BYTES) {
        const offset = readInt64BE(bytes, at);
        const size = bytes.readInt32BE(at + 8);
        if (!(offset >= 0 && size > 0)) return end;
        if (size !== CQ_BLANK_UNIT_SIZE) this.#maxPhysicOffset = offset + size;
        end += CQ_STORE_UNIT_SIZE_BYTES;
      }
    }
    return end;
  }

  /**
   * Recovery, before dispatch: checks the queue's last units (within its last file) against the
   * records they point to, walking back from the end, and drops every unit from the lowest bad
   * one on: a torn or damaged unit and all after it. `check` says of each unit whether it is
   * bad, good, or good and durable (its record was flushed to the queue before the crash, so
   * everything before it is sound too): the walk stops at the first durable one, or after
   * `unitsMax` units. Only the positions move now; the file keeps its bytes until
   * `applyPendingDiscard()`, called once the commit log's recovery can no longer refuse to open.
   * Returns how many units it dropped.
   */
  verifyTail(
    check: (unit: ConsumeQueueUnit, queueOffset: number) => TailUnitVerdict,
    unitsMax: number,
  ): number {
    const mfq = this.mappedFileQueue;
    const file = mfq.getLastMappedFile();
    if (file === null) return 0;
    const end = file.getReadPosition();
    let position = end;
    let cut = -1;
    for (let walked = 0; walked < unitsMax && position >= CQ_STORE_UNIT_SIZE_BYTES; walked++) {
      const bytes = file.readSync(position - CQ_STORE_UNIT_SIZE_BYTES, CQ_STORE_UNIT_SIZE_BYTES);
      if (bytes === null) break;
      const unit: ConsumeQueueUnit = {
        commitLogOffset: readInt64BE(bytes, 0),
        size: bytes.readInt32BE(8),
        tagsCode: readInt64BE(bytes, 12),
      };
      if (unit.size === CQ_BLANK_UNIT_SIZE) break;
      const queueOffset = (file.fileFromOffset + position) / CQ_STORE_UNIT_SIZE_BYTES - 1;
      const verdict = check(unit, queueOffset);
      position -= CQ_STORE_UNIT_SIZE_BYTES;
      if (verdict === 'BAD') cut = position;
      else if (verdict === 'DURABLE') break;
    }
    if (cut < 0) return 0;
    const dropped = (end - cut) / CQ_STORE_UNIT_SIZE_BYTES;
    this.#readAhead = null;
    file.setPositions(cut);
    const where = file.fileFromOffset + cut;
    mfq.flushedWhere = Math.min(mfq.flushedWhere, where);
    mfq.committedWhere = Math.min(mfq.committedWhere, where);
    this.#pendingDiscard = { file, position: cut };
    this.#maxPhysicOffset = -1;
    this.#recomputeMaxPhysicOffset();
    return dropped;
  }

  /** Zeroes what `verifyTail` dropped, in the file. */
  applyPendingDiscard(): void {
    const pending = this.#pendingDiscard;
    this.#pendingDiscard = null;
    // Dispatch may have written the units again since (the same records, so the same bytes):
    // then there is nothing stale to zero, and appended bytes must not be.
    if (
      pending !== null &&
      pending.file.getReadPosition() === pending.position &&
      pending.file.wrotePosition === pending.position
    ) {
      pending.file.discardAfter(pending.position);
    }
  }

  /** The next queue offset to be written: how many units the queue holds (readable or not). */
  getMaxOffsetInQueue(): number {
    return Math.floor(this.mappedFileQueue.getMaxOffset() / CQ_STORE_UNIT_SIZE_BYTES);
  }

  /** Units appended, committed or not (what the next put will be checked against). */
  getWrittenOffsetInQueue(): number {
    return Math.floor(this.mappedFileQueue.getMaxWrotePosition() / CQ_STORE_UNIT_SIZE_BYTES);
  }

  getMinOffsetInQueue(): number {
    return Math.floor(this.#minLogicOffset / CQ_STORE_UNIT_SIZE_BYTES);
  }

  /** End (offset + size) of the highest unit's message; -1 when the queue is empty. */
  getMaxPhysicOffset(): number {
    return this.#maxPhysicOffset;
  }

  /**
   * RocketMQ's `putMessagePositionInfo`: writes the unit of queue offset `cqOffset`. Never at any
   * other place: a repeat is ignored and a hole is refused.
   */
  putMessagePositionInfo(
    offset: number,
    size: number,
    tagsCode: number,
    cqOffset: number,
  ): PutPositionResult {
    if (offset + size <= this.#maxPhysicOffset) return 'ALREADY_BUILT';
    const expectLogicOffset = cqOffset * CQ_STORE_UNIT_SIZE_BYTES;
    const mfq = this.mappedFileQueue;
    const file = mfq.getLastMappedFile(expectLogicOffset);
    if (file === null) {
      this.#logger.error(
        { topic: this.topic, queueId: this.queueId, cqOffset },
        'creating a consume queue file failed',
      );
      return 'FAILED';
    }
    if (file.firstCreateInQueue && cqOffset !== 0 && file.wrotePosition === 0) {
      if (!this.#fillPreBlank(file, expectLogicOffset)) return 'FAILED';
    }
    const current = file.fileFromOffset + file.wrotePosition;
    if (expectLogicOffset < current) return 'ALREADY_BUILT';
    if (expectLogicOffset > current) {
      this.#logger.error(
        {
          topic: this.topic,
          queueId: this.queueId,
          cqOffset,
          writtenOffset: current / CQ_STORE_UNIT_SIZE_BYTES,
        },
        'refusing a consume queue unit that would leave a hole',
      );
      return 'GAP';
    }
    const view = this.#unitView;
    setInt64(view, 0, offset);
    view.setInt32(8, size);
    setInt64(view, 12, tagsCode);
    if (!file.appendBytes(this.#unit)) return 'FAILED';
    this.#maxPhysicOffset = offset + size;
    return 'PUT_OK';
  }

  /** A queue starting past offset 0: blank units up to its first real one, and that is its minimum. */
  #fillPreBlank(file: MappedFile, expectLogicOffset: number): boolean {
    const blank = Buffer.alloc(CQ_STORE_UNIT_SIZE_BYTES);
    writeInt64BE(blank, 0, 0);
    blank.writeInt32BE(CQ_BLANK_UNIT_SIZE, 8);
    writeInt64BE(blank, 0, 12);
    const until = expectLogicOffset % this.#mappedFileSize;
    for (let pos = file.wrotePosition; pos < until; pos += CQ_STORE_UNIT_SIZE_BYTES) {
      if (!file.appendBytes(blank)) return false;
    }
    this.#minLogicOffset = expectLogicOffset;
    this.mappedFileQueue.flushedWhere = file.fileFromOffset;
    this.mappedFileQueue.committedWhere = file.fileFromOffset;
    return true;
  }

  /** Makes appended units readable (and durable on the next flush). */
  async commit(): Promise<void> {
    const mfq = this.mappedFileQueue;
    const callsMax = mfq.getMappedFiles().length + 1;
    for (let i = 0; i < callsMax && mfq.committedWhere < mfq.getMaxWrotePosition(); i++) {
      if (await mfq.commit(0)) break;
    }
  }

  hasUncommitted(): boolean {
    return this.mappedFileQueue.committedWhere < this.mappedFileQueue.getMaxWrotePosition();
  }

  /** One file per call, as every flush (RocketMQ's `flush(leastPages)`). */
  flush(flushLeastPages: number): Promise<boolean> {
    return this.mappedFileQueue.flush(flushLeastPages);
  }

  /**
   * Reads `count` units from queue offset `start` (only committed ones; fewer at the end of a
   * file or of the queue). Empty when none can be read.
   *
   * A consumer reads on from where its last pull ended: each read takes up to
   * READ_AHEAD_UNITS units and keeps them, and the next pulls are served from those bytes (a
   * pread costs a thread-pool round trip). Units are written once and never change while the
   * store runs (recovery, which cuts them, drops the kept bytes), so kept units stay true; a
   * pull that wants more than they hold, while the file has more, reads again.
   */
  async getUnits(start: number, count: number): Promise<ConsumeQueueUnit[]> {
    const logicOffset = start * CQ_STORE_UNIT_SIZE_BYTES;
    const file = this.mappedFileQueue.findMappedFileByOffset(logicOffset);
    if (file === null) return [];
    const ahead = this.#readAhead;
    const aheadEnd = ahead === null ? -1 : ahead.logicOffset + ahead.bytes.length;
    let bytes: Buffer;
    let from: number;
    if (
      ahead !== null &&
      logicOffset >= ahead.logicOffset &&
      logicOffset + CQ_STORE_UNIT_SIZE_BYTES <= aheadEnd &&
      // All that was asked for, or all the file holds readable: never fewer than a read gives.
      (logicOffset + count * CQ_STORE_UNIT_SIZE_BYTES <= aheadEnd ||
        aheadEnd >= file.fileFromOffset + file.getReadPosition())
    ) {
      bytes = ahead.bytes;
      from = logicOffset - ahead.logicOffset;
    } else {
      const position = logicOffset - file.fileFromOffset;
      const readable = Math.min(
        file.getReadPosition() - position,
        Math.max(count, READ_AHEAD_UNITS) * CQ_STORE_UNIT_SIZE_BYTES,
      );
      if (readable < CQ_STORE_UNIT_SIZE_BYTES) return [];
      const read = await file.selectMappedBuffer(position, readable - (readable % CQ_STORE_UNIT_SIZE_BYTES));
      if (read === null) return [];
      this.#readAhead = { logicOffset, bytes: read };
      bytes = read;
      from = 0;
    }
    const units: ConsumeQueueUnit[] = [];
    const end = Math.min(bytes.length, from + count * CQ_STORE_UNIT_SIZE_BYTES);
    for (let pos = from; pos + CQ_STORE_UNIT_SIZE_BYTES <= end; pos += CQ_STORE_UNIT_SIZE_BYTES) {
      units.push({
        commitLogOffset: readInt64BE(bytes, pos),
        size: bytes.readInt32BE(pos + 8),
        tagsCode: readInt64BE(bytes, pos + 12),
      });
    }
    return units;
  }

  /**
   * RocketMQ's `truncateDirtyLogicFiles`: drops every unit pointing at or past `phyOffset` (the
   * commit log was cut there), whole files first, then within the last file.
   */
  truncateDirtyLogicFiles(phyOffset: number): void {
    this.#readAhead = null;
    const mfq = this.mappedFileQueue;
    // Nothing points past the cut (blank units never do): the common case, no reading needed.
    if (this.#maxPhysicOffset <= phyOffset) return;
    this.#maxPhysicOffset = -1;
    for (let file = mfq.getLastMappedFile(); file !== null; file = mfq.getLastMappedFile()) {
      const bytes = file.readSync(0, file.getReadPosition()) ?? Buffer.alloc(0);
      let keep = 0;
      for (; keep + CQ_STORE_UNIT_SIZE_BYTES <= bytes.length; keep += CQ_STORE_UNIT_SIZE_BYTES) {
        const offset = readInt64BE(bytes, keep);
        const size = bytes.readInt32BE(keep + 8);
        const blank = size === CQ_BLANK_UNIT_SIZE;
        if (!(offset >= 0 && size > 0) || (!blank && offset + size > phyOffset)) break;
        if (!blank) this.#maxPhysicOffset = offset + size;
      }
      if (keep === 0 && mfq.getMappedFiles().length > 1) {
        mfq.deleteLastMappedFile();
        continue;
      }
      file.setPositions(keep);
      if (keep < bytes.length) file.discardAfter(keep);
      break;
    }
    const where = mfq.getMaxWrotePosition();
    mfq.flushedWhere = Math.min(mfq.flushedWhere, where);
    mfq.committedWhere = Math.min(mfq.committedWhere, where);
    if (this.#maxPhysicOffset < 0) this.#recomputeMaxPhysicOffset();
  }

  /** The highest unit's message end among `file`'s first `end` bytes (earlier files count too). */
  #recomputeMaxPhysicOffsetBelow(file: MappedFile, end: number): void {
    const bytes = file.readSync(0, end);
    for (
      let pos = (bytes?.length ?? 0) - CQ_STORE_UNIT_SIZE_BYTES;
      bytes !== null && pos >= 0;
      pos -= CQ_STORE_UNIT_SIZE_BYTES
    ) {
      const size = bytes.readInt32BE(pos + 8);
      if (size > 0 && size !== CQ_BLANK_UNIT_SIZE) {
        this.#maxPhysicOffset = readInt64BE(bytes, pos) + size;
        return;
      }
    }
    this.#maxPhysicOffset = -1;
    this.#recomputeMaxPhysicOffset(file);
  }

  /** The highest unit's message end, from the files (before `before`, when given). */
  #recomputeMaxPhysicOffset(before?: MappedFile): void {
    const files = this.mappedFileQueue.getMappedFiles();
    const start = before === undefined ? files.length - 1 : files.indexOf(before) - 1;
    for (let i = start; i >= 0; i--) {
      const file = files[i] as MappedFile;
      const bytes = file.readSync(0, file.getReadPosition());
      if (bytes === null) continue;
      for (let pos = bytes.length - CQ_STORE_UNIT_SIZE_BYTES; pos >= 0; pos -= CQ_STORE_UNIT_SIZE_BYTES) {
        const size = bytes.readInt32BE(pos + 8);
        if (size > 0 && size !== CQ_BLANK_UNIT_SIZE) {
          this.#maxPhysicOffset = readInt64BE(bytes, pos) + size;
          return;
        }
      }
    }
  }

  /**
   * RocketMQ's `correctMinOffset`: the first unit that still points into the commit log (whose
   * oldest segments may have been deleted) becomes the queue's minimum.
   */
  correctMinOffset(minCommitLogOffset: number): void {
    const files = this.mappedFileQueue.getMappedFiles();
    const first = files[0];
    if (first === undefined) {
      this.#minLogicOffset = 0;
      return;
    }
    let min = Math.max(this.#minLogicOffset, first.fileFromOffset);
    for (const file of files) {
      if (file.fileFromOffset + file.getReadPosition() <= min) continue;
      const start = Math.max(0, min - file.fileFromOffset);
      const bytes = file.readSync(start, file.getReadPosition() - start);
      if (bytes === null) break;
      for (let pos = 0; pos + CQ_STORE_UNIT_SIZE_BYTES <= bytes.length; pos += CQ_STORE_UNIT_SIZE_BYTES) {
        const offset = readInt64BE(bytes, pos);
        const size = bytes.readInt32BE(pos + 8);
        if (size !== CQ_BLANK_UNIT_SIZE && offset >= minCommitLogOffset) {
          this.#minLogicOffset = file.fileFromOffset + start + pos;
          return;
        }
      }
      min = file.fileFromOffset + file.getReadPosition();
    }
    // Nothing points into the commit log any more: the queue is empty, but keeps its position.
    this.#minLogicOffset = this.mappedFileQueue.getMaxWrotePosition();
  }

  shutdown(): void {
    this.mappedFileQueue.shutdown();
  }

  destroy(): void {
    this.#readAhead = null;
    this.mappedFileQueue.destroy();
    this.#maxPhysicOffset = -1;
    this.#minLogicOffset = 0;
  }
}

/** Units one read of a consume queue takes, for the pulls that follow (16 KiB). */
const READ_AHEAD_UNITS = 800;
