import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  formatAmounts,
  PLAIN_LINE_INTERVAL_MS,
  startProgress,
  startProgressOnFirstUpdate,
} from '../../src/cli/progress.js';
import { MessageStore, silentLogger } from '../../src/store/index.js';
import { freePort, kill } from '../support/broker-process.js';
import { CLI_BIN } from '../support/cli.js';
import { onCleanup, tempDir } from '../support/helpers.js';

/**
 * Progress of long CLI jobs (src/cli/progress.ts): plain lines when stderr is no terminal, at most
 * one a second plus the 100% line; and the broker's recovery progress, as an operator sees it
 * when a broker that crashed starts again over a few MiB of commit log.
 */

const BIN = CLI_BIN;
const MIB = 1024 * 1024;
/** How long a broker may take to start, ms. */
const START_DEADLINE_MS = 30_000;

/** A stderr stand-in that is no terminal and records each write with when it came. */
function plainStream(): { stream: NodeJS.WriteStream; writes: { at: number; text: string }[] } {
  const writes: { at: number; text: string }[] = [];
  const stream = {
    isTTY: false,
    write(text: string): boolean {
      writes.push({ at: performance.now(), text });
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, writes };
}

describe('progress (no terminal)', () => {
  it('prints at most a line a second, then the 100% line, each a whole line with label, percent and amounts', async () => {
    const { stream, writes } = plainStream();
    const total = 2200;
    const progress = startProgress({ label: 'job', total, unit: 'messages', stream });
    const begin = performance.now();
    // Some 2.2 s of work, updated every 10 ms: ~220 updates.
    for (let done = 0; performance.now() - begin < 2200; ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      done = Math.min(total - 1, Math.round(performance.now() - begin));
      progress.update(done);
    }
    progress.update(total);
    progress.finish();
    progress.finish();
    const lines = writes.map((w) => w.text);
    assert.ok(lines.length >= 2 && lines.length <= 4, `a line a second and the last: ${lines.join('')}`);
    for (const line of lines) assert.match(line, /^job: \d{1,3}% \(\d+\/2200 messages\)\n$/);
    assert.equal(lines.at(-1), 'job: 100% (2200/2200 messages)\n');
    const percents = lines.map((line) => Number(/(\d+)%/.exec(line)?.[1]));
    assert.deepEqual(
      percents,
      [...percents].sort((a, b) => a - b),
      'percentages only grow',
    );
    for (let i = 1; i < writes.length - 1; i++) {
      const gap = (writes[i]?.at ?? 0) - (writes[i - 1]?.at ?? 0);
      assert.ok(gap >= PLAIN_LINE_INTERVAL_MS - 5, `lines at least a second apart: ${gap} ms`);
    }
  });

  it('a job done within a second prints one line; finish() prints where a job stopped short', () => {
    const quick = plainStream();
    const progress = startProgress({ label: 'verify', total: 3 * MIB, unit: 'bytes', stream: quick.stream });
    progress.update(MIB);
    progress.update(3 * MIB);
    progress.finish();
    assert.deepEqual(
      quick.writes.map((w) => w.text),
      ['verify: 100% (3.0/3.0 MiB)\n'],
    );
    const short = plainStream();
    const stopped = startProgress({ label: 'put', total: 10, unit: 'messages', stream: short.stream });
    stopped.update(4);
    stopped.finish();
    assert.deepEqual(
      short.writes.map((w) => w.text),
      ['put: 40% (4/10 messages)\n'],
    );
  });

  it('startProgressOnFirstUpdate: silent until called, finished by its own 100%, a bare function', () => {
    const { stream, writes } = plainStream();
    const progress = startProgressOnFirstUpdate({ label: 'recovery', unit: 'bytes', stream });
    progress.finish();
    assert.equal(writes.length, 0, 'never updated: nothing printed');
    const again = startProgressOnFirstUpdate({ label: 'recovery', unit: 'bytes', stream });
    const { update } = again; // handed over as a callback, unbound
    update(0, 300 * MIB);
    update(120 * MIB, 300 * MIB);
    update(250 * MIB, 250 * MIB);
    update(250 * MIB, 250 * MIB);
    again.finish();
    assert.deepEqual(
      writes.map((w) => w.text),
      ['recovery: 100% (250/250 MiB)\n'],
    );
  });

  it('formats bytes as MiB with precision to their size, messages as counts', () => {
    assert.deepEqual(formatAmounts(512 * 1024, 1024 * 1024 * 0.9, 'bytes'), ['0.50', '0.90', 'MiB']);
    assert.deepEqual(formatAmounts(5 * MIB, 20.25 * MIB, 'bytes'), ['5.0', '20.3', 'MiB']);
    assert.deepEqual(formatAmounts(1234 * MIB, 2900 * MIB, 'bytes'), ['1234', '2900', 'MiB']);
    assert.deepEqual(formatAmounts(42, 100, 'messages'), ['42', '100', 'messages']);
  });
});

describe('recovery progress', () => {
  it('MessageStore.open tells onRecoveryProgress: (0, bound) first, growing every few MiB, (scanned, scanned) last', async (t) => {
    const root = tempDir(t, 'rmq-recovery-progress-');
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: MIB };
    const store = await MessageStore.open(config, { logger: silentLogger });
    const body = Buffer.alloc(8000, 3);
    for (let i = 0; i < 1400; i++) {
      assert.equal(
        (await store.putMessage({ topic: 'ProgressTopic', queueId: i % 2, body })).status,
        'PUT_OK',
      );
    }
    const dataBytes = store.getMaxPhyOffset();
    await store.shutdown();
    fs.writeFileSync(path.join(root, 'abort'), '');
    fs.rmSync(path.join(root, 'checkpoint'));

    const calls: [number, number][] = [];
    const reopened = await MessageStore.open(config, {
      logger: silentLogger,
      onRecoveryProgress: (done, total) => calls.push([done, total]),
    });
    onCleanup(t, () => reopened.shutdown());
    assert.equal(reopened.getRecoveryReport().lastExitOK, false);
    const [first] = calls;
    assert.ok(first !== undefined && first[0] === 0 && first[1] >= dataBytes, `first: ${first}`);
    assert.deepEqual(calls.at(-1), [dataBytes, dataBytes], 'last: the bytes scanned, of themselves');
    const middle = calls.slice(1, -1);
    // ~11 MiB scanned, a call every 4 MiB: a couple in between, never one per record.
    assert.ok(
      middle.length >= 2 && middle.length <= Math.ceil(dataBytes / (4 * MIB)),
      `${calls.length} calls`,
    );
    for (const [i, [done, total]] of middle.entries()) {
      assert.equal(total, first[1], 'the bound stays during the scan');
      assert.ok(done > (middle[i - 1]?.[0] ?? 0) && done < dataBytes, `growing: ${done}`);
    }
    // A new store has no commit log to scan: not called at all.
    const none: number[] = [];
    const fresh = await MessageStore.open(
      { storePathRootDir: tempDir(t, 'rmq-fresh-') },
      { logger: silentLogger, onRecoveryProgress: (done) => none.push(done) },
    );
    await fresh.shutdown();
    assert.deepEqual(none, []);
  });

  it('a broker starting over a store that was not shut down cleanly shows recovery lines on stderr, ending at 100%', async (t) => {
    const root = tempDir(t, 'rmq-recovery-progress-');
    const segmentBytes = MIB;
    const store = await MessageStore.open(
      { storePathRootDir: root, mappedFileSizeCommitLog: segmentBytes },
      { logger: silentLogger },
    );
    const body = Buffer.alloc(4000, 7);
    for (let i = 0; i < 1200; i++) {
      const put = await store.putMessage({ topic: 'RecoverTopic', queueId: i % 4, body });
      assert.equal(put.status, 'PUT_OK');
    }
    const dataBytes = store.getMaxPhyOffset();
    await store.shutdown();
    assert.ok(dataBytes > 4 * MIB, `a few MiB of log: ${dataBytes}`);
    // As after a crash: the abort file stays. Without a checkpoint nothing is known flushed, so
    // recovery scans the whole log from its first segment.
    fs.writeFileSync(path.join(root, 'abort'), '');
    fs.rmSync(path.join(root, 'checkpoint'));

    const port = await freePort();
    const child = spawn(
      process.execPath,
      [BIN, 'broker', '--store-path', root, '--listen', `127.0.0.1:${port}`],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ROCKETMQ_MAPPED_FILE_SIZE_COMMIT_LOG: String(segmentBytes) },
      },
    );
    onCleanup(t, () => kill(child, 'SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start:\n${stdout}${stderr}`)), START_DEADLINE_MS);
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('broker accepting clients')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`broker exited (${code}):\n${stdout}${stderr}`));
      });
    });
    const lines = stderr.split('\n').filter((line) => line.startsWith('recovery: '));
    assert.ok(lines.length >= 1, `recovery progress on stderr:\n${stderr}`);
    for (const line of lines) assert.match(line, /^recovery: \d{1,3}% \(\d+\.\d\/\d+\.\d MiB\)$/);
    // The last line: the whole log scanned, in the units the store wrote.
    const scannedMiB = (dataBytes / MIB).toFixed(1);
    assert.equal(lines.at(-1), `recovery: 100% (${scannedMiB}/${scannedMiB} MiB)`);
    assert.ok(!stdout.includes('recovery: '), 'progress never on stdout');
  });
});
