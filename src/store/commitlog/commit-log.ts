import assert from 'node:assert/strict';
import type { StoreCheckpoint } from '../checkpoint/store-checkpoint.js';
import type { MessageStoreConfig } from '../config/message-store-config.js';
import { StoreError } from '../errors.js';
import type { StoreIO } from '../io/store-io.js';
import type { Logger } from '../logger.js';
import { AllocateMappedFileService } from '../mapped-file/allocate-mapped-file-service.js';
import type { AppendTarget, MappedFile } from '../mapped-file/mapped-file.js';
import { MappedFileQueue } from '../mapped-file/mapped-file-queue.js';
import {
  TransientStorePool,
  writeBufferCountWithoutPool,
  writeBufferSizeFor,
} from '../mapped-file/transient-store-pool.js';
import { WriteBufferPool } from '../mapped-file/write-buffer-pool.js';
import { parseHost } from '../message/host.js';
import { readInt64BE } from '../message/int64.js';
import type { Message, MessageBatch, MessageExt } from '../message/message.js';
import {
  checkMessageAndReturnSize,
  checkRecordHeader,
  decodeMessage,
  MESSAGE_MIN_LENGTH_BYTES,
  type RecordHeader,
} from '../message/message-decoder.js';
import {
  type EncodedBatch,
  type EncodedMessage,
  type EncodedRecord,
  type EncoderConfig,
  encodeBatch,
  encodeMessage,
} from '../message/message-ext-encoder.js';
import {
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  MESSAGE_RECORD_OVERHEAD_MAX_BYTES,
  PHY_POS_POSITION,
  SYSFLAG_POSITION,
  storeTimestampPositionOf,
} from '../message/message-format.js';
import { MessageSysFlag } from '../message/message-sys-flag.js';
import type { RunningFlags } from '../running-flags.js';
import { AppendMessageStatus, FlushDiskType, PutMessageStatus } from '../status.js';
import type { StoreMetricsObserver } from '../store-metrics.js';
import { burstWallClockMs } from '../util/burst-clock.js';
import { FixedDeque } from '../util/fixed-deque.js';
import { withTimeout } from '../util/with-timeout.js';
import {
  type AppendMessageResult,
  DefaultAppendMessageCallback,
  WRITE_BUFFER_BUSY,
} from './append-message-callback.js';
import {
  findValidRecordAfter,
  isValidRecordAt,
  SCAN_WINDOW_SIZE_DEFAULT_BYTES,
  scanSegment,
  scanSegmentAsync,
} from './commit-log-scanner.js';
import { CommitRealTimeService } from './commit-real-time-service.js';
import { DispatchRing } from './dispatch-ring.js';
import type { FlushContext } from './flush-context.js';
import { FlushDiskWatcher } from './flush-disk-watcher.js';
import { FlushRealTimeService } from './flush-real-time-service.js';
import { type DurabilityLevel, type FlushRequest, GroupCommitRequest } from './group-commit-request.js';
import { GroupCommitService } from './group-commit-service.js';
import { TopicQueueTable } from './topic-queue-table.js';

/**
 * RocketMQ's `CommitLog` (store reference §4.8, §4.9): the put path and the commit/flush pipeline.
 *
 * The put section, from queue-offset assignment to the append into the write buffer, is one
 * synchronous stretch of code with no `await` in it. That single rule replaces RocketMQ's put lock
 * and topic-queue locks: no other put can run in between, so queue offsets and physical offsets
 * are assigned in file order and nothing can interleave (DESIGN.md §3). After the section, the put
 * waits for the durability of its level:
 *
 *   SYNC_FLUSH, waitStoreMsgOK    GroupCommitService: PUT_OK after fdatasync covers the bytes,
 *                                 FLUSH_DISK_TIMEOUT after syncFlushTimeout (FlushDiskWatcher)
 *   ASYNC_FLUSH (or WAIT=false)   pool off: PUT_OK once the bytes are written to the file (page
 *                                 cache); the write happens once per event-loop turn for all puts
 *                                 of that turn. FlushRealTimeService syncs every 500 ms.
 *                                 pool on: PUT_OK at once (the bytes are in a write buffer);
 *                                 CommitRealTimeService writes them every 200 ms.
 *
 * An I/O error is never retried and continued: a failed fdatasync or pwrite stops writes
 * (SERVICE_NOT_AVAILABLE with the cause), ENOSPC marks the disk full until a commit succeeds
 * again. Waiting puts are answered at once, with the status their bytes reached.
 */

/** What a caller sees of an append that happened. */
export interface AppendResultView {
  readonly status: typeof AppendMessageStatus.PUT_OK;
  /** Commit log offset of the (first) record. */
  readonly wroteOffset: number;
  readonly wroteBytes: number;
  /** Offset message id(s): store host + commit log offset, 32 hex chars for IPv4, `,`-joined for a batch. */
  readonly msgId: string;
  /** Queue offset of the (first) message. */
  readonly queueOffset: number;
  readonly storeTimestamp: number;
  readonly msgNum: number;
}

export interface PutMessageResult {
  readonly status: PutMessageStatus;
  /** Present whenever the message was appended (also for FLUSH_DISK_TIMEOUT: it is stored). */
  readonly appendResult: AppendResultView | null;
  /** For rejected input: which field was wrong and why. */
  readonly reason?: string;
  /** For I/O trouble: the error that stopped writes or durability. */
  readonly error?: StoreError;
}

export interface CommitLogRecoverOptions {
  /** False when the `abort` file was found. */
  readonly lastExitOK: boolean;
  /** Where the consume queues end (the end of their highest unit's message), -1 with none. */
  readonly dispatchFrom: number;
  /** Told where the scan starts, before the first record. */
  readonly onScanStart?: (fromOffset: number) => void;
  /** Called between scan windows of a large segment (work that can overlap the next read). */
  readonly afterWindow?: () => void;
  /**
   * Gets each valid record to dispatch, in log order: a reused header, valid during the call, and
   * the buffer holding the record (for `tagsCodeOf`).
   */
  readonly onRecord: (header: RecordHeader, window: Buffer) => void;
}

export interface CommitLogRecoveryReport {
  /** Where the log ends now. */
  readonly maxPhyOffset: number;
  /** Where the scan started (the start of the segment recovery chose). */
  readonly scanFromOffset: number;
  /** Records checked by this recovery (from `scanFromOffset` on). */
  readonly messagesScanned: number;
  /** Of those, records whose body CRC the CRC worker thread checked (the main thread checked the rest). */
  readonly bodyCrcsOnWorker: number;
  /** Bytes after the last valid record that were cut off (0 after a clean shutdown). */
  readonly truncatedBytes: number;
  /** Segments deleted because they started after the end of the log. */
  readonly deletedFiles: readonly string[];
  /** A last segment found shorter than mappedFileSize and extended with zeros before the scan. */
  readonly extendedFiles: readonly string[];
  /** Why the scan stopped where it did, when it was not at clean zeros or a segment's end. */
  readonly stopReason: string | null;
}

export interface CommitLogOptions {
  readonly config: MessageStoreConfig;
  readonly io: StoreIO;
  readonly logger: Logger;
  readonly checkpoint: StoreCheckpoint;
  readonly runningFlags: RunningFlags;
  /** Told how long commits and flushes take (and group commit sizes); none: nothing is timed. */
  readonly metrics?: StoreMetricsObserver | undefined;
}

