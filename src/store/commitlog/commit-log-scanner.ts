import type { MappedFile } from '../mapped-file/mapped-file.js';
import { type CheckResult, checkMessageAndReturnSize } from '../message/message-decoder.js';

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

export interface ScannedRecord {
  /** Position of the record in its segment. */
  readonly position: number;
  /** The record as checked; `buffer` holds its bytes from `bufferOffset` while the callback runs. */
  readonly result: CheckResult;
  readonly buffer: Buffer;
  readonly bufferOffset: number;
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
 * by default), and stops at the first BLANK or invalid record (after handing it to `onRecord`
 * too), or when `onRecord` returns false.
 */
export function scanSegment(
  file: MappedFile,
  startPosition: number,
  options: ScanOptions,
  onRecord: (record: ScannedRecord) => boolean,
  limit: number = file.getReadPosition(),
): ScanEnd {
  const windowSize = Math.max(options.windowSizeBytes, 64 * 1024);
  let position = startPosition;
  while (position < limit) {
    const length = Math.min(windowSize, limit - position);
    const window = file.readSync(position, length);
    if (window === null) return { position, stop: 'invalid', reason: 'the segment could not be read' };
    const moreAfterWindow = position + length < limit;
    let offset = 0;
    while (offset < length) {
      const left = length - offset;
      // A record cut off by the window (not by the file) is read again at the start of the next.
      if (moreAfterWindow && offset > 0) {
        if (left < 8) break;
        const claimed = window.readInt32BE(offset);
        if (claimed > left && claimed <= windowSize) break;
      }
      const result = checkMessageAndReturnSize(window, offset, length, {
        checkCRC: options.checkCRC,
        forceVerifyPropCRC: options.forceVerifyPropCRC,
        expectedPhysicalOffset: file.fileFromOffset + position + offset,
      });
      const keepGoing = onRecord({
        position: position + offset,
        result,
        buffer: window,
        bufferOffset: offset,
      });
      if (result.kind === 'blank') return { position: position + offset, stop: 'blank', reason: null };
      if (result.kind === 'invalid')
        return { position: position + offset, stop: 'invalid', reason: result.reason };
      offset += result.size;
      if (!keepGoing) return { position: position + offset, stop: 'callback', reason: null };
    }
    position += offset;
  }
  return { position, stop: 'limit', reason: null };
}
