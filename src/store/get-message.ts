import os from 'node:os';
import type { CommitLog } from './commitlog/commit-log.js';
import type { MessageStoreConfig } from './config/message-store-config.js';
import {
  type ConsumeQueue,
  type ConsumeQueueUnit,
  CQ_BLANK_UNIT_SIZE,
} from './consumequeue/consume-queue.js';
import type { ConsumeQueueStore } from './consumequeue/consume-queue-store.js';
import type { Logger } from './logger.js';
import { tagsString2tagsCode } from './message/java-hash.js';
import type { MessageExt } from './message/message.js';
import { decodeMessage } from './message/message-decoder.js';
import { GetMessageStatus } from './status.js';

/**
 * The read path (RocketMQ's `DefaultMessageStore.getMessage`, store reference §4.17): messages of
 * one queue from a queue offset, found through the consume queue and read from the commit log.
 * Only readable bytes are ever seen: the consume queue only holds units dispatched from
 * committed (under SYNC_FLUSH, flushed) bytes. Every record read is checked (CRC, position)
 * before it is returned; one that fails is skipped, logged, and counted, never handed out.
 *
 * Reads are asynchronous preads and take no lock: they never hold up a put.
 */

export interface GetMessageOptions {
  /** Only messages with one of these tags (`*` or an empty list: all). */
  readonly tags?: readonly string[];
}

export interface GetMessageResult {
  readonly status: GetMessageStatus;
  readonly messages: readonly MessageExt[];
  /** Where the next read should start. */
  readonly nextBeginOffset: number;
  readonly minOffset: number;
  readonly maxOffset: number;
  /** Records skipped because they failed their checks (damage on disk); 0 normally. */
  readonly skippedDamaged: number;
}

/** Units looked at per call at most, whatever the filter (RocketMQ's maxFilterMessageSize / 20). */
const UNITS_SCANNED_MAX = 16000 / 20;
/** Records read together (one pread) span at most this many bytes of the commit log. */
const READ_SPAN_MAX_BYTES = 4 * 1024 * 1024;
/**
 * Records of one queue interleave with other queues' records: two of them at most this far apart
 * are read with one pread, the bytes between included. A pread costs a thread-pool round trip
 * (tens of microseconds here), as much as copying some 64 KiB of page cache.
 */
const READ_GAP_MAX_BYTES = 64 * 1024;

export interface ReadContext {
  readonly commitLog: CommitLog;
  readonly consumeQueues: ConsumeQueueStore;
  readonly config: MessageStoreConfig;
  readonly logger: Logger;
}

function tagFilter(tags: readonly string[] | undefined): { codes: Set<number>; names: Set<string> } | null {
  if (tags === undefined || tags.length === 0 || tags.includes('*')) return null;
  return { codes: new Set(tags.map((t) => tagsString2tagsCode(t))), names: new Set(tags) };
}

/** RocketMQ's `nextOffsetCorrection` on a master: the suggested offset is used. */
function emptyResult(
  status: GetMessageStatus,
  nextBeginOffset: number,
  minOffset: number,
  maxOffset: number,
): GetMessageResult {
  return { status, messages: [], nextBeginOffset, minOffset, maxOffset, skippedDamaged: 0 };
}

export async function getMessage(
  ctx: ReadContext,
  topic: string,
  queueId: number,
  offset: number,
  maxMsgNums: number,
  options: GetMessageOptions = {},
): Promise<GetMessageResult> {
  const queue = ctx.consumeQueues.find(topic, queueId);
  if (queue === null) {
    // Messages were put to it but none is dispatched yet (RocketMQ creates the consume queue on
    // this lookup and answers NO_MESSAGE_IN_QUEUE); a queue never written is no logic queue.
    const status =
      ctx.commitLog.getQueueOffset(topic, queueId) > 0
        ? GetMessageStatus.NO_MESSAGE_IN_QUEUE
        : GetMessageStatus.NO_MATCHED_LOGIC_QUEUE;
    return emptyResult(status, 0, 0, 0);
  }
  const minOffset = queue.getMinOffsetInQueue();
  const maxOffset = queue.getMaxOffsetInQueue();
  if (maxOffset === 0) return emptyResult(GetMessageStatus.NO_MESSAGE_IN_QUEUE, 0, minOffset, maxOffset);
  if (offset < minOffset)
    return emptyResult(GetMessageStatus.OFFSET_TOO_SMALL, minOffset, minOffset, maxOffset);
  if (offset === maxOffset)
    return emptyResult(GetMessageStatus.OFFSET_OVERFLOW_ONE, offset, minOffset, maxOffset);
  // RocketMQ 5 points past-the-end readers at the end (4.x sent them back to 0 when the minimum
  // was 0, making them read the whole queue again: apache/rocketmq#4215).
  if (offset > maxOffset)
    return emptyResult(GetMessageStatus.OFFSET_OVERFLOW_BADLY, maxOffset, minOffset, maxOffset);
  return readMessages(ctx, queue, offset, maxMsgNums, minOffset, maxOffset, tagFilter(options.tags));
}