/**
 * A commit of at most this many bytes is written with a synchronous pwrite on the event loop when
 * a SYNC_FLUSH group commit needs it: node-platform.md B1 measured 50-160 us for such a write,
 * less than the thread-pool round trip it saves. Bigger writes and every fdatasync stay on the
 * thread pool, so a stuck fdatasync never blocks the event loop.
 */
export const COMMIT_SYNC_WRITE_MAX_BYTES = 256 * 1024;

/** Pool off: a burst this large is written at once instead of at the end of the turn. */
export const COMMIT_EAGER_MIN_BYTES = 64 * 1024;

/** Shutdown waits at least this long for the final commits and flushes, ms. */
export const SHUTDOWN_JOIN_TIMEOUT_MIN_MS = 5000;

/** Largest piece of the pool-off turn commit (see `#commitPipelined`). */
export const COMMIT_PIPELINE_WRITE_SIZE_MAX_BYTES = 1024 * 1024;

export class CommitLog {
  readonly mappedFileQueue: MappedFileQueue;
  /** What the put section appended, for dispatch (see DispatchRing). */
  readonly dispatchRing = new DispatchRing();
  readonly #config: MessageStoreConfig;
  readonly #logger: Logger;
  readonly #checkpoint: StoreCheckpoint;
  readonly #runningFlags: RunningFlags;
  readonly #pool: WriteBufferPool;
  readonly #poolEnabled: boolean;
  readonly #sync: boolean;
  readonly #allocator: AllocateMappedFileService;
  readonly #appendCallback = new DefaultAppendMessageCallback();
  readonly #encoderConfig: EncoderConfig;
  /** topic/queueId -> the next queue offset (RocketMQ's `topicQueueTable`). */
  readonly #topicQueueTable = new TopicQueueTable();
  readonly #flushService: GroupCommitService | FlushRealTimeService;
  readonly #commitService: CommitRealTimeService | null;
  /**
   * Answers every put still waiting at its deadline with FLUSH_DISK_TIMEOUT: it reads the queues
   * the puts already sit in (the group commit's lists, the commit waiters).
   */
  readonly #flushDiskWatcher: FlushDiskWatcher;
  /** Puts waiting for the commit, in offset order (pool off). */
  readonly #commitWaiters = new FixedDeque<FlushRequest>(1024);
  readonly #flushContext: FlushContext;
  readonly #metrics: StoreMetricsObserver | null;
  #turnCommitScheduled = false;
  /** Pool off: the pipelined committer is running; it keeps going while there is a backlog. */
  #committerRunning = false;
  /** Store timestamps never go backwards in file order, even if the clock does. */
  #lastStoreTimestamp = 0;
  /** When the oldest uncommitted byte was appended (or the commit last made progress); 0 if none. */
  #pendingSince = 0;
  #started = false;
  #shutdown = false;
  #shutdownPromise: Promise<void> | null = null;
  /**
   * The write or sync error that stopped the log for good. From then on nothing more is written
   * (so a put told SERVICE_NOT_AVAILABLE is truly not stored).
   */
  #fatalError: StoreError | null = null;
  /** Told whenever `getVisibleOffset()` moved (ReputMessageService's wakeup). */
  #onVisible: (() => void) | null = null;

