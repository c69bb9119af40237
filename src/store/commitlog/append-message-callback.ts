import assert from 'node:assert/strict';
import util from 'node:util';
import type { AppendOutcome, AppendTarget } from '../mapped-file/mapped-file.js';
import type { HostAddress } from '../message/host.js';
import {
  dataViewOf,
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

/**
 * What one append did (RocketMQ's `AppendMessageResult`). For a PUT_OK it is also what the caller
 * gets as `appendResult`: one object per put, with the message ids built only when read.
 */
export class AppendMessageResult implements AppendOutcome {
  readonly status: AppendMessageStatus | typeof WRITE_BUFFER_BUSY;
  /** Commit log offset of the first record (or of the BLANK). */
  readonly wroteOffset: number;
  /** Bytes the segment's write position moved: the records, or the rest of the file for a BLANK. */
  readonly wroteBytes: number;
  /** Queue offset of the first record (RocketMQ's `logicsOffset`). */
  readonly queueOffset: number;
  readonly storeTimestamp: number;
  readonly msgNum: number;
  /**
   * What the message ids need, and no more: the store host and the record lengths (null for a
   * single record). Keeping the encoded records would keep every body alive with the result.
   */
  readonly #storeHost: HostAddress | null;
  readonly #recordLengths: readonly number[] | null;
  #msgId: string | undefined;

  constructor(
    status: AppendMessageStatus | typeof WRITE_BUFFER_BUSY,
    wroteOffset: number,
    wroteBytes: number,
    queueOffset: number,
    storeTimestamp: number,
    records: EncodedRecord | readonly EncodedRecord[] | null,
  ) {
    this.status = status;
    this.wroteOffset = wroteOffset;
    this.wroteBytes = wroteBytes;
    this.queueOffset = queueOffset;
    this.storeTimestamp = storeTimestamp;
    if (records === null) {
      this.msgNum = 0;
      this.#storeHost = null;
      this.#recordLengths = null;
    } else if (Array.isArray(records)) {
      const list = records as readonly EncodedRecord[];
      this.msgNum = list.length;
      this.#storeHost = list[0]?.storeHost ?? null;
      this.#recordLengths = list.map((r) => r.msgLength);
    } else {
      this.msgNum = 1;
      this.#storeHost = (records as EncodedRecord).storeHost;
      this.#recordLengths = null;
    }
  }

  get ok(): boolean {
    return this.status === AppendMessageStatus.PUT_OK || this.status === AppendMessageStatus.END_OF_FILE;
  }

  get endOfFile(): boolean {
    return this.status === AppendMessageStatus.END_OF_FILE;
  }

  /** Commit log offset of every record written. */
  get recordOffsets(): number[] {
    if (this.msgNum === 0) return [];
    if (this.#recordLengths === null) return [this.wroteOffset];
    const offsets: number[] = [];
    let offset = this.wroteOffset;
    for (const length of this.#recordLengths) {
      offsets.push(offset);
      offset += length;
    }
    return offsets;
  }

  /** Offset message id(s): store host + commit log offset; `,`-joined for a batch, as RocketMQ does. */
  get msgId(): string {
    if (this.#msgId === undefined) {
      const host = this.#storeHost;
      this.#msgId =
        host === null
          ? ''
          : this.recordOffsets.map((offset) => createOffsetMessageId(host, offset)).join(',');
    }
    return this.#msgId;
  }

  toJSON(): Record<string, unknown> {
    return {
      status: this.status,
      wroteOffset: this.wroteOffset,
      wroteBytes: this.wroteBytes,
      msgId: this.msgId,
      queueOffset: this.queueOffset,
      storeTimestamp: this.storeTimestamp,
      msgNum: this.msgNum,
    };
  }

  [util.inspect.custom](): Record<string, unknown> {
    return this.toJSON();
  }
}

function notWritten(
  status: AppendMessageResult['status'],
  wroteOffset: number,
  queueOffset: number,
  storeTimestamp: number,
): AppendMessageResult {
  return new AppendMessageResult(status, wroteOffset, 0, queueOffset, storeTimestamp, null);
}

function endOfFile(
  target: AppendTarget,
  wroteOffset: number,
  maxBlank: number,
  queueOffset: number,
  storeTimestamp: number,
): AppendMessageResult {
  // Fewer than 8 bytes left (only a file not written by this store ends so): no room even for
  // the BLANK. The segment is full all the same; readers skip such a tail.
  if (maxBlank >= END_FILE_MIN_BLANK_LENGTH_BYTES) {
    const region = target.reserve(END_FILE_MIN_BLANK_LENGTH_BYTES);
    if (region === null) return notWritten(WRITE_BUFFER_BUSY, wroteOffset, queueOffset, storeTimestamp);
    writeBlankRecord(region.buffer, region.offset, maxBlank);
  }
  return new AppendMessageResult(
    AppendMessageStatus.END_OF_FILE,
    wroteOffset,
    maxBlank,
    queueOffset,
    storeTimestamp,
    null,
  );
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
      msg.record,
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
    records: EncodedRecord | readonly EncodedRecord[],
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
    const view = dataViewOf(region.buffer);
    if (!Array.isArray(records)) {
      const record = records as EncodedRecord;
      const end = writeRecord(
        region.buffer,
        region.offset,
        record,
        queueOffset,
        wroteOffset,
        storeTimestamp,
        view,
      );
      // The paired check of the one recovery makes: a record's length is what its header says.
      if (end - region.offset !== record.msgLength)
        assert.fail('a written record must be exactly msgLength bytes');
    } else {
      let pos = region.offset;
      let physicalOffset = wroteOffset;
      const list = records as readonly EncodedRecord[];
      for (let i = 0; i < list.length; i++) {
        const record = list[i] as EncodedRecord;
        const end = writeRecord(
          region.buffer,
          pos,
          record,
          queueOffset + i,
          physicalOffset,
          storeTimestamp,
          view,
        );
        if (end - pos !== record.msgLength) assert.fail('a written record must be exactly msgLength bytes');
        pos = end;
        physicalOffset += record.msgLength;
      }
    }
    return new AppendMessageResult(
      AppendMessageStatus.PUT_OK,
      wroteOffset,
      totalLength,
      queueOffset,
      storeTimestamp,
      records,
    );
  }
}
