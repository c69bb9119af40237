import fs from 'node:fs';

/**
 * The only code in the store that touches file descriptors. Everything else goes through
 * `StoreIO`, so a test can wrap it (to watch every fdatasync, to make one hang or fail) and a
 * simulated disk can stand in for it.
 *
 * Blocking calls that can take long (pwrite of a large range, fdatasync) are async and run on
 * libuv's thread pool; the event loop never waits on the disk for them. The few synchronous calls
 * are the cheap, rare ones: opening and pre-sizing a segment at a roll, directory listings at load.
 */
export interface StoreFileHandle {
  readonly path: string;
  /** Writes every byte of `buffers` at `position` (pwritev), looping on short writes. */
  write(buffers: readonly Buffer[], position: number): Promise<void>;
  /** Synchronous full write at `position`; for small writes outside the hot path. */
  writeSync(buffer: Buffer, position: number): void;
  /** Reads up to `length` bytes at `position` into `buffer[offset..]`; returns how many were read. */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  readSync(buffer: Buffer, offset: number, length: number, position: number): number;
  /** fdatasync. A rejection means the bytes are not known to be durable. */
  datasync(): Promise<void>;
  datasyncSync(): void;
  /** ftruncate to `size` bytes (pre-sizing a segment; zero-filled, sparse). */
  truncateSync(size: number): void;
  sizeSync(): number;
  close(): Promise<void>;
  closeSync(): void;
}

export interface StoreFileStat {
  readonly size: number;
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly mtimeMs: number;
}

export type OpenMode =
  /** Create a new file; fail with EEXIST if it exists. */
  | 'create-new'
  /** Open an existing file for reading and writing; fail with ENOENT if missing. */
  | 'read-write'
  /** Open or create for reading and writing. */
  | 'open-or-create'
  /** Open an existing file read-only. */
  | 'read-only';

export interface StoreIO {
  openSync(path: string, mode: OpenMode): StoreFileHandle;
  /** mkdir -p. */
  mkdirSync(path: string): void;
  readdirSync(path: string): string[];
  /** null when the path does not exist. */
  statSync(path: string): StoreFileStat | null;
  unlinkSync(path: string): void;
  renameSync(from: string, to: string): void;
  /** Makes a directory's entries (a created, renamed or deleted file) durable. */
  fsyncDirectory(path: string): Promise<void>;
  fsyncDirectorySync(path: string): void;
  readFileSync(path: string): Buffer;
  /**
   * Which stores count as "already open in this thread" for the directory lock: one scope per
   * disk. Unset for the real disk (and wrappers of it); a simulated disk gives each boot its own.
   */
  readonly lockScope?: object;
}

const OPEN_FLAGS: Record<OpenMode, number> = {
  'create-new': fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL,
  'read-write': fs.constants.O_RDWR,
  'open-or-create': fs.constants.O_RDWR | fs.constants.O_CREAT,
  'read-only': fs.constants.O_RDONLY,
};
const FILE_MODE = 0o644;

/** Drops the first `n` bytes from a list of buffers (after a short write). */
function skipBytes(buffers: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  let skip = n;
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

function totalLength(buffers: readonly Buffer[]): number {
  let n = 0;
  for (const b of buffers) n += b.length;
  return n;
}

/**
 * Node's callback API, not `fs/promises`: a FileHandle call costs a promise and an extra object
 * per operation, measurably more on the commit path (reference: node-platform.md B1).
 */
class NodeFileHandle implements StoreFileHandle {
  readonly path: string;
  readonly #fd: number;
  #closed = false;

  constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  write(buffers: readonly Buffer[], position: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let remaining: readonly Buffer[] = buffers;
      let pos = position;
      let left = totalLength(buffers);
      const step = (): void => {
        if (left === 0) {
          resolve();
          return;
        }
        const onWritten = (err: NodeJS.ErrnoException | null, written: number): void => {
          if (err !== null) {
            reject(err);
            return;
          }
          if (written === 0) {
            reject(Object.assign(new Error(`pwrite wrote 0 bytes to ${this.path}`), { code: 'EIO' }));
            return;
          }
          left -= written;
          pos += written;
          remaining = skipBytes(remaining, written);
          step();
        };
        if (remaining.length === 1) {
          const only = remaining[0] as Buffer;
          fs.write(this.#fd, only, 0, only.length, pos, onWritten);
        } else {
          fs.writev(this.#fd, remaining as Buffer[], pos, onWritten);
        }
      };
      step();
    });
  }

  writeSync(buffer: Buffer, position: number): void {
    let off = 0;
    while (off < buffer.length) {
      const written = fs.writeSync(this.#fd, buffer, off, buffer.length - off, position + off);
      if (written === 0)
        throw Object.assign(new Error(`pwrite wrote 0 bytes to ${this.path}`), { code: 'EIO' });
      off += written;
    }
  }

  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => {
      fs.read(this.#fd, buffer, offset, length, position, (err, bytesRead) => {
        if (err !== null) reject(err);
        else resolve(bytesRead);
      });
    });
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    return fs.readSync(this.#fd, buffer, offset, length, position);
  }

  datasync(): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.#fd, (err) => {
        if (err !== null) reject(err);
        else resolve();
      });
    });
  }

  datasyncSync(): void {
    fs.fdatasyncSync(this.#fd);
  }

  truncateSync(size: number): void {
    fs.ftruncateSync(this.#fd, size);
  }

  sizeSync(): number {
    return fs.fstatSync(this.#fd).size;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve, reject) => {
      fs.close(this.#fd, (err) => {
        if (err !== null) reject(err);
        else resolve();
      });
    });
  }

  closeSync(): void {
    if (this.#closed) return;
    this.#closed = true;
    fs.closeSync(this.#fd);
  }
}

/** The real disk. */
export class NodeStoreIO implements StoreIO {
  openSync(path: string, mode: OpenMode): StoreFileHandle {
    return new NodeFileHandle(path, fs.openSync(path, OPEN_FLAGS[mode], FILE_MODE));
  }

  mkdirSync(path: string): void {
    fs.mkdirSync(path, { recursive: true });
  }

  readdirSync(path: string): string[] {
    return fs.readdirSync(path);
  }

  statSync(path: string): StoreFileStat | null {
    const st = fs.statSync(path, { throwIfNoEntry: false });
    if (st === undefined) return null;
    return { size: st.size, isFile: st.isFile(), isDirectory: st.isDirectory(), mtimeMs: st.mtimeMs };
  }

  unlinkSync(path: string): void {
    fs.unlinkSync(path);
  }

  renameSync(from: string, to: string): void {
    fs.renameSync(from, to);
  }

  fsyncDirectory(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.open(path, fs.constants.O_RDONLY, (openErr, fd) => {
        if (openErr !== null) {
          reject(openErr);
          return;
        }
        fs.fsync(fd, (syncErr) => {
          fs.close(fd, (closeErr) => {
            const err = syncErr ?? closeErr;
            if (err !== null) reject(err);
            else resolve();
          });
        });
      });
    });
  }

  fsyncDirectorySync(path: string): void {
    const fd = fs.openSync(path, fs.constants.O_RDONLY);
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  readFileSync(path: string): Buffer {
    return fs.readFileSync(path);
  }
}

/** One shared instance: it has no state. */
export const nodeStoreIO: StoreIO = new NodeStoreIO();
