import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { mulberry32 } from './seeded-random.js';
import type { OpenMode, StoreFileHandle, StoreFileStat, StoreIO } from './store-io.js';

/**
 * A disk in memory, with a page cache that a power loss empties: the test double behind
 * `StoreIO` for crash tests that run thousands of seeded crash points (DESIGN.md §5). No real
 * I/O and no timers; async calls take effect in a microtask, so code that awaits them still
 * interleaves with other work, and one seed always gives the same post-crash disk.
 *
 * Every directory and file has two layers:
 *
 *   ┌──────────────── volatile (page cache) ────────────────┐
 *   │ directory: name -> inode  (a create, rename or unlink │   what the running
 *   │            takes effect here at once)                 │   process sees
 *   │ file:      size, 512-byte sectors, dirty-sector set   │
 *   └──────┬──────────────────────────────────┬─────────────┘
 *          │ fsyncDirectory(dir)              │ handle.datasync()
 *          │ (that directory's entries)       │ (that file's bytes AND size)
 *   ┌──────▼──────────────────────────────────▼─────────────┐
 *   │ directory: durable name -> inode                      │   what a crash leaves
 *   │ file:      durable size, durable sectors              │   (+ torn sectors, below)
 *   └────────────────── durable (platter) ──────────────────┘
 *
 * Rules:
 * - write/writeSync/truncateSync change only the volatile layer. datasync (and fsyncDirectory
 *   called on a file's path, as fsync(2) would) copies the file's dirty sectors and its size to
 *   the durable layer. A write past the durable size is lost at a crash unless a sync follows:
 *   the size is metadata, and it only persists through a sync.
 * - A directory entry (a file or directory created, unlinked or renamed, `mkdir` included) is
 *   volatile until the PARENT directory is fsynced. An inode never named durably vanishes at a
 *   crash, however often its data was synced; an unlinked file whose unlink was never synced
 *   comes back with its durable content. A rename is an unlink plus a create, each in its own
 *   directory: sync both directories (or the one, for a rename inside it).
 * - `/` always exists. Paths are resolved against `/` (a relative path is taken from `/`).
 *   The crash walks the durable entries from `/`: what it cannot reach is gone.
 * - Torn writes (default on): bytes written since a file's last sync are grouped into 512-byte
 *   sectors. At the crash, each dirty sector inside the durable size independently keeps its new
 *   content (probability `keepProbability`, default 0.5) or reverts to its durable content, drawn
 *   from a PRNG seeded by `seed`, files in path order and sectors in offset order:
 *
 *     offset       0        512      1024     1536     2048
 *                  ├────────┼────────┼────────┼────────┤
 *     durable      │AAAAAAAA│AAAAAAAA│00000000│00000000│  durable size 2048
 *     volatile     │AAAAAAAA│AABBBBBB│BBBBBBBB│BBB00000│  dirty sectors 1, 2, 3 (one write)
 *     after crash  │AAAAAAAA│AABBBBBB│00000000│BBB00000│  the seed kept 1 and 3, reverted 2
 *
 *   so a record may come back half new, half old, or with a hole. A truncation dirties the
 *   sectors it cuts (zeroed or not, sector by sector) the same way.
 *
 * Processes: a `SimulatedDisk` object is one boot of the machine, the StoreIO one process uses.
 * `crash()` (or a crash armed with `crashAfterOperations`) kills it: from then on every call on
 * it, and on every handle opened through it, throws (or rejects with) an Error whose `code` is
 * 'EIO' and does nothing, so the dead store can neither change nor read the post-crash disk.
 * `reboot()` returns a NEW `SimulatedDisk` over the post-crash state, for the next process. The
 * read-only test helpers (`snapshotFile`, `durableContent`, `listFiles`, `stats`,
 * `operationLog`) never throw EIO; on a crashed disk they show the post-crash state (and the dead
 * boot's counters). `syncAll()`, a set-up helper, is a write and throws EIO there.
 *
 * Errors: the codes, errno numbers, syscall names and messages Node's fs gives on Linux
 * ('ENOENT', 'EEXIST', 'EISDIR', 'ENOTDIR', 'ENOTEMPTY', 'EINVAL', 'EBADF'), so the store's error
 * handling sees what it would see on a real disk.
 *
 * Counting (for `crashAfterOperations` and `stats.operations`): a mutating operation is a call
 * that passed its checks and is about to change state: write, writeSync, truncateSync, datasync,
 * datasyncSync, fsyncDirectory(Sync), unlinkSync, renameSync, an openSync that creates the file
 * and a mkdirSync that creates at least one directory. A failed call (ENOENT ...) counts nothing;
 * a sync counts even when nothing is dirty. Async calls count when they take effect (in their
 * microtask, in call order).
 */

