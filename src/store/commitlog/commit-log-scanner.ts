import type { MappedFile } from '../mapped-file/mapped-file.js';
import {
  type CheckOptions,
  checkMessageAndReturnSize,
  checkRecordHeader,
  forgetCheckedBuffer,
  RecordHeader,
} from '../message/message-decoder.js';
import {
  END_FILE_MIN_BLANK_LENGTH_BYTES,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
} from '../message/message-format.js';

/**
 * Walks the records of one segment in file order, reading it in large windows (recovery, and
 * later dispatch and inspection). A record never spans segments, and the window is at least as
 * large as the largest record, so a record that straddles the end of a window is re-read whole
 * at the start of the next one.
 */

/** Bytes read per window; large reads keep a recovery scan near sequential-read speed. */
export const SCAN_WINDOW_SIZE_DEFAULT_BYTES = 8 * 1024 * 1024;

export interface ScanOptions {
  readonly checkCRC: boolean;
  readonly forceVerifyPropCRC: boolean;
  /** Window size; raised to the largest record size when smaller. */
  readonly windowSizeBytes: number;
  /**
   * `scanSegmentAsync` only: called after each window's records, while the next window is read
   * (recovery starts writing the consume queue units it rebuilt then).
   */
  readonly afterWindow?: () => void;
}

export interface ScanEnd {
  /**
   * Where the scan stopped: at the BLANK or invalid record, just after the last record handed to
   * a callback that returned false, or at `limit`.
   */
  readonly position: number;
  readonly stop: 'blank' | 'invalid' | 'limit' | 'callback';
  /** Why the record at `position` is not a record (`stop === 'invalid'`). */
  readonly reason: string | null;
}

/**
 * Calls `onRecord` for each record of `file` from `startPosition` up to `limit` (its readable end
 * by default), and stops at the first BLANK or invalid record, or when `onRecord` returns false.
 * `onRecord` gets one reused header (valid only during the call) and the window holding the
 * record's bytes.
 */
export function scanSegment(
  file: MappedFile,
  startPosition: number,
  options: ScanOptions,
  onRecord: (header: RecordHeader, window: Buffer) => boolean,
  limit: number = file.getReadPosition(),
): ScanEnd {
  try {
    return scanWindows(file, startPosition, options, onRecord, limit);
  } finally {
    forgetCheckedBuffer();
  }
}

function scanWindows(
  file: MappedFile,
  startPosition: number,
  options: ScanOptions,
  onRecord: (header: RecordHeader, window: Buffer) => boolean,
  limit: number,
): ScanEnd {
  const windowSize = Math.max(options.windowSizeBytes, 64 * 1024);
  const header = new RecordHeader();
  const checkOptions = recordCheckOptions(options);
  let position = startPosition;
  // One window buffer for the whole scan: onRecord uses the window synchronously, never keeps it.
  let windowBuffer: Buffer | null = null;
  while (position < limit) {
    // Fewer bytes than a BLANK left at the end of the segment: no record can start there.
    if (limit === file.fileSize && limit - position < END_FILE_MIN_BLANK_LENGTH_BYTES) {
      return { position, stop: 'blank', reason: null };
    }
    let length = Math.min(windowSize, limit - position);
    windowBuffer ??= Buffer.allocUnsafe(length);
    let window: Buffer | null =
      windowBuffer.length >= length ? windowBuffer : file.readSync(position, length);
    if (window === windowBuffer && !file.readIntoSync(position, length, windowBuffer)) window = null;
    if (window === null) return { position, stop: 'invalid', reason: 'the segment could not be read' };
    const claimed = oversizeRecordAt(window, length, position, limit);
    if (claimed > 0) {
      length = claimed;
      window = file.readSync(position, length);
      if (window === null) return { position, stop: 'invalid', reason: 'the segment could not be read' };
    }
    const walked = walkWindow(file, position, window, length, limit, checkOptions, header, onRecord);
    if (typeof walked !== 'number') return walked;
    position += walked;
  }
  return { position, stop: 'limit', reason: null };
}

/**
 * The size of the record starting the window when it is larger than the window (written with a
 * larger maxMessageSize than today's) and ends within `limit`, else 0: such a record is read
 * whole, since the window size is a reading choice, never a limit on what is valid.
 */
function oversizeRecordAt(window: Buffer, length: number, position: number, limit: number): number {
  if (length < 8) return 0;
  const claimed = window.readInt32BE(0);
  const magic = window.readInt32BE(4);
  const isRecord = magic === MESSAGE_MAGIC_CODE_V1 || magic === MESSAGE_MAGIC_CODE_V2;
  return isRecord && claimed > length && position + claimed <= limit ? claimed : 0;
}

