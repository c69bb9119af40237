import fs from 'node:fs';
import path from 'node:path';
import { CQ_STORE_UNIT_SIZE_BYTES } from '../config/message-store-config.js';
import { CQ_BLANK_UNIT_SIZE } from '../consumequeue/consume-queue.js';
import { readInt64BE } from '../message/int64.js';
import { checkMessageAndReturnSize } from '../message/message-decoder.js';

/**
 * Offline inspection of a store directory (`rocketmq-ts store inspect` / `store verify`): reads
 * the files as they are, opening nothing for writing, taking no lock, recovering nothing, so it
 * can look at the directory of a running or crashed store. It walks
 *
 *   commitlog/<20-digit offset>          every record from position 0: TOTALSIZE chain, MAGIC,
 *                                        CRC, PHYSICALOFFSET; a BLANK or zeros end a segment
 *   consumequeue/<topic>/<queueId>/<n>   every 20-byte unit, checked against the record it
 *                                        points to (size, topic, queue, queue offset, tags code)
 *   checkpoint                           the five timestamps/offsets
 *
 * and reports each problem with the file and the byte offset in it.
 */

export interface InspectStoreOptions {
  /** List every record (`StoreInspection.records`). */
  readonly records?: boolean;
  /**
   * Told how far the walk got, in bytes of commit log segments and then consume queue files read
   * out of all of them (one combined count): every `INSPECT_PROGRESS_STEP_BYTES` inside a
   * segment and after each file, then once with `done === total` at the end. Files that grow
   * while a running broker writes are counted at the size they had when the walk began.
   */
  readonly onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RecordSummary {
  readonly offset: number;
  readonly size: number;
  readonly topic: string;
  readonly queueId: number;
  readonly queueOffset: number;
  readonly storeTimestamp: number;
  readonly messageId: string | undefined;
}

export interface SegmentSummary {
  readonly file: string;
  readonly fromOffset: number;
  readonly fileSize: number;
  /** Bytes of records from the start of the segment (where its data ends). */
  readonly dataBytes: number;
  readonly records: number;
  /** How the walk ended: a BLANK filler, zeros to the end, the end of the file, or damage. */
  readonly end: 'BLANK' | 'ZEROS' | 'END_OF_FILE' | 'DAMAGED';
}

export interface ConsumeQueueSummary {
  readonly topic: string;
  readonly queueId: number;
  readonly files: readonly string[];
  /** First unit that is not a blank filler. */
  readonly minOffset: number;
  /** Units up to the first zero unit. */
  readonly maxOffset: number;
}

export interface StoreProblem {
  readonly file: string;
  /** Byte offset in that file. */
  readonly offset: number;
  readonly problem: string;
}

export interface StoreInspection {
  readonly storePath: string;
  /** The abort file is there: the store is running, or did not shut down cleanly. */
  readonly abortFile: boolean;
  readonly checkpoint: Readonly<Record<string, number>> | null;
  readonly commitLog: {
    readonly segmentSize: number;
    readonly segments: readonly SegmentSummary[];
    readonly minOffset: number;
    readonly maxOffset: number;
    readonly records: number;
  };
  readonly consumeQueues: readonly ConsumeQueueSummary[];
  /** Every record (only with `records: true`). */
  readonly records?: readonly RecordSummary[];
  readonly problems: readonly StoreProblem[];
}

const CHECKPOINT_FIELDS = [
  'physicMsgTimestamp',
  'logicsMsgTimestamp',
  'indexMsgTimestamp',
  'masterFlushedOffset',
  'confirmPhyOffset',
] as const;
/** A segment or queue file name: the offset of its first byte, 20 digits. */
const FILE_NAME = /^\d{20}$/;
/**
 * Progress is reported at most this often inside a commit log segment (a 1 GiB segment gets
 * some 250 reports, a record ~never one of its own).
 */
export const INSPECT_PROGRESS_STEP_BYTES = 4 * 1024 * 1024;

/** Counts the bytes walked and tells `onProgress`, at most every `INSPECT_PROGRESS_STEP_BYTES`. */
class WalkProgress {
  readonly #onProgress: ((doneBytes: number, totalBytes: number) => void) | undefined;
  readonly total: number;
  /** Bytes of the files finished. */
  #done = 0;
  #reportedAt = 0;

  constructor(onProgress: InspectStoreOptions['onProgress'], total: number) {
    this.#onProgress = onProgress;
    this.total = total;
    onProgress?.(0, total);
  }