/** Torn writes keep or revert whole sectors of this size. */
export const SECTOR_SIZE_BYTES = 512;
/** What `stat` reports as the size of a directory (ext4's block). */
const DIRECTORY_SIZE_BYTES = 4096;
const DEFAULT_KEEP_PROBABILITY = 0.5;

export interface CrashOptions {
  /** Seeds the choice of surviving sectors. */
  readonly seed: number;
  /** Let a seeded subset of unsynced sectors survive. Default true; false drops every one. */
  readonly tornWrites?: boolean;
  /** Chance that one dirty sector keeps its new content, in [0, 1]. Default 0.5. */
  readonly keepProbability?: number;
}

export interface SimulatedDiskOptions {
  /** Source of mtimes. Default `Date.now`. */
  readonly clock?: () => number;
  /**
   * Record every mutating operation as "syscall path" in `operationLog` (to name a crash point
   * in a failure message). Default false. A rebooted disk inherits it.
   */
  readonly logOperations?: boolean;
}

export interface SimulatedDiskStats {
  /** Mutating operations that took effect (see the module comment). */
  readonly operations: number;
  readonly writes: number;
  readonly bytesWritten: number;
  readonly truncates: number;
  /** datasync/datasyncSync calls (and fsyncDirectory on a file path). */
  readonly datasyncs: number;
  readonly directorySyncs: number;
  readonly reads: number;
  readonly opens: number;
}

type ErrnoCode = 'ENOENT' | 'EEXIST' | 'EISDIR' | 'ENOTDIR' | 'ENOTEMPTY' | 'EINVAL' | 'EBADF' | 'EIO';

const ERRNO_DESCRIPTIONS: Record<ErrnoCode, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  EISDIR: 'illegal operation on a directory',
  ENOTDIR: 'not a directory',
  ENOTEMPTY: 'directory not empty',
  EINVAL: 'invalid argument',
  EBADF: 'bad file descriptor',
  EIO: 'i/o error',
};

/** An error shaped like the ones Node's fs throws: `ENOENT: no such file or directory, open '/x'`. */
function systemError(
  code: ErrnoCode,
  syscall: string,
  filePath?: string,
  dest?: string,
): NodeJS.ErrnoException {
  let message = `${code}: ${ERRNO_DESCRIPTIONS[code]}, ${syscall}`;
  if (filePath !== undefined) message += ` '${filePath}'`;
  if (dest !== undefined) message += ` -> '${dest}'`;
  const err: NodeJS.ErrnoException & { dest?: string } = new Error(message);
  err.errno = -osConstants.errno[code];
  err.code = code;
  err.syscall = syscall;
  if (filePath !== undefined) err.path = filePath;
  if (dest !== undefined) err.dest = dest;
  return err;
}

class FileNode {
  readonly kind = 'file';
  /**
   * Current content by sector; a missing sector reads as zeros, and bytes at or past `size` are
   * always zero. A sector not in `dirty` may share its buffer with `durableSectors`: writes copy
   * it first (copy on write). A dirty sector's buffer belongs to `sectors` alone.
   */
  sectors = new Map<number, Buffer>();
  size = 0;
  durableSectors = new Map<number, Buffer>();
  durableSize = 0;
  /** Sectors written or cut since the last sync. */
  readonly dirty = new Set<number>();
  mtimeMs: number;

  constructor(mtimeMs: number) {
    this.mtimeMs = mtimeMs;
  }
}

