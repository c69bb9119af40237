import assert from 'node:assert/strict';
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
import { BODY_CRC_WORKER_MIN_SCAN_BYTES, BodyCrcVerifier, type VerifyReply } from './body-crc-verifier.js';

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
  /**
   * `scanSegmentAsync` only: the least bytes to scan for the body CRCs to be checked on the
   * worker thread (BODY_CRC_WORKER_MIN_SCAN_BYTES by default; tests lower it).
   */
  readonly crcWorkerMinScanBytes?: number;
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
  /** `scanSegmentAsync`: records whose body CRC the worker thread checked (the rest were checked here). */
  readonly bodyCrcsOnWorker?: number;
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

/** A scan's per-record check options, set for each record as the walk goes. */
interface WalkCheckOptions extends CheckOptions {
  expectedPhysicalOffset: number;
  bodyCrcVouched: boolean;
  /**
   * The CRC worker's answer for the window: the records chained from segment position
   * `vouchedFrom` and starting before `vouchedTo` have good body CRCs (-1: none).
   */
  vouchedFrom: number;
  vouchedTo: number;
  /** Records whose body CRC check was skipped because the worker vouched for it. */
  vouchedRecords: number;
}

function recordCheckOptions(options: ScanOptions): WalkCheckOptions {
  return {
    checkCRC: options.checkCRC,
    forceVerifyPropCRC: options.forceVerifyPropCRC,
    expectedPhysicalOffset: 0,
    bodyCrcVouched: false,
    vouchedFrom: -1,
    vouchedTo: -1,
    vouchedRecords: 0,
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
  checkOptions: WalkCheckOptions,
  header: RecordHeader,
  onRecord: (header: RecordHeader, window: Buffer) => boolean,
): ScanEnd | number {
  const moreAfterWindow = position + length < limit;
  // The worker's answer counts only once this walk meets its chain: at a record at vouchedFrom.
  let onVouchedChain = false;
  let offset = 0;
  while (offset < length) {
    const left = length - offset;
    if (moreAfterWindow && offset > 0) {
      if (left < 8) break;
      const size = window.readInt32BE(offset);
      if (size > left && position + offset + size <= limit) break;
    }
    checkOptions.expectedPhysicalOffset = file.fileFromOffset + position + offset;
    if (position + offset === checkOptions.vouchedFrom) onVouchedChain = true;
    checkOptions.bodyCrcVouched = onVouchedChain && position + offset < checkOptions.vouchedTo;
    const kind = checkRecordHeader(window, offset, length, checkOptions, header);
    if (checkOptions.bodyCrcVouched && kind === 'record') checkOptions.vouchedRecords++;
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

/**
 * Windows read ahead of the one being checked. Two: with the CRC worker, one is checked by the
 * worker while the main thread checks the one before it, and the next is read meanwhile.
 */
const READ_AHEAD_WINDOWS = 2;

/** A window read, or being read, ahead of the scan. */
interface AheadWindow {
  /** Segment position of the first byte read, and how many. */
  readonly start: number;
  readonly length: number;
  /** The buffer read into, at READ_AHEAD_HEADROOM_BYTES (the headroom takes a cut-off record). */
  readonly buffer: Buffer;
  readonly done: Promise<boolean>;
  /** Set when the read settles. */
  complete: boolean;
  ok: boolean;
  /** Sent to the CRC worker: to check ('check') or only to follow the record chain ('follow'). */
  posted: 'no' | 'check' | 'follow';
  vouch: Promise<VerifyReply> | null;
}

/**
 * `scanSegment` for recovery: the same walk and the same results, but reading and checking
 * overlap. Windows are read ahead on the thread pool while the current one is checked (on two
 * cores, reading a gigabyte costs about as much as checking its CRCs), and for a long scan the
 * body CRCs of the next window are checked on a worker thread (`BodyCrcVerifier`) meanwhile. A
 * record a window cut off is joined to the next window in that window's headroom.
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
  const minWorkerBytes = options.crcWorkerMinScanBytes ?? BODY_CRC_WORKER_MIN_SCAN_BYTES;
  const verifier =
    options.checkCRC && options.forceVerifyPropCRC !== true && limit - startPosition >= minWorkerBytes
      ? BodyCrcVerifier.acquire()
      : null;
  const scan = new ReadAheadScan(file, options, onRecord, limit, windowSize, verifier);
  try {
    const end = await scan.run(startPosition);
    return { ...end, bodyCrcsOnWorker: scan.bodyCrcsOnWorker };
  } finally {
    forgetCheckedBuffer();
    // Reads and checks still in flight finish before the caller may cut or close the file.
    await scan.drain();
    verifier?.release();
  }
}

class ReadAheadScan {
  readonly #file: MappedFile;
  readonly #options: ScanOptions;
  readonly #onRecord: (header: RecordHeader, window: Buffer) => boolean;
  readonly #limit: number;
  readonly #windowSize: number;
  readonly #headroom: number;
  readonly #verifier: BodyCrcVerifier | null;
  /** Three buffers: the window being checked, and READ_AHEAD_WINDOWS read ahead of it. */
  readonly #buffers: readonly Buffer[];
  /** Reads issued beyond the current window, in file order. */
  readonly #ahead: AheadWindow[] = [];
  /** The last answer the worker owes for each buffer: the buffer is not reused before it. */
  readonly #owed = new Map<Buffer, Promise<VerifyReply>>();
  /** The buffer of the window being checked (the one before it is free once its cut-off tail was copied). */
  #current: Buffer | null = null;
  /**
   * The worker's record chain: 'running' once a window was sent with a record position to start
   * from; 'none' until then (and after the scan jumped); 'off' without a worker or after a failed read.
   */
  #chain: 'off' | 'none' | 'running';
  readonly #checkOptions: WalkCheckOptions;

  constructor(
    file: MappedFile,
    options: ScanOptions,
    onRecord: (header: RecordHeader, window: Buffer) => boolean,
    limit: number,
    windowSize: number,
    verifier: BodyCrcVerifier | null,
  ) {
    this.#file = file;
    this.#options = options;
    this.#onRecord = onRecord;
    this.#limit = limit;
    this.#windowSize = windowSize;
    this.#headroom = Math.min(READ_AHEAD_HEADROOM_BYTES, windowSize);
    this.#verifier = verifier;
    this.#chain = verifier === null ? 'off' : 'none';
    this.#checkOptions = recordCheckOptions(options);
    const bytes = this.#headroom + windowSize;
    // The worker reads the windows where they are: shared memory.
    const allocate = (): Buffer =>
      verifier === null ? Buffer.allocUnsafe(bytes) : Buffer.from(new SharedArrayBuffer(bytes));
    this.#buffers = Array.from({ length: READ_AHEAD_WINDOWS + 1 }, allocate);
  }

  async run(startPosition: number): Promise<ScanEnd> {
    const file = this.#file;
    const limit = this.#limit;
    const headroom = this.#headroom;
    const header = new RecordHeader();
    const checkOptions = this.#checkOptions;
    let position = startPosition;
    let previous: { readonly window: Buffer; readonly end: number } | null = null;
    while (position < limit) {
      if (limit === file.fileSize && limit - position < END_FILE_MIN_BLANK_LENGTH_BYTES) {
        return { position, stop: 'blank', reason: null };
      }
      let current: AheadWindow | null = null;
      let window: Buffer | null = null;
      const next = this.#ahead[0];
      if (next !== undefined) {
        await next.done;
        const carried = next.start - position;
        if (
          next.ok &&
          previous !== null &&
          previous.end === next.start &&
          carried >= 0 &&
          carried <= headroom
        ) {
          // The cut-off bytes go in front of the read-ahead bytes: one contiguous window.
          previous.window.copy(next.buffer, headroom - carried, previous.window.length - carried);
          window = next.buffer.subarray(headroom - carried, headroom + next.length);
          current = this.#ahead.shift() as AheadWindow;
        } else {
          // Not where the scan is (a long cut-off record, a failed read): read afresh from here.
          await this.drain();
        }
      }
      if (current === null || window === null) {
        this.#current = null;
        const length = Math.min(this.#windowSize, limit - position);
        const target = await this.#freeBuffer();
        if (!file.readIntoSync(position, length, target.subarray(headroom))) {
          return { position, stop: 'invalid', reason: 'the segment could not be read' };
        }
        window = target.subarray(headroom, headroom + length);
        current = settledWindow(position, length, target);
      }
      this.#current = current.buffer;
      let length = window.length;
      const claimed = oversizeRecordAt(window, length, position, limit);
      if (claimed > 0) {
        // Read whole, off the window plan: the windows read ahead start in the wrong place.
        await this.drain();
        length = claimed;
        const whole = file.readSync(position, length);
        if (whole === null) return { position, stop: 'invalid', reason: 'the segment could not be read' };
        window = whole;
      } else {
        this.#startChain(current, position, window);
      }
      const windowEnd = position + length;
      await this.#readAhead(windowEnd);
      const vouch = current.posted === 'check' && claimed === 0 ? await current.vouch : null;
      checkOptions.vouchedFrom = vouch?.from ?? -1;
      checkOptions.vouchedTo = vouch?.to ?? -1;
      const walked = walkWindow(file, position, window, length, limit, checkOptions, header, this.#onRecord);
      if (typeof walked !== 'number') return walked;
      this.#options.afterWindow?.();
      previous = { window, end: windowEnd };
      position += walked;
    }
    return { position, stop: 'limit', reason: null };
  }

  /** Records whose body CRC the worker checked. */
  get bodyCrcsOnWorker(): number {
    return this.#checkOptions.vouchedRecords;
  }

  /** Waits for every read and worker answer in flight and forgets the windows read ahead. */
  async drain(): Promise<void> {
    const ahead = this.#ahead.splice(0);
    for (const w of ahead) {
      await w.done.catch(() => false);
      if (w.vouch !== null) await w.vouch;
    }
    for (const owed of this.#owed.values()) await owed;
    this.#owed.clear();
    // The worker's chain went through windows the scan will not check: start it again.
    if (this.#chain === 'running') this.#chain = 'none';
  }

  /**
   * The worker follows the record chain through the window about to be checked (`window`, cut-off
   * bytes included), from its first record at `position`.
   */
  #startChain(current: AheadWindow, position: number, window: Buffer): void {
    const verifier = this.#verifier;
    if (verifier === null || this.#chain === 'off' || current.posted !== 'no' || !verifier.ready) return;
    this.#post(current, { start: position, byteOffset: window.byteOffset, length: window.length }, false);
    this.#chain = 'running';
    this.#postReadWindows();
  }

  /** Keeps READ_AHEAD_WINDOWS reads in flight after the current window, which ends at `windowEnd`. */
  async #readAhead(windowEnd: number): Promise<void> {
    while (this.#ahead.length < READ_AHEAD_WINDOWS) {
      const last = this.#ahead.at(-1);
      const start = last === undefined ? windowEnd : last.start + last.length;
      if (start >= this.#limit) return;
      const buffer = await this.#freeBuffer();
      const length = Math.min(this.#windowSize, this.#limit - start);
      const w: AheadWindow = {
        start,
        length,
        buffer,
        done: this.#file.readInto(start, length, buffer, this.#headroom),
        complete: false,
        ok: false,
        posted: 'no',
        vouch: null,
      };
      this.#ahead.push(w);
      w.done.then(
        (ok) => {
          w.complete = true;
          w.ok = ok;
          // A failed read is read again synchronously when the scan gets there; the worker is done.
          if (!ok && this.#chain !== 'off') this.#chain = 'off';
          this.#postReadWindows();
        },
        () => {
          w.complete = true;
          this.#chain = 'off';
        },
      );
    }
  }

  /** Sends the worker, in file order, every window read ahead that is read and not yet sent. */
  #postReadWindows(): void {
    if (this.#chain !== 'running' || this.#verifier?.ready !== true) return;
    for (const w of this.#ahead) {
      if (w.posted !== 'no') continue;
      if (!w.complete) return;
      const bytes = { start: w.start, byteOffset: w.buffer.byteOffset + this.#headroom, length: w.length };
      this.#post(w, bytes, true);
    }
  }

  /**
   * Sends bytes of `w`'s buffer to the worker: to check, continuing its chain, or to follow,
   * starting it at `bytes.start`.
   */
  #post(
    w: AheadWindow,
    bytes: { readonly start: number; readonly byteOffset: number; readonly length: number },
    check: boolean,
  ): void {
    const verifier = this.#verifier as BodyCrcVerifier;
    w.posted = check ? 'check' : 'follow';
    w.vouch = verifier.verify({
      buffer: w.buffer.buffer as SharedArrayBuffer,
      ...bytes,
      chainFrom: check ? -1 : bytes.start,
      check,
    });
    this.#owed.set(w.buffer, w.vouch);
  }

  /** A buffer neither checked, read into, nor still read by the worker. */
  async #freeBuffer(): Promise<Buffer> {
    const buffer = this.#buffers.find((b) => b !== this.#current && this.#ahead.every((w) => w.buffer !== b));
    assert.ok(buffer !== undefined, 'a scan buffer is free');
    const owed = this.#owed.get(buffer);
    if (owed !== undefined) {
      await owed;
      this.#owed.delete(buffer);
    }
    return buffer;
  }
}

/** A window read synchronously at the scan's position (first, or after a jump). */
function settledWindow(start: number, length: number, buffer: Buffer): AheadWindow {
  return {
    start,
    length,
    buffer,
    done: Promise.resolve(true),
    complete: true,
    ok: true,
    posted: 'no',
    vouch: null,
  };
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
