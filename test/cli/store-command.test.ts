import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { MessageStore, silentLogger } from '../../src/store/index.js';
import { CLI_BIN } from '../support/cli.js';
import { tempDir } from '../support/helpers.js';

/**
 * `rocketmq-ts store inspect` and `store verify`, run as a user runs them: the built binary
 * (`npm test` builds first), real arguments, real output and exit codes.
 */

const BIN = CLI_BIN;
const SEGMENT_BYTES = 64 * 1024;
const MESSAGES = 300;

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
}

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A store of MESSAGES messages over 4 queues, several segments, shut down cleanly. */
async function healthyStore(t: TestContext): Promise<{ root: string; ids: string[] }> {
  const root = tempDir(t);
  const store = await MessageStore.open(
    { storePathRootDir: root, mappedFileSizeCommitLog: SEGMENT_BYTES },
    { logger: silentLogger },
  );
  const ids: string[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const id = `ID-${i}`;
    const put = await store.putMessage({
      topic: i % 2 === 0 ? 'InspectA' : 'InspectB',
      queueId: i % 4,
      body: Buffer.alloc(500 + (i % 7) * 10, i),
      tags: `t${i % 3}`,
      properties: { UNIQ_KEY: id },
    });
    assert.equal(put.status, 'PUT_OK');
    ids.push(id);
  }
  await store.shutdown();
  return { root, ids };
}