class DirNode {
  readonly kind = 'dir';
  entries = new Map<string, DiskNode>();
  durableEntries = new Map<string, DiskNode>();
  mtimeMs: number;

  constructor(mtimeMs: number) {
    this.mtimeMs = mtimeMs;
  }
}

type DiskNode = FileNode | DirNode;

/** The sector `index` of `file`, owned by the volatile layer (copied or allocated as needed). */
function ownSector(file: FileNode, index: number): Buffer {
  let sector = file.sectors.get(index);
  if (!file.dirty.has(index)) {
    sector = sector === undefined ? Buffer.alloc(SECTOR_SIZE_BYTES) : Buffer.from(sector);
    file.sectors.set(index, sector);
    file.dirty.add(index);
  } else if (sector === undefined) {
    sector = Buffer.alloc(SECTOR_SIZE_BYTES);
    file.sectors.set(index, sector);
  }
  return sector;
}

function writeBytes(file: FileNode, src: Buffer, position: number): void {
  let pos = position;
  let done = 0;
  while (done < src.length) {
    const index = Math.floor(pos / SECTOR_SIZE_BYTES);
    const inSector = pos - index * SECTOR_SIZE_BYTES;
    const n = Math.min(SECTOR_SIZE_BYTES - inSector, src.length - done);
    src.copy(ownSector(file, index), inSector, done, done + n);
    done += n;
    pos += n;
  }
  if (pos > file.size) file.size = pos;
}

function readBytes(
  sectors: ReadonlyMap<number, Buffer>,
  size: number,
  out: Buffer,
  offset: number,
  length: number,
  position: number,
): number {
  const end = Math.min(size, position + length);
  let pos = position;
  let at = offset;
  while (pos < end) {
    const index = Math.floor(pos / SECTOR_SIZE_BYTES);
    const inSector = pos - index * SECTOR_SIZE_BYTES;
    const n = Math.min(SECTOR_SIZE_BYTES - inSector, end - pos);
    const sector = sectors.get(index);
    if (sector === undefined) out.fill(0, at, at + n);
    else sector.copy(out, at, inSector, inSector + n);
    pos += n;
    at += n;
  }
  return Math.max(0, end - position);
}

function contentOf(sectors: ReadonlyMap<number, Buffer>, size: number): Buffer {
  const out = Buffer.alloc(size);
  readBytes(sectors, size, out, 0, size, 0);
  return out;
}

/** ftruncate in the volatile layer: cut sectors become dirty (so a crash may tear the cut). */
function truncateFile(file: FileNode, newSize: number): void {
  if (newSize < file.size) {
    const first = Math.floor(newSize / SECTOR_SIZE_BYTES);
    const cut = new Set<number>();
    for (const index of file.sectors.keys()) if (index >= first) cut.add(index);
    for (const index of file.durableSectors.keys()) if (index >= first) cut.add(index);
    for (const index of cut) {
      const start = index * SECTOR_SIZE_BYTES;
      if (start >= newSize) {
        file.sectors.delete(index);
        file.dirty.add(index);
      } else {
        ownSector(file, index).fill(0, newSize - start);
      }
    }
  }
  file.size = newSize;
}

function syncFile(file: FileNode): void {
  for (const index of file.dirty) {
    const sector = file.sectors.get(index);
    if (sector === undefined) file.durableSectors.delete(index);
    else file.durableSectors.set(index, sector);
  }
  file.dirty.clear();
  file.durableSize = file.size;
}

function syncDirectory(dir: DirNode): void {
  dir.durableEntries = new Map(dir.entries);
}

function pathComponents(p: string): string[] {
  return path
    .resolve('/', p)
    .split('/')
    .filter((c) => c.length > 0);
}

interface Resolved {
  /** null for `/`. */
  readonly parent: DirNode | null;
  readonly name: string;
  readonly node: DiskNode | undefined;
}

