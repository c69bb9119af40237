import type { MappedFile } from '../mapped-file/mapped-file.js';
import {
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
  const checkOptions = {
    checkCRC: options.checkCRC,
    forceVerifyPropCRC: options.forceVerifyPropCRC,
    expectedPhysicalOffset: 0,
  };
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
    // A record larger than the window (written with a larger maxMessageSize than today's) is
    // read whole: the window size is a reading choice, never a limit on what is valid.
    const claimed = length >= 8 ? window.readInt32BE(0) : 0;
    const magic = length >= 8 ? window.readInt32BE(4) : 0;
    if (
      claimed > length &&
      position + claimed <= limit &&
      (magic === MESSAGE_MAGIC_CODE_V1 || magic === MESSAGE_MAGIC_CODE_V2)
    ) {
      length = claimed;
      window = file.readSync(position, length);
      if (window === null) return { position, stop: 'invalid', reason: 'the segment could not be read' };
    }
    const moreAfterWindow = position + length < limit;
    let offset = 0;
    while (offset < length) {
      const left = length - offset;
      // A record cut off by the window (not by the file) is read again at the start of the next.
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
    position += offset;
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