  constructor(options: CommitLogOptions) {
    const { config, io, logger, checkpoint, runningFlags } = options;
    this.#config = config;
    this.#logger = logger;
    this.#checkpoint = checkpoint;
    this.#runningFlags = runningFlags;
    this.#metrics = options.metrics ?? null;
    this.#poolEnabled = config.transientStorePoolEnable;
    this.#sync = config.flushDiskType === FlushDiskType.SYNC_FLUSH;
    const bufferSize = writeBufferSizeFor(
      config.mappedFileSizeCommitLog,
      config.maxMessageSize + MESSAGE_RECORD_OVERHEAD_MAX_BYTES,
    );
    this.#pool = this.#poolEnabled
      ? new TransientStorePool(bufferSize, config.transientStorePoolSize)
      : new WriteBufferPool(bufferSize, writeBufferCountWithoutPool(bufferSize));
    this.#allocator = new AllocateMappedFileService(io, logger);
    this.mappedFileQueue = new MappedFileQueue({
      storePath: config.storePathCommitLog,
      mappedFileSize: config.mappedFileSizeCommitLog,
      io,
      writeBufferPool: this.#pool,
      allocateMappedFileService: this.#allocator,
      logger,
      isCutShort: (filePath, sizeBytes) => isCommitLogSegmentCutShort(io, filePath, sizeBytes),
      keepEmptySegments: true,
      rollLog: { level: 'info', msg: 'commit log rolled to a new segment' },
    });
    const defaultStoreHost = parseHost(config.storeHost);
    if (defaultStoreHost === null) {
      throw new StoreError(
        'ERR_STORE_CONFIG',
        `invalid message store config: storeHost ${config.storeHost} is not ip:port`,
      );
    }
    this.#encoderConfig = {
      maxMessageSize: config.maxMessageSize,
      autoMessageVersionOnTopicLen: config.autoMessageVersionOnTopicLen,
      enabledAppendPropCRC: config.enabledAppendPropCRC,
      mappedFileSizeCommitLog: config.mappedFileSizeCommitLog,
      defaultStoreHost,
    };
    this.#flushContext = this.#createFlushContext();
    this.#flushService = this.#sync
      ? new GroupCommitService(this.#flushContext, logger)
      : new FlushRealTimeService(this.#flushContext, logger);
    this.#commitService = this.#poolEnabled ? new CommitRealTimeService(this.#flushContext, logger) : null;
    const groupCommit = this.#flushService instanceof GroupCommitService ? this.#flushService : null;
    this.#flushDiskWatcher = new FlushDiskWatcher(
      logger,
      () => PutMessageStatus.FLUSH_DISK_TIMEOUT,
      () => [...(groupCommit?.pendingRequests() ?? []), this.#commitWaiters],
    );
  }

  /** Opens the segments on disk. */
  load(): void {
    this.mappedFileQueue.load();
  }

  /**
   * Finds the end of the log and hands every record from the dispatch start to `onRecord`
   * (RocketMQ's `recoverNormally` / `recoverAbnormally`, store reference §4.11):
   *
   * - the scan starts at a segment chosen as RocketMQ 5.3 does. After a clean shutdown: walking
   *   back from the last segment, the first that starts at or before `dispatchFrom` (where the
   *   consume queues end). After a crash: walking back, the first whose first record is valid and
   *   was stored before the checkpoint's `getMinTimestamp()` (everything before it was flushed),
   *   and never later than the clean-shutdown choice. None: the first segment.
   * - every record from there is checked (CRC included); the first that fails ends the log,
   *   unless it lies in data already durable and valid records follow (then the open is refused
   *   rather than delete acknowledged messages: `#refuseToCutDurableData`).
   * - the log is cut there. The bytes after the cut are discarded from the file (truncated and
   *   re-extended, so they read as zeros): a later recovery can never mistake a stale record
   *   behind the cut for a live one.
   *
   * `onRecord` gets the records at or after `dispatchFrom` (every scanned one after a crash).
   * Queue offsets are not rebuilt here: the caller sets them from the consume queues.
   */
  async recover(options: CommitLogRecoverOptions): Promise<CommitLogRecoveryReport> {
    const { lastExitOK, dispatchFrom, onRecord } = options;
    const mfq = this.mappedFileQueue;
    const files = mfq.getMappedFiles();
    const fileSize = mfq.mappedFileSize;
    const extendedFiles = mfq.extendedFiles.map((f) => f.fileName);
    if (files.length === 0) {
      mfq.flushedWhere = 0;
      mfq.committedWhere = 0;
      return {
        maxPhyOffset: 0,
        scanFromOffset: 0,
        messagesScanned: 0,
        bodyCrcsOnWorker: 0,
        truncatedBytes: 0,
        deletedFiles: [],
        extendedFiles,
        stopReason: null,
      };
    }
    const scanOptions = {
      checkCRC: this.#config.checkCRCOnRecover,
      forceVerifyPropCRC: this.#config.forceVerifyPropCRC,
      windowSizeBytes: SCAN_WINDOW_SIZE_DEFAULT_BYTES,
      ...(options.afterWindow === undefined ? {} : { afterWindow: options.afterWindow }),
    };
    // Segments found empty before others (MappedFileQueue.load kept them): a power loss lost
    // the size of a segment never synced while a later, pre-created one was synced. After a
    // clean shutdown every size was synced, so one is damage. After a crash the scan must reach
    // the first of them, starting at the segment before it, so a stop there is judged on what
    // came before (refused below when later data was durable).
    const emptyIndexes = mfq.emptySegments
      .map((fileName) => files.findIndex((file) => file.fileName === fileName))
      .filter((i) => i >= 0);
    const firstEmpty = emptyIndexes.length === 0 ? -1 : Math.min(...emptyIndexes);
    if (firstEmpty >= 0 && lastExitOK) {
      throw new StoreError(
        'ERR_STORE_FILE_INVALID',
        `segment ${(files[firstEmpty] as MappedFile).fileName} was empty, with segments after it, after a clean ` +
          'shutdown (which syncs every segment): it was emptied behind the store. Refusing to open rather than ' +
          'serve a log with a hole; restore the segment, then reopen.',
      );
    }
    let startIndex = this.#recoverStartIndex(lastExitOK, dispatchFrom);
    if (firstEmpty >= 0) startIndex = Math.min(startIndex, Math.max(0, firstEmpty - 1));
    const emptyFiles = new Set(emptyIndexes.map((i) => files[i] as MappedFile));
    const dispatchAll = !lastExitOK;
    let messagesScanned = 0;
    let bodyCrcsOnWorker = 0;
    let lastStoreTimestamp = 0;
    const startFile = files[startIndex] as MappedFile;
    options.onScanStart?.(startFile.fileFromOffset);
    let processOffset = startFile.fileFromOffset;
    let stopReason: string | null = null;
    for (let index = startIndex; index < files.length; index++) {
      const file = files[index] as MappedFile;
      const end = await scanSegmentAsync(
        file,
        0,
        scanOptions,
        (header, window) => {
          messagesScanned++;
          if (header.storeTimestamp > lastStoreTimestamp) lastStoreTimestamp = header.storeTimestamp;
          if (dispatchAll || header.physicalOffset >= dispatchFrom) onRecord(header, window);
          return true;
        },
        fileSize,
      );
      processOffset = file.fileFromOffset + end.position;
      bodyCrcsOnWorker += end.bodyCrcsOnWorker ?? 0;
      if (end.stop === 'blank') {
        processOffset = file.fileFromOffset + fileSize;
        continue;
      }
      if (
        end.stop === 'invalid' &&
        (!this.#isZeroTail(file, end.position) || (end.position === 0 && emptyFiles.has(file)))
      ) {
        stopReason = end.reason;
        this.#refuseToCutDurableData(
          lastExitOK,
          lastStoreTimestamp,
          file,
          end.position,
          files.slice(index + 1),
          end.reason,
        );
      }
      break;
    }
    // After a clean shutdown the bytes after the end are the pre-sized file's zeros; after a crash
    // (or a bad record) they may hold a torn or stale record, which must go.
    const discard = !lastExitOK || stopReason !== null;
    const cut = this.#truncateTo(processOffset, lastStoreTimestamp, stopReason, discard);
    // A crashed process may have left segments written but never synced: sync every one now,
    // before `flushedWhere` claims they are durable (cheap for files with nothing dirty).
    for (const file of mfq.getMappedFiles()) file.datasyncForRecovery();
    this.dispatchRing.reset(processOffset);
    // An empty segment the cut kept was sized by it: extended too.
    for (const file of emptyFiles) if (mfq.getMappedFiles().includes(file)) extendedFiles.push(file.fileName);
    return {
      maxPhyOffset: processOffset,
      scanFromOffset: startFile.fileFromOffset,
      messagesScanned,
      bodyCrcsOnWorker,
      truncatedBytes: cut.truncatedBytes,
      deletedFiles: cut.deletedFiles,
      extendedFiles,
      stopReason,
    };
  }

  /**
   * Recovery's second look: hands every valid record from the start of the segment holding
   * `fromOffset` up to `toOffset` to `onRecord` (consume queues found missing units that lie
   * before where the recovery scan began). A record that fails its checks there is damage in
   * data recovery did not cut: the open is refused.
   */
  rescanForDispatch(
    fromOffset: number,
    toOffset: number,
    onRecord: (header: RecordHeader, window: Buffer) => void,
  ): number {
    const mfq = this.mappedFileQueue;
    const scanOptions = {
      checkCRC: this.#config.checkCRCOnRecover,
      forceVerifyPropCRC: this.#config.forceVerifyPropCRC,
      windowSizeBytes: SCAN_WINDOW_SIZE_DEFAULT_BYTES,
    };
    let scanned = 0;
    for (const file of mfq.getMappedFiles()) {
      if (file.fileFromOffset + mfq.mappedFileSize <= fromOffset) continue;
      if (file.fileFromOffset >= toOffset) break;
      const limit = Math.min(mfq.mappedFileSize, toOffset - file.fileFromOffset);
      const end = scanSegment(
        file,
        0,
        scanOptions,
        (header, window) => {
          scanned++;
          onRecord(header, window);
          return true;
        },
        limit,
      );
      if (end.stop === 'invalid') {
        throw new StoreError(
          'ERR_STORE_FILE_INVALID',
          `the commit log record at offset ${file.fileFromOffset + end.position} (${file.fileName}) is damaged` +
            `${end.reason === null ? '' : ` (${end.reason})`}, inside data that consume queues need rebuilt; ` +
            'refusing to open rather than index around the damage',
        );
      }
    }
    return scanned;
  }

  /**
   * Recovery, before the scan: the record at `offset` checked (CRC included) into `header`, and
   * the bytes holding it; null when there is no valid record there.
   */
  readRecordForRecovery(offset: number, header: RecordHeader, checkCRC = true): Buffer | null {
    const file = this.mappedFileQueue.findMappedFileByOffset(offset);
    if (file === null) return null;
    const position = offset - file.fileFromOffset;
    const head = file.readSync(position, Math.min(8, file.fileSize - position));
    if (head === null || head.length < 8) return null;
    const size = head.readInt32BE(0);
    if (size < MESSAGE_MIN_LENGTH_BYTES || position + size > file.fileSize) return null;
    const bytes = file.readSync(position, size);
    if (bytes === null) return null;
    const kind = checkRecordHeader(
      bytes,
      0,
      size,
      {
        checkCRC,
        forceVerifyPropCRC: this.#config.forceVerifyPropCRC,
        expectedPhysicalOffset: offset,
      },
      header,
    );
    return kind === 'record' ? bytes : null;
  }

  /** Recovery: the next queue offset of every queue, from the consume queues. */
  resetTopicQueueTable(
    entries: Iterable<readonly [topic: string, queueId: number, nextOffset: number]>,
  ): void {
    this.#topicQueueTable.clear();
    for (const [topic, queueId, nextOffset] of entries) this.#topicQueueTable.set(topic, queueId, nextOffset);
  }

  /** Index of the segment recovery starts scanning at (see `recover`). */
  #recoverStartIndex(lastExitOK: boolean, dispatchFrom: number): number {
    const files = this.mappedFileQueue.getMappedFiles();
    let normal = 0;
    for (let i = files.length - 1; i >= 0; i--) {
      if ((files[i] as MappedFile).fileFromOffset <= dispatchFrom) {
        normal = i;
        break;
      }
    }
    if (lastExitOK) return normal;
    const minTimestamp = this.#checkpoint.getMinTimestamp();
    for (let i = normal; i >= 0; i--) {
      const storeTimestamp = firstRecordStoreTimestamp(files[i] as MappedFile);
      if (storeTimestamp > 0 && storeTimestamp <= minTimestamp) return i;
    }
    return 0;
  }

