import fs from 'node:fs';
import path from 'node:path';
import { errnoCode, StoreError } from './errors.js';
import type { StoreIO } from './io/store-io.js';

/**
 * One store per directory. RocketMQ takes an exclusive `flock` on `{root}/lock`; Node has no
 * flock, so the lock is the file's content instead:
 *
 *   {root}/lock:   "<pid> <process start time>\n"
 *
 * created with O_EXCL. A lock whose process is gone (or whose pid now belongs to a different
 * process, told apart by its start time in /proc) is stale and taken over. Inside one process a
 * registry catches a second open of the same directory before the file is even looked at.
 *
 * A RocketMQ directory's `lock` file holds the text "lock"; it names no live process and is
 * taken over the same way.
 */
export const LOCK_FILE_NAME = 'lock';

const openInThisProcess = new Set<string>();

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

function realPath(dir: string): string {
  try {
    return fs.realpathSync(dir);
  } catch {
    return path.resolve(dir);
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

function lockOwnerIsAlive(content: string): { alive: boolean; pid: number | null } {
  const match = /^(\d+) (\S+)/.exec(content);
  if (match === null) return { alive: false, pid: null };
  const pid = Number(match[1]);
  // Our own pid: the in-process registry (checked first) knows every store this process has open,
  // so a lock with our pid that is not in it was left by an instance that was never shut down.
  if (pid === process.pid) return { alive: false, pid };
  if (!isProcessAlive(pid)) return { alive: false, pid };
  const startTime = processStartTime(pid);
  // Without /proc the pid check is all there is; trust it.
  return { alive: startTime === null || startTime === match[2], pid };
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
    if (openInThisProcess.has(key)) {
      throw new StoreError('ERR_STORE_LOCKED', `the store directory ${key} is already open in this process`);
    }
    const lockPath = path.join(key, LOCK_FILE_NAME);
    const content = `${process.pid} ${processStartTime(process.pid) ?? 'unknown'}\n`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const file = io.openSync(lockPath, 'create-new');
        try {
          file.writeSync(Buffer.from(content), 0);
          file.datasyncSync();
        } finally {
          file.closeSync();
        }
        openInThisProcess.add(key);
        return new StoreLock(key, lockPath, io);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      const existing = io.readFileSync(lockPath).toString('utf8');
      const owner = lockOwnerIsAlive(existing);
      if (owner.alive) {
        throw new StoreError(
          'ERR_STORE_LOCKED',
          `the store directory ${key} is locked by process ${owner.pid} (${lockPath}); only one store may use it`,
        );
      }
      // Stale: its process is gone. Remove it and try once more.
      io.unlinkSync(lockPath);
    }
    throw new StoreError(
      'ERR_STORE_LOCKED',
      `could not take the lock ${lockPath}: another process keeps taking it`,
    );
  }

  /** Releases the lock (idempotent). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    openInThisProcess.delete(this.#key);
    try {
      this.#io.unlinkSync(this.#path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
