import fs from 'node:fs';
import zlib from 'node:zlib';

/**
 * The bare baselines the store is measured against: the same bytes, the same system calls, none
 * of the store's logic. Each writes records of exactly the store's record size (header + body),
 * with a CRC of the body, into a pre-sized file, as the store's segments are.
 */

const HEADER_CRC_POSITION = 8;

function fillRecord(target: Buffer, pos: number, body: Buffer, recordBytes: number): void {
  target.writeInt32BE(recordBytes, pos);
  target.writeInt32BE(zlib.crc32(body) & 0x7fffffff, pos + HEADER_CRC_POSITION);
  body.copy(target, pos + recordBytes - body.length);
}

function write(fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buffer, offset, length, position, (err, written) => {
      if (err !== null) reject(err);
      else if (written !== length) reject(new Error(`short write ${written}/${length}`));
      else resolve();
    });
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, (err) => (err === null ? resolve() : reject(err)));
  });
}

/**
 * Bare group commit (pwrite + fdatasync): producers copy a record into a shared buffer and wait;
 * one flusher writes everything pending with one pwrite, syncs once, and releases every producer
 * whose record that covered. What GroupCommitService does, minus the store.
 */
export class BareGroupCommit {
  readonly #fd: number;
  readonly #buffer: Buffer;
  #bufferStart = 0;
  #writePos = 0;
  #flushedPos = 0;
  #fileOffset = 0;
  #flushing = false;
  readonly #waiters: { end: number; resolve: (value: undefined) => void }[] = [];
  readonly #fileSize: number;