  /**
   * A bad record ends the log only where a crash can have torn it. Valid records after it, in
   * data the checkpoint (or a clean shutdown) says was durable, mean damage in the middle of
   * acknowledged data: cutting there would delete every later message, so the store refuses to
   * open and says where. (RocketMQ cuts; it also only scans the newest files.)
   */
  #refuseToCutDurableData(
    lastExitOK: boolean,
    lastValidStoreTimestamp: number,
    file: MappedFile,
    position: number,
    laterFiles: readonly MappedFile[],
    reason: string | null,
  ): void {
    const durable = lastExitOK || lastValidStoreTimestamp < this.#checkpoint.physicMsgTimestamp;
    if (!durable) return;
    const head = file.readSync(position, 4);
    const claimed = head === null ? 0 : head.readInt32BE(0);
    // The failing record itself may be sound data that a stricter check refuses (records written
    // before forceVerifyPropCRC was turned on): that is data too.
    const itselfValid = isValidRecordAt(file, position);
    // The next record: where the damaged one's size says, else (the size itself may be the
    // damage) wherever a valid record starts further on in the segment.
    const nextRecordValid =
      (claimed >= MESSAGE_MIN_LENGTH_BYTES &&
        position + claimed < file.fileSize &&
        isValidRecordAt(file, position + claimed)) ||
      findValidRecordAfter(file, position) >= 0;
    const laterFileValid = laterFiles.find((later) => isValidRecordAt(later, 0));
    if (!itselfValid && !nextRecordValid && laterFileValid === undefined) return;
    const offset = file.fileFromOffset + position;
    throw new StoreError(
      'ERR_STORE_FILE_INVALID',
      `the commit log record at offset ${offset} (${file.fileName}, position ${position}) is damaged` +
        `${reason === null ? '' : ` (${reason})`}, but valid records are there` +
        `${laterFileValid === undefined ? '' : ` (from ${laterFileValid.fileName})`} in data that was already durable: ` +
        'this is damage, not a write torn by a crash. Refusing to open rather than delete the messages after it; ' +
        'inspect or move the segment, then reopen.',
    );
  }

  /** True when the 8 bytes at `position` are zeros: the pre-sized file's never-written tail. */
  #isZeroTail(file: MappedFile, position: number): boolean {
    const head = file.readSync(position, Math.min(8, file.fileSize - position));
    return head?.every((b) => b === 0) === true;
  }

  #truncateTo(
    processOffset: number,
    lastStoreTimestamp: number,
    stopReason: string | null,
    discard: boolean,
  ): { truncatedBytes: number; deletedFiles: string[] } {
    const mfq = this.mappedFileQueue;
    const fileSize = mfq.mappedFileSize;
    const before = mfq.getMappedFiles();
    const deletedFiles = before.filter((f) => f.fileFromOffset > processOffset).map((f) => f.fileName);
    const holder = mfq.findMappedFileByOffset(processOffset);
    let truncatedBytes = 0;
    if (holder !== null && discard) {
      truncatedBytes = this.#discardTail(holder, processOffset - holder.fileFromOffset);
    }
    for (const file of before) {
      if (file.fileFromOffset > processOffset) truncatedBytes += this.#countTailBytes(file, 0);
    }
    mfq.truncateDirtyFiles(processOffset);
    mfq.flushedWhere = processOffset;
    mfq.committedWhere = processOffset;
    const last = mfq.getLastMappedFile();
    if (last !== null) last.setStoreTimestamp(lastStoreTimestamp);
    mfq.storeTimestamp = lastStoreTimestamp;
    this.#lastStoreTimestamp = lastStoreTimestamp;
    // Invariant re-checked after recovery: the log ends exactly where the scan stopped.
    assert.ok(
      mfq.getMaxOffset() === processOffset || (last?.isFull() === true && processOffset % fileSize === 0),
      'the recovered log ends at the process offset',
    );
    if (truncatedBytes > 0 || deletedFiles.length > 0) {
      this.#logger.warn(
        { processOffset, truncatedBytes, deletedFiles, reason: stopReason },
        'recovery cut the commit log after its last valid record',
      );
    }
    return { truncatedBytes, deletedFiles };
  }

  /** Zeroes a segment from `position` to its end; returns how many bytes of data that cut. */
  #discardTail(file: MappedFile, position: number): number {
    const cut = this.#countTailBytes(file, position);
    // A segment found empty at load is sized here, by the same truncate and re-extend.
    if (cut > 0 || file.diskSizeSync() !== file.fileSize) file.discardAfter(position);
    return cut;
  }

  /**
   * Bytes of data from `position` on (for the report): up to the last non-zero byte before the
   * first window of zeros. A segment is written front to back, so nothing lies beyond that.
   */
  #countTailBytes(file: MappedFile, position: number): number {
    const windowSize = SCAN_WINDOW_SIZE_DEFAULT_BYTES;
    let lastNonZero = -1;
    for (let pos = position; pos < file.fileSize; pos += windowSize) {
      const window = file.readSync(pos, Math.min(windowSize, file.fileSize - pos));
      if (window === null) break;
      let found = -1;
      for (let i = window.length - 1; i >= 0; i--) {
        if (window[i] !== 0) {
          found = i;
          break;
        }
      }
      if (found < 0) break;
      lastNonZero = pos + found;
    }
    return lastNonZero >= position ? lastNonZero + 1 - position : 0;
  }

  start(): void {
    assert.ok(!this.#started, 'the commit log starts once');
    this.#started = true;
    if (this.#pool instanceof TransientStorePool) this.#pool.init();
    this.#flushDiskWatcher.start();
    this.#commitService?.start();
    this.#flushService.start();
  }

  /** RocketMQ's `putMessage`: resolves when the message has reached its durability level. */
  putMessage(msg: Message): Promise<PutMessageResult> {
    const now = burstWallClockMs();
    const encoded = encodeMessage(msg, this.#encoderConfig, now);
    if (encoded.kind === 'rejected') return rejected(encoded.status, encoded.reason);
    return this.#put(encoded, now);
  }

  /** RocketMQ's `putMessages`: a batch with consecutive queue offsets, in one segment. */
  putMessages(batch: MessageBatch): Promise<PutMessageResult> {
    const now = burstWallClockMs();
    const encoded = encodeBatch(batch, this.#encoderConfig, now);
    if (encoded.kind === 'rejected') return rejected(encoded.status, encoded.reason);
    if (encoded.totalLength > this.#pool.bufferSizeBytes) {
      return rejected(
        PutMessageStatus.MESSAGE_ILLEGAL,
        `batch is ${encoded.totalLength} bytes, more than a ${this.#pool.bufferSizeBytes}-byte write buffer`,
      );
    }
    return this.#put(encoded, now);
  }

  /** The put section and then the durability wait. No `await` before the append. */
  #put(encoded: EncodedMessage | EncodedBatch, now: number): Promise<PutMessageResult> {
    const refusal = this.#checkWriteable(now);
    if (refusal === BUSY_REFUSAL) {
      return busy(`the commit has made no progress for more than ${this.#busyThresholdMs()} ms`);
    }
    if (refusal !== null) return Promise.resolve(refusal);
    const storeTimestamp = Math.max(now, this.#lastStoreTimestamp);
    const consumes = encoded.kind === 'batch' || encoded.consumesQueueOffset;
    const queueOffset = consumes ? this.#topicQueueTable.get(encoded.topic, encoded.queueId) : 0;
    this.#appendInput.encoded = encoded;
    this.#appendInput.queueOffset = queueOffset;
    this.#appendInput.storeTimestamp = storeTimestamp;
    const mfq = this.mappedFileQueue;
    let file = mfq.getLastMappedFile();
    if (file === null || file.isFull()) file = mfq.getLastMappedFile(0);
    if (file === null) return Promise.resolve(this.#createFailed());
    const pendingBefore = mfq.getMaxWrotePosition() > mfq.committedWhere;
    let result = this.#appendTo(file);
    if (result.status === AppendMessageStatus.END_OF_FILE) {
      // The segment is full (its BLANK is written); the same message goes to the next one with
      // the same queue offset.
      file = mfq.getLastMappedFile(0);
      if (file === null) return Promise.resolve(this.#createFailed());
      result = this.#appendTo(file);
    }
    if (result.status !== AppendMessageStatus.PUT_OK) {
      if (result.status === WRITE_BUFFER_BUSY) {
        return busy('every write buffer is in use; the commit is behind');
      }
      return rejected(PutMessageStatus.UNKNOWN_ERROR, `append returned ${result.status}`);
    }
    this.#lastStoreTimestamp = storeTimestamp;
    if (consumes) this.#topicQueueTable.set(encoded.topic, encoded.queueId, queueOffset + result.msgNum);
    this.#noteForDispatch(encoded, result.wroteOffset, queueOffset, storeTimestamp);
    if (!pendingBefore) this.#pendingSince = now;
    // Only PUT_OK results reach the caller, so the view's status type holds.
    return this.#handleDiskFlush(result as unknown as AppendResultView, encoded.waitStoreMsgOK);
  }

  #noteForDispatch(
    encoded: EncodedMessage | EncodedBatch,
    wroteOffset: number,
    queueOffset: number,
    storeTimestamp: number,
  ): void {
    const ring = this.dispatchRing;
    if (encoded.kind === 'single') {
      ring.push(
        wroteOffset,
        encoded.msgLength,
        encoded.topic,
        encoded.queueId,
        queueOffset,
        encoded.tagsCode,
        storeTimestamp,
        encoded.sysFlag,
      );
      return;
    }
    let offset = wroteOffset;
    for (let i = 0; i < encoded.records.length; i++) {
      const record = encoded.records[i] as EncodedRecord;
      ring.push(
        offset,
        record.msgLength,
        encoded.topic,
        encoded.queueId,
        queueOffset + i,
        record.tagsCode,
        storeTimestamp,
        record.sysFlag,
      );
      offset += record.msgLength;
    }
  }

  #checkWriteable(now: number): PutMessageResult | null {
    if (this.#shutdown || !this.#started) {
      const reason = this.#shutdown ? 'the store is shut down' : 'the store is not started';
      return { status: PutMessageStatus.SERVICE_NOT_AVAILABLE, appendResult: null, reason };
    }
    if (!this.#runningFlags.isWriteable()) {
      const cause = this.#runningFlags.cause;
      const result: PutMessageResult = {
        status: PutMessageStatus.SERVICE_NOT_AVAILABLE,
        appendResult: null,
        reason:
          cause === null ? 'the store is not writeable' : `the store is not writeable: ${cause.message}`,
      };
      return cause === null ? result : { ...result, error: cause };
    }
    if (this.isOSPageCacheBusy(now)) return BUSY_REFUSAL;
    return null;
  }

  #createFailed(): PutMessageResult {
    const cause = this.mappedFileQueue.lastCreateError;
    const result: PutMessageResult = {
      status: PutMessageStatus.CREATE_MAPPED_FILE_FAILED,
      appendResult: null,
      reason: `creating the next commit log segment failed${cause === null ? '' : `: ${cause.message}`}`,
    };
    return cause === null
      ? result
      : { ...result, error: new StoreError('ERR_CREATE_MAPPED_FILE', result.reason ?? '', { cause }) };
  }

  /**
   * RocketMQ's `isOSPageCacheBusy` measured how long the put lock was held. Our put section cannot
   * block, so the analogue is a commit that stopped moving: bytes have waited for the file longer
   * than `osPageCacheBusyTimeOutMills` (plus the commit interval when the pool commits on a timer).
   */
  isOSPageCacheBusy(now: number = Date.now()): boolean {
    // Under SYNC_FLUSH without the pool, GroupCommitService writes the pending bytes between its
    // fdatasyncs: a slow sync is not a stuck commit (RocketMQ's measure, the put lock, never
    // includes the sync either). Those puts end FLUSH_DISK_TIMEOUT instead.
    if (this.#sync && !this.#poolEnabled) return false;
    return this.#pendingSince !== 0 && now - this.#pendingSince > this.#busyThresholdMs();
  }

  #busyThresholdMs(): number {
    const config = this.#config;
    const commitEveryMs = this.#poolEnabled
      ? Math.max(config.commitIntervalCommitLog, config.commitCommitLogThoroughInterval)
      : 0;
    return config.osPageCacheBusyTimeOutMills + commitEveryMs;
  }

  /** RocketMQ's `handleDiskFlush`, plus the page-cache wait of the pool-off path. */
  #handleDiskFlush(view: AppendResultView, waitStoreMsgOK: boolean): Promise<PutMessageResult> {
    const nextOffset = view.wroteOffset + view.wroteBytes;
    if (this.#sync) {
      const groupCommit = this.#flushService as GroupCommitService;
      if (waitStoreMsgOK) {
        const request = new PutRequest(nextOffset, this.#config.syncFlushTimeout, 'flush', view);
        groupCommit.putRequest(request);
        this.#flushDiskWatcher.wakeupIfIdle();
        if (this.#poolEnabled && this.#config.wakeCommitWhenPutMessage) this.#commitService?.wakeup();
        return request.promise;
      }
      groupCommit.wakeup();
    } else if (!this.#poolEnabled && this.#config.wakeFlushWhenPutMessage) {
      this.#flushService.wakeup();
    }
    if (this.#poolEnabled) {
      if (this.#config.wakeCommitWhenPutMessage) this.#commitService?.wakeup();
      return Promise.resolve({ status: PutMessageStatus.PUT_OK, appendResult: view });
    }
    // Pool off: acknowledged once the bytes are in the file (the page cache).
    const request = new PutRequest(nextOffset, this.#config.syncFlushTimeout, 'commit', view);
    this.#commitWaiters.push(request);
    this.#flushDiskWatcher.wakeupIfIdle();
    // Under SYNC_FLUSH (waitStoreMsgOK=false) the woken GroupCommitService writes the bytes.
    if (!this.#sync) this.#afterAppend();
    return request.promise;
  }

  /**
   * Pool off, after every append. A burst that has piled up COMMIT_EAGER_MIN_BYTES is handed to
   * the thread pool at once, so the disk writes while the rest of the turn's puts are still being
   * encoded; a smaller one is written at the end of the turn (under SYNC_FLUSH the woken
   * GroupCommitService does that).
   */
  #afterAppend(): void {
    if (this.#committerRunning) return;
    const mfq = this.mappedFileQueue;
    if (mfq.getMaxWrotePosition() - mfq.committedWhere >= COMMIT_EAGER_MIN_BYTES) this.#startCommitter();
    else this.#scheduleTurnCommit();
  }

  #scheduleTurnCommit(): void {
    if (this.#turnCommitScheduled) return;
    this.#turnCommitScheduled = true;
    setImmediate(this.#runTurnCommit);
  }

  readonly #runTurnCommit = (): void => {
    this.#turnCommitScheduled = false;
    if (!this.#committerRunning) this.#startCommitter();
  };

  #startCommitter(): void {
    this.#committerRunning = true;
    this.#commitPipelined()
      .then(
        () => {
          this.#committerRunning = false;
          // Puts appended while the last write's waiters were being woken get their own turn.
          if (!this.#commitWaiters.isEmpty() && this.#runningFlags.isWriteable()) this.#scheduleTurnCommit();
        },
        (err: unknown) => {
          this.#committerRunning = false;
          this.#onIoError(err);
        },
      )
      .catch((err: unknown) => this.#logger.error({ err }, 'commit bookkeeping failed'));
  }

  /**
   * The pool-off turn commit. A long backlog is written in pieces of at most
   * COMMIT_PIPELINE_WRITE_SIZE_MAX_BYTES, and the next piece is handed to the thread pool BEFORE
   * the puts of the finished one are woken: their producers then put again while the disk writes,
   * instead of the event loop and the write taking turns.
   */
  async #commitPipelined(): Promise<void> {
    const mfq = this.mappedFileQueue;
    let inFlight: Promise<boolean> | null = this.#commit(0, COMMIT_PIPELINE_WRITE_SIZE_MAX_BYTES, 0);
    while (inFlight !== null) {
      const noProgress: boolean = await inFlight;
      const backlog: boolean = !noProgress && mfq.getMaxWrotePosition() > mfq.committedWhere;
      inFlight = backlog ? this.#commit(0, COMMIT_PIPELINE_WRITE_SIZE_MAX_BYTES, 0) : null;
      this.#afterCommit(noProgress);
    }
  }

  /** Every commit goes through here: after a fatal I/O error nothing is written any more. */
  #commit(commitLeastPages: number, writeSizeMaxBytes: number, syncWriteMaxBytes: number): Promise<boolean> {
    if (this.#fatalError !== null) return Promise.reject(this.#fatalError);
    const commit = this.mappedFileQueue.commit(commitLeastPages, writeSizeMaxBytes, syncWriteMaxBytes);
    return this.#metrics === null ? commit : this.#timedCommit(commit, this.#metrics);
  }

  /** With an observer: a commit that wrote something reports how long it took. */
  async #timedCommit(commit: Promise<boolean>, metrics: StoreMetricsObserver): Promise<boolean> {
    const begin = performance.now();
    const noProgress = await commit;
    if (!noProgress) metrics.onCommit(performance.now() - begin);
    return noProgress;
  }

  /**
   * The put section's inputs for the append callback. One object set before each append and one
   * bound callback, instead of two closures per put: the section is synchronous and never
   * re-entered, so nothing else can see these between the set and the append.
   */
  readonly #appendInput: {
    file: MappedFile | null;
    encoded: EncodedMessage | EncodedBatch | null;
    queueOffset: number;
    storeTimestamp: number;
  } = { file: null, encoded: null, queueOffset: 0, storeTimestamp: 0 };

  #appendTo(file: MappedFile): AppendMessageResult {
    this.#appendInput.file = file;
    return file.appendMessage(this.#doAppend);
  }

  readonly #doAppend = (target: AppendTarget, maxBlank: number): AppendMessageResult => {
    const { file, encoded, queueOffset, storeTimestamp } = this.#appendInput;
    if (file === null || encoded === null) assert.fail('append callback called outside the put section');
    const wroteOffset = file.fileFromOffset + file.wrotePosition;
    return encoded.kind === 'single'
      ? this.#appendCallback.doAppend(wroteOffset, target, maxBlank, encoded, queueOffset, storeTimestamp)
      : this.#appendCallback.doAppendBatch(
          wroteOffset,
          target,
          maxBlank,
          encoded,
          queueOffset,
          storeTimestamp,
        );
  };

  #createFlushContext(): FlushContext {
    const mfq = this.mappedFileQueue;
    // Under SYNC_FLUSH the group commit's write is small and the flush waits for it anyway: a
    // synchronous pwrite saves a thread-pool round trip per group (see COMMIT_SYNC_WRITE_MAX_BYTES).
    const syncWriteMaxBytes = this.#sync ? COMMIT_SYNC_WRITE_MAX_BYTES : 0;
    const commitOnce = async (commitLeastPages: number): Promise<boolean> => {
      const noProgress = await this.#commit(commitLeastPages, Number.POSITIVE_INFINITY, syncWriteMaxBytes);
      this.#afterCommit(noProgress);
      return noProgress;
    };
    return {
      config: this.#config,
      mappedFileQueue: mfq,
      checkpoint: this.#checkpoint,
      transientStorePoolEnabled: this.#poolEnabled,
      commitOnce,
      commitAll: async () => {
        const target = mfq.getMaxWrotePosition();
        while (mfq.committedWhere < target) {
          if (await commitOnce(0)) break;
        }
      },
      metrics: this.#metrics,
      flushOnce: async (flushLeastPages: number) => {
        const begin = this.#metrics === null ? 0 : performance.now();
        const noProgress = await mfq.flush(flushLeastPages);
        if (!noProgress && this.#metrics !== null) this.#metrics.onFlush(performance.now() - begin);
        if (mfq.storeTimestamp > 0) this.#checkpoint.physicMsgTimestamp = mfq.storeTimestamp;
        if (!noProgress && this.#sync) this.#onVisible?.();
        return noProgress;
      },
      onIoError: (err: unknown) => this.#onIoError(err),
      wakeUpFlush: () => this.#flushService.wakeup(),
    };
  }

  #afterCommit(noProgress: boolean): void {
    const mfq = this.mappedFileQueue;
    const committedWhere = mfq.committedWhere;
    for (let head = this.#commitWaiters.peek(); head !== undefined; head = this.#commitWaiters.peek()) {
      if (!head.isDone() && head.nextOffset > committedWhere) break;
      this.#commitWaiters.shift();
      head.wakeupCustomer(PutMessageStatus.PUT_OK);
    }
    if (!noProgress) {
      if (!this.#sync) this.#onVisible?.();
      this.#pendingSince = mfq.getMaxWrotePosition() > committedWhere ? Date.now() : 0;
      if (this.#runningFlags.isDiskFull()) {
        this.#runningFlags.clearDiskFull();
        this.#logger.warn({ committedWhere }, 'a commit succeeded again; the disk is no longer full');
      }
    }
  }

  /** True when every byte below `offset` is in the file. */
  #isCommitted(offset: number): boolean {
    if (offset <= this.mappedFileQueue.committedWhere) return true;
    const file = this.mappedFileQueue.findMappedFileByOffset(offset - 1);
    return file !== null && file.fileFromOffset + file.committedPosition >= offset;
  }

  /**
   * A commit or flush failed. Never retry and continue:
   *
   * - ENOSPC/EDQUOT: the disk is full. New puts are refused until a commit succeeds again (the
   *   flush services keep trying); puts already appended keep waiting, and get PUT_OK if space
   *   returns in time or FLUSH_DISK_TIMEOUT at their deadline, as with a slow disk.
   * - Anything else: writes stop for good, and nothing more is written. Every waiting put learns
   *   now how far its bytes got: in the file, FLUSH_DISK_TIMEOUT (stored, not known durable); not
   *   in the file, SERVICE_NOT_AVAILABLE (never will be).
   */
  #onIoError(err: unknown): void {
    const error =
      err instanceof StoreError
        ? err
        : new StoreError('ERR_COMMIT_FAILED', `commit log I/O failed: ${(err as Error).message}`, {
            cause: err,
          });
    if (error.code === 'ERR_DISK_FULL') {
      if (!this.#runningFlags.isDiskFull()) {
        this.#logger.error({ err: error }, 'the disk is full: puts are refused until a commit succeeds');
      }
      this.#runningFlags.makeDiskFull(error);
      return;
    }
    if (this.#fatalError === null) {
      this.#fatalError = error;
      this.#logger.error({ err: error }, 'the commit log stopped accepting writes');
    }
    this.#runningFlags.makeNotWriteable(error);
    this.#flushDiskWatcher.failAll(
      (request) =>
        this.#isCommitted(request.nextOffset)
          ? PutMessageStatus.FLUSH_DISK_TIMEOUT
          : PutMessageStatus.SERVICE_NOT_AVAILABLE,
      error,
    );
    this.#commitWaiters.drain();
  }

  /** Registers the one listener told when more of the log became visible to readers. */
  setVisibleListener(listener: (() => void) | null): void {
    this.#onVisible = listener;
  }

  /**
   * How far readers may see: committed bytes, and under SYNC_FLUSH only flushed ones (RocketMQ
   * #8239: nothing a power loss can still erase is ever shown).
   */
  getVisibleOffset(): number {
    const mfq = this.mappedFileQueue;
    return this.#sync ? mfq.flushedWhere : mfq.committedWhere;
  }

  /**
   * `length` bytes of the log from `offset`, inside one segment and below the visible offset;
   * null otherwise (or when the segment is being deleted). Reads never take the put section.
   */
  async readRange(offset: number, length: number): Promise<Buffer | null> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !(length > 0)) return null;
    if (offset + length > this.getVisibleOffset()) return null;
    const file = this.mappedFileQueue.findMappedFileByOffset(offset);
    if (file === null) return null;
    const position = offset - file.fileFromOffset;
    if (position + length > file.fileSize) return null;
    return file.selectMappedBuffer(position, length);
  }

  /**
   * RocketMQ's `pickupStoreTimestamp`: the store time of the record at `offset` (of `size` bytes),
   * read from its header; -1 when it cannot be read or the header does not hold up.
   */
  async pickupStoreTimestamp(offset: number, size: number): Promise<number> {
    const headerMax = storeTimestampPositionOf(MessageSysFlag.BORNHOST_V6_FLAG) + 8;
    if (size < MESSAGE_MIN_LENGTH_BYTES) return -1;
    const head = await this.readRange(offset, Math.min(size, headerMax));
    if (head === null || head.readInt32BE(0) !== size || readInt64BE(head, PHY_POS_POSITION) !== offset)
      return -1;
    const at = storeTimestampPositionOf(head.readInt32BE(SYSFLAG_POSITION));
    return at + 8 <= head.length ? readInt64BE(head, at) : -1;
  }

  /** RocketMQ's `lookMessageByOffset`: the record starting at `commitLogOffset`, or null. */
  async lookMessageByOffset(commitLogOffset: number): Promise<MessageExt | null> {
    if (!Number.isSafeInteger(commitLogOffset) || commitLogOffset < 0) return null;
    const head = await this.readRange(commitLogOffset, 8);
    if (head === null) return null;
    const size = head.readInt32BE(0);
    const recordMax = this.#config.maxMessageSize + MESSAGE_RECORD_OVERHEAD_MAX_BYTES;
    if (size < MESSAGE_MIN_LENGTH_BYTES || size > recordMax) return null;
    const bytes = await this.readRange(commitLogOffset, size);
    if (bytes === null) return null;
    return decodeMessage(bytes, 0, size, {
      checkCRC: true,
      forceVerifyPropCRC: this.#config.forceVerifyPropCRC,
      expectedPhysicalOffset: commitLogOffset,
    });
  }

  /** End of the readable log. */
  getMaxOffset(): number {
    return this.mappedFileQueue.getMaxOffset();
  }

  getMinOffset(): number {
    return this.mappedFileQueue.getMinOffset();
  }

  /** The next queue offset of `topic`/`queueId` (0 for a queue never written). */
  getQueueOffset(topic: string, queueId: number): number {
    return this.#topicQueueTable.get(topic, queueId);
  }

  /** `topic-queueId` -> next queue offset, as RocketMQ keys its table. */
  getTopicQueueTable(): ReadonlyMap<string, number> {
    return this.#topicQueueTable.toMap();
  }

  /** Write buffers in use and available (TransientStorePool or the pool-off staging buffers). */
  getWriteBufferStats(): {
    readonly borrowed: number;
    readonly available: number;
    readonly bufferSizeBytes: number;
  } {
    return {
      borrowed: this.#pool.borrowedBufferNums(),
      available: this.#pool.availableBufferNums(),
      bufferSizeBytes: this.#pool.bufferSizeBytes,
    };
  }

  /**
   * Stops accepting puts, lets the services finish their final commits and flushes, then commits
   * and flushes whatever they left (their final passes handle one file per call, a bounded number
   * of times), answers every waiting put, runs `beforeClose` (dispatch catching up with the
   * log's final end), and closes the segments. Idempotent.
   *
   * A disk that does not finish within `shutdownJoinTimeoutMs()` does not hang the caller: the
   * log stops writing for good (so the `abort` file stays and the next open recovers as after a
   * crash) and the promise rejects with `ERR_SHUTDOWN_TIMEOUT`. RocketMQ bounds its joins too.
   */
  shutdown(beforeClose?: () => Promise<void>): Promise<void> {
    this.#shutdownPromise ??= this.#shutdown0(beforeClose);
    return this.#shutdownPromise;
  }

  /** How long shutdown waits for the disk: twice `syncFlushTimeout`, at least 5 s. */
  shutdownJoinTimeoutMs(): number {
    return Math.max(SHUTDOWN_JOIN_TIMEOUT_MIN_MS, 2 * this.#config.syncFlushTimeout);
  }

  async #shutdown0(beforeClose: (() => Promise<void>) | undefined): Promise<void> {
    this.#shutdown = true;
    let failure: StoreError | null = null;
    const joinTimeoutMs = this.shutdownJoinTimeoutMs();
    // One deadline for the whole shutdown: the services, then the allocator, share it.
    const deadline = performance.now() + joinTimeoutMs;
    // Every step runs whatever the ones before it did (a dead disk fails them all): the
    // readers in `beforeClose` must stop, and the segments must close, in any case.
    const finished = await withTimeout(
      this.#stopServices().catch((err: unknown) => this.#onIoError(err)),
      joinTimeoutMs,
    );
    if (!finished) {
      failure = new StoreError(
        'ERR_SHUTDOWN_TIMEOUT',
        `the disk did not finish the final commits and flushes within ${joinTimeoutMs} ms; ` +
          'writes stopped and the abort file stays, so the next open recovers as after a crash',
      );
      this.#onIoError(failure);
    }
    const allocatorDone = this.#allocator.shutdown().catch((err: unknown) => {
      this.#logger.warn({ err }, 'pre-created segments could not be cleaned up');
    });
    if (!(await withTimeout(allocatorDone, Math.max(0, deadline - performance.now())))) {
      this.#logger.warn({ joinTimeoutMs }, 'pre-created segments were not cleaned up in time');
    }
    // Readers of the log (dispatch catching up) finish before the segments close.
    if (beforeClose !== undefined) {
      try {
        await beforeClose();
      } catch (err) {
        this.#logger.error({ err }, 'finishing work on the commit log before closing it failed');
      }
    }
    try {
      this.mappedFileQueue.shutdown();
    } catch (err) {
      this.#logger.warn({ err }, 'closing the commit log segments failed');
    }
    this.#pool.destroy();
    if (failure !== null) throw failure;
  }

  async #stopServices(): Promise<void> {
    if (!this.#started) return;
    await this.#commitService?.shutdown();
    await this.#flushService.shutdown();
    await this.#drain();
    // Answers whatever is still waiting (nothing, unless an error stopped the drain).
    await this.#flushDiskWatcher.shutdown();
  }

  /** Commits (unless writes stopped for good) and flushes until everything is durable. */
  async #drain(): Promise<void> {
    const mfq = this.mappedFileQueue;
    // Each call handles one file; a few more than there are files is always enough.
    const callsMax = mfq.getMappedFiles().length + 2;
    try {
      for (let i = 0; i < callsMax && this.#fatalError === null; i++) {
        if (mfq.committedWhere >= mfq.getMaxWrotePosition()) break;
        await this.#flushContext.commitOnce(0);
      }
      for (let i = 0; i < callsMax; i++) {
        if (mfq.flushedWhere >= mfq.getMaxOffset()) break;
        await this.#flushContext.flushOnce(0);
      }
    } catch (err) {
      this.#onIoError(err);
    }
    if (this.#fatalError === null && mfq.flushedWhere < mfq.getMaxWrotePosition()) {
      this.#logger.warn(
        { flushedWhere: mfq.flushedWhere, maxWrote: mfq.getMaxWrotePosition() },
        'shutdown could not make everything durable',
      );
    }
  }
}