/** Walks `p` through the volatile (or durable) entries; throws ENOENT/ENOTDIR for a bad prefix. */
function resolvePath(root: DirNode, p: string, syscall: string, durable = false): Resolved {
  const parts = pathComponents(p);
  const last = parts.pop();
  if (last === undefined) return { parent: null, name: '', node: root };
  let dir = root;
  for (const part of parts) {
    const next = (durable ? dir.durableEntries : dir.entries).get(part);
    if (next === undefined) throw systemError('ENOENT', syscall, p);
    if (next.kind !== 'dir') throw systemError('ENOTDIR', syscall, p);
    dir = next;
  }
  return { parent: dir, name: last, node: (durable ? dir.durableEntries : dir.entries).get(last) };
}

type MutableStats = {
  -readonly [K in keyof SimulatedDiskStats]: SimulatedDiskStats[K];
};

function zeroStats(): MutableStats {
  return {
    operations: 0,
    writes: 0,
    bytesWritten: 0,
    truncates: 0,
    datasyncs: 0,
    directorySyncs: 0,
    reads: 0,
    opens: 0,
  };
}

function checkCrashOptions(options: CrashOptions): void {
  if (!Number.isFinite(options.seed))
    throw new RangeError(`the crash seed must be a number, got ${options.seed}`);
  const keepProbability = options.keepProbability ?? DEFAULT_KEEP_PROBABILITY;
  if (!(keepProbability >= 0 && keepProbability <= 1)) {
    throw new RangeError(`keepProbability must be in [0, 1], got ${keepProbability}`);
  }
}

/** Node's fs rejects a bad position before any I/O, with a RangeError. */
function checkPosition(position: number): void {
  if (!Number.isSafeInteger(position) || position < 0) {
    throw new RangeError(`a file position must be a whole number >= 0, got ${position}`);
  }
}

/** The disk as the crash leaves it: durable entries reachable from `/`, durable bytes, kept sectors. */
function postCrashState(root: DirNode, options: CrashOptions, now: number): DirNode {
  const torn = options.tornWrites ?? true;
  const keepProbability = options.keepProbability ?? DEFAULT_KEEP_PROBABILITY;
  const random = mulberry32(options.seed);
  // One inode reachable under two durable names (a rename synced on one side only) stays one.
  const rebuilt = new Map<DiskNode, DiskNode>();

  const rebuildFile = (old: FileNode): FileNode => {
    const file = new FileNode(old.mtimeMs);
    const sectors = new Map(old.durableSectors);
    const sectorsInSize = Math.ceil(old.durableSize / SECTOR_SIZE_BYTES);
    if (torn) {
      for (const index of [...old.dirty].sort((a, b) => a - b)) {
        if (index >= sectorsInSize) continue; // past the durable size: the size never got there
        if (random() >= keepProbability) continue;
        let kept = old.sectors.get(index);
        const tail = old.durableSize - index * SECTOR_SIZE_BYTES;
        if (kept !== undefined && tail < SECTOR_SIZE_BYTES) {
          kept = Buffer.from(kept);
          kept.fill(0, tail); // keep "bytes past the size are zero"
        }
        if (kept === undefined) sectors.delete(index);
        else sectors.set(index, kept);
      }
    }
    file.size = old.durableSize;
    file.durableSize = old.durableSize;
    file.sectors = sectors;
    file.durableSectors = new Map(sectors);
    return file;
  };

  const rebuildDir = (old: DirNode): DirNode => {
    const dir = new DirNode(old.mtimeMs);
    for (const name of [...old.durableEntries.keys()].sort()) {
      const child = old.durableEntries.get(name) as DiskNode;
      let copy = rebuilt.get(child);
      if (copy === undefined) {
        copy = child.kind === 'dir' ? rebuildDir(child) : rebuildFile(child);
        rebuilt.set(child, copy);
      }
      dir.entries.set(name, copy);
    }
    dir.durableEntries = new Map(dir.entries);
    return dir;
  };

  const root2 = rebuildDir(root);
  root2.mtimeMs = now;
  return root2;
}

/**
 * One boot of the disk: its state and whether the process using it is still alive. Shared by the
 * `SimulatedDisk` and every handle opened through it.
 */
class Boot {
  root: DirNode;
  readonly clock: () => number;
  readonly stats: MutableStats = zeroStats();
  readonly operationLog: string[] | null;
  crashed = false;
  rebooted = false;
  #countdown: number | null = null;
  #armedOptions: CrashOptions | null = null;

