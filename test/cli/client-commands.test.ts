import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { GrpcServer } from '../../src/grpc/index.js';
import { silentLogger } from '../../src/store/index.js';
import { type RunningBroker, startBroker } from '../support/broker-harness.js';
import { CLI_BIN, type CliRun, runCli } from '../support/cli.js';
import { producer } from '../support/clients.js';
import { tempDir } from '../support/helpers.js';

/**
 * `rocketmq-ts produce` and `rocketmq-ts consume`, run as a user runs them: the built binary
 * (`npm test` builds first) in a child process, against a broker in this process. The children
 * are spawned asynchronously: the broker has to keep serving while they run.
 */

/** A child still running after this long is hung (every command here ends in a few seconds). */
const HANG_MS = 30_000;

function run(
  _t: TestContext,
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliRun> {
  return runCli(args, { ...options, deadlineMs: HANG_MS });
}

/** Runs and asserts exit 0, showing stderr otherwise. */
async function ok(t: TestContext, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const result = await run(t, args, options);
  assert.equal(result.status, 0, `${args.join(' ')}: ${result.stderr}`);
  return result;
}

interface ConsumedJson {
  messageId: string;
  topic: string;
  tag: string | null;
  keys: string[];
  messageGroup: string | null;
  properties: Record<string, string>;
  deliveryAttempt: number;
  bornTimestamp: string;
  deliveryTimestamp: string | null;
  body?: string;
  bodyBase64?: string;
}

interface ProducedJson {
  messageId: string;
  topic: string;
  offset: number;
  transactionId: string;
  recallHandle: string;
}

function parseLines<T>(result: CliRun): T[] {
  return result.lines.map((line) => JSON.parse(line) as T);
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function at(running: RunningBroker): string[] {
  return ['--endpoint', running.endpoints];
}

// A self-signed certificate for IP 127.0.0.1, valid 2020-2120 (P-256; test use only).
const TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBXTCCAQKgAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAkxMjcuMC4w
LjEwIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CTEyNy4wLjAuMTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABATtEsG60S+uc7lx
rMqE6L8D9Qki5EXXDEBuCpumoWEsO5c735EqAvdrfq93J+K5I5R99thtmmWJXrYH
hVOcdUGjQzBBMA8GA1UdEwEB/wQFMAMBAf8wDwYDVR0RBAgwBocEfwAAATAdBgNV
HQ4EFgQU9iIAheHTu15ykjL1LzcBJ+x0Vm0wCgYIKoZIzj0EAwIDSQAwRgIhANVB
veuxgQt1vcAe7ZhCk57ws0UrWgiirhcZuVAWAe05AiEA5y0JPokRMWVqSyLK2xaq
OUVpx+6SvbIUq9dWeOFp0gM=
-----END CERTIFICATE-----
`;
const TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMA056KTh/YlGRvNL
lflFno/UtUl5LPidjmRAZabUfqOhRANCAAQE7RLButEvrnO5cazKhOi/A/UJIuRF
1wxAbgqbpqFhLDuXO9+RKgL3a36vdyfiuSOUffbYbZpliV62B4VTnHVB
-----END PRIVATE KEY-----
`;

// Partly concurrent: most of the time is spent waiting (long polls, the invisible duration, a
// delay) and each test has a broker of its own, but every command is a Node process starting up.
describe('rocketmq-ts produce and consume (the built CLI)', { concurrency: 4 }, () => {
  it('stdin lines produced, then consumed back with --json: bodies, tag, keys and properties round-trip, no log files', async (t) => {
    const running = await startBroker(t);
    // A home of its own: the client's default logger would write ~/logs/rocketmq/.
    const home = tempDir(t, 'rmq-cli-home-');
    const env = { HOME: home };
    const bodies = Array.from({ length: 25 }, (_, i) => `line ${i + 1} ü`);
    const produced = await ok(
      t,
      [
        'produce',
        ...at(running),
        '--topic',
        'CliTopic',
        '--tag',
        'TagA',
        '--keys',
        'k1, k2',
        '--property',
        'source=test',
        '--property',
        'query=a=b',
      ],
      // CRLF and an empty line in the middle and at the end: lines, not bytes, are the messages.
      { input: `${bodies.slice(0, 10).join('\r\n')}\n\n${bodies.slice(10).join('\n')}\n\n`, env },
    );
    assert.equal(produced.lines.length, bodies.length, produced.stdout);
    const ids = produced.lines.map((line) => {
      const match = /^([0-9A-F]{32,}) topic=CliTopic offset=\d+$/.exec(line);
      assert.ok(match !== null, `a plain line per message: ${line}`);
      return match[1] as string;
    });
    assert.match(produced.stderr, /^sent 25 messages$/m);

    const consumed = await ok(
      t,
      ['consume', ...at(running), '--group', 'CliGroup', '--topic', 'CliTopic', '--json', '--wait', '1'],
      { env },
    );
    const messages = parseLines<ConsumedJson>(consumed);
    assert.equal(messages.length, bodies.length, consumed.stdout);
    assert.deepEqual(messages.map((m) => m.body).sort(), [...bodies].sort());
    assert.deepEqual(new Set(messages.map((m) => m.messageId)), new Set(ids));
    for (const m of messages) {
      assert.equal(m.topic, 'CliTopic');
      assert.equal(m.tag, 'TagA');
      assert.deepEqual(m.keys, ['k1', 'k2']);
      assert.deepEqual(m.properties, { source: 'test', query: 'a=b' });
      assert.equal(m.deliveryAttempt, 1);
      assert.equal(m.messageGroup, null);
      assert.ok(Math.abs(Date.parse(m.bornTimestamp) - Date.now()) < 60_000, m.bornTimestamp);
    }
    assert.match(consumed.stderr, /^received 25 messages$/m);
    // All acked: the group has nothing left.
    const again = await ok(t, [
      'consume',
      ...at(running),
      '--group',
      'CliGroup',
      '--topic',
      'CliTopic',
      '--wait',
      '0',
    ]);
    assert.equal(again.stdout, '');
    assert.match(again.stderr, /^received 0 messages$/m);
    assert.equal(fs.existsSync(path.join(home, 'logs')), false, 'the client wrote no log files');
  });

  it('--body --count, and a body that is not UTF-8 text comes back as bodyBase64; plain lines quote the body', async (t) => {
    const running = await startBroker(t);
    const produced = await ok(t, [
      'produce',
      ...at(running),
      '--topic',
      'CountTopic',
      '--body',
      'two words',
      '--count',
      '3',
      '--json',
    ]);
    const receipts = parseLines<ProducedJson>(produced);
    assert.equal(receipts.length, 3);
    for (const r of receipts) {
      assert.equal(r.topic, 'CountTopic');
      assert.equal(typeof r.offset, 'number');
      assert.match(r.messageId, /^[0-9A-F]{32,}$/);
    }
    const plain = await ok(t, [
      'consume',
      ...at(running),
      '--group',
      'G',
      '--topic',
      'CountTopic',
      '--wait',
      '1',
    ]);
    assert.equal(plain.lines.length, 3);
    for (const line of plain.lines)
      assert.match(line, /^[0-9A-F]{32,} topic=CountTopic attempt=1 born=\S+ body="two words"$/);

    // A body that is not UTF-8 (the CLI only sends text, so the official client sends it).
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0x41]);
    await (await producer(running)).send({ topic: 'BinTopic', body: binary });
    const got = parseLines<ConsumedJson>(
      await ok(t, [
        'consume',
        ...at(running),
        '--group',
        'G',
        '--topic',
        'BinTopic',
        '--json',
        '--count',
        '1',
      ]),
    );
    assert.equal(got[0]?.body, undefined);
    assert.equal(got[0]?.bodyBase64, binary.toString('base64'));
  });

  it('consume --tag delivers only the matching tags', async (t) => {
    const running = await startBroker(t);
    const topic = ['--topic', 'TagTopic'];
    await ok(t, ['produce', ...at(running), ...topic, '--tag', 'TagA', '--body', 'a', '--count', '3']);
    await ok(t, ['produce', ...at(running), ...topic, '--tag', 'TagB', '--body', 'b', '--count', '2']);
    await ok(t, ['produce', ...at(running), ...topic, '--tag', 'TagC', '--body', 'c']);
    const onlyA = parseLines<ConsumedJson>(
      await ok(t, [
        'consume',
        ...at(running),
        '--group',
        'GA',
        ...topic,
        '--tag',
        'TagA',
        '--json',
        '--wait',
        '1',
      ]),
    );
    assert.deepEqual(
      onlyA.map((m) => [m.tag, m.body]),
      [
        ['TagA', 'a'],
        ['TagA', 'a'],
        ['TagA', 'a'],
      ],
    );
    const bOrC = parseLines<ConsumedJson>(
      await ok(t, [
        'consume',
        ...at(running),
        '--group',
        'GBC',
        ...topic,
        '--tag',
        'TagB||TagC',
        '--json',
        '--wait',
        '1',
      ]),
    );
    assert.deepEqual(bOrC.map((m) => m.tag).sort(), ['TagB', 'TagB', 'TagC']);
  });

  it('--count stops after n messages (the rest stay for the group); --wait ends an idle consume promptly', async (t) => {
    const running = await startBroker(t);
    const base = ['consume', ...at(running), '--group', 'CountGroup', '--topic', 'WaitTopic', '--json'];
    await ok(t, ['produce', ...at(running), '--topic', 'WaitTopic'], {
      input: `${Array.from({ length: 10 }, (_, i) => `m${i}`).join('\n')}\n`,
    });
    const first = await ok(t, [...base, '--count', '4', '--wait', '20']);
    assert.equal(first.lines.length, 4);
    assert.match(first.stderr, /^received 4 messages$/m);
    assert.ok(first.ms < 15_000, `--count ended it, not --wait 20 (${first.ms} ms)`);
    const rest = await ok(t, [...base, '--wait', '1']);
    const all = [...parseLines<ConsumedJson>(first), ...parseLines<ConsumedJson>(rest)];
    assert.deepEqual(all.map((m) => m.body).sort(), Array.from({ length: 10 }, (_, i) => `m${i}`).sort());
    const idle = await ok(t, [...base, '--wait', '1.5']);
    assert.equal(idle.lines.length, 0);
    assert.match(idle.stderr, /^received 0 messages$/m);
    assert.ok(idle.ms >= 1500, `waited --wait 1.5 s (${idle.ms} ms)`);
    assert.ok(idle.ms < 12_000, `and then stopped (${idle.ms} ms)`);
  });

  it('--no-ack: hidden for the invisible duration, then redelivered with the next delivery attempt', async (t) => {
    const running = await startBroker(t);
    const base = ['consume', ...at(running), '--group', 'NoAckGroup', '--topic', 'NoAckTopic', '--json'];
    await ok(t, ['produce', ...at(running), '--topic', 'NoAckTopic', '--body', 'again', '--count', '2']);
    const firstAt = Date.now();
    const first = await ok(t, [...base, '--no-ack', '--invisible-duration', '10000', '--count', '2']);
    const firstMessages = parseLines<ConsumedJson>(first);
    assert.deepEqual(
      firstMessages.map((m) => m.deliveryAttempt),
      [1, 1],
    );
    assert.match(first.stderr, /^received 2 messages \(not acked\)$/m);
    const hidden = await ok(t, [...base, '--wait', '0.5']);
    assert.ok(Date.now() < firstAt + 10_000, 'the second look ran within the invisible duration');
    assert.equal(hidden.lines.length, 0, 'still invisible to the group');
    const redelivered = await ok(t, [...base, '--count', '2', '--wait', '15']);
    const again = parseLines<ConsumedJson>(redelivered);
    assert.ok(Date.now() - firstAt >= 10_000, 'not before the invisible duration');
    assert.deepEqual(new Set(again.map((m) => m.messageId)), new Set(firstMessages.map((m) => m.messageId)));
    assert.deepEqual(
      again.map((m) => m.deliveryAttempt),
      [2, 2],
    );
  });

  it('FIFO: messages of one --message-group arrive in order', async (t) => {
    const running = await startBroker(t);
    running.broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
      groupName: 'FifoGroup',
      consumeEnable: true,
      consumeMessageOrderly: true,
      retryMaxTimes: 2,
    });
    const bodies = Array.from({ length: 40 }, (_, i) => `step-${i}`);
    const produced = parseLines<ProducedJson>(
      await ok(
        t,
        ['produce', ...at(running), '--topic', 'FifoTopic', '--message-group', 'order-42', '--json'],
        {
          input: `${bodies.join('\n')}\n`,
        },
      ),
    );
    // One message group, one queue: consecutive offsets in it.
    assert.deepEqual(
      produced.map((r) => r.offset),
      bodies.map((_, i) => i),
    );
    const consumed = parseLines<ConsumedJson>(
      await ok(t, [
        'consume',
        ...at(running),
        '--group',
        'FifoGroup',
        '--topic',
        'FifoTopic',
        '--json',
        '--count',
        '40',
      ]),
    );
    assert.deepEqual(
      consumed.map((m) => m.body),
      bodies,
    );
    assert.ok(consumed.every((m) => m.messageGroup === 'order-42'));
  });

  it('a --delay message is not received before its time, and is after', async (t) => {
    const running = await startBroker(t);
    const DELAY_MS = 3000;
    // The consumer first, so it is already polling when the message is sent.
    const consuming = ok(t, [
      'consume',
      ...at(running),
      '--group',
      'DelayGroup',
      '--topic',
      'DelayTopic',
      '--json',
      '--count',
      '1',
      '--wait',
      '20',
    ]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sentAt = Date.now();
    const [receipt] = parseLines<ProducedJson>(
      await ok(t, [
        'produce',
        ...at(running),
        '--topic',
        'DelayTopic',
        '--delay',
        String(DELAY_MS),
        '--body',
        'later',
        '--json',
      ]),
    );
    assert.ok(
      receipt !== undefined && receipt.recallHandle.length > 0,
      'a delay message has a recall handle',
    );
    const consumed = await consuming;
    // Due at its born time (after sentAt) plus the delay: any earlier output is an early delivery.
    assert.ok(consumed.firstOutputAt !== null);
    assert.ok(
      consumed.firstOutputAt >= sentAt + DELAY_MS,
      `received ${consumed.firstOutputAt - sentAt} ms after sending, before the ${DELAY_MS} ms delay`,
    );
    const [late] = parseLines<ConsumedJson>(consumed);
    assert.equal(late?.body, 'later');
    assert.equal(late?.messageId, receipt.messageId);
    const due = Date.parse(late?.deliveryTimestamp ?? '');
    const born = Date.parse(late?.bornTimestamp ?? '');
    assert.ok(
      Math.abs(due - born - DELAY_MS) < 1000,
      `deliveryTimestamp ${late?.deliveryTimestamp}, born ${late?.bornTimestamp}`,
    );
  });

  it('--tls: produce and consume over a TLS endpoint', async (t) => {
    const running = await startBroker(t);
    const dir = tempDir(t, 'rmq-cli-tls-');
    const certFile = path.join(dir, 'cert.pem');
    const keyFile = path.join(dir, 'key.pem');
    fs.writeFileSync(certFile, TLS_CERT);
    fs.writeFileSync(keyFile, TLS_KEY);
    const tls = await GrpcServer.start({
      broker: running.broker,
      logger: silentLogger,
      port: 0,
      tls: { certFile, keyFile },
    });
    t.after(() => tls.shutdown(1000));
    // grpc-js trusts the roots in this file instead of the system's.
    const env = { GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: certFile };
    const endpoint = ['--endpoint', `127.0.0.1:${tls.port}`, '--tls'];
    await ok(t, ['produce', ...endpoint, '--topic', 'TlsTopic', '--body', 'secret'], { env });
    const [got] = parseLines<ConsumedJson>(
      await ok(
        t,
        ['consume', ...endpoint, '--group', 'TlsGroup', '--topic', 'TlsTopic', '--json', '--count', '1'],
        {
          env,
        },
      ),
    );
    assert.equal(got?.body, 'secret');
    // And the plain endpoint does not speak TLS: a clear transport error, not a hang.
    const mismatch = await run(t, ['produce', ...at(running), '--tls', '--topic', 'TlsTopic', '--body', 'x']);
    assert.equal(mismatch.status, 1);
    assert.match(mismatch.stderr, /gRPC UNAVAILABLE/);
  });

  it('consume whose reader is gone (a closed pipe) acks nothing it could not print, and exits 0', async (t) => {
    const running = await startBroker(t);
    await ok(t, ['produce', ...at(running), '--topic', 'PipeTopic', '--body', 'lost?', '--count', '10']);
    // The reader closes its end before the consumer prints anything: every write fails (EPIPE).
    const child = spawn(
      process.execPath,
      [CLI_BIN, 'consume', ...at(running), '--group', 'PipeGroup', '--topic', 'PipeTopic', '--wait', '2'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const hang = setTimeout(() => child.kill('SIGKILL'), HANG_MS);
    const [status] = (await once(child, 'close')) as [number | null];
    clearTimeout(hang);
    assert.equal(status, 0, stderr);
    // Nothing reached a reader, so nothing was acked: the group still has all 10 to consume.
    const group = running.broker.adminProcessor.describeGroup('PipeGroup', 'PipeTopic');
    assert.equal(group.lag, 10, `acked ${10 - group.lag} messages nobody read`);
  });

  it('bad usage exits 2 naming the option: missing --topic or --group, --property without =, --count without --body', async (t) => {
    const noTopic = await run(t, ['produce', '--body', 'x']);
    assert.equal(noTopic.status, 2);
    assert.match(noTopic.stderr, /required option '--topic <topic>' not specified/);
    const noGroup = await run(t, ['consume', '--topic', 'T']);
    assert.equal(noGroup.status, 2);
    assert.match(noGroup.stderr, /required option '--group <group>' not specified/);
    const badProperty = await run(t, ['produce', '--topic', 'T', '--property', 'novalue', '--body', 'x']);
    assert.equal(badProperty.status, 2);
    assert.match(badProperty.stderr, /--property <key=value>.*expected KEY=VALUE, got 'novalue'/);
    const countWithoutBody = await run(t, ['produce', '--topic', 'T', '--count', '3']);
    assert.equal(countWithoutBody.status, 2);
    assert.match(countWithoutBody.stderr, /--count repeats --body/);
    const badEndpoint = await run(t, ['consume', '--group', 'G', '--topic', 'T', '--endpoint', 'localhost']);
    assert.equal(badEndpoint.status, 2);
    assert.match(badEndpoint.stderr, /--endpoint <host:port>.*HOST:PORT/);
    const fifoAndDelay = await run(t, ['produce', '--topic', 'T', '--message-group', 'g', '--delay', '100']);
    assert.equal(fifoAndDelay.status, 2);
    assert.match(fifoAndDelay.stderr, /--message-group <group>' cannot be used with option '--delay <ms>'/);
    const help = await run(t, ['consume', '--help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Examples:\n {2}\$ rocketmq-ts consume /);
  });

  it('an unreachable endpoint fails with exit 1 and the gRPC status, within a bounded time', async (t) => {
    const port = await closedPort();
    const [produce, consume] = await Promise.all([
      run(t, [
        'produce',
        '--endpoint',
        `127.0.0.1:${port}`,
        '--topic',
        'T',
        '--body',
        'x',
        '--timeout',
        '2000',
      ]),
      run(t, [
        'consume',
        '--endpoint',
        `127.0.0.1:${port}`,
        '--group',
        'G',
        '--topic',
        'T',
        '--timeout',
        '2000',
      ]),
    ]);
    for (const result of [produce, consume]) {
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: gRPC UNAVAILABLE`));
      // --timeout 2000: the consumer's startup is bounded by it plus the client's 3 s of retry backoff.
      assert.ok(result.ms < 12_000, `gave up in ${result.ms} ms`);
    }
    assert.equal(produce.stdout, '');
  });

  it('the broker refusing: an unknown topic (no auto-create) and a too short invisible duration exit 1 naming the status', async (t) => {
    const running = await startBroker(t, { broker: { autoCreateTopicEnable: false } });
    const refused = await run(t, ['produce', ...at(running), '--topic', 'NoSuchTopic', '--body', 'x']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /cannot send to NoSuchTopic at .*: TOPIC_NOT_FOUND \(40402\)/);
    assert.equal(refused.stdout, '');

    const open = await startBroker(t);
    await ok(t, ['produce', ...at(open), '--topic', 'ShortTopic', '--body', 'x']);
    const tooShort = await run(t, [
      'consume',
      ...at(open),
      '--group',
      'G',
      '--topic',
      'ShortTopic',
      '--invisible-duration',
      '5000',
    ]);
    assert.equal(tooShort.status, 1);
    assert.match(tooShort.stderr, /ILLEGAL_INVISIBLE_TIME \(40011\)/);
  });
});
