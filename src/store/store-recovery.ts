import type { StoreCheckpoint } from './checkpoint/store-checkpoint.js';
import type { CommitLog, CommitLogRecoveryReport } from './commitlog/commit-log.js';
import type { ConsumeQueue } from './consumequeue/consume-queue.js';
import type { ConsumeQueueStore } from './consumequeue/consume-queue-store.js';
import { StoreError } from './errors.js';
import type { Logger } from './logger.js';
import { RecordHeader, tagsCodeOf } from './message/message-decoder.js';
import { getTransactionValue, MessageSysFlag } from './message/message-sys-flag.js';

/**
 * RocketMQ's `DefaultMessageStore.recover` (store reference §4.11): brings the commit log and the
 * consume queues back to one consistent state after a clean shutdown or a crash.
 *
 *   1. every consume queue: scan its last files, cut after its last valid unit (after a crash,
 *      also zero what a torn write left behind a hole)
 *   2. dispatchFrom = where the consume queues end (the end of their highest unit's message)
 *   3. the commit log: scan from a segment chosen by the `abort` file and the checkpoint, CRC
 *      checked, dispatching records into the consume queues; cut the log at the first bad
 *      record and zero the bytes after it
 *   4. every consume queue: drop the units pointing at or past the cut
 *   5. a queue missing units that lie before where the scan began (its files were lost, deleted,
 *      or never made durable) is rebuilt by a second scan from where it ends
 *   6. the queues are committed and flushed; the next queue offset of every queue, and each
 *      queue's minimum, come from the queues
 *
 * A unit is only ever written at its queue offset: a record whose queue offset lies past the
 * queue's end is not shifted into place (RocketMQ #7355) but starts step 5 for that queue.
 */

export interface ConsumeQueueRecoveryReport {
  /** Queues found on disk. */
  readonly queuesLoaded: number;
  /** Queues whose files could not be loaded and were deleted, to be rebuilt (`topic/queueId`). */
  readonly queuesReset: readonly string[];
  /** Queues in which bytes a crash left behind a hole were zeroed. */
  readonly queuesZeroed: readonly string[];
  /**
   * Queues whose last units did not match the records they point to (torn or damaged units, or
   * records gone): those units were dropped, and written again where the log holds the messages.
   */
  readonly queuesTailRepaired: readonly string[];
  /** Units dropped: those, and units pointing at or past the end of the commit log. */
  readonly unitsCut: number;
  /** Units written by recovery (messages the queues did not hold yet). */
  readonly unitsRebuilt: number;
  /** Queues that needed the second scan, and where it started (null when none did). */
  readonly rebuiltQueues: readonly string[];
  readonly rebuildFromOffset: number | null;
}

export interface StoreRecoveryResult {
  readonly commitLog: CommitLogRecoveryReport;
  readonly consumeQueues: ConsumeQueueRecoveryReport;
  /** Where dispatch continues: the end of the recovered log. */
  readonly reputFromOffset: number;
}

function queueKey(topic: string, queueId: number): string {
  return `${topic}/${queueId}`;
}

function splitQueueKey(key: string): [string, number] {
  const slash = key.lastIndexOf('/');
  return [key.slice(0, slash), Number(key.slice(slash + 1))];
}

/** Last units checked per queue at open after a clean shutdown. */
const TAIL_UNITS_VERIFIED_MAX = 16;
/**
 * The commit log scan reports progress at most every this many bytes: a handful of calls per
 * 1 GiB segment's worth, never one per record.
 */
export const RECOVERY_PROGRESS_STEP_BYTES = 4 * 1024 * 1024;

/** Told how far the commit log scan got: bytes from where it began, of the bytes it may cover. */
export type RecoveryProgressListener = (doneBytes: number, totalBytes: number) => void;