/** A put waiting for its durability level; resolves to the put's result, with no closure per put. */
class PutRequest extends GroupCommitRequest<PutMessageResult> {
  readonly #appendResult: AppendResultView;
  readonly #timeoutMs: number;

  constructor(nextOffset: number, timeoutMs: number, level: DurabilityLevel, appendResult: AppendResultView) {
    super(nextOffset, timeoutMs, level);
    this.#appendResult = appendResult;
    this.#timeoutMs = timeoutMs;
  }

  protected override makeResult(status: PutMessageStatus, error: StoreError | null): PutMessageResult {
    if (status === PutMessageStatus.PUT_OK) return { status, appendResult: this.#appendResult };
    const reason =
      error?.message ??
      (this.level === 'flush'
        ? `stored, but not fdatasync'ed within syncFlushTimeout (${this.#timeoutMs} ms)`
        : `stored in the write buffer, but not written to its file within syncFlushTimeout (${this.#timeoutMs} ms)`);
    return error === null
      ? { status, appendResult: this.#appendResult, reason }
      : { status, appendResult: this.#appendResult, reason, error };
  }
}

/** Marker: the put section is refusing because the commit is behind. */
const BUSY_REFUSAL: PutMessageResult = { status: PutMessageStatus.OS_PAGE_CACHE_BUSY, appendResult: null };

/**
 * OS_PAGE_CACHE_BUSY is answered on the next macrotask, not at once: a caller that retries in a
 * loop then yields to the event loop, so the commit it waits for can complete. (With the pool on,
 * puts otherwise resolve immediately and such a loop would never let the write callbacks run.)
 */
function busy(reason: string): Promise<PutMessageResult> {
  return new Promise((resolve) => {
    setImmediate(() => resolve({ status: PutMessageStatus.OS_PAGE_CACHE_BUSY, appendResult: null, reason }));
  });
}

function rejected(status: PutMessageStatus, reason: string): Promise<PutMessageResult> {
  return Promise.resolve({ status, appendResult: null, reason });
}

/**
 * Store time of a segment's first record, if it is a valid record (CRC checked); 0 otherwise.
 * Abnormal recovery uses it to find a segment that was surely flushed.
 */
function firstRecordStoreTimestamp(file: MappedFile): number {
  const head = file.readSync(0, 8);
  if (head === null) return 0;
  const size = head.readInt32BE(0);
  if (size < MESSAGE_MIN_LENGTH_BYTES || size > file.fileSize) return 0;
  const bytes = file.readSync(0, size);
  if (bytes === null) return 0;
  const result = checkMessageAndReturnSize(bytes, 0, size, {
    checkCRC: true,
    expectedPhysicalOffset: file.fileFromOffset,
  });
  return result.kind === 'record' ? result.storeTimestamp : 0;
}

/**
 * Whether a lone commit log segment shorter than mappedFileSize was cut short: its record chain
 * from the start runs into the end of the file. A chain that ends in a BLANK, or in zeros, may
 * be a complete segment written with a different mappedFileSize; that is refused at load.
 */
export function isCommitLogSegmentCutShort(io: StoreIO, filePath: string, sizeBytes: number): boolean {
  const handle = io.openSync(filePath, 'read-only');
  try {
    const head = Buffer.alloc(8);
    let position = 0;
    while (position < sizeBytes) {
      const n = handle.readSync(head, 0, Math.min(8, sizeBytes - position), position);
      if (n < 8) return head.subarray(0, n).some((b) => b !== 0);
      const totalSize = head.readInt32BE(0);
      const magic = head.readInt32BE(4);
      if (magic !== MESSAGE_MAGIC_CODE_V1 && magic !== MESSAGE_MAGIC_CODE_V2) return false;
      if (totalSize < MESSAGE_MIN_LENGTH_BYTES) return false;
      if (position + totalSize > sizeBytes) return true;
      position += totalSize;
    }
    return false;
  } finally {
    handle.closeSync();
  }
}