  constructor(root: DirNode, clock: () => number, logOperations: boolean) {
    this.root = root;
    this.clock = clock;
    this.operationLog = logOperations ? [] : null;
  }

  /** Every call starts here: a dead process gets EIO. */
  checkAlive(syscall: string): void {
    if (this.crashed) throw systemError('EIO', syscall);
  }

  /** A mutating call that passed its checks: count it, or fire the armed crash instead. */
  mutate(syscall: string, target: string): void {
    this.checkAlive(syscall);
    if (this.#countdown !== null) {
      this.#countdown--;
      if (this.#countdown === 0) {
        this.crash(this.#armedOptions as CrashOptions);
        throw systemError('EIO', syscall);
      }
    }
    this.stats.operations++;
    this.operationLog?.push(`${syscall} ${target}`);
  }

  arm(operations: number, options: CrashOptions): void {
    checkCrashOptions(options);
    this.#countdown = operations;
    this.#armedOptions = options;
  }

  disarm(): void {
    this.#countdown = null;
    this.#armedOptions = null;
  }

  get operationsUntilCrash(): number | null {
    return this.#countdown;
  }

  crash(options: CrashOptions): void {
    if (this.crashed) throw new Error('the simulated disk has already crashed; reboot() it');
    checkCrashOptions(options);
    const next = postCrashState(this.root, options, this.clock());
    this.crashed = true;
    this.disarm();
    this.root = next;
  }
}

class SimulatedFileHandle implements StoreFileHandle {
  readonly path: string;
  readonly #boot: Boot;
  readonly #node: DiskNode;
  readonly #writable: boolean;
  #closed = false;

  constructor(boot: Boot, filePath: string, node: DiskNode, writable: boolean) {
    this.#boot = boot;
    this.path = filePath;
    this.#node = node;
    this.#writable = writable;
  }

  /** Alive, open, and a writable regular file (Node: EBADF on a read-only descriptor). */
  #writableFile(syscall: string): FileNode {
    this.#check(syscall);
    if (!this.#writable || this.#node.kind !== 'file') throw systemError('EBADF', syscall);
    return this.#node;
  }

  #check(syscall: string): void {
    this.#boot.checkAlive(syscall);
    if (this.#closed) throw systemError('EBADF', syscall);
  }

  write(buffers: readonly Buffer[], position: number): Promise<void> {
    // The "thread pool" runs it in a microtask: whatever the caller does next runs first.
    return Promise.resolve().then(() => {
      const file = this.#writableFile('write');
      checkPosition(position);
      this.#boot.mutate('write', this.path);
      let pos = position;
      for (const buffer of buffers) {
        writeBytes(file, buffer, pos);
        pos += buffer.length;
      }
      this.#recordWrite(file, pos - position);
    });
  }

  writeSync(buffer: Buffer, position: number): void {
    const file = this.#writableFile('write');
    checkPosition(position);
    this.#boot.mutate('write', this.path);
    writeBytes(file, buffer, position);
    this.#recordWrite(file, buffer.length);
  }

