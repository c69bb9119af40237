import type { StoreCheckpoint } from '../checkpoint/store-checkpoint.js';
import type { MessageStoreConfig } from '../config/message-store-config.js';
import type { MappedFileQueue } from '../mapped-file/mapped-file-queue.js';
import type { StoreMetricsObserver } from '../store-metrics.js';

/**
 * What the flush and commit services need from the commit log (RocketMQ's services are inner
 * classes of `CommitLog` and reach into it; ours get this narrow view instead).
 */
export interface FlushContext {
  readonly config: MessageStoreConfig;
  readonly mappedFileQueue: MappedFileQueue;
  readonly checkpoint: StoreCheckpoint;
  /** With the pool, CommitRealTimeService commits; without it, appends are committed at once. */
  readonly transientStorePoolEnabled: boolean;
  /** Told the group commit's batch sizes; null: not measured. */
  readonly metrics: StoreMetricsObserver | null;
  /**
   * Pool off: writes everything appended so far to the files (our stand-in for RocketMQ's mmap
   * writes, which need no commit). Like the two below, it throws I/O errors to its caller, which
   * reports them through `onIoError`.
   */
  commitAll(): Promise<void>;
  /** One `MappedFileQueue.commit` with the bookkeeping after it; returns true when nothing moved. */
  commitOnce(commitLeastPages: number): Promise<boolean>;
  /** Flush then copy the flushed store timestamp to the checkpoint. Returns true when nothing moved. */
  flushOnce(flushLeastPages: number): Promise<boolean>;
  /** Records an I/O error: stops writes (or marks the disk full) and fails waiting puts. */
  onIoError(err: unknown): void;
  /** Wakes whichever service flushes (after a commit made progress). */
  wakeUpFlush(): void;
}
