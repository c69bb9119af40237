/**
 * RocketMQ's status values, by the names RocketMQ gives them, so a reader who knows
 * `PutMessageStatus` finds the same words here.
 */

export const PutMessageStatus = {
  /** Appended, and the durability wait of its level (if any) succeeded. */
  PUT_OK: 'PUT_OK',
  /** SYNC_FLUSH: the bytes were not known durable within `syncFlushTimeout`. The message is stored. */
  FLUSH_DISK_TIMEOUT: 'FLUSH_DISK_TIMEOUT',
  /** Replication is not part of this store; kept for the full RocketMQ set. */
  FLUSH_SLAVE_TIMEOUT: 'FLUSH_SLAVE_TIMEOUT',
  SLAVE_NOT_AVAILABLE: 'SLAVE_NOT_AVAILABLE',
  /** Store shut down, or not writeable (disk full, an I/O error stopped writes). */
  SERVICE_NOT_AVAILABLE: 'SERVICE_NOT_AVAILABLE',
  /** The next segment file could not be created. */
  CREATE_MAPPED_FILE_FAILED: 'CREATE_MAPPED_FILE_FAILED',
  /** Body, record, topic, queue id or a host is not acceptable. */
  MESSAGE_ILLEGAL: 'MESSAGE_ILLEGAL',
  /** The encoded properties are longer than 32767 bytes. */
  PROPERTIES_SIZE_EXCEEDED: 'PROPERTIES_SIZE_EXCEEDED',
  /** Writes are backed up: the write buffers are exhausted or a commit has been stuck too long. */
  OS_PAGE_CACHE_BUSY: 'OS_PAGE_CACHE_BUSY',
  UNKNOWN_ERROR: 'UNKNOWN_ERROR',
} as const;
export type PutMessageStatus = (typeof PutMessageStatus)[keyof typeof PutMessageStatus];

/** What one append into a segment did (RocketMQ's `AppendMessageStatus`). */
export const AppendMessageStatus = {
  PUT_OK: 'PUT_OK',
  /** The record does not fit: a BLANK record filled the segment; append again to the next one. */
  END_OF_FILE: 'END_OF_FILE',
  MESSAGE_SIZE_EXCEEDED: 'MESSAGE_SIZE_EXCEEDED',
  PROPERTIES_SIZE_EXCEEDED: 'PROPERTIES_SIZE_EXCEEDED',
  UNKNOWN_ERROR: 'UNKNOWN_ERROR',
} as const;
export type AppendMessageStatus = (typeof AppendMessageStatus)[keyof typeof AppendMessageStatus];

export const FlushDiskType = {
  SYNC_FLUSH: 'SYNC_FLUSH',
  ASYNC_FLUSH: 'ASYNC_FLUSH',
} as const;
export type FlushDiskType = (typeof FlushDiskType)[keyof typeof FlushDiskType];

/** RocketMQ's `GetMessageStatus`: what a read by queue offset found. */
export const GetMessageStatus = {
  FOUND: 'FOUND',
  /** Messages were there, but the filter matched none of them. */
  NO_MATCHED_MESSAGE: 'NO_MATCHED_MESSAGE',
  /** The commit log no longer holds the message (its segment was deleted). */
  MESSAGE_WAS_REMOVING: 'MESSAGE_WAS_REMOVING',
  /** The consume queue unit could not be read. */
  OFFSET_FOUND_NULL: 'OFFSET_FOUND_NULL',
  /** The offset is past the end of the queue by more than one. */
  OFFSET_OVERFLOW_BADLY: 'OFFSET_OVERFLOW_BADLY',
  /** The offset is the end of the queue: nothing yet. */
  OFFSET_OVERFLOW_ONE: 'OFFSET_OVERFLOW_ONE',
  /** The offset is below the queue's minimum (older messages were deleted). */
  OFFSET_TOO_SMALL: 'OFFSET_TOO_SMALL',
  /** There is no such topic/queue. */
  NO_MATCHED_LOGIC_QUEUE: 'NO_MATCHED_LOGIC_QUEUE',
  /** The queue exists and is empty. */
  NO_MESSAGE_IN_QUEUE: 'NO_MESSAGE_IN_QUEUE',
} as const;
export type GetMessageStatus = (typeof GetMessageStatus)[keyof typeof GetMessageStatus];