  #recordWrite(file: FileNode, bytes: number): void {
    file.mtimeMs = this.#boot.clock();
    this.#boot.stats.writes++;
    this.#boot.stats.bytesWritten += bytes;
  }

  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    return Promise.resolve().then(() => this.readSync(buffer, offset, length, position));
  }

  readSync(buffer: Buffer, offset: number, length: number, position: number): number {
    this.#check('read');
    if (offset < 0 || length < 0 || offset + length > buffer.length) {
      throw new RangeError(
        `read of ${length} bytes at buffer offset ${offset} does not fit a buffer of ${buffer.length}`,
      );
    }
    checkPosition(position);
    if (this.#node.kind === 'dir') throw systemError('EISDIR', 'read');
    this.#boot.stats.reads++;
    return readBytes(this.#node.sectors, this.#node.size, buffer, offset, length, position);
  }

  datasync(): Promise<void> {
    return Promise.resolve().then(() => this.datasyncSync());
  }

  datasyncSync(): void {
    this.#check('fdatasync');
    this.#boot.mutate('fdatasync', this.path);
    // fdatasync(2) works on a read-only descriptor too, and on a directory it syncs the entries.
    if (this.#node.kind === 'dir') {
      syncDirectory(this.#node);
      this.#boot.stats.directorySyncs++;
    } else {
      syncFile(this.#node);
      this.#boot.stats.datasyncs++;
    }
  }

  truncateSync(size: number): void {
    this.#check('ftruncate');
    if (!this.#writable || this.#node.kind !== 'file') throw systemError('EINVAL', 'ftruncate');
    const file = this.#node;
    this.#boot.mutate('ftruncate', this.path);
    // Node clamps a negative length to 0.
    truncateFile(file, Math.max(0, size));
    file.mtimeMs = this.#boot.clock();
    this.#boot.stats.truncates++;
  }

  sizeSync(): number {
    this.#check('fstat');
    return this.#node.kind === 'dir' ? DIRECTORY_SIZE_BYTES : this.#node.size;
  }

  close(): Promise<void> {
    return Promise.resolve().then(() => this.closeSync());
  }

  closeSync(): void {
    // Idempotent, like NodeFileHandle; a dead process closes nothing.
    this.#boot.checkAlive('close');
    this.#closed = true;
  }
}

/** An in-memory `StoreIO` whose unsynced state a `crash()` drops or tears (module comment). */
export class SimulatedDisk implements StoreIO {
  /**
   * Each boot is its own scope for the store lock's in-process registry: a store left open (dead,
   * never shut down) on a crashed boot does not lock the directory for the next boot.
   */
  readonly lockScope: object = {};
  #boot: Boot;
  readonly #options: SimulatedDiskOptions;

  constructor(options: SimulatedDiskOptions = {}) {
    this.#options = options;
    const clock = options.clock ?? Date.now;
    this.#boot = new Boot(new DirNode(clock()), clock, options.logOperations ?? false);
  }

  // ---- StoreIO ----

  openSync(filePath: string, mode: OpenMode): StoreFileHandle {
    const boot = this.#boot;
    boot.checkAlive('open');
    const { parent, name, node } = resolvePath(boot.root, filePath, 'open');
    let target = node;
    if (target === undefined) {
      if (mode === 'read-write' || mode === 'read-only' || parent === null) {
        throw systemError('ENOENT', 'open', filePath);
      }
      boot.mutate('open', filePath);
      const file = new FileNode(boot.clock());
      parent.entries.set(name, file);
      parent.mtimeMs = file.mtimeMs;
      target = file;
    } else if (mode === 'create-new') {
      throw systemError('EEXIST', 'open', filePath);
    } else if (target.kind === 'dir' && mode !== 'read-only') {
      throw systemError('EISDIR', 'open', filePath);
    }
    boot.stats.opens++;
    return new SimulatedFileHandle(boot, filePath, target, mode !== 'read-only');
  }

  mkdirSync(dirPath: string): void {
    const boot = this.#boot;
    boot.checkAlive('mkdir');
    const parts = pathComponents(dirPath);
    let dir = boot.root;
    let i = 0;
    for (; i < parts.length; i++) {
      const next = dir.entries.get(parts[i] as string);
      if (next === undefined) break;
      if (next.kind !== 'dir') {
        throw systemError(i === parts.length - 1 ? 'EEXIST' : 'ENOTDIR', 'mkdir', dirPath);
      }
      dir = next;
    }
    if (i === parts.length) return; // mkdir -p of an existing directory
    boot.mutate('mkdir', dirPath);
    const now = boot.clock();
    for (; i < parts.length; i++) {
      const created = new DirNode(now);
      dir.entries.set(parts[i] as string, created);
      dir.mtimeMs = now;
      dir = created;
    }
  }

  readdirSync(dirPath: string): string[] {
    this.#boot.checkAlive('scandir');
    const { node } = resolvePath(this.#boot.root, dirPath, 'scandir');
    if (node === undefined) throw systemError('ENOENT', 'scandir', dirPath);
    if (node.kind !== 'dir') throw systemError('ENOTDIR', 'scandir', dirPath);
    return [...node.entries.keys()].sort();
  }

  statSync(filePath: string): StoreFileStat | null {
    this.#boot.checkAlive('stat');
    let node: DiskNode | undefined;
    try {
      node = resolvePath(this.#boot.root, filePath, 'stat').node;
    } catch (err) {
      // Like `fs.statSync(p, { throwIfNoEntry: false })`: a missing directory on the way is "no entry".
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    if (node === undefined) return null;
    return {
      size: node.kind === 'dir' ? DIRECTORY_SIZE_BYTES : node.size,
      isFile: node.kind === 'file',
      isDirectory: node.kind === 'dir',
      mtimeMs: node.mtimeMs,
    };
  }

  unlinkSync(filePath: string): void {
    const boot = this.#boot;
    boot.checkAlive('unlink');
    const { parent, name, node } = resolvePath(boot.root, filePath, 'unlink');
    if (node === undefined) throw systemError('ENOENT', 'unlink', filePath);
    if (node.kind === 'dir' || parent === null) throw systemError('EISDIR', 'unlink', filePath);
    boot.mutate('unlink', filePath);
    // Open handles keep the inode; it is gone for good only once the unlink is synced.
    parent.entries.delete(name);
    parent.mtimeMs = boot.clock();
  }

  renameSync(from: string, to: string): void {
    const boot = this.#boot;
    boot.checkAlive('rename');
    const fail = (code: ErrnoCode): Error => systemError(code, 'rename', from, to);
    let source: Resolved;
    let target: Resolved;
    try {
      source = resolvePath(boot.root, from, 'rename');
      target = resolvePath(boot.root, to, 'rename');
    } catch (err) {
      throw fail((err as NodeJS.ErrnoException).code as ErrnoCode);
    }
    const moving = source.node;
    if (moving === undefined || source.parent === null)
      throw fail(moving === undefined ? 'ENOENT' : 'EINVAL');
    if (target.parent === null) throw fail(moving.kind === 'dir' ? 'EINVAL' : 'EISDIR');
    if (moving === target.node) return; // rename(2) of a name onto itself does nothing
    const replaced = target.node;
    if (moving.kind === 'dir') {
      const fromParts = pathComponents(from);
      const toParts = pathComponents(to);
      if (fromParts.every((part, i) => toParts[i] === part)) throw fail('EINVAL');
      if (replaced?.kind === 'file') throw fail('ENOTDIR');
      if (replaced?.kind === 'dir' && replaced.entries.size > 0) throw fail('ENOTEMPTY');
    } else if (replaced?.kind === 'dir') {
      throw fail('EISDIR');
    }
    boot.mutate('rename', `${from} -> ${to}`);
    source.parent.entries.delete(source.name);
    target.parent.entries.set(target.name, moving);
    const now = boot.clock();
    source.parent.mtimeMs = now;
    target.parent.mtimeMs = now;
  }

  fsyncDirectory(dirPath: string): Promise<void> {
    return Promise.resolve().then(() => this.fsyncDirectorySync(dirPath));
  }

  fsyncDirectorySync(dirPath: string): void {
    const boot = this.#boot;
    boot.checkAlive('open');
    const { node } = resolvePath(boot.root, dirPath, 'open');
    if (node === undefined) throw systemError('ENOENT', 'open', dirPath);
    boot.mutate('fsync', dirPath);
    // NodeStoreIO opens the path read-only and fsyncs it: on a file that syncs the file.
    if (node.kind === 'dir') {
      syncDirectory(node);
      boot.stats.directorySyncs++;
    } else {
      syncFile(node);
      boot.stats.datasyncs++;
    }
  }

  readFileSync(filePath: string): Buffer {
    this.#boot.checkAlive('open');
    const { node } = resolvePath(this.#boot.root, filePath, 'open');
    if (node === undefined) throw systemError('ENOENT', 'open', filePath);
    if (node.kind === 'dir') throw systemError('EISDIR', 'read');
    this.#boot.stats.reads++;
    return contentOf(node.sectors, node.size);
  }

  // ---- crashes ----

  /**
   * Power loss now: the disk keeps only its durable layer, plus the sectors the seed keeps (module
   * comment). This object and its handles then throw EIO for good; `reboot()` gives the next one.
   * Throws if the disk has already crashed.
   */
  crash(options: CrashOptions): void {
    this.#boot.crash(options);
  }

  /**
   * Arms a crash right BEFORE the `operations`-th mutating operation from now (1 = the next one):
   * `operations - 1` more mutating operations take effect, then the next one crashes the disk
   * with `options` and throws EIO, like every call after it. Replaces an earlier arming.
   */
  crashAfterOperations(operations: number, options: CrashOptions): void {
    if (!Number.isSafeInteger(operations) || operations < 1) {
      throw new RangeError(`crashAfterOperations needs a whole number >= 1, got ${operations}`);
    }
    this.#boot.checkAlive('crashAfterOperations');
    this.#boot.arm(operations, options);
  }

  /** Cancels an armed crash. */
  cancelCrash(): void {
    this.#boot.disarm();
  }

  /** Mutating operations left before an armed crash fires (it fires on the last), or null. */
  get operationsUntilCrash(): number | null {
    return this.#boot.operationsUntilCrash;
  }

  get isCrashed(): boolean {
    return this.#boot.crashed;
  }

  /**
   * The machine after the power comes back: a new `SimulatedDisk` over the post-crash state, for
   * the next process (everything on it is durable). Only once per crash.
   */
  reboot(): SimulatedDisk {
    const boot = this.#boot;
    if (!boot.crashed) throw new Error('reboot() follows crash(): this disk is still running');
    if (boot.rebooted) throw new Error('this crashed disk has already been rebooted');
    boot.rebooted = true;
    const next = new SimulatedDisk(this.#options);
    next.#boot = new Boot(boot.root, boot.clock, boot.operationLog !== null);
    return next;
  }

  // ---- test helpers (never EIO) ----

  /**
   * Makes everything durable, as sync(2) would: for setting a scene up before the part of a test
   * that may crash. Not counted as an operation; throws EIO on a crashed disk.
   */
  syncAll(): void {
    this.#boot.checkAlive('sync');
    const visit = (dir: DirNode): void => {
      syncDirectory(dir);
      for (const child of dir.entries.values()) {
        if (child.kind === 'dir') visit(child);
        else syncFile(child);
      }
    };
    visit(this.#boot.root);
  }

  /**
   * The file's current content as this process reads it (the post-crash one after a crash), or
   * null when there is no such file.
   */
  snapshotFile(filePath: string): Buffer | null {
    let node: DiskNode | undefined;
    try {
      node = resolvePath(this.#boot.root, filePath, 'open').node;
    } catch {
      return null; // no directory on the way
    }
    if (node === undefined) return null;
    if (node.kind === 'dir') throw systemError('EISDIR', 'read');
    return contentOf(node.sectors, node.size);
  }

  /**
   * What a crash now without torn writes would leave at `filePath`: the durable content of the file
   * the durable directory entries name there, or null if none would (an unsynced creation).
   */
  durableContent(filePath: string): Buffer | null {
    let resolved: Resolved;
    try {
      resolved = resolvePath(this.#boot.root, filePath, 'open', true);
    } catch {
      return null; // a directory on the way is not durable
    }
    const { node } = resolved;
    if (node === undefined) return null;
    if (node.kind === 'dir') throw systemError('EISDIR', 'read');
    return contentOf(node.durableSectors, node.durableSize);
  }

  /** Every file path, sorted (the post-crash tree after a crash). */
  listFiles(): string[] {
    const out: string[] = [];
    const visit = (dir: DirNode, prefix: string): void => {
      for (const [name, child] of dir.entries) {
        const childPath = `${prefix}/${name}`;
        if (child.kind === 'dir') visit(child, childPath);
        else out.push(childPath);
      }
    };
    visit(this.#boot.root, '');
    return out.sort();
  }

  /** The mutating operations of this boot, "syscall path", when `logOperations` is on; else empty. */
  get operationLog(): readonly string[] {
    return [...(this.#boot.operationLog ?? [])];
  }

  /** Counters of this boot (a rebooted disk starts from zero). */
  get stats(): SimulatedDiskStats {
    return { ...this.#boot.stats };
  }
}
