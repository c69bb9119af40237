import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { freePort, kill } from '../support/broker-process.js';
import { CLI_BIN, type CliRun, runCli } from '../support/cli.js';
import { onCleanup, tempDir, waitUntil } from '../support/helpers.js';

/**
 * `rocketmq-ts bench`, run as a user runs it: the built binary (`npm test` builds first), real
 * arguments, real output and exit codes. Small runs with small segments, so every run rolls the
 * commit log; the numbers are checked for sense, never for speed (timings live in benchmarks).
 */

const BIN = CLI_BIN;
const MESSAGES = 3000;
/** 3000 messages of 1 KiB fill some 3.3 MiB: a dozen segments of this size. */
const SEGMENT_BYTES = 256 * 1024;
const SMALL = ['--messages', String(MESSAGES), '--segment-bytes', String(SEGMENT_BYTES)];
/** How long one bench run or broker start may take, ms. */
const RUN_DEADLINE_MS = 30_000;

function run(...args: string[]): Promise<CliRun> {
  return runCli(args);
}

interface Report {
  mode: string;
  target: string;
  temporaryStore: boolean;
  flushDiskType: string | null;
  transientStorePool: boolean | null;
  messages: number;
  bodyBytes: number;
  segments: number | null;
  put: {
    elapsedMs: number;
    msgsPerSec: number;
    mibPerSec: number;
    latencyMs: { p50: number; p99: number; p999: number; max: number };
    statuses: Record<string, number>;
    stored: number;
  };
  read: { elapsedMs: number; messages: number; msgsPerSec: number; mibPerSec: number };
  verify: { ok: boolean; verified: number; mismatched: number; missing: number };
}

function assertPositive(value: number, what: string): void {
  assert.ok(Number.isFinite(value) && value > 0, `${what} is a positive number, got ${value}`);
}

/** The report of a run where every message went in and came back. */
function assertHealthyReport(report: Report, messages: number, successStatus: string): void {
  assert.equal(report.messages, messages);
  assert.deepEqual(report.put.statuses, { [successStatus]: messages });
  assert.equal(report.put.stored, messages);
  assert.equal(report.read.messages, messages);
  assert.deepEqual(report.verify, { ok: true, verified: messages, mismatched: 0, missing: 0 });
  assertPositive(report.put.elapsedMs, 'put.elapsedMs');
  assertPositive(report.put.msgsPerSec, 'put.msgsPerSec');
  assertPositive(report.put.mibPerSec, 'put.mibPerSec');
  assertPositive(report.read.elapsedMs, 'read.elapsedMs');
  assertPositive(report.read.msgsPerSec, 'read.msgsPerSec');
  assertPositive(report.read.mibPerSec, 'read.mibPerSec');
  const { p50, p99, p999, max } = report.put.latencyMs;
  assertPositive(p50, 'p50');
  assert.ok(p50 <= p99 && p99 <= p999 && p999 <= max, `percentiles in order: ${p50} ${p99} ${p999} ${max}`);
  // Throughput and elapsed time tell the same story.
  const expectedRate = (messages / report.put.elapsedMs) * 1000;
  assert.ok(Math.abs(report.put.msgsPerSec - expectedRate) / expectedRate < 0.01, 'msgs/s = messages / time');
}

/** The plain progress lines of `label` on stderr (no terminal), in order. */
function progressLines(stderr: string, label: string): string[] {
  return stderr.split('\n').filter((line) => line.startsWith(`${label}: `));
}

