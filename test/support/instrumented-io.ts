import {
  nodeStoreIO,
  type OpenMode,
  type StoreFileHandle,
  type StoreFileStat,
  type StoreIO,
} from '../../src/store/index.js';

/**
 * The real disk with a hook in front of every file operation: tests record the order of writes,
 * fdatasyncs and acknowledgements, make an fdatasync hang (a stuck disk) or fail (EIO), or make a
 * write fail (ENOSPC). Everything not hooked goes to the real file.
 */
export interface IoEvent {
  readonly op: 'write' | 'datasync-start' | 'datasync-end' | 'datasync-error' | 'open' | 'truncate';
  readonly path: string;
  /** For writes: [position, position + bytes). */
  readonly from?: number;
  readonly to?: number;
  /** A sequence number shared with test-side events, to order everything. */
  readonly seq: number;
}

export interface IoHooks {
  /** Runs before each asynchronous read; may return a promise to delay it. */
  beforeRead?: (path: string) => void | Promise<void>;
  /** Runs before each fdatasync; may return a promise to delay it, or throw to fail it. */
  beforeDatasync?: (path: string) => void | Promise<void>;
  /**
   * Runs before each write; may throw to fail it, or (async writes only, `sync` false) return a
   * promise to delay it. A synchronous write can only be slowed down synchronously.
   */
  beforeWrite?: (path: string, position: number, length: number, sync: boolean) => void | Promise<void>;
}

/** A file handle the store opened, and whether it has been closed (to find leaked descriptors). */
export interface HandleRecord {
  readonly path: string;
  closed: boolean;
}

export class InstrumentedIO implements StoreIO {
  readonly events: IoEvent[] = [];
  readonly handles: HandleRecord[] = [];
  hooks: IoHooks = {};
  #seq = 0;
  readonly #inner: StoreIO;

  constructor(inner: StoreIO = nodeStoreIO) {
    this.#inner = inner;
  }

  nextSeq(): number {
    return this.#seq++;
  }

  record(event: Omit<IoEvent, 'seq'>): void {
    this.events.push({ ...event, seq: this.nextSeq() });
  }

  openSync(path: string, mode: OpenMode): StoreFileHandle {
    const inner = this.#inner.openSync(path, mode);
    this.record({ op: 'open', path });
    const handle: HandleRecord = { path, closed: false };
    this.handles.push(handle);
    return new InstrumentedFile(this, inner, handle);
  }

  mkdirSync(path: string): void {
    this.#inner.mkdirSync(path);
  }

  readdirSync(path: string): string[] {
    return this.#inner.readdirSync(path);
  }

  statSync(path: string): StoreFileStat | null {
    return this.#inner.statSync(path);
  }

  unlinkSync(path: string): void {
    this.#inner.unlinkSync(path);
  }

  renameSync(from: string, to: string): void {
    this.#inner.renameSync(from, to);
  }

  fsyncDirectory(path: string): Promise<void> {
    return this.#inner.fsyncDirectory(path);
  }

  fsyncDirectorySync(path: string): void {
    this.#inner.fsyncDirectorySync(path);
  }

  readFileSync(path: string): Buffer {
    return this.#inner.readFileSync(path);
  }
}

class InstrumentedFile implements StoreFileHandle {
  readonly path: string;
  readonly #io: InstrumentedIO;
  readonly #inner: StoreFileHandle;
  readonly #handle: HandleRecord;

  constructor(io: InstrumentedIO, inner: StoreFileHandle, handle: HandleRecord) {
    this.#io = io;
    this.#inner = inner;
    this.#handle = handle;
    this.path = inner.path;
  }

  async write(buffers: readonly Buffer[], position: number): Promise<void> {
    const length = buffers.reduce((n, b) => n + b.length, 0);
    await this.#io.hooks.beforeWrite?.(this.path, position, length, false);
    await this.#inner.write(buffers, position);
    this.#io.record({ op: 'write', path: this.path, from: position, to: position + length });
  }

  writeSync(buffer: Buffer, position: number): void {
    const hooked = this.#io.hooks.beforeWrite?.(this.path, position, buffer.length, true);
    if (hooked !== undefined) {
      // A synchronous write cannot wait: a hook that wants to delay one is a test bug.
      throw new Error('beforeWrite returned a promise for a synchronous write; delay async writes only');
    }
    this.#inner.writeSync(buffer, position);
    this.#io.record({ op: 'write', path: this.path, from: position, to: position + buffer.length });
  }

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    await this.#io.hooks.beforeRead?.(this.path);
    return this.#inner.read(buffer, offset, length, position);
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    return this.#inner.readSync(buffer, offset, length, position);
  }

  async datasync(): Promise<void> {
    this.#io.record({ op: 'datasync-start', path: this.path });
    try {
      await this.#io.hooks.beforeDatasync?.(this.path);
      await this.#inner.datasync();
    } catch (err) {
      this.#io.record({ op: 'datasync-error', path: this.path });
      throw err;
    }
    this.#io.record({ op: 'datasync-end', path: this.path });
  }

  datasyncSync(): void {
    this.#io.record({ op: 'datasync-start', path: this.path });
    this.#inner.datasyncSync();
    this.#io.record({ op: 'datasync-end', path: this.path });
  }

  truncateSync(size: number): void {
    this.#inner.truncateSync(size);
    this.#io.record({ op: 'truncate', path: this.path, from: size, to: size });
  }

  sizeSync(): number {
    return this.#inner.sizeSync();
  }

  async close(): Promise<void> {
    await this.#inner.close();
    this.#handle.closed = true;
  }

  closeSync(): void {
    this.#inner.closeSync();
    this.#handle.closed = true;
  }
}
