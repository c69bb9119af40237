import path from 'node:path';
import type { PutMessageResult } from '../../src/store/index.js';
import type { IoEvent } from './instrumented-io.js';

/**
 * Reading an InstrumentedIO event log: where a put's bytes live, which writes put them in the file,
 * which fdatasync calls covered them, and whether each happened before the put was acknowledged.
 * Everything is ordered by the shared sequence number, never by time.
 */

/** A put as the test saw it: its result and the sequence number taken when its promise resolved. */
export interface AckedPut {
  readonly result: PutMessageResult;
  readonly ackSeq: number;
}

/** Where a record's bytes are: the segment file and the byte range inside it. */
export interface RecordLocation {
  readonly file: string;
  readonly from: number;
  readonly to: number;
}

/** The 20-digit segment name RocketMQ uses: the offset of the segment's first byte. */
export function segmentName(offset: number): string {
  return String(offset).padStart(20, '0');
}

export function locate(
  commitLogDir: string,
  segmentSize: number,
  wroteOffset: number,
  wroteBytes: number,
): RecordLocation {
  const fileFromOffset = wroteOffset - (wroteOffset % segmentSize);
  const from = wroteOffset - fileFromOffset;
  const to = from + wroteBytes;
  if (to > segmentSize) throw new Error(`record at ${wroteOffset} (${wroteBytes} bytes) spans two segments`);
  return { file: path.join(commitLogDir, segmentName(fileFromOffset)), from, to };
}

export interface DatasyncSpan {
  readonly file: string;
  readonly startSeq: number;
  /** Sequence number of the end (or error) event; Infinity while still running. */
  readonly endSeq: number;
  readonly ok: boolean;
}

/**
 * Pairs every datasync-start with its end (or error), per file. Throws when two fdatasync calls
 * overlap on one file, which the store promises never to do (DESIGN.md §3).
 */
export function datasyncSpans(events: readonly IoEvent[]): DatasyncSpan[] {
  const open = new Map<string, number>();
  const spans: DatasyncSpan[] = [];
  for (const e of events) {
    if (e.op === 'datasync-start') {
      if (open.has(e.path)) throw new Error(`two fdatasync calls at once on ${e.path} (seq ${e.seq})`);
      open.set(e.path, e.seq);
    } else if (e.op === 'datasync-end' || e.op === 'datasync-error') {
      const startSeq = open.get(e.path);
      if (startSeq === undefined) throw new Error(`a datasync ended that never started on ${e.path}`);
      open.delete(e.path);
      spans.push({ file: e.path, startSeq, endSeq: e.seq, ok: e.op === 'datasync-end' });
    }
  }
  for (const [file, startSeq] of open)
    spans.push({ file, startSeq, endSeq: Number.POSITIVE_INFINITY, ok: false });
  return spans;
}

/**
 * The sequence number of the write that completed the record's bytes in the file: the writes
 * before `beforeSeq` overlapping the record must cover it entirely, and the latest of them is
 * returned. null when they do not cover it.
 */
export function lastWriteCovering(
  events: readonly IoEvent[],
  loc: RecordLocation,
  beforeSeq: number,
): number | null {
  const writes = events
    .filter(
      (e) =>
        e.op === 'write' &&
        e.path === loc.file &&
        e.seq < beforeSeq &&
        (e.from as number) < loc.to &&
        (e.to as number) > loc.from,
    )
    .sort((a, b) => (a.from as number) - (b.from as number));
  let covered = loc.from;
  let last = -1;
  for (const w of writes) {
    if ((w.from as number) > covered) break;
    covered = Math.max(covered, w.to as number);
    last = Math.max(last, w.seq);
  }
  return covered >= loc.to ? last : null;
}

/** Writes to one file that overlap an earlier write to it (a commit must never rewrite bytes). */
export function overlappingWrites(events: readonly IoEvent[], file: string): IoEvent[] {
  const writes = events.filter((e) => e.op === 'write' && e.path === file);
  const bad: IoEvent[] = [];
  for (let i = 0; i < writes.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = writes[i] as IoEvent;
      const b = writes[j] as IoEvent;
      if ((a.from as number) < (b.to as number) && (b.from as number) < (a.to as number)) bad.push(a);
    }
  }
  return bad;
}

/**
 * Why a put acknowledged PUT_OK was not durable at its acknowledgement, or null when it was: its
 * bytes must have been written, then an fdatasync of its segment must have STARTED after that
 * write and ENDED (successfully) before the acknowledgement.
 */
export function durabilityViolation(
  events: readonly IoEvent[],
  spans: readonly DatasyncSpan[],
  loc: RecordLocation,
  ackSeq: number,
): string | null {
  const written = lastWriteCovering(events, loc, ackSeq);
  if (written === null)
    return `bytes [${loc.from}, ${loc.to}) of ${loc.file} were not written before the ack (seq ${ackSeq})`;
  const sync = spans.find((s) => s.file === loc.file && s.ok && s.startSeq > written && s.endSeq < ackSeq);
  if (sync === undefined) {
    return `no fdatasync of ${loc.file} started after the write (seq ${written}) and ended before the ack (seq ${ackSeq})`;
  }
  return null;
}
