import { WriteBufferPool } from './write-buffer-pool.js';

/**
 * RocketMQ's `TransientStorePool` (store reference §4.4): with `transientStorePoolEnable`, puts are
 * acknowledged once they are in one of these buffers, and CommitRealTimeService writes them to
 * the file on its interval. RocketMQ allocates `transientStorePoolSize` buffers of a whole segment
 * (1 GiB each, mlocked); ours are segment chunks (see `writeBufferSizeFor`), allocated at start.
 *
 * An exhausted pool is a hard, visible condition here (puts get OS_PAGE_CACHE_BUSY), never the
 * silent "file without a buffer that never becomes readable" case the reference warns about.
 */
export class TransientStorePool extends WriteBufferPool {
  /** False only for controller-mode slaves in RocketMQ; kept for the name's sake. */
  readonly isRealCommit = true;
}

/** Default chunk size: big enough for a default maximal record, small enough to keep in pools. */
export const WRITE_BUFFER_SIZE_DEFAULT_BYTES = 16 * 1024 * 1024;
/**
 * Without the pool, puts are written every event-loop turn; the staging buffers only have to hold
 * what one turn (plus a slow write) appends. Bounded in bytes, so tiny test segments get as much
 * room as 1 GiB ones; beyond it puts are refused as busy instead of growing memory.
 */
export const WRITE_BUFFER_BYTES_WITHOUT_POOL = 64 * 1024 * 1024;

/** How many staging buffers of `bufferSizeBytes` the pool-off path may hold. */
export function writeBufferCountWithoutPool(bufferSizeBytes: number): number {
  return Math.max(2, Math.floor(WRITE_BUFFER_BYTES_WITHOUT_POOL / bufferSizeBytes));
}

/**
 * The chunk size for a commit log: a record never spans chunks, so a chunk must hold the largest
 * record (plus a BLANK), and there is no point in one larger than a segment.
 */
export function writeBufferSizeFor(mappedFileSize: number, maxRecordBytes: number): number {
  return Math.min(mappedFileSize, Math.max(WRITE_BUFFER_SIZE_DEFAULT_BYTES, maxRecordBytes));
}
