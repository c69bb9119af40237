import {
  nodeStoreIO,
  type OpenMode,
  type StoreFileHandle,
  type StoreFileStat,
  type StoreIO,
} from '../../src/store/index.js';

/**
 * The real disk with a hook in front of every asynchronous read (InstrumentedIO has none), and a
 * record of every handle opened and whether it was closed: a test can hold a read in flight
 * across shutdown and then check that no descriptor was left open.
 */
export interface HandleRecord {
  readonly path: string;
  closed: boolean;
}

export class ReadGateIO implements StoreIO {
  /** Runs before each asynchronous read; may return a promise to delay it. */
  beforeRead: ((path: string) => Promise<void> | undefined) | undefined;
  readonly handles: HandleRecord[] = [];
  readonly #inner: StoreIO;

  constructor(inner: StoreIO = nodeStoreIO) {
    this.#inner = inner;
  }

  openSync(path: string, mode: OpenMode): StoreFileHandle {
    const record: HandleRecord = { path, closed: false };
    const handle = new GatedFile(this, this.#inner.openSync(path, mode), record);
    this.handles.push(record);
    return handle;
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

class GatedFile implements StoreFileHandle {
  readonly path: string;
  readonly #io: ReadGateIO;
  readonly #inner: StoreFileHandle;
  readonly #record: HandleRecord;

  constructor(io: ReadGateIO, inner: StoreFileHandle, record: HandleRecord) {
    this.#io = io;
    this.#inner = inner;
    this.#record = record;
    this.path = inner.path;
  }

  write(buffers: readonly Buffer[], position: number): Promise<void> {
    return this.#inner.write(buffers, position);
  }

  writeSync(buffer: Buffer, position: number): void {
    this.#inner.writeSync(buffer, position);
  }

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    await this.#io.beforeRead?.(this.path);
    return this.#inner.read(buffer, offset, length, position);
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    return this.#inner.readSync(buffer, offset, length, position);
  }

  datasync(): Promise<void> {
    return this.#inner.datasync();
  }

  datasyncSync(): void {
    this.#inner.datasyncSync();
  }

  truncateSync(size: number): void {
    this.#inner.truncateSync(size);
  }

  sizeSync(): number {
    return this.#inner.sizeSync();
  }

  async close(): Promise<void> {
    await this.#inner.close();
    this.#record.closed = true;
  }

  closeSync(): void {
    this.#inner.closeSync();
    this.#record.closed = true;
  }
}