interface Candidate {
  readonly unit: ConsumeQueueUnit;
  readonly queueOffset: number;
}

async function readMessages(
  ctx: ReadContext,
  queue: ConsumeQueue,
  offset: number,
  maxMsgNums: number,
  minOffset: number,
  maxOffset: number,
  filter: { codes: Set<number>; names: Set<string> } | null,
): Promise<GetMessageResult> {
  const config = ctx.config;
  const maxPhy = ctx.commitLog.getMaxOffset();
  const minPhy = ctx.commitLog.getMinOffset();
  const memoryBytes = (os.totalmem() * config.accessMessageInMemoryMaxRatio) / 100;
  const candidates: Candidate[] = [];
  let next = offset;
  let bytesTotal = 0;
  let filtered = 0;
  let removed = 0;
  let scanned = 0;
  let full = false;
  while (!full && next < maxOffset && scanned < UNITS_SCANNED_MAX && candidates.length < maxMsgNums) {
    // Without a tag filter every unit that is not blank is taken: read no more than are wanted
    // (parsing 800 units for a pull of 32 was most of a read's time).
    const wanted = filter === null ? Math.max(1, maxMsgNums - candidates.length) : UNITS_SCANNED_MAX;
    const units = await queue.getUnits(next, Math.min(maxOffset - next, UNITS_SCANNED_MAX - scanned, wanted));
    if (units.length === 0) break;
    for (const unit of units) {
      if (unit.size === CQ_BLANK_UNIT_SIZE) {
        next++;
        scanned++;
        continue;
      }
      const inDisk = maxPhy - unit.commitLogOffset > memoryBytes;
      const countCap = Math.min(
        maxMsgNums,
        inDisk ? config.maxTransferCountOnMessageInDisk : config.maxTransferCountOnMessageInMemory,
      );
      const bytesCap = inDisk
        ? config.maxTransferBytesOnMessageInDisk
        : config.maxTransferBytesOnMessageInMemory;
      if (candidates.length >= countCap || (candidates.length > 0 && bytesTotal + unit.size > bytesCap)) {
        full = true;
        break;
      }
      next++;
      scanned++;
      if (filter !== null && !filter.codes.has(unit.tagsCode)) {
        filtered++;
        continue;
      }
      if (unit.commitLogOffset < minPhy) {
        removed++;
        continue;
      }
      candidates.push({ unit, queueOffset: next - 1 });
      bytesTotal += unit.size;
    }
  }
  const messages: MessageExt[] = [];
  let skippedDamaged = 0;
  const runs = [...readRuns(candidates, config.mappedFileSizeCommitLog)];
  for (let r = 0; r < runs.length; r++) {
    const run = runs[r] as Candidate[];
    const first = run[0] as Candidate;
    const last = run.at(-1) as Candidate;
    const span = last.unit.commitLogOffset + last.unit.size - first.unit.commitLogOffset;
    const bytes = await ctx.commitLog.readRange(first.unit.commitLogOffset, span);
    if (bytes === null && run.length > 1) {
      // One damaged unit (one pointing past the end of the log, say) must not cost its
      // neighbours their read: each is read on its own, where only the damaged one fails.
      runs.splice(r + 1, 0, ...run.map((candidate) => [candidate]));
      continue;
    }
    for (const candidate of run) {
      const position = candidate.unit.commitLogOffset - first.unit.commitLogOffset;
      const message =
        bytes === null
          ? null
          : decodeMessage(bytes, position, position + candidate.unit.size, {
              checkCRC: true,
              forceVerifyPropCRC: config.forceVerifyPropCRC,
              expectedPhysicalOffset: candidate.unit.commitLogOffset,
            });
      // The unit must lead to this queue's message at this offset: a damaged unit or record that
      // points anywhere else is skipped, never served.
      if (
        message === null ||
        message.queueOffset !== candidate.queueOffset ||
        message.queueId !== queue.queueId ||
        message.topic !== queue.topic
      ) {
        skippedDamaged++;
        ctx.logger.error(
          {
            topic: queue.topic,
            queueId: queue.queueId,
            queueOffset: candidate.queueOffset,
            commitLogOffset: candidate.unit.commitLogOffset,
          },
          'a record failed its checks on read; it is skipped, not returned',
        );
        continue;
      }
      // The tags code is a hash: the second filter level compares the tag itself.
      if (filter !== null && (message.tags === undefined || !filter.names.has(message.tags))) {
        filtered++;
        continue;
      }
      messages.push(message);
    }
  }
  let status: GetMessageStatus = GetMessageStatus.FOUND;
  if (messages.length === 0) {
    if (filtered > 0) status = GetMessageStatus.NO_MATCHED_MESSAGE;
    else if (removed > 0) status = GetMessageStatus.MESSAGE_WAS_REMOVING;
    else status = GetMessageStatus.OFFSET_FOUND_NULL;
  }
  return { status, messages, nextBeginOffset: next, minOffset, maxOffset, skippedDamaged };
}

