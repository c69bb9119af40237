import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { rawCall, rawClient } from '../support/broker-harness.js';
import { freePort } from '../support/broker-process.js';
import { tempDir } from '../support/helpers.js';

/**
 * `rocketmq-ts broker`'s log as an operator reads it: started from the CLI with stdout piped (so
 * JSON, one object per line, every line), it tells the configuration, how recovery went (normal
 * after a clean stop, abnormal after SIGKILL), every commit log segment roll, and the shutdown
 * with where the log ended. `--log-level` filters; a bad level is refused; on a terminal the
 * output is pretty.
 */

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'src', 'cli', 'rocketmq-ts.ts');
/** Tiny commit log segments, so a few hundred KiB of messages roll several. */
const SEGMENT_SIZE_BYTES = 64 * 1024;
const BODY_SIZE_BYTES = 2 * 1024;
/** How long a broker may take to start or stop (tsx compiles the sources on start), ms. */
const PROCESS_DEADLINE_MS = 20_000;
/** pino's numeric levels. */
const LEVEL_INFO = 30;
const LEVEL_WARN = 40;

type LogLine = Record<string, unknown> & { level: number; msg: string };

/** The environment without the caller's ROCKETMQ_* settings, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROCKETMQ_')));
  return { ...env, ...extra };
}

/** A broker process whose stdout is collected line by line. */
class BrokerRun {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #partial = '';

  constructor(args: readonly string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, ['--import', 'tsx', CLI, 'broker', ...args], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => {
      const parts = (this.#partial + chunk.toString()).split('\n');
      this.#partial = parts.pop() ?? '';
      this.lines.push(...parts);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        if (this.#partial !== '') this.lines.push(this.#partial);
        resolve({ code, signal });
      }),
    );
  }

