import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MessageStore, type MessageStoreConfigInput, silentLogger } from '../../src/store/index.js';
import { onCleanup, prng, tempDir, testSeed } from '../support/helpers.js';
import { bodyOf, idOfBody, QUEUES_PER_TOPIC, routeOf, TOPICS } from '../support/sigkill-protocol.mjs';

/**
 * Real crashes. A child process (test/support/sigkill-child.mjs, running the BUILT store from
 * dist/) puts messages from concurrent producers across 3 topics x 2 queues, with bodies of 16 B
 * to 20 KB in 64 KiB commit log segments and 100-unit consume queue files, and reports every
 * acknowledgement on stdout. The parent SIGKILLs it at a seeded random moment and checks what
 * survived:
 *
 *   SYNC_FLUSH                 every acknowledged message is there (it was fdatasync'ed)
 *   ASYNC_FLUSH, pool off      every acknowledged message is there (it was in the page cache)
 *   ASYNC_FLUSH, pool on       per queue the messages present are a prefix with no hole; an
 *                              acknowledged message may be missing only at the tail: after every
 *                              message present in the commit log, past what the child saw
 *                              committed, and acknowledged less than one commit interval (plus
 *                              SCHEDULING_MARGIN_MS) before the child's last sign of life
 *
 * and for every level: no message that was never put, every body byte-identical at the commit
 * log offset and queue offset its acknowledgement named, getMessage FOUND with skippedDamaged 0,
 * the consume queue's max offset equal to the count and to the commit log's next queue offset,
 * and new puts continuing the queue offsets.
 *
 * The check runs on a copy of the directory, opened in this process, so the directory itself
 * stays exactly as the kill left it: the next child recovers it (abort file present, lastExitOK
 * false) and must come up with the same queue offsets, and its own kill adds to the accumulated
 * expectations. A chain of cycles ends with the original opened here, checked, shut down cleanly
 * and reopened (lastExitOK true).
 *
 * Cycles: ROCKETMQ_TS_SIGKILL_CYCLES (default 54) kills after the child reported ready, shared by
 * the three levels, plus one kill per chain while a child is still opening (recovering) the
 * store. The default takes 40-60 s here; scripts/run-tests.mjs gives a file 120 s, so for many
 * more cycles pass a longer one, e.g. `ROCKETMQ_TS_SIGKILL_CYCLES=300 node scripts/run-tests.mjs
 * --test-timeout=900000 test/store/crash-sigkill.test.ts`. Seeded: TEST_SEED reproduces the schedule (kill delays, producers, pacing); the
 * interleaving with the OS of course differs run to run. Every failure names the seed, the level
 * and the cycle, and keeps a copy of the killed store for inspection.
 */