/** The per-record check options of a scan; `expectedPhysicalOffset` is set for each record. */
function recordCheckOptions(options: ScanOptions): { expectedPhysicalOffset: number } & CheckOptions {
  return {
    checkCRC: options.checkCRC,
    forceVerifyPropCRC: options.forceVerifyPropCRC,
    expectedPhysicalOffset: 0,
  };
}

/**
 * The records of one window starting at segment position `position`: each whole one is checked
 * and handed to `onRecord`. Returns the bytes the window's whole records took (a record cut off by
 * the window, not by the file, is left for the next window to start with), or where the scan
 * ends: a BLANK, an invalid record, or `onRecord` returning false.
 */
function walkWindow(
  file: MappedFile,
  position: number,
  window: Buffer,
  length: number,
  limit: number,
  checkOptions: { expectedPhysicalOffset: number } & CheckOptions,
  header: RecordHeader,
  onRecord: (header: RecordHeader, window: Buffer) => boolean,
): ScanEnd | number {
  const moreAfterWindow = position + length < limit;
  let offset = 0;
  while (offset < length) {
    const left = length - offset;
    if (moreAfterWindow && offset > 0) {
      if (left < 8) break;
      const size = window.readInt32BE(offset);
      if (size > left && position + offset + size <= limit) break;
    }
    checkOptions.expectedPhysicalOffset = file.fileFromOffset + position + offset;
    const kind = checkRecordHeader(window, offset, length, checkOptions, header);
    if (kind === 'blank') {
      if (position + offset + header.size !== file.fileSize) {
        const reason = `BLANK record of ${header.size} bytes does not end at the end of the segment`;
        return { position: position + offset, stop: 'invalid', reason };
      }
      return { position: position + offset, stop: 'blank', reason: null };
    }
    if (kind === 'invalid') return { position: position + offset, stop: 'invalid', reason: header.reason };
    const keepGoing = onRecord(header, window);
    offset += header.size;
    if (!keepGoing) return { position: position + offset, stop: 'callback', reason: null };
  }
  return offset;
}

/**
 * Room kept in front of each read-ahead window for the bytes of a record the previous window cut
 * off; a longer cut-off record (a body of megabytes straddling a window end) is read again
 * synchronously instead.
 */
const READ_AHEAD_HEADROOM_BYTES = 1024 * 1024;

/** What `scanSegmentAsync` reads next while it checks the current window. */
interface ReadAhead {
  /** Segment position of the first byte read, and how many. */
  readonly start: number;
  readonly length: number;
  /** The buffer read into, at READ_AHEAD_HEADROOM_BYTES (the headroom takes a cut-off record). */
  readonly buffer: Buffer;
  readonly done: Promise<boolean>;
}

/**
 * `scanSegment` for recovery: the same walk and the same results, but each window's successor is
 * read on the thread pool while the current one is checked, so reading and checking overlap (on
 * two cores, reading a gigabyte costs about as much as checking its CRCs). A record the window
 * cut off is joined to the next window in that window's headroom.
 */
export async function scanSegmentAsync(
  file: MappedFile,
  startPosition: number,
  options: ScanOptions,
  onRecord: (header: RecordHeader, window: Buffer) => boolean,
  limit: number = file.getReadPosition(),
): Promise<ScanEnd> {
  const windowSize = Math.max(options.windowSizeBytes, 64 * 1024);
  // One window holds it all: nothing to overlap.
  if (limit - startPosition <= windowSize) return scanSegment(file, startPosition, options, onRecord, limit);
  const headroom = Math.min(READ_AHEAD_HEADROOM_BYTES, windowSize);
  const buffers = [
    Buffer.allocUnsafe(headroom + windowSize),
    Buffer.allocUnsafe(headroom + windowSize),
  ] as const;
  let ahead: ReadAhead | null = null;
  try {
    return await scanWithReadAhead(
      file,
      startPosition,
      options,
      onRecord,
      limit,
      windowSize,
      headroom,
      buffers,
      (a) => {
        ahead = a;
      },
    );
  } finally {
    forgetCheckedBuffer();
    // A read still in flight finishes before the caller may cut or close the file.
    const pending = ahead as ReadAhead | null;
    if (pending !== null) await pending.done.catch(() => false);
  }
}