/**
 * Groups candidates into preads: records in one segment, in log order, each within
 * READ_GAP_MAX_BYTES of the one before, READ_SPAN_MAX_BYTES at most in all.
 */
function* readRuns(candidates: readonly Candidate[], segmentBytes: number): Generator<Candidate[]> {
  let run: Candidate[] = [];
  let runEnd = -1;
  let runStart = -1;
  for (const candidate of candidates) {
    const { commitLogOffset, size } = candidate.unit;
    const joins =
      run.length > 0 &&
      commitLogOffset >= runEnd &&
      commitLogOffset - runEnd <= READ_GAP_MAX_BYTES &&
      commitLogOffset + size - runStart <= READ_SPAN_MAX_BYTES &&
      // The whole unit in the run's segment (a damaged unit's size can reach past it).
      Math.floor((commitLogOffset + size - 1) / segmentBytes) === Math.floor(runStart / segmentBytes);
    if (!joins && run.length > 0) {
      yield run;
      run = [];
    }
    if (run.length === 0) runStart = commitLogOffset;
    run.push(candidate);
    runEnd = commitLogOffset + size;
  }
  if (run.length > 0) yield run;
}

/**
 * RocketMQ's `getOffsetInQueueByTime`: the first queue offset whose message was stored at or
 * after `timestamp` (binary search over the queue, reading store times from the commit log);
 * the queue's end when every message is older; 0 for an unknown queue.
 */
export async function getOffsetInQueueByTime(
  ctx: ReadContext,
  topic: string,
  queueId: number,
  timestamp: number,
): Promise<number> {
  const queue = ctx.consumeQueues.find(topic, queueId);
  if (queue === null) return 0;
  let low = queue.getMinOffsetInQueue();
  let high = queue.getMaxOffsetInQueue();
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    const time = await storeTimeAt(ctx, queue, mid);
    if (time < 0 || time < timestamp) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** RocketMQ's `getMessageStoreTimeStamp`: store time of the message at a queue offset, or -1. */
export async function getMessageStoreTimeStamp(
  ctx: ReadContext,
  topic: string,
  queueId: number,
  consumeQueueOffset: number,
): Promise<number> {
  const queue = ctx.consumeQueues.find(topic, queueId);
  if (queue === null || consumeQueueOffset < 0) return -1;
  return storeTimeAt(ctx, queue, consumeQueueOffset);
}

async function storeTimeAt(ctx: ReadContext, queue: ConsumeQueue, queueOffset: number): Promise<number> {
  const [unit] = await queue.getUnits(queueOffset, 1);
  if (unit === undefined || unit.size <= 0 || unit.size === CQ_BLANK_UNIT_SIZE) return -1;
  return ctx.commitLog.pickupStoreTimestamp(unit.commitLogOffset, unit.size);
}