/**
 * Checks each queue's last units against the records they point to (valid, CRC included, this
 * queue's, this queue offset, this size and tags code) and drops those that do not match, with
 * every unit after them. In memory only, until `applyPendingDiscard`.
 *
 * After a clean shutdown every unit was flushed: the last few are checked. After a crash, any
 * unit written since the consume queues' last flush may be torn, not only the last ones (a
 * sector of it reverted while a later sector kept its new bytes), so each queue is checked back
 * to its first unit whose record is older than that flush (`logicsMsgTimestamp`).
 */
function verifyQueueTails(
  commitLog: CommitLog,
  consumeQueues: ConsumeQueueStore,
  lastExitOK: boolean,
  logicsMsgTimestamp: number,
): { unitsDropped: number; queues: string[] } {
  const header = new RecordHeader();
  let unitsDropped = 0;
  const queues: string[] = [];
  for (const queue of consumeQueues.all()) {
    let walked = 0;
    const dropped = queue.verifyTail(
      (unit, queueOffset) => {
        // The last units' records are CRC checked too (a torn record at the log's end); deeper
        // ones only against their headers: the walk may cover a minute of messages, and their
        // records are checked by the commit log scan and again on every read.
        const checkCRC = walked++ < TAIL_UNITS_VERIFIED_MAX;
        const bytes = commitLog.readRecordForRecovery(unit.commitLogOffset, header, checkCRC);
        const good =
          bytes !== null &&
          header.size === unit.size &&
          header.queueOffset === queueOffset &&
          header.queueId === queue.queueId &&
          header.topic === queue.topic &&
          dispatchesToConsumeQueue(header) &&
          tagsCodeOf(bytes, header) === unit.tagsCode;
        if (!good) return 'BAD';
        // Strictly older: a record of the same millisecond may have come after the flush began.
        return lastExitOK || header.storeTimestamp < logicsMsgTimestamp ? 'DURABLE' : 'GOOD';
      },
      lastExitOK ? TAIL_UNITS_VERIFIED_MAX : Number.POSITIVE_INFINITY,
    );
    if (dropped > 0) {
      unitsDropped += dropped;
      queues.push(queueKey(queue.topic, queue.queueId));
    }
  }
  return { unitsDropped, queues };
}

/** Bytes from `scanStart` to the end of the last segment: what the scan may cover at most. */
function scanTotalBytes(commitLog: CommitLog, scanStart: number): number {
  const files = commitLog.mappedFileQueue.getMappedFiles();
  const last = files[files.length - 1];
  return last === undefined
    ? 0
    : Math.max(0, last.fileFromOffset + commitLog.mappedFileQueue.mappedFileSize - scanStart);
}

/**
 * The listener, except that it never throws: one that fails (a progress bar whose stream broke)
 * is logged once and not called again, and the recovery goes on.
 */
function guardProgress(listener: RecoveryProgressListener, logger: Logger): RecoveryProgressListener {
  let failed = false;
  return (doneBytes, totalBytes) => {
    if (failed) return;
    try {
      listener(doneBytes, totalBytes);
    } catch (err) {
      failed = true;
      logger.warn({ err }, 'the recovery progress listener threw; it is not called again');
    }
  };
}

function totalUnits(consumeQueues: ConsumeQueueStore): number {
  let units = 0;
  for (const queue of consumeQueues.all()) units += queue.getWrittenOffsetInQueue();
  return units;
}

/** The store time of the last record handed to the consume queues (for the checkpoint). */
interface DispatchState {
  lastStoreTimestamp: number;
}