async function scanWithReadAhead(
  file: MappedFile,
  startPosition: number,
  options: ScanOptions,
  onRecord: (header: RecordHeader, window: Buffer) => boolean,
  limit: number,
  windowSize: number,
  headroom: number,
  buffers: readonly [Buffer, Buffer],
  setAhead: (ahead: ReadAhead | null) => void,
): Promise<ScanEnd> {
  const header = new RecordHeader();
  const checkOptions = recordCheckOptions(options);
  let position = startPosition;
  let ahead: ReadAhead | null = null;
  /** The current window and the buffer behind it (the next read goes to the other one). */
  let window: Buffer | null = null;
  let windowBacking: Buffer | null = null;
  let length = 0;
  let previous: { readonly window: Buffer; readonly end: number } | null = null;
  while (position < limit) {
    if (limit === file.fileSize && limit - position < END_FILE_MIN_BLANK_LENGTH_BYTES) {
      return { position, stop: 'blank', reason: null };
    }
    window = null;
    if (ahead !== null) {
      const read: ReadAhead = ahead;
      ahead = null;
      setAhead(null);
      const ok = await read.done;
      const carried = read.start - position;
      if (ok && previous !== null && previous.end === read.start && carried >= 0 && carried <= headroom) {
        // The cut-off bytes go in front of the read-ahead bytes: one contiguous window.
        previous.window.copy(read.buffer, headroom - carried, previous.window.length - carried);
        window = read.buffer.subarray(headroom - carried, headroom + read.length);
        windowBacking = read.buffer;
        length = window.length;
      }
    }
    if (window === null) {
      length = Math.min(windowSize, limit - position);
      const target: Buffer = windowBacking === buffers[0] ? buffers[1] : buffers[0];
      if (!file.readIntoSync(position, length, target.subarray(headroom))) {
        return { position, stop: 'invalid', reason: 'the segment could not be read' };
      }
      window = target.subarray(headroom, headroom + length);
      windowBacking = target;
    }
    let current: Buffer = window;
    const claimed = oversizeRecordAt(current, length, position, limit);
    if (claimed > 0) {
      length = claimed;
      const whole = file.readSync(position, length);
      windowBacking = null;
      if (whole === null) return { position, stop: 'invalid', reason: 'the segment could not be read' };
      current = whole;
    }
    const windowEnd = position + length;
    if (windowEnd < limit) {
      const target: Buffer = windowBacking === buffers[0] ? buffers[1] : buffers[0];
      const nextLength = Math.min(windowSize, limit - windowEnd);
      ahead = {
        start: windowEnd,
        length: nextLength,
        buffer: target,
        done: file.readInto(windowEnd, nextLength, target, headroom),
      };
      setAhead(ahead);
    }
    const walked = walkWindow(file, position, current, length, limit, checkOptions, header, onRecord);
    if (typeof walked !== 'number') return walked;
    options.afterWindow?.();
    previous = { window: current, end: windowEnd };
    position += walked;
  }
  return { position, stop: 'limit', reason: null };
}

/**
 * True when the record at `position` of `file` is valid: where it says it is, with a good body CRC.
 * (Never the whole-record CRC: this asks whether real data is there, and records written before
 * `forceVerifyPropCRC` was turned on have none.)
 */
export function isValidRecordAt(file: MappedFile, position: number): boolean {
  if (position < 0 || position + 8 > file.fileSize) return false;
  const head = file.readSync(position, 8);
  if (head === null) return false;
  const size = head.readInt32BE(0);
  if (size < 8 || position + size > file.fileSize) return false;
  const bytes = file.readSync(position, size);
  if (bytes === null) return false;
  const result = checkMessageAndReturnSize(bytes, 0, size, {
    checkCRC: true,
    forceVerifyPropCRC: false,
    expectedPhysicalOffset: file.fileFromOffset + position,
  });
  return result.kind === 'record';
}

const MAGIC_V1_BYTES = Buffer.alloc(4);
MAGIC_V1_BYTES.writeInt32BE(MESSAGE_MAGIC_CODE_V1);
const MAGIC_V2_BYTES = Buffer.alloc(4);
MAGIC_V2_BYTES.writeInt32BE(MESSAGE_MAGIC_CODE_V2);

/**
 * The position of the first valid record after `position` in `file`, or -1. Used when a record's
 * own size field is damaged and cannot point to the next one: every place where a record magic
 * code appears is tried (a record must also sit where its PHYSICALOFFSET says and pass its CRC,
 * so a stray magic in a body is no match). Only called to decide whether to refuse to open.
 */
export function findValidRecordAfter(file: MappedFile, position: number): number {
  const windowSize = SCAN_WINDOW_SIZE_DEFAULT_BYTES;
  // Windows overlap by a record header so a magic across a window edge is not missed.
  for (let start = position + 1; start < file.fileSize; start += windowSize - 8) {
    const length = Math.min(windowSize, file.fileSize - start);
    if (length < 8) break;
    const window = file.readSync(start, length);
    if (window === null) return -1;
    for (const magic of [MAGIC_V1_BYTES, MAGIC_V2_BYTES]) {
      for (let at = window.indexOf(magic, 4); at >= 4; at = window.indexOf(magic, at + 1)) {
        const candidate = start + at - 4;
        if (candidate > position && isValidRecordAt(file, candidate)) return candidate;
      }
    }
  }
  return -1;
}
