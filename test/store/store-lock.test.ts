import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import {
  MessageStore,
  type MessageStoreConfigInput,
  StoreError,
  silentLogger,
} from '../../src/store/index.js';
import { openStore, tempDir } from '../support/helpers.js';

/**
 * One store per directory (store reference §2.10; RocketMQ's DefaultMessageStoreTest
 * test_repeat_restart): `{root}/lock` holds "<pid> <process start time>", created with O_EXCL; a
 * lock whose process is gone (or whose pid now names another process) is taken over.
 */

const HOLDER_SCRIPT = fileURLToPath(new URL('../support/store-lock-holder.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

function isLocked(err: unknown): boolean {
  assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_STORE_LOCKED');
  return true;
}

function open(config: MessageStoreConfigInput): Promise<MessageStore> {
  return MessageStore.open(config, { logger: silentLogger });
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), read as store-lock.ts reads it. */
function procStartTime(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[19];
  assert.ok(start !== undefined && /^\d+$/.test(start), `start time of ${pid}`);
  return start;
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Resolves with the first stdout line that starts with `prefix`. */
function lineStartingWith(child: ChildProcess, prefix: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      for (const line of buffered.split('\n')) {
        if (line.startsWith(prefix)) {
          child.stdout?.off('data', onData);
          resolve(line);
          return;
        }
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before printing "${prefix}"`)));
  });
}

/** Spawns a process the test owns and kills it (by its own handle) when the test ends. */
function spawnOwned(
  t: { after: (fn: () => void | Promise<void>) => void },
  args: readonly string[],
  stdio: 'pipe' | 'ignore' = 'ignore',
): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    stdio: stdio === 'pipe' ? ['pipe', 'pipe', 'inherit'] : 'ignore',
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
  });
  return child;
}

describe('StoreLock', () => {
  it('refuses a second open of the same directory in this process while the first is open (test_repeat_restart)', async (t) => {
    const root = path.join(tempDir(t), 'store');
    const first = await open({ storePathRootDir: root });
    try {
      const lockContent = fs.readFileSync(path.join(root, 'lock'), 'utf8');
      assert.match(
        lockContent,
        new RegExp(`^${process.pid} \\S+ ${threadId}\\n$`),
        'the lock names this process and thread',
      );
      await assert.rejects(open({ storePathRootDir: root }), isLocked);
      // The same directory spelled differently is the same directory.
      await assert.rejects(open({ storePathRootDir: `${root}/./` }), isLocked);
      assert.equal(first.isShutdown(), false, 'the failed open did not disturb the first store');
      const put = await first.putMessage({ topic: 'T', queueId: 0, body: Buffer.from('still works') });
      assert.equal(put.status, 'PUT_OK');
    } finally {
      await first.shutdown();
    }
    assert.equal(fs.existsSync(path.join(root, 'lock')), false, 'shutdown released the lock file');

    const second = await openStore(t, { storePathRootDir: root });
    assert.equal(second.getRecoveryReport().lastExitOK, true);
    assert.equal(second.getMaxPhyOffset() > 0, true, 'the second open sees the first one’s message');
  });

  it('refuses a second open in this process of the same directory reached through a symlink', async (t) => {
    const dir = tempDir(t);
    const real = path.join(dir, 'real');
    fs.mkdirSync(real);
    const link = path.join(dir, 'link');
    fs.symlinkSync(real, link);
    const first = await openStore(t, { storePathRootDir: real });
    let second: MessageStore | null = null;
    try {
      second = await open({ storePathRootDir: link });
    } catch (err) {
      isLocked(err);
    } finally {
      await second?.shutdown();
    }
    assert.equal(
      second,
      null,
      'two stores in one process must not share a directory, whatever path names it',
    );
    await first.shutdown();
  });

  it('takes over a lock file left by a process that no longer exists', async (t) => {
    const root = path.join(tempDir(t), 'store');
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, 'lock'), '999999999 123\n');
    const store = await openStore(t, { storePathRootDir: root });
    assert.match(fs.readFileSync(path.join(root, 'lock'), 'utf8'), new RegExp(`^${process.pid} `));
    await store.shutdown();

    // A real pid, of a child that has finished.
    const finished = spawnSync(process.execPath, ['-e', '']);
    assert.equal(finished.status, 0);
    assert.ok(finished.pid > 0);
    fs.writeFileSync(path.join(root, 'lock'), `${finished.pid} 123\n`);
    const again = await openStore(t, { storePathRootDir: root });
    assert.match(fs.readFileSync(path.join(root, 'lock'), 'utf8'), new RegExp(`^${process.pid} `));
    await again.shutdown();
  });

  it('takes over RocketMQ\'s own lock file (content "lock") and an empty one', async (t) => {
    for (const content of ['lock', '']) {
      const root = path.join(tempDir(t), 'store');
      fs.mkdirSync(root, { recursive: true });
      fs.writeFileSync(path.join(root, 'lock'), content);
      const store = await openStore(t, { storePathRootDir: root });
      assert.match(
        fs.readFileSync(path.join(root, 'lock'), 'utf8'),
        new RegExp(`^${process.pid} `),
        `content ${JSON.stringify(content)}`,
      );
      await store.shutdown();
    }
  });

  it('refuses a directory whose lock names a live process with its start time; takes it over once that process is gone', async (t) => {
    const root = path.join(tempDir(t), 'store');
    fs.mkdirSync(root, { recursive: true });
    const child = spawnOwned(t, ['-e', 'setInterval(() => {}, 1000)']);
    const pid = child.pid;
    assert.ok(pid !== undefined);
    const lockPath = path.join(root, 'lock');
    const content = `${pid} ${procStartTime(pid)}\n`;
    fs.writeFileSync(lockPath, content);

    await assert.rejects(open({ storePathRootDir: root }), (err: unknown) => {
      isLocked(err);
      assert.match((err as Error).message, new RegExp(String(pid)), 'the error names the holder');
      return true;
    });
    assert.equal(fs.readFileSync(lockPath, 'utf8'), content, 'a refused open leaves the lock alone');

    child.kill('SIGKILL');
    await exited(child);
    const store = await openStore(t, { storePathRootDir: root });
    assert.match(fs.readFileSync(lockPath, 'utf8'), new RegExp(`^${process.pid} `));
    await store.shutdown();
  });

  it('takes over a lock whose pid is alive but belongs to a different process (start time differs)', async (t) => {
    const root = path.join(tempDir(t), 'store');
    fs.mkdirSync(root, { recursive: true });
    const child = spawnOwned(t, ['-e', 'setInterval(() => {}, 1000)']);
    const pid = child.pid;
    assert.ok(pid !== undefined);
    const start = procStartTime(pid);
    fs.writeFileSync(path.join(root, 'lock'), `${pid} ${Number(start) + 1}\n`);
    const store = await openStore(t, { storePathRootDir: root });
    assert.match(fs.readFileSync(path.join(root, 'lock'), 'utf8'), new RegExp(`^${process.pid} `));
    await store.shutdown();
  });

  it('refuses a directory held by a store in another process; opens it after that store shuts down', async (t) => {
    const root = path.join(tempDir(t), 'store');
    const holder = spawnOwned(t, ['--import', 'tsx', HOLDER_SCRIPT, root], 'pipe');
    const locked = await lineStartingWith(holder, 'locked ');
    assert.equal(locked, `locked ${holder.pid}`);

    await assert.rejects(open({ storePathRootDir: root }), (err: unknown) => {
      isLocked(err);
      assert.match((err as Error).message, new RegExp(String(holder.pid)));
      return true;
    });

    const released = lineStartingWith(holder, 'released');
    holder.stdin?.end();
    await released;
    assert.equal(await exited(holder), 0);

    const store = await openStore(t, { storePathRootDir: root });
    assert.equal(store.getRecoveryReport().lastExitOK, true, 'the other process shut down cleanly');
    await store.shutdown();
  });

  it('takes over the directory of a store whose process was killed (and recovers as after a crash)', async (t) => {
    const root = path.join(tempDir(t), 'store');
    const holder = spawnOwned(t, ['--import', 'tsx', HOLDER_SCRIPT, root], 'pipe');
    await lineStartingWith(holder, 'locked ');
    await assert.rejects(open({ storePathRootDir: root }), isLocked);

    holder.kill('SIGKILL');
    await exited(holder);
    assert.ok(fs.existsSync(path.join(root, 'lock')), 'the killed process left its lock file');

    const store = await openStore(t, { storePathRootDir: root });
    assert.equal(store.getRecoveryReport().lastExitOK, false, 'the abort file says the last run crashed');
    await store.shutdown();
  });
});
