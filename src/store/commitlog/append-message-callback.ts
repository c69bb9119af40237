import assert from 'node:assert/strict';
import type { AppendOutcome, AppendTarget } from '../mapped-file/mapped-file.js';
import {
  type EncodedBatch,
  type EncodedMessage,
  type EncodedRecord,
  writeBlankRecord,
  writeRecord,
} from '../message/message-ext-encoder.js';
import { END_FILE_MIN_BLANK_LENGTH_BYTES } from '../message/message-format.js';
import { createOffsetMessageId } from '../message/message-id.js';
import { AppendMessageStatus } from '../status.js';

/**
 * RocketMQ's `DefaultAppendMessageCallback.doAppend` (store reference §4.7): decides whether the
 * record (or the whole batch) fits in what is left of the segment, and writes either the record
 * with its assigned queue offset, physical offset and store timestamp, or the 8-byte BLANK that
 * ends the segment. Runs inside the put section.
 */

/** Ours: no write buffer was free (the pool is exhausted). The put becomes OS_PAGE_CACHE_BUSY. */
export const WRITE_BUFFER_BUSY = 'WRITE_BUFFER_BUSY';

export interface AppendMessageResult extends AppendOutcome {
  readonly status: AppendMessageStatus | typeof WRITE_BUFFER_BUSY;
  /** Commit log offset of the first record (or of the BLANK). */
  readonly wroteOffset: number;
  /** Bytes the segment's write position moved: the records, or the rest of the file for a BLANK. */
  readonly wroteBytes: number;
  /** Queue offset of the first record (RocketMQ's `logicsOffset`). */
  readonly queueOffset: number;
  readonly storeTimestamp: number;
  readonly msgNum: number;
  /** Commit log offset of every record written (for the message ids). */
  readonly recordOffsets: readonly number[];
}

function notWritten(
  status: AppendMessageResult['status'],
  wroteOffset: number,
  queueOffset: number,
  storeTimestamp: number,
): AppendMessageResult {
  return {
    ok: false,
    status,
    wroteOffset,
    wroteBytes: 0,
    queueOffset,
    storeTimestamp,
    msgNum: 0,
    recordOffsets: [],
  };
}

function endOfFile(
  target: AppendTarget,
  wroteOffset: number,
  maxBlank: number,
  queueOffset: number,
  storeTimestamp: number,
): AppendMessageResult {
  const region = target.reserve(END_FILE_MIN_BLANK_LENGTH_BYTES);
  if (region === null) return notWritten(WRITE_BUFFER_BUSY, wroteOffset, queueOffset, storeTimestamp);
  writeBlankRecord(region.buffer, region.offset, maxBlank);
  return {
    ok: true,
    status: AppendMessageStatus.END_OF_FILE,
    wroteOffset,
    wroteBytes: maxBlank,
    queueOffset,
    storeTimestamp,
    msgNum: 0,
    recordOffsets: [],
  };
}

export class DefaultAppendMessageCallback {
  /**
   * Appends one message. `wroteOffset` is the commit log offset of the write position;
   * `maxBlank` the bytes left in the segment.
   */
  doAppend(
    wroteOffset: number,
    target: AppendTarget,
    maxBlank: number,
    msg: EncodedMessage,
    queueOffset: number,
    storeTimestamp: number,
  ): AppendMessageResult {
    return this.#append(
      wroteOffset,
      target,
      maxBlank,
      [msg.record],
      msg.record.msgLength,
      queueOffset,
      storeTimestamp,
    );
  }

  /** Appends a batch: all of it in this segment, or a BLANK and nothing else. */
  doAppendBatch(
    wroteOffset: number,
    target: AppendTarget,
    maxBlank: number,
    batch: EncodedBatch,
    queueOffset: number,
    storeTimestamp: number,
  ): AppendMessageResult {
    return this.#append(
      wroteOffset,
      target,
      maxBlank,
      batch.records,
      batch.totalLength,
      queueOffset,
      storeTimestamp,
    );
  }

  #append(
    wroteOffset: number,
    target: AppendTarget,
    maxBlank: number,
    records: readonly EncodedRecord[],
    totalLength: number,
    queueOffset: number,
    storeTimestamp: number,
  ): AppendMessageResult {
    // A record never ends closer than 8 bytes to the end of a segment, so every full segment
    // ends in a BLANK that readers can recognise.
    if (totalLength + END_FILE_MIN_BLANK_LENGTH_BYTES > maxBlank) {
      return endOfFile(target, wroteOffset, maxBlank, queueOffset, storeTimestamp);
    }
    const region = target.reserve(totalLength);
    if (region === null) return notWritten(WRITE_BUFFER_BUSY, wroteOffset, queueOffset, storeTimestamp);
    const recordOffsets: number[] = [];
    let pos = region.offset;
    let physicalOffset = wroteOffset;
    for (let i = 0; i < records.length; i++) {
      const record = records[i] as EncodedRecord;
      recordOffsets.push(physicalOffset);
      const end = writeRecord(region.buffer, pos, record, queueOffset + i, physicalOffset, storeTimestamp);
      // The paired check of the one recovery makes: a record's length is what its header says.
      assert.equal(end - pos, record.msgLength, 'a written record must be exactly msgLength bytes');
      pos = end;
      physicalOffset += record.msgLength;
    }
    return {
      ok: true,
      status: AppendMessageStatus.PUT_OK,
      wroteOffset,
      wroteBytes: totalLength,
      queueOffset,
      storeTimestamp,
      msgNum: records.length,
      recordOffsets,
    };
  }
}

/** The message id(s) of an append: one per record, joined with `,` for a batch as RocketMQ does. */
export function msgIdOf(result: AppendMessageResult, records: readonly EncodedRecord[]): string {
  const ids: string[] = [];
  for (let i = 0; i < result.recordOffsets.length; i++) {
    const record = records[i] as EncodedRecord;
    ids.push(createOffsetMessageId(record.storeHost, result.recordOffsets[i] as number));
  }
  return ids.join(',');
}
