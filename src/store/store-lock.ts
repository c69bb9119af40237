import fs from 'node:fs';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { errnoCode, StoreError } from './errors.js';
import type { StoreIO } from './io/store-io.js';

/**
 * One store per directory. RocketMQ takes an exclusive `flock` on `{root}/lock`; Node has no
 * flock, so the lock is the file's content instead:
 *
 *   {root}/lock:   "<pid> <process start time> <thread id>\n"
 *
 * created with O_EXCL. A lock whose process is gone (or whose pid now belongs to a different
 * process, told apart by its start time in /proc) is stale and taken over. Inside one thread a
 * registry (by real path) catches a second open before the file is even looked at; a lock held
 * by another worker thread of this process is respected.
 *
 * Taking over a stale lock renames it aside first and checks that what was renamed is the stale
 * lock that was judged, so two processes racing for it cannot both win. (A RocketMQ directory's
 * `lock` holds the text "lock"; it names no live process and is taken over the same way.)
 */
export const LOCK_FILE_NAME = 'lock';

/**
 * Stores open in this thread, per lock scope. The real disk is one scope; a simulated disk gives
 * each boot its own (`StoreIO.lockScope`), so a test can reopen a store after simulating a crash
 * while the crashed instance, dead but never shut down, still sits in its own scope.
 */
const openInThisThread = new WeakMap<object, Set<string>>();
const REAL_DISK_SCOPE = {};

function openStores(io: StoreIO): Set<string> {
  const scope = io.lockScope ?? REAL_DISK_SCOPE;
  let open = openInThisThread.get(scope);
  if (open === undefined) {
    open = new Set();
    openInThisThread.set(scope, open);
  }
  return open;
}

/** Start time of a process in clock ticks since boot, or null where /proc has no answer. */
function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counts after the parenthesised command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

function realPath(dir: string): string {
  try {
    return fs.realpathSync(dir);
  } catch {
    return path.resolve(dir);
  }
}

interface LockOwner {
  readonly alive: boolean;
  readonly describe: string;
}

function lockOwner(content: string): LockOwner {
  const match = /^(\d+) (\S+)(?: (\d+))?/.exec(content);
  if (match === null) return { alive: false, describe: 'no process' };
  const pid = Number(match[1]);
  const thread = match[3] === undefined ? 0 : Number(match[3]);
  if (pid === process.pid) {
    // This process: the registry already said this thread has no store here, so a lock of this
    // thread was left by an instance that was never shut down; another thread's is live.
    return thread === threadId
      ? { alive: false, describe: 'this thread' }
      : { alive: true, describe: `worker thread ${thread} of this process` };
  }
  if (!isProcessAlive(pid)) return { alive: false, describe: `process ${pid}` };
  const startTime = processStartTime(pid);
  // Without /proc the pid check is all there is; trust it.
  return { alive: startTime === null || startTime === match[2], describe: `process ${pid}` };
}

export class StoreLock {
  readonly #key: string;
  readonly #path: string;
  readonly #io: StoreIO;
  #released = false;

  private constructor(key: string, lockPath: string, io: StoreIO) {
    this.#key = key;
    this.#path = lockPath;
    this.#io = io;
  }

  /** Takes the lock of `rootDir` or throws `StoreError('ERR_STORE_LOCKED')`. */
  static acquire(io: StoreIO, rootDir: string): StoreLock {
    // The real path: a symlink to an open store is the same store.
    const key = realPath(rootDir);
    const open = openStores(io);
    if (open.has(key)) {
      throw new StoreError('ERR_STORE_LOCKED', `the store directory ${key} is already open in this process`);
    }
    const lockPath = path.join(key, LOCK_FILE_NAME);
    const content = `${process.pid} ${processStartTime(process.pid) ?? 'unknown'} ${threadId}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const file = io.openSync(lockPath, 'create-new');
        try {
          file.writeSync(Buffer.from(content), 0);
          file.datasyncSync();
        } finally {
          file.closeSync();
        }
        open.add(key);
        return new StoreLock(key, lockPath, io);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      let existing: string;
      try {
        existing = io.readFileSync(lockPath).toString('utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue; // released meanwhile: try again
        throw err;
      }
      const owner = lockOwner(existing);
      if (owner.alive) {
        throw new StoreError(
          'ERR_STORE_LOCKED',
          `the store directory ${key} is locked by ${owner.describe} (${lockPath}); only one store may use it`,
        );
      }
      StoreLock.#takeOverStale(io, lockPath, existing);
    }
    throw new StoreError(
      'ERR_STORE_LOCKED',
      `could not take the lock ${lockPath}: another process keeps taking it`,
    );
  }

  /** Moves a stale lock aside, and puts it back if what moved was not the one judged stale. */
  static #takeOverStale(io: StoreIO, lockPath: string, judged: string): void {
    const aside = `${lockPath}.stale.${process.pid}.${threadId}.${Date.now()}`;
    try {
      io.renameSync(lockPath, aside);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return; // someone else moved it: try again
      throw err;
    }
    const moved = io.readFileSync(aside).toString('utf8');
    if (moved !== judged) {
      // Another process took it over between our read and our rename: give it back if we can.
      try {
        fs.linkSync(aside, lockPath);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
    }
    io.unlinkSync(aside);
  }

  /** Releases the lock (idempotent). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    openStores(this.#io).delete(this.#key);
    try {
      this.#io.unlinkSync(this.#path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
