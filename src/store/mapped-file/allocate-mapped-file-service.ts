import type { StoreIO } from '../io/store-io.js';
import type { Logger } from '../logger.js';
import { MappedFile } from './mapped-file.js';
import type { WriteBufferPool } from './write-buffer-pool.js';

/**
 * RocketMQ's `AllocateMappedFileService` (store reference §4.5): creating segment N also prepares
 * segment N+1 in the background, so a roll in the put path usually finds its next file ready and
 * already durable in its directory.
 *
 * Creating a file is an open plus an ftruncate: cheap and synchronous, so the put path can always
 * fall back to doing it itself. What the background buys is the fdatasync + directory fsync that
 * makes the new file's existence durable, which otherwise lands on the first flush of the segment.
 */
export class AllocateMappedFileService {
  readonly #io: StoreIO;
  readonly #logger: Logger;
  /** Pre-created files not handed out yet, by path. */
  readonly #ready = new Map<string, MappedFile>();
  readonly #inFlight = new Set<Promise<void>>();
  #stopped = false;

  constructor(io: StoreIO, logger: Logger) {
    this.#io = io;
    this.#logger = logger;
  }

  /**
   * Returns the segment at `nextFilePath` (pre-created or created now) and schedules
   * `nextNextFilePath`. Throws when the file cannot be created.
   */
  putRequestAndReturnMappedFile(
    nextFilePath: string,
    nextNextFilePath: string,
    fileSize: number,
    pool: WriteBufferPool,
  ): MappedFile {
    let file = this.#ready.get(nextFilePath);
    if (file !== undefined && file.fileSize === fileSize) {
      this.#ready.delete(nextFilePath);
    } else {
      file = MappedFile.create(this.#io, nextFilePath, fileSize, pool);
    }
    this.#schedule(nextNextFilePath, fileSize, pool);
    return file;
  }

  #schedule(filePath: string, fileSize: number, pool: WriteBufferPool): void {
    if (this.#stopped || this.#ready.has(filePath)) return;
    const job = new Promise<void>((resolve) => {
      setImmediate(() => {
        void this.#preCreate(filePath, fileSize, pool).finally(resolve);
      });
    });
    this.#inFlight.add(job);
    void job.finally(() => this.#inFlight.delete(job));
  }

  async #preCreate(filePath: string, fileSize: number, pool: WriteBufferPool): Promise<void> {
    let file: MappedFile;
    try {
      // The stat may fail too (a dead disk): this runs in the background, so every failure is
      // logged here and left to the put path, which creates the file itself and reports.
      if (this.#stopped || this.#ready.has(filePath) || this.#io.statSync(filePath) !== null) return;
      file = MappedFile.create(this.#io, filePath, fileSize, pool);
    } catch (err) {
      this.#logger.warn(
        { err, filePath },
        'pre-creating the next segment failed; the put path will create it',
      );
      return;
    }
    this.#ready.set(filePath, file);
    try {
      await file.syncCreation();
    } catch (err) {
      this.#logger.warn({ err, filePath }, 'syncing a pre-created segment failed');
    }
  }

  /** Pre-created files that were never handed out. */
  readyFileCount(): number {
    return this.#ready.size;
  }

  /** Waits for background work, then deletes the files nobody took (as RocketMQ's shutdown does). */
  async shutdown(): Promise<void> {
    this.#stopped = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    for (const [filePath, file] of this.#ready) {
      let destroyed = false;
      try {
        destroyed = file.destroy(0);
      } catch (err) {
        this.#logger.warn({ err, filePath }, 'deleting an unused pre-created segment failed');
        file.close();
        continue;
      }
      if (!destroyed) this.#logger.warn({ filePath }, 'an unused pre-created segment could not be deleted');
    }
    this.#ready.clear();
  }
}