export async function recoverStore(options: {
  readonly lastExitOK: boolean;
  readonly commitLog: CommitLog;
  readonly consumeQueues: ConsumeQueueStore;
  readonly checkpoint: StoreCheckpoint;
  readonly logger: Logger;
  /**
   * Progress of the commit log scan (the long part of a recovery after a crash): first
   * `(0, total)` where `total` is the bytes from the scan's start to the end of the last
   * segment (an upper bound: the data may end sooner, the last segment is often a pre-created
   * empty one), then at most every `RECOVERY_PROGRESS_STEP_BYTES`, then once `(end, end)` with
   * `end` the bytes the scan actually covered. Not called when there is no commit log.
   */
  readonly onProgress?: RecoveryProgressListener;
}): Promise<StoreRecoveryResult> {
  const { lastExitOK, commitLog, consumeQueues, checkpoint, logger } = options;
  const onProgress = options.onProgress === undefined ? undefined : guardProgress(options.onProgress, logger);
  const table = consumeQueues.readTable();
  const queuesReset = consumeQueues.load();
  const queuesLoaded = consumeQueues.all().length;
  const queuesZeroed = consumeQueues.recover(!lastExitOK);
  const { unitsDropped, queues: queuesTailRepaired } = verifyQueueTails(
    commitLog,
    consumeQueues,
    lastExitOK,
    checkpoint.logicsMsgTimestamp,
  );
  const dispatchFrom = consumeQueues.getMaxPhysicOffset();
  const unitsBefore = totalUnits(consumeQueues);
  const state: DispatchState = { lastStoreTimestamp: 0 };
  /** Queue -> where its units end (-1: it has none); records of these queues wait for step 5. */
  const gaps = new Map<string, number>();
  /** The queue the last record went to: records come in runs to one queue. */
  let lastQueue: ConsumeQueue | null = null;
  const dispatchOrNoteGap = (record: RecordHeader, window: Buffer, allowPreBlank: boolean): void => {
    if (!dispatchesToConsumeQueue(record)) return;
    if (gaps.size > 0 && gaps.has(queueKey(record.topic, record.queueId))) return;
    let queue = lastQueue;
    if (queue === null || queue.queueId !== record.queueId || queue.topic !== record.topic) {
      queue = consumeQueues.find(record.topic, record.queueId);
      // A queue with no units whose first record here is not its first message: its earlier
      // units are missing (unless the scan started at the log's beginning, where a queue may
      // legitimately start past 0 because older segments were deleted: pre-blank units).
      if (
        (queue === null || queue.getWrittenOffsetInQueue() === 0) &&
        record.queueOffset > 0 &&
        !allowPreBlank
      ) {
        gaps.set(queueKey(record.topic, record.queueId), -1);
        return;
      }
      queue ??= consumeQueues.findOrCreate(record.topic, record.queueId);
      lastQueue = queue;
    }
    const result = putUnit(queue, record, window);
    if (result === 'GAP') {
      gaps.set(queueKey(record.topic, record.queueId), queue.getMaxPhysicOffset());
      lastQueue = null;
    } else if (record.storeTimestamp > state.lastStoreTimestamp) {
      state.lastStoreTimestamp = record.storeTimestamp;
    }
  };

  // Pre-blank units (a queue starting past offset 0) are only right when older segments were
  // deleted: with the log still starting at 0, every queue starts at queue offset 0.
  const minPhyOffset = Math.max(0, commitLog.getMinOffset());
  let scanStartsAtLogStart = false;
  /** Where the scan began, and where in it progress was last reported (both commit log offsets). */
  let scanStart = -1;
  let progressReportedAt = 0;
  // Units rebuilt during the scan are written to their files in the background, between windows
  // (one commit at a time), rather than all after it.
  const background: { commit: Promise<void> | null; error: unknown } = { commit: null, error: null };
  const commitInBackground = (): void => {
    background.commit ??= consumeQueues
      .commitAll()
      .catch((err: unknown) => {
        background.error ??= err;
      })
      .finally(() => {
        background.commit = null;
      });
  };
  let commitLogReport: CommitLogRecoveryReport;
  try {
    commitLogReport = await commitLog.recover({
      lastExitOK,
      dispatchFrom,
      afterWindow: commitInBackground,
      onScanStart: (fromOffset) => {
        scanStartsAtLogStart = fromOffset <= minPhyOffset && minPhyOffset > 0;
        scanStart = fromOffset;
        progressReportedAt = fromOffset;
        onProgress?.(0, scanTotalBytes(commitLog, fromOffset));
      },
      onRecord:
        onProgress === undefined
          ? (record, window) => dispatchOrNoteGap(record, window, scanStartsAtLogStart)
          : (record, window) => {
              dispatchOrNoteGap(record, window, scanStartsAtLogStart);
              // A comparison per record; a call only every few MiB (the listener may draw).
              const at = record.physicalOffset + record.size;
              if (at - progressReportedAt >= RECOVERY_PROGRESS_STEP_BYTES) {
                progressReportedAt = at;
                onProgress(at - scanStart, scanTotalBytes(commitLog, scanStart));
              }
            },
    });
  } finally {
    // Never left writing after the open returns or fails.
    await background.commit;
  }
  if (background.error !== null) throw background.error;
  const scanFromOffset = commitLogReport.scanFromOffset;
  const processOffset = commitLogReport.maxPhyOffset;
  if (onProgress !== undefined && scanStart >= 0) {
    // The scan is over: the total becomes what it covered (the upper bound may have been more).
    const scanned = Math.max(0, processOffset - scanStart);
    onProgress(scanned, scanned);
  }

  // The commit log's recovery can no longer refuse: files may change now.
  for (const queue of consumeQueues.all()) queue.applyPendingDiscard();
  let unitsCut = unitsDropped;
  if (commitLog.mappedFileQueue.getMappedFiles().length === 0) {
    // No commit log: nothing any queue points to can exist (RocketMQ destroys them too).
    unitsCut += totalUnits(consumeQueues);
    consumeQueues.destroy();
  } else {
    const before = totalUnits(consumeQueues);
    consumeQueues.truncateDirtyLogicFiles(processOffset);
    unitsCut += before - totalUnits(consumeQueues);
  }

  // Queues that lost units the scan could not see: deleted or unloadable ones, and any that ends
  // before where the table of a previous run says it did (for messages the log still holds).
  for (const key of queuesReset) {
    const [topic, queueId] = splitQueueKey(key);
    const queue = consumeQueues.find(topic, queueId);
    if ((queue === null || queue.getWrittenOffsetInQueue() === 0) && !gaps.has(key)) gaps.set(key, -1);
  }
  for (const entry of table) {
    if (entry.maxPhysicOffset > processOffset) continue;
    const key = queueKey(entry.topic, entry.queueId);
    const queue = consumeQueues.find(entry.topic, entry.queueId);
    if ((queue?.getWrittenOffsetInQueue() ?? 0) < entry.maxOffset && !gaps.has(key)) {
      gaps.set(key, queue === null ? -1 : queue.getMaxPhysicOffset());
    }
  }

  // Step 5: queues missing units from before the scan start.
  let rebuildFromOffset: number | null = null;
  const rebuiltQueues = [...gaps.keys()];
  if (gaps.size > 0) {
    let from = Math.min(...gaps.values());
    if (from < 0) from = minPhyOffset;
    rebuildFromOffset = from;
    const gapped = new Set(gaps.keys());
    gaps.clear();
    lastQueue = null;
    logger.warn(
      { queues: rebuiltQueues, fromOffset: from, scanFromOffset },
      'consume queues lack units from before where recovery began; scanning the commit log again from where they end',
    );
    const rebuildFromLogStart = from <= minPhyOffset && minPhyOffset > 0;
    commitLog.rescanForDispatch(from, processOffset, (record, window) => {
      if (!gapped.has(queueKey(record.topic, record.queueId))) return;
      dispatchOrNoteGap(record, window, rebuildFromLogStart);
    });
    if (gaps.size > 0) {
      // Still a hole after scanning from where the queue ends: the log itself lacks messages of
      // that queue (a segment was removed by hand?). Refuse rather than serve a queue with a hole.
      const [key] = gaps.keys();
      throw new StoreError(
        'ERR_STORE_FILE_INVALID',
        `consume queue ${key} cannot be rebuilt: the commit log lacks some of its messages ` +
          `(queue offsets jump between records at or after offset ${from})`,
      );
    }
  }

  // Committed (readable), not flushed: FlushConsumeQueueService's first pass, a second after the
  // open, flushes every queue whole (RocketMQ does not sync them here either). Until then a crash
  // finds them short of the table written below and rebuilds them from the log.
  await consumeQueues.commitAll();
  consumeQueues.writeTable();
  consumeQueues.correctMinOffset(Math.max(0, commitLog.getMinOffset()));
  commitLog.resetTopicQueueTable(queueOffsets(consumeQueues.all()));
  // The whole log is durable now (every segment was synced): say so, before any put, so that a
  // crash from here on counts this data as durable (without it, short runs that crash would leave
  // the checkpoint at 0). `logicsMsgTimestamp` stays: the consume queues are not synced yet.
  const durableTimestamp = Math.max(commitLog.mappedFileQueue.storeTimestamp, state.lastStoreTimestamp);
  checkpoint.dispatchedLogicsMsgTimestamp = Math.max(
    checkpoint.dispatchedLogicsMsgTimestamp,
    state.lastStoreTimestamp,
  );
  checkpoint.physicMsgTimestamp = Math.max(checkpoint.physicMsgTimestamp, durableTimestamp);
  await checkpoint.flush();
  const unitsRebuilt = Math.max(0, totalUnits(consumeQueues) - (unitsBefore - (unitsCut - unitsDropped)));
  const consumeQueueReport: ConsumeQueueRecoveryReport = {
    queuesLoaded,
    queuesReset,
    queuesZeroed,
    queuesTailRepaired,
    unitsCut,
    unitsRebuilt,
    rebuiltQueues,
    rebuildFromOffset,
  };
  if (unitsCut > 0 || queuesReset.length > 0 || rebuiltQueues.length > 0) {
    logger.warn({ ...consumeQueueReport }, 'recovery repaired consume queues');
  }
  // Invariant re-checked after recovery: no unit points past the end of the log.
  for (const queue of consumeQueues.all()) {
    if (queue.getMaxPhysicOffset() > processOffset) {
      throw new StoreError(
        'ERR_STORE_FILE_INVALID',
        `after recovery, consume queue ${queueKey(queue.topic, queue.queueId)} still points past the end of the commit log`,
      );
    }
  }
  return { commitLog: commitLogReport, consumeQueues: consumeQueueReport, reputFromOffset: processOffset };
}