  constructor(file: string, fileSize: number) {
    this.#fd = fs.openSync(file, 'w+');
    fs.ftruncateSync(this.#fd, fileSize);
    this.#fileSize = fileSize;
    this.#buffer = Buffer.allocUnsafe(64 * 1024 * 1024);
  }

  append(body: Buffer, recordBytes: number): Promise<undefined> {
    if (this.#writePos - this.#bufferStart + recordBytes > this.#buffer.length)
      throw new Error('bench buffer full');
    if (this.#fileOffset + this.#writePos + recordBytes > this.#fileSize) throw new Error('bench file full');
    fillRecord(this.#buffer, this.#writePos - this.#bufferStart, body, recordBytes);
    this.#writePos += recordBytes;
    const promise = new Promise<undefined>((resolve) => this.#waiters.push({ end: this.#writePos, resolve }));
    if (!this.#flushing) {
      this.#flushing = true;
      setImmediate(() => void this.#flushLoop());
    }
    return promise;
  }

  async #flushLoop(): Promise<void> {
    while (this.#writePos > this.#flushedPos) {
      const start = this.#flushedPos;
      const end = this.#writePos;
      await write(this.#fd, this.#buffer, start - this.#bufferStart, end - start, this.#fileOffset + start);
      await fdatasync(this.#fd);
      this.#flushedPos = end;
      let released = 0;
      while (
        released < this.#waiters.length &&
        (this.#waiters[released]?.end ?? Number.POSITIVE_INFINITY) <= end
      ) {
        this.#waiters[released]?.resolve(undefined);
        released++;
      }
      this.#waiters.splice(0, released);
      if (this.#writePos === this.#flushedPos) {
        // Everything is durable: start the buffer over at the current file position.
        this.#fileOffset += this.#writePos;
        this.#bufferStart = 0;
        this.#writePos = 0;
        this.#flushedPos = 0;
      }
    }
    this.#flushing = false;
  }

  close(): void {
    fs.closeSync(this.#fd);
  }
}

/**
 * Bare copy + pwrite, acknowledged: producers copy a record into a shared buffer and wait until
 * it is written to the file (the page cache); one writer pwrites everything pending, then
 * releases every producer it covered; fdatasync runs every 500 ms in the background. What an
 * ASYNC_FLUSH put does (acknowledged once its bytes reach the page cache), minus the store.
 */
export class BareCopyPwrite {
  readonly #fd: number;
  readonly #buffer: Buffer;
  readonly #fileSize: number;
  #writePos = 0;
  #writtenPos = 0;
  #fileOffset = 0;
  #writing = false;
  #lastSync = performance.now();
  #syncing = false;
  readonly #waiters: { end: number; resolve: (value: undefined) => void }[] = [];
  #waiterHead = 0;

  constructor(file: string, fileSize: number) {
    this.#fd = fs.openSync(file, 'w+');
    fs.ftruncateSync(this.#fd, fileSize);
    this.#fileSize = fileSize;
    this.#buffer = Buffer.allocUnsafe(256 * 1024 * 1024);
  }

  /** Bytes appended so far (to stop before the file fills). */
  get appendedBytes(): number {
    return this.#fileOffset + this.#writePos;
  }

  append(body: Buffer, recordBytes: number): Promise<undefined> {
    if (this.#writePos + recordBytes > this.#buffer.length) throw new Error('bench buffer full');
    if (this.#fileOffset + this.#writePos + recordBytes > this.#fileSize) throw new Error('bench file full');
    fillRecord(this.#buffer, this.#writePos, body, recordBytes);
    this.#writePos += recordBytes;
    const promise = new Promise<undefined>((resolve) => this.#waiters.push({ end: this.#writePos, resolve }));
    if (!this.#writing) {
      this.#writing = true;
      setImmediate(() => void this.#writeLoop());
    }
    return promise;
  }

  async #writeLoop(): Promise<void> {
    while (this.#writePos > this.#writtenPos) {
      const start = this.#writtenPos;
      const end = this.#writePos;
      await write(this.#fd, this.#buffer, start, end - start, this.#fileOffset + start);
      this.#writtenPos = end;
      while (
        this.#waiterHead < this.#waiters.length &&
        (this.#waiters[this.#waiterHead]?.end ?? Number.POSITIVE_INFINITY) <= end
      ) {
        this.#waiters[this.#waiterHead++]?.resolve(undefined);
      }
      if (this.#waiterHead === this.#waiters.length) {
        this.#waiters.length = 0;
        this.#waiterHead = 0;
      }
      if (this.#writePos === this.#writtenPos) {
        this.#fileOffset += this.#writePos;
        this.#writePos = 0;
        this.#writtenPos = 0;
      }
      const now = performance.now();
      if (!this.#syncing && now - this.#lastSync >= 500) {
        this.#syncing = true;
        this.#lastSync = now;
        fs.fdatasync(this.#fd, () => {
          this.#syncing = false;
        });
      }
    }
    this.#writing = false;
  }

  async close(): Promise<void> {
    while (this.#syncing || this.#writing) await new Promise((resolve) => setTimeout(resolve, 1));
    fs.closeSync(this.#fd);
  }
}

/**
 * The tight loop, for reference: encode into a 1 MiB buffer, pwrite when full, fdatasync every
 * 500 ms. No message is acknowledged to anyone; it is the ceiling of this machine, not the same
 * work as a put.
 */
export async function bareCopyPwriteLoop(
  file: string,
  fileSize: number,
  body: Buffer,
  recordBytes: number,
  seconds: number,
): Promise<{ messages: number; elapsedMs: number }> {
  const fd = fs.openSync(file, 'w+');
  fs.ftruncateSync(fd, fileSize);
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  let bufferPos = 0;
  let filePos = 0;
  let messages = 0;
  let syncing = false;
  let lastSync = performance.now();
  const start = performance.now();
  const end = start + seconds * 1000;
  for (;;) {
    for (let i = 0; i < 1000; i++) {
      if (bufferPos + recordBytes > buffer.length) {
        fs.writeSync(fd, buffer, 0, bufferPos, filePos);
        filePos += bufferPos;
        bufferPos = 0;
      }
      fillRecord(buffer, bufferPos, body, recordBytes);
      bufferPos += recordBytes;
      messages++;
    }
    const now = performance.now();
    if (now >= end || filePos + buffer.length > fileSize) break;
    if (!syncing && now - lastSync >= 500) {
      syncing = true;
      lastSync = now;
      fs.fdatasync(fd, () => {
        syncing = false;
      });
    }
    // Let the sync callback run now and then, as a real process would.
    if (messages % 64_000 < 1000) await new Promise((resolve) => setImmediate(resolve));
  }
  fs.writeSync(fd, buffer, 0, bufferPos, filePos);
  const elapsedMs = performance.now() - start;
  while (syncing) await new Promise((resolve) => setTimeout(resolve, 1));
  fs.closeSync(fd);
  return { messages, elapsedMs };
}
