import path from 'node:path';
import { type StoreIO, silentLogger } from '../../src/store/index.js';
import type { AllocateMappedFileService } from '../../src/store/mapped-file/allocate-mapped-file-service.js';
import { MappedFileQueue } from '../../src/store/mapped-file/mapped-file-queue.js';
import type { WriteBufferPool } from '../../src/store/mapped-file/write-buffer-pool.js';
import type { IoEvent } from './instrumented-io.js';

/**
 * Shared pieces for the MappedFile / MappedFileQueue tests: segment names, a queue factory, a
 * promise the test resolves by hand (to hold an fdatasync or a write open), and the largest
 * number of fdatasyncs one file had in flight at once.
 */

/** The 20-digit name of the segment starting at `offset`, written out independently of src. */
export function segmentName(offset: number): string {
  return String(offset).padStart(20, '0');
}

export function segmentPath(dir: string, offset: number): string {
  return path.join(dir, segmentName(offset));
}

export function createQueue(options: {
  storePath: string;
  mappedFileSize: number;
  io: StoreIO;
  pool: WriteBufferPool;
  allocator?: AllocateMappedFileService;
  isCutShort?: (filePath: string, sizeBytes: number) => boolean;
  keepEmptySegments?: boolean;
}): MappedFileQueue {
  return new MappedFileQueue({
    storePath: options.storePath,
    mappedFileSize: options.mappedFileSize,
    io: options.io,
    writeBufferPool: options.pool,
    allocateMappedFileService: options.allocator ?? null,
    logger: silentLogger,
    ...(options.isCutShort === undefined ? {} : { isCutShort: options.isCutShort }),
    ...(options.keepEmptySegments === undefined ? {} : { keepEmptySegments: options.keepEmptySegments }),
  });
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A Node-style system error with an errno code (EIO, ENOSPC, ...). */
export function systemError(code: string, message = code): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/**
 * Replays the recorded events and returns, per file, the largest number of fdatasyncs that had
 * started and not yet ended (or failed) at any point.
 */
export function maxConcurrentDatasyncs(events: readonly IoEvent[]): Map<string, number> {
  const open = new Map<string, number>();
  const max = new Map<string, number>();
  for (const event of events) {
    if (event.op === 'datasync-start') {
      const n = (open.get(event.path) ?? 0) + 1;
      open.set(event.path, n);
      max.set(event.path, Math.max(max.get(event.path) ?? 0, n));
    } else if (event.op === 'datasync-end' || event.op === 'datasync-error') {
      open.set(event.path, (open.get(event.path) ?? 0) - 1);
    }
  }
  return max;
}

/** A buffer of `length` bytes whose content depends on `seed` (so misplaced bytes show). */
export function patternBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7 + 1) & 0xff;
  return out;
}