describe('rocketmq-ts bench (the built CLI)', () => {
  for (const [flushDiskType, extra] of [
    ['SYNC_FLUSH', []],
    ['ASYNC_FLUSH', []],
    ['ASYNC_FLUSH', ['--transient-store-pool']],
  ] as const) {
    const name = `${flushDiskType}${extra.length > 0 ? ' + transient store pool' : ''}`;
    it(`--json, ${name}: every message put, read back and equal; segments roll; the temporary store is gone`, async () => {
      const result = await run('bench', ...SMALL, '--flush-disk-type', flushDiskType, ...extra, '--json');
      assert.equal(result.status, 0, result.stdout + result.stderr);
      const report = JSON.parse(result.stdout) as Report;
      assertHealthyReport(report, MESSAGES, 'PUT_OK');
      assert.equal(report.mode, 'embedded');
      assert.equal(report.flushDiskType, flushDiskType);
      assert.equal(report.transientStorePool, extra.length > 0);
      assert.ok((report.segments ?? 0) >= 10, `the log rolled over many segments: ${report.segments}`);
      assert.equal(report.temporaryStore, true);
      assert.equal(fs.existsSync(report.target), false, 'the temporary store was removed');
      // Progress went to stderr as plain lines, ending at 100%; stdout held only the JSON.
      assert.equal(
        progressLines(result.stderr, 'put').at(-1),
        `put: 100% (${MESSAGES}/${MESSAGES} messages)`,
      );
      assert.equal(
        progressLines(result.stderr, 'read').at(-1),
        `read: 100% (${MESSAGES}/${MESSAGES} messages)`,
      );
    });
  }

  it('text mode prints an aligned table with throughput, latency, statuses and the verdict', async () => {
    const result = await run('bench', ...SMALL, '--producers', '8', '--queues', '3', '--body-bytes', '300');
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    const valueColumn = (line: string): number => /^\S+(?: \S+)*\s{2,}/.exec(line)?.[0].length ?? -1;
    const column = valueColumn(lines[0] as string);
    assert.ok(column > 0);
    for (const line of lines) assert.equal(valueColumn(line), column, `aligned: ${line}`);
    const row = (name: string): string => {
      const line = lines.find((l) => l.startsWith(`${name} `));
      assert.ok(line !== undefined, `a "${name}" row in:\n${result.stdout}`);
      return line.slice(column);
    };
    assert.match(row('store'), /rocketmq-ts-bench-.*\(temporary, removed\)$/);
    assert.equal(row('flushDiskType'), 'ASYNC_FLUSH');
    assert.equal(row('topic'), 'BenchTopic, 3 queues');
    assert.equal(row('messages'), `${MESSAGES} x 300 B, 8 producers`);
    assert.match(row('put msgs/s'), /^[1-9][\d,]*$/);
    assert.match(row('put MiB/s'), /^\d[\d,]*\.\d$/);
    for (const p of ['p50', 'p99', 'p999', 'max']) assert.match(row(`put ${p} ms`), /^\d+\.\d{3}$/);
    assert.equal(row('statuses'), `PUT_OK ${MESSAGES}`);
    assert.match(row('read msgs/s'), /^[1-9][\d,]*$/);
    assert.equal(row('read back'), `${MESSAGES}/${MESSAGES}`);
    assert.equal(row('verdict'), `OK: all ${MESSAGES} messages read back, each equal to what was put`);
    assert.ok(!result.stdout.includes('%'), 'no progress on stdout');
  });

  it('--store-path: the store stays, and store verify finds every message in it', async (t) => {
    const dir = path.join(tempDir(t), 'bench-store');
    const result = await run('bench', ...SMALL, '--store-path', dir, '--json');
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const report = JSON.parse(result.stdout) as Report;
    assert.equal(report.temporaryStore, false);
    assert.equal(report.target, dir);
    const verify = await run('store', 'verify', dir);
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
    assert.match(
      verify.stdout,
      new RegExp(`^ok: ${MESSAGES} records in \\d+ segments, ${MESSAGES} consume queue units`),
    );
    // A second run into the same store reads back only its own messages.
    const again = await run('bench', ...SMALL, '--store-path', dir, '--json');
    assert.equal(again.status, 0, again.stdout + again.stderr);
    assertHealthyReport(JSON.parse(again.stdout) as Report, MESSAGES, 'PUT_OK');
  });

  it('refuses a --store-path that holds other files, and leaves them alone', async (t) => {
    const dir = tempDir(t);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    const result = await run('bench', '--messages', '10', '--store-path', dir);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--store-path .* is neither empty nor a store directory/);
    assert.deepEqual(fs.readdirSync(dir), ['notes.txt']);
    assert.equal(result.stdout, '');
  });

  it('a second Ctrl-C exits 130 at once and still removes the temporary store', async (t) => {
    const tmp = tempDir(t);
    const child = spawn(
      process.execPath,
      [BIN, 'bench', '--messages', '5000000', '--segment-bytes', String(SEGMENT_BYTES)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, TMPDIR: tmp },
      },
    );
    onCleanup(t, () => kill(child, 'SIGKILL'));
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Wait for the store to exist and puts to run (the first progress line), then interrupt twice.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no progress in ${RUN_DEADLINE_MS} ms: ${stderr}`)),
        RUN_DEADLINE_MS,
      );
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        if (/put: \d+%/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    assert.equal(fs.readdirSync(tmp).filter((name) => name.startsWith('rocketmq-ts-bench-')).length, 1);
    // Two signals sent at once can arrive as one: the second goes after the first was handled.
    child.kill('SIGINT');
    await waitUntil(
      () => stderr.includes('interrupted; stopping'),
      'the first Ctrl-C handled',
      RUN_DEADLINE_MS,
      5,
    );
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.deepEqual(
      fs.readdirSync(tmp).filter((name) => name.startsWith('rocketmq-ts-bench-')),
      [],
    );
  });

  it('a bad option value exits 2 and names the option', async () => {
    for (const [args, option] of [
      [['--messages', '0'], '--messages'],
      [['--messages', 'many'], '--messages'],
      [['--body-bytes', '-5'], '--body-bytes'],
      [['--producers', '1.5'], '--producers'],
      [['--queues', '99999'], '--queues'],
      [['--flush-disk-type', 'SOMETIMES'], '--flush-disk-type'],
      [['--segment-bytes', '65536', '--body-bytes', '65536'], '--segment-bytes'],
      [['--endpoint', 'nowhere'], '--endpoint'],
      [['--endpoint', '127.0.0.1:1', '--transient-store-pool'], '--transient-store-pool'],
    ] as const) {
      const result = await run('bench', ...args);
      assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.ok(result.stderr.includes(option), `${args.join(' ')} names ${option}: ${result.stderr}`);
      assert.equal(result.stdout, '');
    }
  });

  it('--help shows examples', async () => {
    const result = await run('bench', '--help');
    assert.equal(result.status, 0);
    assert.match(result.stdout, /Examples:\n {2}\$ rocketmq-ts bench\n/);
    assert.match(result.stdout, /--transient-store-pool/);
  });

  it('--endpoint: through a running broker with the official client, every message sent and received back', async (t) => {
    const port = await freePort();
    const broker = await startBroker(t, tempDir(t), port);
    const messages = 300;
    const result = await run(
      'bench',
      '--endpoint',
      `127.0.0.1:${port}`,
      '--topic',
      'BenchEndpointTopic',
      '--messages',
      String(messages),
      '--body-bytes',
      '200',
      '--json',
    );
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const report = JSON.parse(result.stdout) as Report;
    assert.equal(report.mode, 'endpoint');
    assert.equal(report.target, `127.0.0.1:${port}`);
    assertHealthyReport(report, messages, 'SEND_OK');
    assert.equal(
      progressLines(result.stderr, 'send').at(-1),
      `send: 100% (${messages}/${messages} messages)`,
    );
    assert.equal(broker.exitCode, null, 'the broker still runs');
  });
});

/** The built broker on 127.0.0.1:`port`; killed when the test ends (before its directory goes). */
async function startBroker(t: TestContext, storeDir: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [BIN, 'broker', '--store-path', storeDir, '--listen', `127.0.0.1:${port}`],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  onCleanup(t, () => kill(child, 'SIGKILL'));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start:\n${output}`)), RUN_DEADLINE_MS);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('broker accepting clients')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (${code}) before serving:\n${output}`));
    });
  });
  return child;
}