  /** Every line, each parsed as JSON (a line that is not JSON fails the test). */
  json(): LogLine[] {
    return this.lines.map((line, i) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        assert.fail(`stdout line ${i + 1} is not JSON: ${line}`);
      }
      assert.equal(typeof (parsed as LogLine).level, 'number', `a pino line: ${line}`);
      assert.equal(typeof (parsed as LogLine).msg, 'string', `a pino line: ${line}`);
      return parsed as LogLine;
    });
  }

  async waitFor(what: string, found: (line: LogLine) => boolean): Promise<LogLine> {
    const deadline = Date.now() + PROCESS_DEADLINE_MS;
    for (;;) {
      const line = this.json().find(found);
      if (line !== undefined) return line;
      if (this.child.exitCode !== null || this.child.signalCode !== null || Date.now() > deadline) {
        assert.fail(`no ${what} line; stdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

function startBroker(
  t: TestContext,
  args: readonly string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
): BrokerRun {
  const run = new BrokerRun(args, env);
  t.after(() => run.stop('SIGKILL'));
  return run;
}

const isStartLine = (l: LogLine): boolean => l.msg.startsWith('broker accepting clients');
const isRecoveryLine = (l: LogLine): boolean => l.msg.startsWith('store recovered');
const isRollLine = (l: LogLine): boolean => l.msg === 'commit log rolled to a new segment';

/** Sends `count` messages of BODY_SIZE_BYTES to `port`, each acknowledged OK. */
async function send(t: TestContext, port: number, count: number, tag: string): Promise<void> {
  const client = rawClient(t, `127.0.0.1:${port}`);
  try {
    for (let i = 0; i < count; i++) {
      const response = await rawCall<{ status?: { code: string } }>(client, 'SendMessage', {
        messages: [
          {
            topic: { name: 'LogTopic' },
            system_properties: { message_id: `${tag}-${i}`, message_type: 'NORMAL' },
            body: Buffer.alloc(BODY_SIZE_BYTES, i),
          },
        ],
      });
      assert.equal(response.status?.code, 'OK');
    }
  } finally {
    client.close();
  }
}

/**
 * Resolves once the broker on `port` answered a send. An open port is not enough: the broker
 * binds it before it installs its signal handlers, and a SIGTERM in between kills it outright.
 * An answer comes later: the handlers are installed in the same turn as the bind completes.
 */
async function waitUntilServing(t: TestContext, port: number): Promise<void> {
  const deadline = Date.now() + PROCESS_DEADLINE_MS;
  for (;;) {
    try {
      await send(t, port, 1, 'ready');
      return;
    } catch (err) {
      assert.ok(Date.now() < deadline, `the broker on ${port} does not answer: ${(err as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('rocketmq-ts broker logs', () => {
  it('JSON on a pipe: the configuration, recoveries, segment rolls and the shutdown, one object per line', async (t) => {
    const dir = tempDir(t, 'rmq-logs-');
    const storeDir = path.join(dir, 'store');
    const conf = path.join(dir, 'broker.conf');
    fs.writeFileSync(conf, `mappedFileSizeCommitLog=${SEGMENT_SIZE_BYTES}\nbrokerName=broker-logs\n`);
    const port = await freePort();
    const args = ['-c', conf, '--store-path', storeDir, '--listen', `127.0.0.1:${port}`];
    const env = cleanEnv({ ROCKETMQ_FLUSH_DISK_TYPE: 'SYNC_FLUSH' });

    // First run: a fresh store, messages enough for several segments, SIGTERM.
    const first = startBroker(t, args, env);
    const start = await first.waitFor('start', isStartLine);
    assert.equal(start.level, LEVEL_INFO);
    assert.equal(start.brokerName, 'broker-logs');
    assert.equal(start.storePathRootDir, storeDir);
    assert.equal(start.flushDiskType, 'SYNC_FLUSH');
    assert.equal(start.mappedFileSizeCommitLog, SEGMENT_SIZE_BYTES);
    assert.equal(start.listen, `127.0.0.1:${port}`);
    assert.equal(start.endpoint, `127.0.0.1:${port}`);
    assert.equal(start.metrics, null);
    assert.deepEqual(start.overrides, {
      brokerName: { value: 'broker-logs', source: 'broker.conf' },
      mappedFileSizeCommitLog: { value: SEGMENT_SIZE_BYTES, source: 'broker.conf' },
      flushDiskType: { value: 'SYNC_FLUSH', source: 'environment' },
      storePathRootDir: { value: storeDir, source: 'flag' },
    });
    const fresh = first.json().find(isRecoveryLine);
    assert.ok(fresh !== undefined, 'a recovery line before the start line');
    assert.equal(fresh.recovery, 'normal');
    assert.equal(fresh.commitLogMaxOffset, 0);

    await send(t, port, 100, 'first');
    // 100 records of 2 KiB and more fill three 64 KiB segments and start a fourth.
    await first.waitFor(
      'third segment',
      (l) => isRollLine(l) && (l.fromOffset as number) >= 3 * SEGMENT_SIZE_BYTES,
    );
    const rolls = first.json().filter(isRollLine);
    assert.deepEqual(
      rolls.map((l) => l.fromOffset),
      [0, 1, 2, 3].map((i) => i * SEGMENT_SIZE_BYTES),
      'the first segment, then one line per roll',
    );
    for (const roll of rolls) {
      assert.equal(roll.level, LEVEL_INFO);
      assert.equal(typeof roll.file, 'string');
      assert.equal(roll.fromOffset, Number(roll.file), 'a segment is named after its from-offset');
      assert.equal((roll.fromOffset as number) % SEGMENT_SIZE_BYTES, 0);
      assert.ok(fs.existsSync(path.join(storeDir, 'commitlog', roll.file as string)), `${roll.file} on disk`);
    }

    assert.deepEqual(await first.stop('SIGTERM'), { code: 0, signal: null });
    const firstLines = first.json();
    const shuttingDown = firstLines.find((l) => l.msg === 'shutting down');
    assert.equal(shuttingDown?.signal, 'SIGTERM');
    const stopped = firstLines.at(-1);
    assert.equal(stopped?.msg, 'stopped cleanly', 'the last line');
    assert.equal(typeof stopped.durationMs, 'number');
    const maxOffset = stopped.commitLogMaxOffset as number;
    assert.ok(maxOffset > 2 * SEGMENT_SIZE_BYTES, `the log ends past two segments: ${maxOffset}`);
    assert.equal(stopped.commitLogFlushedOffset, maxOffset, 'everything flushed');

    // Second run after the clean stop: a normal recovery up to where the first run ended; then
    // more messages and SIGKILL.
    const second = startBroker(t, args, env);
    await second.waitFor('start', isStartLine);
    const normal = second.json().find(isRecoveryLine);
    assert.equal(normal?.msg, 'store recovered normally');
    assert.equal(normal.level, LEVEL_INFO);
    assert.equal(normal.recovery, 'normal');
    assert.equal(normal.commitLogMinOffset, 0);
    assert.equal(normal.commitLogMaxOffset, maxOffset);
    for (const field of ['durationMs', 'recordsScanned', 'bytesScanned', 'consumeQueuesRepaired']) {
      assert.equal(typeof normal[field], 'number', field);
    }
    await send(t, port, 10, 'second');
    assert.deepEqual(await second.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });
    second.json(); // every line up to the kill is JSON too

    // Third run after the crash: an abnormal recovery that scanned the records since.
    const third = startBroker(t, args, env);
    await third.waitFor('start', isStartLine);
    const abnormal = third.json().find(isRecoveryLine);
    assert.equal(abnormal?.msg, 'store recovered after a crash');
    assert.equal(abnormal.recovery, 'abnormal');
    assert.ok((abnormal.commitLogMaxOffset as number) > maxOffset, 'the acknowledged messages are back');
    assert.ok((abnormal.recordsScanned as number) > 0, 'records scanned');
    assert.ok((abnormal.bytesScanned as number) > 0, 'bytes scanned');
    assert.equal(typeof abnormal.durationMs, 'number');
    assert.equal(typeof abnormal.consumeQueuesRepaired, 'number');
    assert.deepEqual(await third.stop('SIGTERM'), { code: 0, signal: null });
    assert.equal(third.json().at(-1)?.msg, 'stopped cleanly');
  });

  it('--log-level and ROCKETMQ_TS_LOG_LEVEL: warn shows no info lines, the flag wins over the variable', async (t) => {
    const cases: { args: string[]; env: Record<string, string>; info: boolean }[] = [
      { args: ['--log-level', 'warn'], env: {}, info: false },
      { args: [], env: { ROCKETMQ_TS_LOG_LEVEL: 'warn' }, info: false },
      { args: ['--log-level', 'info'], env: { ROCKETMQ_TS_LOG_LEVEL: 'error' }, info: true },
    ];
    await Promise.all(
      cases.map(async ({ args, env, info }) => {
        const port = await freePort();
        const run = startBroker(
          t,
          ['--store-path', tempDir(t, 'rmq-logs-'), '--listen', `127.0.0.1:${port}`, ...args],
          cleanEnv(env),
        );
        await waitUntilServing(t, port);
        assert.deepEqual(await run.stop('SIGTERM'), { code: 0, signal: null });
        const lines = run.json();
        const what = `${args.join(' ')} ${JSON.stringify(env)}`;
        if (info) {
          assert.ok(lines.some(isStartLine), `${what}: info lines`);
        } else {
          const below = lines.filter((l) => l.level < LEVEL_WARN);
          assert.deepEqual(below, [], `${what}: nothing below warn`);
        }
      }),
    );
  });

  it('a bad --log-level, ROCKETMQ_TS_LOG_LEVEL or --log-format exits 2, naming it and the allowed values', () => {
    const cases: { args: string[]; env: Record<string, string>; names: RegExp[] }[] = [
      {
        args: ['--log-level', 'nope'],
        env: {},
        names: [/--log-level/, /'nope'/, /fatal, error, warn, info, debug, trace, silent/],
      },
      {
        args: [],
        env: { ROCKETMQ_TS_LOG_LEVEL: 'loud' },
        names: [/ROCKETMQ_TS_LOG_LEVEL/, /'loud'/, /info/],
      },
      { args: ['--log-format', 'xml'], env: {}, names: [/--log-format/, /pretty, json/] },
    ];
    for (const { args, env, names } of cases) {
      const result = spawnSync(
        process.execPath,
        ['--import', 'tsx', CLI, 'broker', '--store-path', '/nonexistent/never', ...args],
        {
          cwd: REPO,
          encoding: 'utf8',
          env: cleanEnv(env),
        },
      );
      assert.equal(result.status, 2, result.stderr);
      for (const name of names) assert.match(result.stderr, name);
      assert.equal(result.stdout, '');
    }
  });

  it('on a terminal (script(1) gives it a pseudo-terminal) the log is pretty, to the last line', async (t) => {
    const dir = tempDir(t, 'rmq-logs-');
    const port = await freePort();
    // The shell prints its pid and then becomes the broker (exec), so the test can signal it.
    const command = [
      'echo BROKER_PID=$$;',
      'exec',
      JSON.stringify(process.execPath),
      '--import tsx',
      JSON.stringify(CLI),
      'broker --store-path',
      JSON.stringify(path.join(dir, 'store')),
      `--listen 127.0.0.1:${port}`,
    ].join(' ');
    // stdin stays an open pipe: script(1) ends the session when its input ends.
    const script = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
      cwd: REPO,
      env: cleanEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    script.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => script.once('exit', (code) => resolve(code)));
    let pid = 0;
    t.after(() => {
      if (script.exitCode !== null) return;
      // The broker, then script(1) (whose end would only hang the broker up).
      if (pid > 0) process.kill(pid, 'SIGKILL');
      script.kill('SIGKILL');
    });
    // Colours and the pty's carriage returns aside, the text.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences
    const text = (): string => output.replace(/\u001b\[[0-9;]*m/g, '').replace(/\r/g, '');
    const deadline = Date.now() + PROCESS_DEADLINE_MS;
    while (!text().includes('broker accepting clients')) {
      assert.ok(Date.now() < deadline && script.exitCode === null, `no start line:\n${text()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    pid = Number(/BROKER_PID=(\d+)/.exec(text())?.[1]);
    assert.ok(Number.isSafeInteger(pid) && pid > 0, `the broker's pid: ${text()}`);
    process.kill(pid, 'SIGTERM');
    assert.equal(await exited, 0, text());
    script.stdin.end();
    const lines = text()
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.startsWith('BROKER_PID='));
    // Every event on one line: a time stamp, the level, the message, then its fields.
    for (const line of lines) assert.match(line, /^\[[\d-]+ [\d:.]+\] [A-Z]+ \(rocketmq-ts\): /, line);
    assert.match(
      text(),
      /INFO \(rocketmq-ts\): broker accepting clients on 127\.0\.0\.1:\d+ \{"brokerName":"broker-a"/,
    );
    assert.match(text(), /INFO \(rocketmq-ts\): store recovered normally \{.*"recovery":"normal"/);
    assert.match(
      lines.at(-1) ?? '',
      /INFO \(rocketmq-ts\): stopped cleanly \{"durationMs":\d+,"commitLogMaxOffset":0/,
      'the last line',
    );
  });
});