  /** `bytes` into the file being walked: reports when a step has passed since the last report. */
  within(bytes: number): void {
    const done = Math.min(this.total, this.#done + bytes);
    if (done - this.#reportedAt < INSPECT_PROGRESS_STEP_BYTES) return;
    this.#reportedAt = done;
    this.#onProgress?.(done, this.total);
  }

  /** A file of `bytes` is walked. */
  fileDone(bytes: number): void {
    this.#done = Math.min(this.total, this.#done + bytes);
    this.#reportedAt = this.#done;
    this.#onProgress?.(this.#done, this.total);
  }

  end(): void {
    this.#done = this.total;
    this.#onProgress?.(this.total, this.total);
  }
}

interface IndexedRecord {
  readonly size: number;
  readonly topic: string;
  readonly queueId: number;
  readonly queueOffset: number;
  readonly tagsCode: number;
}

export function inspectStore(storePath: string, options: InspectStoreOptions = {}): StoreInspection {
  if (!fs.statSync(storePath, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`${storePath} is not a directory`);
  }
  const problems: StoreProblem[] = [];
  const byOffset = new Map<number, IndexedRecord>();
  const records: RecordSummary[] = [];
  const commitLogDir = path.join(storePath, 'commitlog');
  const consumeQueueDir = path.join(storePath, 'consumequeue');
  const progress = new WalkProgress(
    options.onProgress,
    options.onProgress === undefined ? 0 : bytesToWalk(commitLogDir, consumeQueueDir),
  );
  const commitLog = walkCommitLog(
    commitLogDir,
    problems,
    byOffset,
    options.records === true ? records : null,
    progress,
  );
  const consumeQueues = walkConsumeQueues(consumeQueueDir, problems, byOffset, commitLog.minOffset, progress);
  progress.end();
  return {
    storePath,
    abortFile: fs.existsSync(path.join(storePath, 'abort')),
    checkpoint: readCheckpoint(path.join(storePath, 'checkpoint')),
    commitLog,
    consumeQueues,
    ...(options.records === true ? { records } : {}),
    problems,
  };
}

function segmentFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => FILE_NAME.test(name))
    .sort();
}

/** The `queueId` directories of each topic directory under `consumequeue/`, in walk order. */
function queueDirs(dir: string): { topic: string; queueId: number; queueDir: string }[] {
  if (!fs.existsSync(dir)) return [];
  const out: { topic: string; queueId: number; queueDir: string }[] = [];
  for (const topic of fs.readdirSync(dir).sort()) {
    const topicDir = path.join(dir, topic);
    if (!fs.statSync(topicDir).isDirectory()) continue;
    for (const queueName of fs.readdirSync(topicDir).sort((a, b) => Number(a) - Number(b))) {
      const queueId = Number(queueName);
      const queueDir = path.join(topicDir, queueName);
      if (!Number.isInteger(queueId) || !fs.statSync(queueDir).isDirectory()) continue;
      out.push({ topic, queueId, queueDir });
    }
  }
  return out;
}

/** Bytes of every file the walk reads (for progress): segments, then consume queue files. */
function bytesToWalk(commitLogDir: string, consumeQueueDir: string): number {
  const sizeOf = (file: string): number => fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
  let total = 0;
  for (const name of segmentFiles(commitLogDir)) total += sizeOf(path.join(commitLogDir, name));
  for (const { queueDir } of queueDirs(consumeQueueDir)) {
    for (const name of segmentFiles(queueDir)) total += sizeOf(path.join(queueDir, name));
  }
  return total;
}

function walkCommitLog(
  dir: string,
  problems: StoreProblem[],
  byOffset: Map<number, IndexedRecord>,
  records: RecordSummary[] | null,
  progress: WalkProgress,
): StoreInspection['commitLog'] {
  const names = segmentFiles(dir);
  const segments: SegmentSummary[] = [];
  let total = 0;
  let maxOffset = 0;
  const segmentSize = names.length === 0 ? 0 : fs.statSync(path.join(dir, names[0] as string)).size;
  for (const [index, name] of names.entries()) {
    const file = path.join(dir, name);
    const fromOffset = Number(name);
    const bytes = fs.readFileSync(file);
    if (bytes.length !== segmentSize) {
      problems.push({
        file,
        offset: 0,
        problem: `segment is ${bytes.length} bytes, the first is ${segmentSize}`,
      });
    }
    if (index > 0 && fromOffset !== Number(names[index - 1]) + segmentSize) {
      problems.push({
        file,
        offset: 0,
        problem: `segment starts at ${fromOffset}, not where the previous one ends`,
      });
    }
    let pos = 0;
    let count = 0;
    let end: SegmentSummary['end'] = 'END_OF_FILE';
    while (pos < bytes.length) {
      progress.within(pos);
      const checked = checkMessageAndReturnSize(bytes, pos, bytes.length, {
        checkCRC: true,
        expectedPhysicalOffset: fromOffset + pos,
      });
      if (checked.kind === 'record') {
        byOffset.set(fromOffset + pos, {
          size: checked.size,
          topic: checked.topic,
          queueId: checked.queueId,
          queueOffset: checked.queueOffset,
          tagsCode: checked.tagsCode,
        });
        records?.push({
          offset: fromOffset + pos,
          size: checked.size,
          topic: checked.topic,
          queueId: checked.queueId,
          queueOffset: checked.queueOffset,
          storeTimestamp: checked.storeTimestamp,
          messageId: checked.uniqKey,
        });
        count++;
        pos += checked.size;
        continue;
      }
      if (checked.kind === 'blank') {
        end = 'BLANK';
        if (pos + checked.size !== bytes.length) {
          problems.push({
            file,
            offset: pos,
            problem: `BLANK of ${checked.size} bytes does not reach the segment's end`,
          });
        }
        break;
      }
      if (allZero(bytes, pos)) {
        end = 'ZEROS';
        break;
      }
      end = 'DAMAGED';
      problems.push({ file, offset: pos, problem: `not a record: ${checked.reason}` });
      break;
    }
    segments.push({ file, fromOffset, fileSize: bytes.length, dataBytes: pos, records: count, end });
    progress.fileDone(bytes.length);
    total += count;
    if (count > 0 || end !== 'ZEROS') maxOffset = fromOffset + pos;
  }
  // Zeros end the data of the last segment holding records; before a later one with records,
  // they are a hole.
  for (const [i, segment] of segments.entries()) {
    if (segment.end === 'ZEROS' && segments.slice(i + 1).some((later) => later.records > 0)) {
      problems.push({
        file: segment.file,
        offset: segment.dataBytes,
        problem: 'zeros before the segment is full, with records in a later segment',
      });
    }
  }
  return {
    segmentSize,
    segments,
    minOffset: names.length === 0 ? 0 : Number(names[0]),
    maxOffset,
    records: total,
  };
}

function walkConsumeQueues(
  dir: string,
  problems: StoreProblem[],
  byOffset: Map<number, IndexedRecord>,
  commitLogMin: number,
  progress: WalkProgress,
): ConsumeQueueSummary[] {
  const out: ConsumeQueueSummary[] = [];
  for (const { topic, queueId, queueDir } of queueDirs(dir)) {
    const files = segmentFiles(queueDir);
    let minOffset = -1;
    let maxOffset = 0;
    let ended = false;
    for (const name of files) {
      const file = path.join(queueDir, name);
      const bytes = fs.readFileSync(file);
      progress.fileDone(bytes.length);
      const firstUnit = Number(name) / CQ_STORE_UNIT_SIZE_BYTES;
      for (let at = 0; at + CQ_STORE_UNIT_SIZE_BYTES <= bytes.length; at += CQ_STORE_UNIT_SIZE_BYTES) {
        const commitLogOffset = readInt64BE(bytes, at);
        const size = bytes.readInt32BE(at + 8);
        const tagsCode = readInt64BE(bytes, at + 12);
        const queueOffset = firstUnit + at / CQ_STORE_UNIT_SIZE_BYTES;
        if (commitLogOffset === 0 && size === 0 && tagsCode === 0) {
          ended = true;
          if (!allZero(bytes, at)) {
            problems.push({ file, offset: at, problem: 'a zero unit with units after it (a hole)' });
          }
          break;
        }
        if (size === CQ_BLANK_UNIT_SIZE) continue;
        if (minOffset < 0) minOffset = queueOffset;
        maxOffset = queueOffset + 1;
        if (commitLogOffset < commitLogMin) continue; // its segment was deleted: nothing to check
        const record = byOffset.get(commitLogOffset);
        const problem =
          record === undefined
            ? `unit ${queueOffset} points at commit log offset ${commitLogOffset}, where no valid record starts`
            : record.size !== size
              ? `unit ${queueOffset} says ${size} bytes, the record at ${commitLogOffset} is ${record.size}`
              : record.topic !== topic || record.queueId !== queueId
                ? `unit ${queueOffset} points at a record of ${record.topic}/${record.queueId}`
                : record.queueOffset !== queueOffset
                  ? `unit ${queueOffset} points at the record of queue offset ${record.queueOffset}`
                  : record.tagsCode !== tagsCode
                    ? `unit ${queueOffset} has tags code ${tagsCode}, its record ${record.tagsCode}`
                    : null;
        if (problem !== null) problems.push({ file, offset: at, problem });
      }
      if (ended) break;
    }
    out.push({ topic, queueId, files, minOffset: Math.max(0, minOffset), maxOffset });
  }
  return out;
}

function readCheckpoint(file: string): Readonly<Record<string, number>> | null {
  if (!fs.existsSync(file)) return null;
  const page = fs.readFileSync(file);
  const fields: Record<string, number> = {};
  CHECKPOINT_FIELDS.forEach((name, i) => {
    fields[name] = page.length >= (i + 1) * 8 ? readInt64BE(page, i * 8) : 0;
  });
  return fields;
}

function allZero(bytes: Buffer, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