describe('rocketmq-ts store (the built CLI)', () => {
  it('verify: a flipped bit in a record body exits 1 and names the segment file and the offset', async (t) => {
    const { root } = await healthyStore(t);
    const segments = fs.readdirSync(path.join(root, 'commitlog')).sort();
    assert.ok(segments.length >= 3, 'the store spans several segments');
    const inspection = JSON.parse(run('store', 'inspect', root, '--json', '--records').stdout) as {
      records: { offset: number; size: number }[];
    };
    // A record in the second segment: flip one bit in the middle of its body.
    const victim = inspection.records.find((r) => r.offset >= SEGMENT_BYTES && r.offset < 2 * SEGMENT_BYTES);
    assert.ok(victim !== undefined);
    const file = path.join(root, 'commitlog', segments[1] as string);
    const bytes = fs.readFileSync(file);
    const position = victim.offset - SEGMENT_BYTES;
    const flipAt = position + victim.size - 40;
    bytes[flipAt] = (bytes[flipAt] as number) ^ 0x10;
    fs.writeFileSync(file, bytes);
    const result = run('store', 'verify', root);
    assert.equal(result.status, 1, result.stdout);
    assert.ok(result.stdout.includes(`DAMAGED ${file} at offset ${position}:`), result.stdout);
    assert.match(result.stdout, /CRC/i);
    const json = JSON.parse(run('store', 'verify', root, '--json').stdout) as {
      ok: boolean;
      problems: { file: string; offset: number }[];
    };
    assert.equal(json.ok, false);
    assert.ok(json.problems.some((p) => p.file === file && p.offset === position));
  });

  it('verify: a consume queue unit pointing at the wrong record is named by its file and offset', async (t) => {
    const { root } = await healthyStore(t);
    const cqFile = path.join(root, 'consumequeue', 'InspectA', '0', '00000000000000000000');
    const cq = fs.readFileSync(cqFile);
    cq.writeInt32BE(cq.readInt32BE(5 * 20 + 8) + 1, 5 * 20 + 8);
    fs.writeFileSync(cqFile, cq);
    const result = run('store', 'verify', root);
    assert.equal(result.status, 1);
    assert.ok(result.stdout.includes(`DAMAGED ${cqFile} at offset 100: unit 5 says`), result.stdout);
  });

  it('inspect --json parses back: segments, every record with its id, consume queues, checkpoint', async (t) => {
    const { root, ids } = await healthyStore(t);
    const result = run('store', 'inspect', root, '--json', '--records');
    assert.equal(result.status, 0, result.stderr);
    const inspection = JSON.parse(result.stdout) as {
      abortFile: boolean;
      checkpoint: Record<string, number>;
      commitLog: { segments: { records: number }[]; records: number; segmentSize: number };
      consumeQueues: { topic: string; queueId: number; maxOffset: number }[];
      records: { messageId: string; topic: string; queueId: number; queueOffset: number }[];
      problems: unknown[];
    };
    assert.equal(inspection.abortFile, false, 'shut down cleanly');
    assert.equal(inspection.commitLog.segmentSize, SEGMENT_BYTES);
    assert.equal(inspection.commitLog.records, MESSAGES);
    assert.equal(
      inspection.commitLog.segments.reduce((n, s) => n + s.records, 0),
      MESSAGES,
    );
    assert.deepEqual(
      inspection.records.map((r) => r.messageId),
      ids,
    );
    // Topic A got the even messages on queues 0 and 2, topic B the odd ones on 1 and 3.
    assert.deepEqual(
      inspection.consumeQueues.map((q) => `${q.topic}/${q.queueId}:${q.maxOffset}`),
      ['InspectA/0:75', 'InspectA/2:75', 'InspectB/1:75', 'InspectB/3:75'],
    );
    assert.ok((inspection.checkpoint.physicMsgTimestamp ?? 0) > 0);
    assert.deepEqual(inspection.problems, []);
  });

  it('a directory that is not a store directory exits 2 with a message', (t) => {
    const missing = path.join(tempDir(t), 'nope');
    const result = run('store', 'verify', missing);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /is not a directory/);
  });

  it('verify: a healthy store exits 0 and says what it checked on stdout; progress on stderr as plain lines (no terminal), ending at 100% of the bytes walked', async (t) => {
    const { root } = await healthyStore(t);
    const result = run('store', 'verify', root);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`^ok: ${MESSAGES} records in \\d+ segments, ${MESSAGES} consume queue units`),
    );
    assert.equal(result.stdout.split('\n').length, 2, 'one line of result on stdout, nothing else');
    const lines = result.stderr.split('\n').filter((line) => line !== '');
    assert.ok(lines.length >= 1);
    for (const line of lines) assert.match(line, /^verify: \d{1,3}% \(\d+\.\d\/\d+\.\d MiB\)$/);
    // Every commit log segment and consume queue file, read whole.
    const bytes = [
      ...filesUnder(path.join(root, 'commitlog')),
      ...filesUnder(path.join(root, 'consumequeue')),
    ].reduce((n, file) => n + fs.statSync(file).size, 0);
    const mib = bytes / (1024 * 1024);
    assert.ok(mib >= 1 && mib < 100, `shown with one decimal: ${mib}`);
    assert.equal(lines.at(-1), `verify: 100% (${mib.toFixed(1)}/${mib.toFixed(1)} MiB)`);
    // --json: stdout is the JSON alone, whatever stderr carries.
    const json = run('store', 'verify', root, '--json');
    assert.deepEqual(JSON.parse(json.stdout), { ok: true, problems: [] });
    assert.match(json.stderr, /^verify: 100% /m);
  });

  it('verify on a terminal draws a bar (under script(1), a pseudo-terminal)', async (t) => {
    const { root } = await healthyStore(t);
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} store verify ${JSON.stringify(root)}`;
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    // The terminal shows stdout and stderr together: the bar, redrawn in place, then the result.
    assert.match(result.stdout, /verify \[[\u2588\u2591]+\] 100% \| \d+\.\d\/\d+\.\d MiB/);
    assert.ok(result.stdout.includes('\u001b['), 'drawn with terminal control sequences');
    assert.ok(!/verify: \d+%/.test(result.stdout), 'no plain progress lines on a terminal');
    assert.match(result.stdout, new RegExp(`ok: ${MESSAGES} records in \\d+ segments`));
  });

  it('--help shows examples', () => {
    const result = run('store', 'inspect', '--help');
    assert.equal(result.status, 0);
    assert.match(result.stdout, /Examples:/);
  });
});