/** Transaction PREPARED and ROLLBACK records get no consume queue unit (RocketMQ's BuildConsumeQueue). */
export function dispatchesToConsumeQueue(record: { readonly sysFlag: number }): boolean {
  const tx = getTransactionValue(record.sysFlag);
  return tx !== MessageSysFlag.TRANSACTION_PREPARED_TYPE && tx !== MessageSysFlag.TRANSACTION_ROLLBACK_TYPE;
}

function putUnit(
  queue: ConsumeQueue,
  record: RecordHeader,
  window: Buffer,
): 'PUT_OK' | 'ALREADY_BUILT' | 'GAP' {
  const result = queue.putMessagePositionInfo(
    record.physicalOffset,
    record.size,
    tagsCodeOf(window, record),
    record.queueOffset,
  );
  if (result === 'FAILED') {
    throw new StoreError(
      'ERR_CONSUME_QUEUE',
      `recovery could not write the unit of ${queueKey(queue.topic, queue.queueId)} at queue offset ${record.queueOffset}`,
    );
  }
  return result;
}

function* queueOffsets(queues: readonly ConsumeQueue[]): Generator<readonly [string, number, number]> {
  for (const queue of queues) yield [queue.topic, queue.queueId, queue.getMaxOffsetInQueue()];
}