const CHILD = fileURLToPath(new URL('../support/sigkill-child.mjs', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIST_ENTRY = path.join(REPO_ROOT, 'dist', 'store', 'index.js');
const SRC_STORE = path.join(REPO_ROOT, 'src', 'store');

const CYCLES_ENV = 'ROCKETMQ_TS_SIGKILL_CYCLES';
const DEFAULT_CYCLES = 54;
/** Cycles on one directory before a fresh one: long enough for recoveries of recoveries. */
const CYCLES_PER_CHAIN = 6;
/** Kill at least this long after the child reported ready, ms. */
const KILL_AFTER_READY_MIN_MS = 30;
/** The extra kill per chain lands this long after the child said it is opening the store, ms. */
const KILL_WHILE_OPENING_MAX_MS = 40;
/** A child that reports nothing for this long is stuck, ms. */
const CHILD_STALL_TIMEOUT_MS = 20_000;
const HEARTBEAT_MS = 5;

/**
 * Pool on: a lost acknowledgement may be this much older than one commit interval, ms. After the
 * interval ends the commit service's timer has to fire (timers run late when the event loop is
 * busy with a turn of puts, or when the process is descheduled: this 2-core machine runs the
 * parent, the child and other test files at once) and its pwrite has to go through the thread
 * pool before the bytes are in the page cache. The age is measured on the child's own clock up to
 * its last line, so time the child spent descheduled before that line counts against the store;
 * 100 ms is what that costs at worst on a loaded 2-core machine. Measured here under a load
 * average of 3-5 (other test files running): with a 50 ms interval the oldest loss over 94 kills
 * was 50 ms old; with 200 ms, 180-186 ms over 21 kills (with the commit service fixed as the
 * scripted test below asks; without the fix up to 235 ms).
 */
const SCHEDULING_MARGIN_MS = 100;

const BASE_CONFIG = {
  mappedFileSizeCommitLog: 64 * 1024,
  mappedFileSizeConsumeQueue: 20 * 100,
} as const;

interface Level {
  readonly name: string;
  readonly config: Omit<MessageStoreConfigInput, 'storePathRootDir'>;
  /**
   * Pool on: its commit interval (= its thorough interval, so that there is one period), and
   * acknowledged messages at the tail may be lost, if younger than it plus SCHEDULING_MARGIN_MS.
   * Null: nothing acknowledged may be lost.
   */
  readonly commitIntervalMs: number | null;
  /** Kill up to this long after the child reported ready, ms. */
  readonly killAfterReadyMaxMs: number;
}

function poolOnLevel(name: string, commitIntervalMs: number, killAfterReadyMaxMs: number): Level {
  return {
    name,
    config: {
      ...BASE_CONFIG,
      flushDiskType: 'ASYNC_FLUSH',
      transientStorePoolEnable: true,
      commitIntervalCommitLog: commitIntervalMs,
      commitCommitLogThoroughInterval: commitIntervalMs,
    },
    commitIntervalMs,
    killAfterReadyMaxMs,
  };
}

/** RocketMQ's default commit interval, 200 ms; kills up to 700 ms let acks age well past it. */
const POOL_ON_COMMIT_INTERVAL_MS = 200;

const LEVELS: readonly Level[] = [
  {
    name: 'SYNC_FLUSH',
    config: { ...BASE_CONFIG, flushDiskType: 'SYNC_FLUSH' },
    commitIntervalMs: null,
    killAfterReadyMaxMs: 300,
  },
  {
    name: 'ASYNC_FLUSH, pool off',
    config: { ...BASE_CONFIG, flushDiskType: 'ASYNC_FLUSH', transientStorePoolEnable: false },
    commitIntervalMs: null,
    killAfterReadyMaxMs: 300,
  },
  poolOnLevel('ASYNC_FLUSH, pool on', POOL_ON_COMMIT_INTERVAL_MS, 700),
];

const QUEUE_KEYS: readonly { topic: string; queueId: number; key: string }[] = TOPICS.flatMap((topic) =>
  Array.from({ length: QUEUES_PER_TOPIC }, (_, queueId) => ({ topic, queueId, key: `${topic}/${queueId}` })),
);

function cyclesFromEnv(): number {
  const raw = process.env[CYCLES_ENV];
  if (raw === undefined || raw === '') return DEFAULT_CYCLES;
  const n = Number(raw);
  assert.ok(Number.isInteger(n) && n >= 3, `${CYCLES_ENV} must be a whole number >= 3, got ${raw}`);
  return n;
}

/** The child runs the compiled store: refuse to test a dist/ that is missing or older than src/. */
function assertDistBuilt(): void {
  assert.ok(
    fs.existsSync(DIST_ENTRY),
    `${path.relative(REPO_ROOT, DIST_ENTRY)} is missing: run \`npm run build\` first ` +
      '(the SIGKILL child imports the built store so that it starts fast)',
  );
  const builtAt = fs.statSync(DIST_ENTRY).mtimeMs;
  const newer = (fs.readdirSync(SRC_STORE, { recursive: true }) as string[])
    .filter((name) => name.endsWith('.ts'))
    .filter((name) => fs.statSync(path.join(SRC_STORE, name)).mtimeMs > builtAt);
  assert.deepEqual(
    newer,
    [],
    `dist/ is older than src/store (${newer.slice(0, 3).join(', ')} changed since): run \`npm run build\` first`,
  );
}

// ---------------------------------------------------------------------------------------------
// The child

interface Ack {
  readonly id: string;
  readonly topic: string;
  readonly queueId: number;
  readonly queueOffset: number;
  readonly wroteOffset: number;
  readonly wroteBytes: number;
  /** Date.now() in the child when the put resolved PUT_OK. */
  readonly t: number;
}

interface ReadyReport {
  readonly t: number;
  readonly lastExitOK: boolean;
  readonly maxPhyOffset: number;
  readonly queues: Readonly<Record<string, { max: number; next: number }>>;
}

interface ChildRun {
  readonly acks: Ack[];
  ready: ReadyReport | null;
  /** The latest Date.now() the child reported (its last sign of life we know of). */
  lastSeenT: number;
  /** The highest committedWhere a heartbeat reported: those bytes were in the file. */
  committedWhere: number;
  readonly errors: string[];
  stderr: string;
  killedAfterMs: number | null;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

/** What the child is told (see sigkill-child.mjs). */
interface ChildSpec {
  readonly config: MessageStoreConfigInput;
  /** Names the child's messages: `<tag>.<seq>`. */
  readonly tag: string;
  readonly seed: number;
  readonly producers: number;
  /** After each acknowledgement a producer pauses 1..pauseMaxMs ms with this chance, else yields a turn. */
  readonly pauseChance: number;
  readonly pauseMaxMs: number;
  readonly heartbeatMs: number;
  /** A scripted single producer: pauses between its puts, then idle (see sigkill-child.mjs). */
  readonly schedule?: readonly number[];
}

type KillPlan = { readonly anchor: 'opening' | 'ready'; readonly delayMs: number };

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

function parseLine(run: ChildRun, tag: string, line: string): string | null {
  const [kind = '', ...f] = line.split(' ');
  switch (kind) {
    case 'a': {
      const n = f.map(Number);
      const ack: Ack = {
        id: `${tag}.${f[0]}`,
        topic: f[1] as string,
        queueId: n[2] as number,
        queueOffset: n[3] as number,
        wroteOffset: n[4] as number,
        wroteBytes: n[5] as number,
        t: n[6] as number,
      };
      if (
        f.length !== 7 ||
        ![ack.queueId, ack.queueOffset, ack.wroteOffset, ack.t].every(Number.isSafeInteger)
      )
        return `malformed ack line: ${line}`;
      run.acks.push(ack);
      run.lastSeenT = Math.max(run.lastSeenT, ack.t);
      return null;
    }
    case 'h':
      run.lastSeenT = Math.max(run.lastSeenT, Number(f[0]));
      run.committedWhere = Math.max(run.committedWhere, Number(f[1]));
      return null;
    case 'ready':
      run.ready = JSON.parse(f.join(' ')) as ReadyReport;
      run.lastSeenT = Math.max(run.lastSeenT, run.ready.t);
      return null;
    case 'opening':
      return null;
    case 'error':
      run.errors.push(f.join(' '));
      return null;
    default:
      return `unexpected line from the child: ${line}`;
  }
}

/** Runs one child on `spec` and SIGKILLs it as `plan` says; resolves once it is gone (reaped). */
async function runChild(spec: ChildSpec, plan: KillPlan): Promise<ChildRun> {
  const run: ChildRun = {
    acks: [],
    ready: null,
    lastSeenT: 0,
    committedWhere: 0,
    errors: [],
    stderr: '',
    killedAfterMs: null,
    exit: null,
  };
  const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let pending = '';
  let killTimer: NodeJS.Timeout | null = null;
  let anchorAt = 0;
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) {
      run.killedAfterMs = performance.now() - anchorAt;
      child.kill('SIGKILL');
    }
  };
  const stall = setTimeout(kill, CHILD_STALL_TIMEOUT_MS);
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('latin1');
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      const problem = parseLine(run, spec.tag, line);
      if (problem !== null) run.errors.push(problem);
      if (killTimer === null && line.startsWith(`${plan.anchor} `)) {
        anchorAt = performance.now();
        killTimer = setTimeout(kill, plan.delayMs);
      }
      newline = pending.indexOf('\n');
    }
    stall.refresh();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    run.stderr = (run.stderr + chunk.toString('utf8')).slice(-4000);
  });
  try {
    run.exit = await exited(child);
  } finally {
    clearTimeout(stall);
    if (killTimer !== null) clearTimeout(killTimer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  // A line cut by the kill (no newline) is not an acknowledgement the child finished reporting.
  return run;
}

// ---------------------------------------------------------------------------------------------
// Checking a store

/** What the parent knows a queue must hold: the id at every queue offset from 0. */
type Expected = Map<string, string[]>;

interface Found {
  /** Per queue, the ids at queue offsets 0.. */
  readonly ids: Map<string, string[]>;
  /** Every id present -> its commit log offset. */
  readonly offsets: Map<string, number>;
  /** The end of the recovered commit log. */
  readonly maxPhyOffset: number;
}

/**
 * Reads every queue of `store` from offset 0 and checks each message against what may be there:
 * below `expected`'s length, exactly the expected id; beyond it, only a message of the child
 * `newTag` (null: nothing beyond), routed to this queue. Every body must be `bodyOf(its id)`.
 */
async function readAll(
  store: MessageStore,
  expected: Expected,
  newTag: string | null,
  ctx: string,
): Promise<Found> {
  const ids = new Map<string, string[]>();
  const offsets = new Map<string, number>();
  const known = new Set(QUEUE_KEYS.map((q) => q.key));
  for (const queue of store.getConsumeQueueStore().all()) {
    assert.ok(
      known.has(`${queue.topic}/${queue.queueId}`),
      `${ctx}: a consume queue nobody put to: ${queue.topic}/${queue.queueId}`,
    );
  }
  for (const { topic, queueId, key } of QUEUE_KEYS) {
    const want = expected.get(key) ?? [];
    const max = store.getMaxOffsetInQueue(topic, queueId);
    assert.ok(
      max >= want.length,
      `${ctx}: ${key} holds ${max} messages, but ${want.length} were there before (lost: ${want.slice(max, max + 5).join(', ')})`,
    );
    if (newTag === null) assert.equal(max, want.length, `${ctx}: ${key} holds exactly what was there before`);
    assert.equal(
      store.getQueueOffset(topic, queueId),
      max,
      `${ctx}: ${key}: the commit log's next queue offset equals the consume queue's max offset`,
    );
    if (max > 0) assert.equal(store.getMinOffsetInQueue(topic, queueId), 0, `${ctx}: ${key} starts at 0`);
    const present: string[] = [];
    let offset = 0;
    while (offset < max) {
      const result = await store.getMessage('sigkill-check', topic, queueId, offset, 32);
      const where = `${ctx}: ${key} at queue offset ${offset} (max ${max})`;
      assert.equal(result.status, 'FOUND', `${where}: getMessage ${result.status}`);
      assert.equal(result.skippedDamaged, 0, `${where}: damaged records skipped`);
      assert.ok(result.messages.length > 0, `${where}: FOUND with no message`);
      for (const message of result.messages) {
        const at = `${ctx}: ${key} queue offset ${offset}`;
        assert.equal(message.queueOffset, offset, `${at}: messages come in queue order, no hole`);
        assert.equal(message.topic, topic, `${at}: topic`);
        assert.equal(message.queueId, queueId, `${at}: queue id`);
        const id = idOfBody(message.body);
        assert.ok(
          id !== null,
          `${at}: a message that was never put (body ${message.body.subarray(0, 24).toString('hex')})`,
        );
        assert.ok(message.body.equals(bodyOf(id)), `${at}: the body of ${id} is byte-identical`);
        assert.equal(message.keys, id, `${at}: keys of ${id}`);
        assert.ok(!offsets.has(id), `${at}: ${id} appears twice (also at commit log ${offsets.get(id)})`);
        if (offset < want.length) {
          assert.equal(id, want[offset], `${at}: the message that was there before`);
        } else {
          assert.ok(
            newTag !== null && id.startsWith(`${newTag}.`),
            `${at}: ${id} is not a message of the last child (${newTag ?? 'none expected'})`,
          );
          assert.deepEqual(routeOf(id), { topic, queueId }, `${at}: ${id} is in the queue it was put to`);
        }
        offsets.set(id, message.commitLogOffset);
        present.push(id);
        offset++;
      }
      assert.equal(result.nextBeginOffset, offset, `${where}: nextBeginOffset`);
    }
    ids.set(key, present);
  }
  return { ids, offsets, maxPhyOffset: store.getMaxPhyOffset() };
}

/** New puts take the next queue offsets and read back. Returns the ids put, per queue. */
async function putProbes(
  store: MessageStore,
  found: Found,
  probeTag: string,
  ctx: string,
): Promise<Map<string, string>> {
  const probes = new Map<string, string>();
  for (const { topic, queueId, key } of QUEUE_KEYS) {
    const id = `${probeTag}-${topic}-${queueId}`;
    const result = await store.putMessage({ topic, queueId, body: bodyOf(id), keys: id });
    const next = found.ids.get(key)?.length ?? 0;
    assert.equal(result.status, 'PUT_OK', `${ctx}: a put after recovery (${result.reason ?? ''})`);
    assert.equal(
      result.appendResult?.queueOffset,
      next,
      `${ctx}: ${key}: a new put continues the queue offsets`,
    );
    probes.set(key, id);
  }
  for (const { topic, queueId, key } of QUEUE_KEYS) {
    const next = found.ids.get(key)?.length ?? 0;
    assert.ok(
      await store.waitForMessages(topic, queueId, next, 10_000),
      `${ctx}: ${key}: the new put is dispatched`,
    );
    const read = await store.getMessage('sigkill-check', topic, queueId, next, 1);
    assert.equal(read.status, 'FOUND', `${ctx}: ${key}: the new put reads back`);
    assert.ok(read.messages[0]?.body.equals(bodyOf(probes.get(key) as string)), `${ctx}: ${key}: its body`);
  }
  return probes;
}

// ---------------------------------------------------------------------------------------------
// The cycles

interface LevelStats {
  kills: number;
  killsWhileOpening: number;
  acks: number;
  unackedPresent: number;
  lostAcks: number;
  /** The oldest loss: its age and where it was against where the commit was. */
  maxLostAgeMs: number;
  oldestLoss: string;
  messages: number;
  segments: number;
  /** Time spent with a child running, and checking copies, ms. */
  childMs: number;
  checkMs: number;
}

function newStats(): LevelStats {
  return {
    kills: 0,
    killsWhileOpening: 0,
    acks: 0,
    unackedPresent: 0,
    lostAcks: 0,
    maxLostAgeMs: 0,
    oldestLoss: 'none',
    messages: 0,
    segments: 0,
    childMs: 0,
    checkMs: 0,
  };
}

/** One directory and what the parent knows it must hold. */
interface Chain {
  readonly level: Level;
  readonly root: string;
  readonly scratch: string;
  readonly config: MessageStoreConfigInput;
  readonly expected: Expected;
  readonly stats: LevelStats;
}

type TestContext = { after: (fn: () => void | Promise<void>) => void; diagnostic: (msg: string) => void };

function newChain(t: TestContext, level: Level, stats: LevelStats): Chain {
  const root = tempDir(t, 'rmq-sigkill-');
  return {
    level,
    root,
    scratch: tempDir(t, 'rmq-sigkill-copy-'),
    config: { ...level.config, storePathRootDir: root },
    expected: new Map(QUEUE_KEYS.map((q) => [q.key, []])),
    stats,
  };
}

/** Checks the acknowledgements of a killed child against what its store holds after recovery. */
function checkAcks(run: ChildRun, chain: Chain, found: Found, ctx: string): void {
  const { level, stats, expected } = chain;
  const lost: Ack[] = [];
  const seen = new Set<string>();
  for (const ack of run.acks) {
    const key = `${ack.topic}/${ack.queueId}`;
    const at = `${ctx}: acknowledged ${ack.id} (${key} queue offset ${ack.queueOffset}, commit log ${ack.wroteOffset}, +${ack.wroteBytes})`;
    assert.deepEqual(
      routeOf(ack.id),
      { topic: ack.topic, queueId: ack.queueId },
      `${at}: put where it belongs`,
    );
    assert.ok(!seen.has(`${key}@${ack.queueOffset}`), `${at}: two acknowledgements for one queue offset`);
    seen.add(`${key}@${ack.queueOffset}`);
    assert.ok(
      ack.queueOffset >= (expected.get(key)?.length ?? 0),
      `${at}: the child continued the queue offsets after recovery`,
    );
    const present = found.ids.get(key) ?? [];
    if (ack.queueOffset < present.length) {
      assert.equal(present[ack.queueOffset], ack.id, `${at}: the message at its queue offset`);
      assert.equal(
        found.offsets.get(ack.id),
        ack.wroteOffset,
        `${at}: at the commit log offset it was given`,
      );
      continue;
    }
    assert.ok(level.commitIntervalMs !== null, `${at}: LOST although acknowledged (${level.name})`);
    lost.push(ack);
  }
  stats.acks += run.acks.length;
  stats.lostAcks += lost.length;
  const windowMs = (level.commitIntervalMs ?? 0) + SCHEDULING_MARGIN_MS;
  for (const ack of lost) {
    const at = `${ctx}: lost ${ack.id} (${ack.topic}/${ack.queueId} queue offset ${ack.queueOffset}, commit log ${ack.wroteOffset})`;
    // Only the tail: nothing present lies after it in the commit log.
    assert.ok(
      ack.wroteOffset >= found.maxPhyOffset,
      `${at}: a hole: the recovered commit log goes on to ${found.maxPhyOffset}, past this lost message`,
    );
    assert.ok(
      ack.wroteOffset + ack.wroteBytes > run.committedWhere,
      `${at}: the child saw it committed to the file (committedWhere ${run.committedWhere}), yet it is gone`,
    );
    const ageMs = run.lastSeenT - ack.t;
    if (ageMs > stats.maxLostAgeMs) {
      stats.maxLostAgeMs = ageMs;
      const segment = (offset: number): number => Math.floor(offset / BASE_CONFIG.mappedFileSizeCommitLog);
      stats.oldestLoss =
        `${ageMs} ms: ${ack.id} at commit log ${ack.wroteOffset} (segment ${segment(ack.wroteOffset)}), ` +
        `committedWhere ${run.committedWhere} (segment ${segment(run.committedWhere)})`;
    }
    assert.ok(
      ageMs <= windowMs,
      `${at}: acknowledged ${ageMs} ms before the child's last sign of life, more than one commit interval ` +
        `(${level.commitIntervalMs} ms) plus ${SCHEDULING_MARGIN_MS} ms for scheduling; the child saw the ` +
        `commit reach ${run.committedWhere}. Acknowledged at: ${lost.map((a) => `${a.id} ${a.t}`).join(', ')}`,
    );
  }
}

function keepForInspection(dir: string, ctx: string): string {
  const kept = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-sigkill-failure-'));
  fs.cpSync(dir, kept, { recursive: true });
  fs.writeFileSync(path.join(kept, 'FAILURE.txt'), `${ctx}\n`);
  return kept;
}

/**
 * One cycle: a child on the chain's directory, killed as `plan` says; then a copy of the directory
 * recovered here and checked against the accumulated expectations, which then take in what the
 * child added. Returns the child's run.
 */
async function killCycle(
  chain: Chain,
  cycle: number,
  spec: ChildSpec,
  plan: KillPlan,
  ctxBase: string,
): Promise<ChildRun> {
  const { stats, expected } = chain;
  const childStart = performance.now();
  const run = await runChild(spec, plan);
  const checkStart = performance.now();
  stats.childMs += checkStart - childStart;
  const ctx = `${ctxBase}, killed ${run.killedAfterMs?.toFixed(1) ?? '-'} ms after ${plan.anchor}`;
  const childSays = `child errors: ${run.errors.join(' | ') || 'none'}; child stderr: ${run.stderr.slice(-1500) || 'none'}`;
  try {
    assert.deepEqual(run.errors, [], `${ctx}: the child reported trouble`);
    assert.equal(
      run.exit?.signal,
      'SIGKILL',
      `${ctx}: the child ended by our SIGKILL (exit ${JSON.stringify(run.exit)})`,
    );
    stats.kills++;
    if (plan.anchor === 'opening') stats.killsWhileOpening++;
    if (run.ready !== null) {
      assert.equal(
        run.ready.lastExitOK,
        cycle === 0,
        `${ctx}: the child's recovery report: lastExitOK after ${cycle === 0 ? 'a fresh start' : 'a kill'}`,
      );
      for (const { key } of QUEUE_KEYS) {
        const want = expected.get(key)?.length ?? 0;
        assert.deepEqual(
          run.ready.queues[key],
          { max: want, next: want },
          `${ctx}: the child recovered ${key} to what the previous check found`,
        );
      }
    } else {
      assert.equal(plan.anchor, 'opening', `${ctx}: the child reported ready before the kill`);
    }
    // Check a copy: the directory itself stays as the kill left it, for the next child.
    const copy = path.join(chain.scratch, spec.tag);
    fs.cpSync(chain.root, copy, { recursive: true });
    let store: MessageStore | null = null;
    try {
      // The same config, except that with the pool on the probe puts are committed (and so
      // readable) within 10 ms instead of a commit interval: the intervals play no part in recovery.
      const checkConfig: MessageStoreConfigInput = {
        ...chain.config,
        storePathRootDir: copy,
        ...(chain.level.commitIntervalMs === null
          ? {}
          : { commitIntervalCommitLog: 10, commitCommitLogThoroughInterval: 10 }),
      };
      store = await MessageStore.open(checkConfig, { logger: silentLogger });
      if (cycle > 0 || run.ready !== null) {
        assert.equal(
          store.getRecoveryReport().lastExitOK,
          false,
          `${ctx}: the recovery report says the last run did not exit cleanly`,
        );
      }
      const found = await readAll(store, expected, spec.tag, ctx);
      checkAcks(run, chain, found, ctx);
      const acked = new Set(run.acks.map((a) => a.id));
      for (const { key } of QUEUE_KEYS) {
        const added = (found.ids.get(key) ?? []).slice(expected.get(key)?.length ?? 0);
        stats.unackedPresent += added.filter((id) => !acked.has(id)).length;
      }
      await putProbes(store, found, `probe-${spec.tag}`, ctx);
      await store.shutdown();
      store = null;
      for (const [key, ids] of found.ids) expected.set(key, ids);
    } finally {
      await store?.shutdown().catch(() => undefined);
      fs.rmSync(copy, { recursive: true, force: true });
    }
  } catch (err) {
    const kept = keepForInspection(chain.root, ctx);
    if (err instanceof Error) err.message += `\n  the killed store is kept in ${kept}\n  ${childSays}`;
    throw err;
  }
  stats.checkMs += performance.now() - checkStart;
  return run;
}

/** The chain ends: the original itself, recovered here, must hold exactly what was found. */
async function finishChain(t: TestContext, chain: Chain, ctx: string): Promise<void> {
  const { expected, stats } = chain;
  stats.segments += fs.readdirSync(path.join(chain.root, 'commitlog')).length;
  const recovered = await MessageStore.open(chain.config, { logger: silentLogger });
  let found: Found;
  let probes: Map<string, string>;
  try {
    assert.equal(recovered.getRecoveryReport().lastExitOK, false, `${ctx}: lastExitOK after the last kill`);
    found = await readAll(recovered, expected, null, ctx);
    probes = await putProbes(recovered, found, 'probe-final', ctx);
  } finally {
    await recovered.shutdown();
  }
  for (const [key, id] of probes) expected.set(key, [...(found.ids.get(key) ?? []), id]);
  const reopened = await MessageStore.open(chain.config, { logger: silentLogger });
  onCleanup(t, () => reopened.shutdown());
  assert.equal(reopened.getRecoveryReport().lastExitOK, true, `${ctx}: a clean shutdown, then lastExitOK`);
  await readAll(reopened, expected, null, `${ctx}, after a clean shutdown`);
  await reopened.shutdown();
  for (const ids of expected.values()) stats.messages += ids.length;
  // Done with it: free the disk now rather than when the whole level ends.
  fs.rmSync(chain.root, { recursive: true, force: true });
  fs.rmSync(chain.scratch, { recursive: true, force: true });
}

/** How the producers of one cycle put: a flood, a trickle, or now and then a single message. */
function pacing(
  random: () => number,
  level: Level,
): { name: string; producers: number; pauseChance: number; pauseMaxMs: number } {
  const r = random();
  if (r < 0.5) {
    // Many puts in flight; each producer pauses 1-3 ms, which keeps a chain's store small enough to
    // read back whole after every kill.
    return { name: 'flood', producers: 4 + Math.floor(random() * 9), pauseChance: 1, pauseMaxMs: 3 };
  }
  // Few pages per interval: the pool-on commit is left to its timer.
  if (r < 0.75)
    return { name: 'trickle', producers: 1 + Math.floor(random() * 2), pauseChance: 1, pauseMaxMs: 15 };
  // Pauses up to 2.5 commit intervals: a put may wake the commit service at any point of one.
  const pauseMaxMs = Math.round(2.5 * (level.commitIntervalMs ?? POOL_ON_COMMIT_INTERVAL_MS));
  return { name: 'sparse', producers: 1, pauseChance: 1, pauseMaxMs };
}

async function runLevel(
  t: TestContext,
  level: Level,
  levelIndex: number,
  cycles: number,
  seed: number,
): Promise<void> {
  assertDistBuilt();
  const random = prng((seed ^ Math.imul(levelIndex + 1, 0x9e3779b1)) >>> 0);
  const stats = newStats();
  const started = performance.now();
  const chains = Math.ceil(cycles / CYCLES_PER_CHAIN);
  for (let chainIndex = 0; chainIndex < chains; chainIndex++) {
    const chainCycles = Math.min(CYCLES_PER_CHAIN, cycles - chainIndex * CYCLES_PER_CHAIN);
    const chain = newChain(t, level, stats);
    // One extra kill per chain while the child is still opening: a recovery cut short by a crash.
    const openingKillAt = chainCycles > 1 ? 1 + Math.floor(random() * (chainCycles - 1)) : -1;
    const plans: KillPlan[] = [];
    for (let i = 0; i < chainCycles; i++) {
      if (i === openingKillAt) {
        plans.push({ anchor: 'opening', delayMs: Math.floor(random() * KILL_WHILE_OPENING_MAX_MS) });
      }
      const span = level.killAfterReadyMaxMs - KILL_AFTER_READY_MIN_MS;
      plans.push({ anchor: 'ready', delayMs: KILL_AFTER_READY_MIN_MS + Math.floor(random() * span) });
    }
    for (const [cycle, plan] of plans.entries()) {
      const pace = pacing(random, level);
      const spec: ChildSpec = {
        config: chain.config,
        tag: `c${chainIndex}x${cycle}`,
        seed: Math.floor(random() * 2 ** 31),
        producers: pace.producers,
        pauseChance: pace.pauseChance,
        pauseMaxMs: pace.pauseMaxMs,
        heartbeatMs: HEARTBEAT_MS,
      };
      const ctx =
        `seed ${seed} (TEST_SEED=${seed}), level ${level.name}, chain ${chainIndex}, cycle ${cycle}, ` +
        `kill planned ${plan.delayMs} ms after ${plan.anchor}, ${pace.producers} producers (${pace.name})`;
      await killCycle(chain, cycle, spec, plan, ctx);
    }
    await finishChain(
      t,
      chain,
      `seed ${seed} (TEST_SEED=${seed}), level ${level.name}, chain ${chainIndex}, final open`,
    );
  }
  t.diagnostic(
    `${level.name}: ${stats.kills} kills (${stats.killsWhileOpening} while opening) in ${chains} directories, ` +
      `${stats.acks} acknowledgements checked, ${stats.unackedPresent} unacknowledged puts found stored, ` +
      `${stats.lostAcks} acknowledged puts lost at the tail (oldest ${stats.oldestLoss}), ` +
      `${stats.messages} messages and ${stats.segments} segments at the end, ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s (children ${(stats.childMs / 1000).toFixed(1)} s, ` +
      `checks of copies ${(stats.checkMs / 1000).toFixed(1)} s), seed ${seed}`,
  );
}

describe('crash: SIGKILL of a child process while it puts', () => {
  const seed = testSeed();
  const cycles = cyclesFromEnv();
  const perLevel = Math.ceil(cycles / LEVELS.length);
  for (const [index, level] of LEVELS.entries()) {
    const what =
      level.commitIntervalMs === null
        ? 'nothing acknowledged is lost'
        : `only a tail younger than one commit interval (${level.commitIntervalMs} ms) is lost`;
    it(`${level.name}: ${perLevel} random kills; ${what}`, {
      timeout: 60_000 + perLevel * 5_000,
    }, async (t) => {
      await runLevel(t, level, index, perLevel, seed);
    });
  }

  it('ASYNC_FLUSH, pool on: a put that wakes the commit service shortly before its interval ends does not hold older messages back another interval', async (t) => {
    // The commit service decides per pass whether the interval since its last commit is over
    // (then it commits whatever waits) or not (then only 4 dirty pages are worth a write), and
    // after every pass waits a whole interval again. A put that wakes it shortly before the
    // interval ends makes a pass that commits nothing and restarts the wait: a message
    // acknowledged early in the interval then waits for almost two. Scripted: message 0 right
    // after open (the service's first pass counted as a commit moments before), message 1 an
    // interval minus 150 ms later, then silence; the kill comes 1.5 intervals after message 0.
    // (Should the child take over 150 ms from the service's start to its first put, message 1
    // comes after the interval ended and the check passes without having tested anything.)
    assertDistBuilt();
    const intervalMs = 1000;
    const secondPutAfterMs = intervalMs - 150;
    const level = poolOnLevel(`ASYNC_FLUSH, pool on, ${intervalMs} ms commit interval`, intervalMs, 0);
    const chain = newChain(t, level, newStats());
    const spec: ChildSpec = {
      config: chain.config,
      tag: 'scripted',
      seed: 1,
      producers: 1,
      pauseChance: 0,
      pauseMaxMs: 0,
      heartbeatMs: HEARTBEAT_MS,
      schedule: [secondPutAfterMs],
    };
    const plan: KillPlan = { anchor: 'ready', delayMs: 1.5 * intervalMs };
    const ctx = `level ${level.name}, scripted: puts at 0 and ${secondPutAfterMs} ms, kill at ${plan.delayMs} ms after ready`;
    let run: ChildRun;
    try {
      run = await killCycle(chain, 0, spec, plan, ctx);
    } finally {
      t.diagnostic(
        `${ctx}: ${chain.stats.lostAcks} acknowledged puts lost, oldest ${chain.stats.oldestLoss}`,
      );
    }
    // The scenario must have happened as scripted, or the check above proved nothing.
    const [first, second] = run.acks;
    assert.ok(first !== undefined && second !== undefined, `${ctx}: both puts were acknowledged`);
    assert.ok(second.t - first.t >= secondPutAfterMs - 5, `${ctx}: the second put came late in the interval`);
    assert.ok(
      run.lastSeenT - first.t > intervalMs + SCHEDULING_MARGIN_MS,
      `${ctx}: the child lived more than an interval and the margin after the first put`,
    );
    await finishChain(t, chain, `${ctx}, final open`);
  });
});
