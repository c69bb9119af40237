import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AppendResultView,
  type MessageExt,
  MessageStore,
  type MessageStoreConfigInput,
  type RecoveryReport,
  StoreError,
  silentLogger,
} from '../../src/store/index.js';
import { onCleanup, prng, tempDir, testSeed, waitUntil } from '../support/helpers.js';

/**
 * Corrupt inputs (the list): a flipped bit in a middle record, a truncated last segment,
 * garbage after the last record, a segment of the wrong size, a deleted checkpoint, a consume
 * queue longer than the commit log supports. Each must reopen with a clear report and a
 * consistent store, or be refused with a clear StoreError; none may crash or serve a bad message.
 *
 * The fixtures are stores written through the public API with tiny segments (4 KiB commit log
 * segments, consume queue files of 8 units), so the data spans many files; each case damages a
 * copy behind the store's back and reopens it after a clean shutdown and, where it makes sense,
 * after a "crash" (an `abort` file left in place, which forces abnormal recovery). What every
 * case checks:
 *
 *   - open either resolves or rejects with a StoreError naming the code and the file/offset;
 *   - a refused open changes no file;
 *   - an open store's report says what was cut; every message getMessage serves, over every
 *     queue, is one that was put (topic, queue, queue offset, commit log offset, body byte for
 *     byte, tags, keys), with status FOUND; none is served twice; exactly the expected ones are;
 *   - getMaxOffsetInQueue is the number of messages the queue holds;
 *   - a new put takes the next queue offset (and the end of the log) and reads back;
 *   - no file changed beyond what the report names.
 *
 * Randomness is seeded: rerun a failure with TEST_SEED=<seed printed in the message>.
 */

const SEED = testSeed();
const SEGMENT_BYTES = 4096;
const CQ_UNIT_BYTES = 20;
const CQ_UNITS_PER_FILE = 8;
const CQ_FILE_BYTES = CQ_UNIT_BYTES * CQ_UNITS_PER_FILE;
/** Messages per fixture: ~15 KiB of records, 4-5 commit log segments, 3-4 consume queue files per queue. */
const FIXTURE_MESSAGES = 72;
const QUEUES: readonly (readonly [topic: string, queueId: number])[] = [
  ['TopicA', 0],
  ['TopicA', 1],
  ['TopicB', 0],
];
const MESSAGE_MAGIC_CODE_V1 = 0xdaa320a7 | 0;
/** Bytes of a record before its body with IPv4 hosts (TOTALSIZE .. PREPARED TX OFFSET, body length). */
const BODY_POSITION = 88;
const MODES = ['clean', 'crash'] as const;
type Mode = (typeof MODES)[number];

function why(context: string): string {
  return `${context} (seed ${SEED}: rerun with TEST_SEED=${SEED})`;
}

// ---------------------------------------------------------------------------------------------
// Fixture: a store written through the public API, with a record of every message put.
// ---------------------------------------------------------------------------------------------

interface Written {
  readonly topic: string;
  readonly queueId: number;
  readonly queueOffset: number;
  readonly body: Buffer;
  readonly tags: string;
  /** Undefined for the puts made after reopening. */
  readonly keys: string | undefined;
  readonly wroteOffset: number;
  readonly wroteBytes: number;
  readonly storeTimestamp: number;
}

interface Fixture {
  readonly root: string;
  readonly config: MessageStoreConfigInput;
  readonly segmentBytes: number;
  readonly written: readonly Written[];
}

type Random = () => number;
type TestContext = Parameters<typeof tempDir>[0];

function randomInt(random: Random, min: number, maxExclusive: number): number {
  return min + Math.floor(random() * (maxExclusive - min));
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[randomInt(random, 0, items.length)] as T;
}

function randomBytes(random: Random, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = randomInt(random, 0, 256);
  return bytes;
}

function queueKey(topic: string, queueId: number): string {
  return `${topic}/${queueId}`;
}

function messageKey(topic: string, queueId: number, queueOffset: number): string {
  return `${topic}/${queueId}#${queueOffset}`;
}

function keyOf(w: Written): string {
  return messageKey(w.topic, w.queueId, w.queueOffset);
}

function endOf(w: Written): number {
  return w.wroteOffset + w.wroteBytes;
}

function segmentStart(offset: number, segmentBytes: number): number {
  return offset - (offset % segmentBytes);
}

function segmentName(offset: number, segmentBytes: number): string {
  return String(segmentStart(offset, segmentBytes)).padStart(20, '0');
}

function appendOf(result: { appendResult: AppendResultView | null }, context: string): AppendResultView {
  assert.ok(result.appendResult !== null, why(`${context}: the put was appended`));
  return result.appendResult;
}

/**
 * Writes a store: `messages` puts over QUEUES with random bodies (16-175 bytes), tags and keys,
 * 2 ms apart every 10 puts so store timestamps advance. It goes on until the last segment holds
 * at least 6 records and has room for 1200 bytes more; then the final two puts come 3 ms after
 * the rest: every record but those has a store time before the checkpoint's physicMsgTimestamp,
 * so after a "crash" the checkpoint still says they were durable. Shut down cleanly.
 */
async function writeFixture(
  root: string,
  random: Random,
  options: { segmentBytes?: number; messages?: number; propCrc?: boolean } = {},
): Promise<Fixture> {
  const segmentBytes = options.segmentBytes ?? SEGMENT_BYTES;
  const messages = options.messages ?? FIXTURE_MESSAGES;
  const config: MessageStoreConfigInput = {
    storePathRootDir: root,
    mappedFileSizeCommitLog: segmentBytes,
    mappedFileSizeConsumeQueue: CQ_FILE_BYTES,
    ...(options.propCrc === true ? { enabledAppendPropCRC: true, forceVerifyPropCRC: true } : {}),
  };
  const store = await MessageStore.open(config, { logger: silentLogger });
  const written: Written[] = [];
  // Each run of three puts goes to the three queues in a random order: the queues stay balanced.
  let order: (readonly [string, number])[] = [];
  const put = async (i: number): Promise<void> => {
    if (order.length === 0) order = [...QUEUES].sort(() => random() - 0.5);
    const [topic, queueId] = order.pop() as readonly [string, number];
    const body = randomBytes(random, randomInt(random, 16, 176));
    const tags = `tag${randomInt(random, 0, 5)}`;
    const keys = `key-${i}`;
    const result = await store.putMessage({ topic, queueId, body, tags, keys });
    assert.equal(result.status, 'PUT_OK', why(`fixture put ${i}: ${result.reason ?? ''}`));
    const append = appendOf(result, `fixture put ${i}`);
    written.push({
      topic,
      queueId,
      queueOffset: append.queueOffset,
      body,
      tags,
      keys,
      wroteOffset: append.wroteOffset,
      wroteBytes: append.wroteBytes,
      storeTimestamp: append.storeTimestamp,
    });
  };
  const last = (): Written | undefined => written.at(-1);
  const inLastSegment = (): number => {
    const from = segmentStart(last()?.wroteOffset ?? 0, segmentBytes);
    return written.filter((w) => w.wroteOffset >= from).length;
  };
  const room = (): number => segmentBytes - (endOf(last() as Written) % segmentBytes);
  let i = 0;
  while (i < messages - 2 || inLastSegment() < 6 || room() < 1200) {
    await put(i++);
    if (i % 10 === 0) await sleep(2);
  }
  await sleep(3);
  await put(i++);
  await put(i++);
  await store.shutdown();
  return { root, config, segmentBytes, written };
}

type FixtureKind = 'default' | 'propCrc' | 'lone';
const fixtures = new Map<FixtureKind, Promise<Fixture>>();
const fixtureDirs: string[] = [];
after(() => {
  for (const dir of fixtureDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * The fixtures, written once per file run (from the seed) and copied by each case:
 *   default  4 KiB segments, body CRC only
 *   propCrc  the same with enabledAppendPropCRC + forceVerifyPropCRC (a CRC over whole records)
 *   lone     one 8 KiB segment holding 20 records
 */
function sharedFixture(kind: FixtureKind): Promise<Fixture> {
  let fixture = fixtures.get(kind);
  if (fixture === undefined) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), `rmq-corrupt-${kind}-`));
    fixtureDirs.push(root);
    const salt = kind === 'default' ? 1 : kind === 'propCrc' ? 2 : 3;
    const random = prng(SEED ^ (salt << 24));
    fixture = writeFixture(
      root,
      random,
      kind === 'lone' ? { segmentBytes: 8192, messages: 20 } : { propCrc: kind === 'propCrc' },
    );
    fixtures.set(kind, fixture);
  }
  return fixture;
}

/** Copies a directory tree file by file (fs.cpSync is an order of magnitude slower here). */
function copyTree(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) copyTree(source, target);
    else fs.copyFileSync(source, target);
  }
}

/** A copy of the fixture in a fresh directory; `crash` leaves an `abort` file (abnormal recovery). */
function cloneFixture(t: TestContext, fixture: Fixture, mode: Mode): Fixture {
  const root = tempDir(t, 'rmq-corrupt-');
  copyTree(fixture.root, root);
  if (mode === 'crash') fs.writeFileSync(path.join(root, 'abort'), String(process.pid));
  return { ...fixture, root, config: { ...fixture.config, storePathRootDir: root } };
}

function commitLogDir(root: string): string {
  return path.join(root, 'commitlog');
}

function queueDir(root: string, topic: string, queueId: number): string {
  return path.join(root, 'consumequeue', topic, String(queueId));
}

function segmentPath(fixture: Fixture, offset: number): string {
  return path.join(commitLogDir(fixture.root), segmentName(offset, fixture.segmentBytes));
}

function segmentNames(root: string): string[] {
  return fs.readdirSync(commitLogDir(root)).sort();
}

function lastSegmentStart(fixture: Fixture): number {
  const last = fixture.written.at(-1) as Written;
  return segmentStart(last.wroteOffset, fixture.segmentBytes);
}

/** Reads `length` bytes of the commit log at `offset` from its segment file. */
function readLog(fixture: Fixture, offset: number, length: number): Buffer {
  const fd = fs.openSync(segmentPath(fixture, offset), 'r');
  try {
    const bytes = Buffer.alloc(length);
    const n = fs.readSync(fd, bytes, 0, length, offset % fixture.segmentBytes);
    assert.equal(n, length, 'the bytes are in the segment');
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrites commit log bytes at `offset` in place (damage done behind the store's back). */
function writeLog(fixture: Fixture, offset: number, bytes: Buffer): void {
  const fd = fs.openSync(segmentPath(fixture, offset), 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset % fixture.segmentBytes);
  } finally {
    fs.closeSync(fd);
  }
}

function flipBit(fixture: Fixture, offset: number, bit: number): void {
  const byte = readLog(fixture, offset, 1);
  writeLog(fixture, offset, Buffer.from([(byte[0] as number) ^ (1 << bit)]));
}

// ---------------------------------------------------------------------------------------------
// Record layout (IPv4 hosts, V1 topics: what the fixture writes; checked before use).
// ---------------------------------------------------------------------------------------------

const FIELDS = [
  'TOTALSIZE',
  'MAGICCODE',
  'BODYCRC',
  'QUEUEID',
  'FLAG',
  'QUEUEOFFSET',
  'PHYSICALOFFSET',
  'SYSFLAG',
  'BORNTIMESTAMP',
  'BORNHOST',
  'STORETIMESTAMP',
  'STOREHOSTADDRESS',
  'RECONSUMETIMES',
  'PREPAREDTXOFFSET',
  'BODYLENGTH',
  'BODY',
  'TOPICLENGTH',
  'TOPIC',
  'PROPERTIESLENGTH',
  'PROPERTIES',
] as const;
type Field = (typeof FIELDS)[number];

/**
 * Fields whose damage the recovery scan detects with the default config (body CRC only): their
 * own check (magic, CRC, position), or the record's lengths no longer adding up to TOTALSIZE.
 */
const SCAN_CHECKED_FIELDS: readonly Field[] = [
  'TOTALSIZE',
  'MAGICCODE',
  'BODYCRC',
  'PHYSICALOFFSET',
  'BODYLENGTH',
  'BODY',
  'TOPICLENGTH',
  'PROPERTIESLENGTH',
];
/** The read path also checks that the record's QUEUEOFFSET is the unit's. */
const READ_CHECKED_FIELDS: readonly Field[] = [...SCAN_CHECKED_FIELDS, 'QUEUEOFFSET'];

function fieldRanges(record: Buffer): Record<Field, readonly [number, number]> {
  assert.equal(record.readInt32BE(4), MESSAGE_MAGIC_CODE_V1, 'the fixture writes V1 records');
  assert.equal(record.readInt32BE(36) & 0x30, 0, 'the fixture writes IPv4 hosts');
  const bodyLength = record.readInt32BE(84);
  const topicAt = BODY_POSITION + bodyLength;
  const topicLength = record.readInt8(topicAt);
  const propertiesAt = topicAt + 1 + topicLength;
  const ranges: Record<Field, readonly [number, number]> = {
    TOTALSIZE: [0, 4],
    MAGICCODE: [4, 8],
    BODYCRC: [8, 12],
    QUEUEID: [12, 16],
    FLAG: [16, 20],
    QUEUEOFFSET: [20, 28],
    PHYSICALOFFSET: [28, 36],
    SYSFLAG: [36, 40],
    BORNTIMESTAMP: [40, 48],
    BORNHOST: [48, 56],
    STORETIMESTAMP: [56, 64],
    STOREHOSTADDRESS: [64, 72],
    RECONSUMETIMES: [72, 76],
    PREPAREDTXOFFSET: [76, 84],
    BODYLENGTH: [84, 88],
    BODY: [BODY_POSITION, topicAt],
    TOPICLENGTH: [topicAt, topicAt + 1],
    TOPIC: [topicAt + 1, propertiesAt],
    PROPERTIESLENGTH: [propertiesAt, propertiesAt + 2],
    PROPERTIES: [propertiesAt + 2, record.length],
  };
  assert.equal(record.readInt16BE(propertiesAt) + propertiesAt + 2, record.length, 'the layout adds up');
  return ranges;
}

interface Flip {
  readonly victim: Written;
  readonly field: Field;
  /** Commit log offset of the flipped byte. */
  readonly offset: number;
  readonly bit: number;
  readonly describe: string;
}

/** Picks a bit of `field` of `victim` with the PRNG. */
function planFlip(fixture: Fixture, random: Random, victim: Written, field: Field): Flip {
  const record = readLog(fixture, victim.wroteOffset, victim.wroteBytes);
  const [from, to] = fieldRanges(record)[field];
  assert.ok(to > from, `field ${field} has bytes`);
  const byte = randomInt(random, from, to);
  const bit = randomInt(random, 0, 8);
  return {
    victim,
    field,
    offset: victim.wroteOffset + byte,
    bit,
    describe:
      `bit ${bit} of ${field} byte ${byte - from} of ${keyOf(victim)} ` +
      `(record at commit log offset ${victim.wroteOffset})`,
  };
}

// ---------------------------------------------------------------------------------------------
// Opening, snapshots, reading everything back.
// ---------------------------------------------------------------------------------------------

type Outcome =
  | { readonly store: MessageStore; readonly error: null }
  | { readonly store: null; readonly error: StoreError };

/** Opens; anything thrown that is not a StoreError fails the test. */
async function tryOpen(t: TestContext, fixture: Fixture, context: string): Promise<Outcome> {
  try {
    const store = await MessageStore.open(fixture.config, { logger: silentLogger });
    onCleanup(t, () => store.shutdown());
    return { store, error: null };
  } catch (err) {
    if (!(err instanceof StoreError)) {
      assert.fail(
        why(
          `${context}: open threw something other than a StoreError: ${(err as Error)?.stack ?? String(err)}`,
        ),
      );
    }
    return { store: null, error: err };
  }
}

async function openOk(t: TestContext, fixture: Fixture, context: string): Promise<MessageStore> {
  const outcome = await tryOpen(t, fixture, context);
  if (outcome.error !== null) {
    assert.fail(
      why(`${context}: open must succeed, it refused: ${outcome.error.code} ${outcome.error.message}`),
    );
  }
  return outcome.store;
}

/** Open must reject with ERR_STORE_FILE_INVALID whose message matches every part. */
async function openRefused(
  t: TestContext,
  fixture: Fixture,
  context: string,
  ...messageParts: RegExp[]
): Promise<StoreError> {
  const outcome = await tryOpen(t, fixture, context);
  if (outcome.store !== null) {
    const report = JSON.stringify(outcome.store.getRecoveryReport());
    await outcome.store.shutdown();
    assert.fail(why(`${context}: open must refuse, it opened with ${report}`));
  }
  const error = outcome.error;
  assert.equal(error.code, 'ERR_STORE_FILE_INVALID', why(`${context}: ${error.message}`));
  for (const part of messageParts) {
    assert.match(error.message, part, why(`${context}: the error names what is wrong`));
  }
  assert.equal(
    fs.existsSync(path.join(fixture.root, 'lock')),
    false,
    why(`${context}: the refused open released the lock`),
  );
  return error;
}

/**
 * Every file of the store with its bytes, by path relative to the root. `withRootFiles` adds the
 * root's own files (checkpoint, abort); `lock` is never included.
 */
function snapshotTree(root: string, withRootFiles: boolean): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else files.set(path.relative(root, full), fs.readFileSync(full));
    }
  };
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    const full = path.join(root, entry.name);
    // config/ holds the store's bookkeeping (the topic queue table every open rewrites), like the
    // checkpoint: compared only when nothing at all may change.
    if (entry.isDirectory()) {
      if (withRootFiles || entry.name !== 'config') walk(full);
    } else if (withRootFiles && entry.name !== 'lock') files.set(entry.name, fs.readFileSync(full));
  }
  return files;
}

/** Files added, removed or changed since `before`, sorted. */
function changedFiles(before: Map<string, Buffer>, root: string, withRootFiles: boolean): string[] {
  const after = snapshotTree(root, withRootFiles);
  const changed = new Set<string>();
  for (const [name, bytes] of before) {
    const now = after.get(name);
    if (now === undefined || !now.equals(bytes)) changed.add(name);
  }
  for (const name of after.keys()) if (!before.has(name)) changed.add(name);
  return [...changed].sort();
}

function assertNothingChanged(before: Map<string, Buffer>, root: string, context: string): void {
  assert.deepEqual(changedFiles(before, root, true), [], why(`${context}: the refused open changed no file`));
}

/**
 * For cases that must be refused: damages `copy` (`damage` returns how to undo it), expects the
 * open to be refused with the given message parts and to change no file, then undoes the damage
 * so the same copy serves the next case (copying a store costs more than opening it).
 */
async function expectRefusedThenRepair(
  t: TestContext,
  copy: Fixture,
  context: string,
  damage: () => () => void,
  ...messageParts: RegExp[]
): Promise<void> {
  const repair = damage();
  const before = snapshotTree(copy.root, true);
  await openRefused(t, copy, context, ...messageParts);
  assertNothingChanged(before, copy.root, context);
  repair();
}

/** The copy's data files are the fixture's again (after cases that damaged and repaired it). */
function assertRepaired(fixture: Fixture, copy: Fixture, context: string): void {
  const pristine = snapshotTree(fixture.root, false);
  assert.deepEqual(changedFiles(pristine, copy.root, false), [], why(`${context}: the copy was repaired`));
}

/** Cuts a file to `size` bytes (or extends it with zeros); returns the undo. */
function resize(file: string, size: number): () => void {
  const original = fs.readFileSync(file);
  fs.truncateSync(file, size);
  return () => fs.writeFileSync(file, original);
}

/** Every changed file is one the case allows (a path or a directory prefix). */
function assertChangedOnly(
  before: Map<string, Buffer>,
  root: string,
  allowed: readonly string[],
  context: string,
): string[] {
  const changed = changedFiles(before, root, false);
  const unexpected = changed.filter(
    (name) => !allowed.some((a) => name === a || name.startsWith(`${a}${path.sep}`)),
  );
  assert.deepEqual(unexpected, [], why(`${context}: files changed beyond what the report names`));
  return changed;
}

function cqPath(topic: string, queueId: number): string {
  return path.join('consumequeue', topic, String(queueId));
}

function clPath(name: string): string {
  return path.join('commitlog', name);
}

interface ReadBack {
  readonly served: Map<string, MessageExt>;
  readonly skippedDamaged: number;
}

/**
 * Reads every queue the store has (and every queue written) from its min to its max offset with
 * getMessage. Every message served must be one that was put, identical, served from its own
 * queue, at most once; an empty batch is only allowed when it skipped damaged records.
 */
async function readEverything(
  store: MessageStore,
  written: readonly Written[],
  context: string,
): Promise<ReadBack> {
  const byKey = new Map(written.map((w) => [keyOf(w), w]));
  const queues = new Map<string, readonly [string, number]>();
  for (const w of written) queues.set(queueKey(w.topic, w.queueId), [w.topic, w.queueId]);
  for (const queue of store.getConsumeQueueStore().all()) {
    queues.set(queueKey(queue.topic, queue.queueId), [queue.topic, queue.queueId]);
  }
  const served = new Map<string, MessageExt>();
  let skippedDamaged = 0;
  for (const [name, [topic, queueId]] of queues) {
    const min = store.getMinOffsetInQueue(topic, queueId);
    const max = store.getMaxOffsetInQueue(topic, queueId);
    if (min < 0) continue;
    let offset = min;
    while (offset < max) {
      const result = await store.getMessage('corrupt-input', topic, queueId, offset, 32);
      const at = `${context}: getMessage(${name}, ${offset})`;
      assert.ok(
        result.nextBeginOffset > offset,
        why(`${at} makes progress (status ${result.status}, next ${result.nextBeginOffset})`),
      );
      skippedDamaged += result.skippedDamaged;
      if (result.messages.length === 0) {
        assert.equal(result.status, 'OFFSET_FOUND_NULL', why(`${at}: an empty batch`));
        assert.ok(
          result.skippedDamaged > 0,
          why(`${at}: an empty batch only when damaged records were skipped`),
        );
      } else {
        assert.equal(result.status, 'FOUND', why(at));
      }
      for (const message of result.messages) {
        const key = messageKey(message.topic, message.queueId, message.queueOffset);
        const detail = `${key} at commit log offset ${message.commitLogOffset}`;
        assert.equal(message.topic, topic, why(`${at} served a message of another topic: ${detail}`));
        assert.equal(message.queueId, queueId, why(`${at} served a message of another queue: ${detail}`));
        const put = byKey.get(key);
        assert.ok(put !== undefined, why(`${at} served a message that was never put: ${detail}`));
        assert.equal(message.commitLogOffset, put.wroteOffset, why(`${at}: ${detail} is where it was put`));
        assert.ok(message.body.equals(put.body), why(`${at}: ${detail} has the body it was put with`));
        assert.equal(message.tags, put.tags, why(`${at}: ${detail} has its tags`));
        assert.equal(message.keys, put.keys, why(`${at}: ${detail} has its keys`));
        assert.equal(message.storeSize, put.wroteBytes, why(`${at}: ${detail} has its size`));
        assert.ok(!served.has(key), why(`${at}: ${detail} served twice`));
        served.set(key, message);
      }
      offset = result.nextBeginOffset;
    }
  }
  return { served, skippedDamaged };
}

function assertServedExactly(readBack: ReadBack, expected: readonly Written[], context: string): void {
  const expectedKeys = new Set(expected.map(keyOf));
  const missing = [...expectedKeys].filter((key) => !readBack.served.has(key));
  const extra = [...readBack.served.keys()].filter((key) => !expectedKeys.has(key));
  assert.deepEqual(
    { missing: missing.slice(0, 10), missingCount: missing.length },
    { missing: [], missingCount: 0 },
    why(`${context}: every message expected is served`),
  );
  assert.deepEqual(extra, [], why(`${context}: no message beyond those expected is served`));
}

/** Queue offsets a consumer subscribed to `tag` gets from the whole queue. */
async function readTagged(
  store: MessageStore,
  topic: string,
  queueId: number,
  tag: string,
  context: string,
): Promise<number[]> {
  const offsets: number[] = [];
  const max = store.getMaxOffsetInQueue(topic, queueId);
  let offset = Math.max(0, store.getMinOffsetInQueue(topic, queueId));
  while (offset < max) {
    const result = await store.getMessage('corrupt-input', topic, queueId, offset, 32, { tags: [tag] });
    assert.ok(result.nextBeginOffset > offset, why(`${context}: getMessage(${offset}) makes progress`));
    for (const message of result.messages) {
      assert.equal(message.tags, tag, why(`${context}: only messages with the tag`));
      offsets.push(message.queueOffset);
    }
    offset = result.nextBeginOffset;
  }
  return offsets;
}

/** The next queue offset of each queue, from the records it holds (a prefix of what was put). */
function nextOffsets(records: readonly Written[]): Map<string, number> {
  const next = new Map<string, number>();
  for (const [topic, queueId] of QUEUES) next.set(queueKey(topic, queueId), 0);
  for (const w of records) {
    const key = queueKey(w.topic, w.queueId);
    next.set(key, Math.max(next.get(key) ?? 0, w.queueOffset + 1));
  }
  return next;
}

function assertQueueMax(store: MessageStore, expected: ReadonlyMap<string, number>, context: string): void {
  for (const [key, max] of expected) {
    const [topic, queueIdText] = key.split('/') as [string, string];
    assert.equal(
      store.getMaxOffsetInQueue(topic, Number(queueIdText)),
      max,
      why(`${context}: getMaxOffsetInQueue(${key}) is the number of messages the queue holds`),
    );
  }
}

/**
 * One new put per queue: it takes the queue's next offset (the first one also the end of the
 * log, or the next segment's start when it does not fit), is dispatched, and reads back.
 */
async function assertPutsContinue(
  store: MessageStore,
  random: Random,
  expectedNext: ReadonlyMap<string, number>,
  logEnd: number,
  segmentBytes: number,
  context: string,
): Promise<Written[]> {
  let expectedOffset = logEnd;
  const added: Written[] = [];
  for (const [key, next] of expectedNext) {
    const [topic, queueIdText] = key.split('/') as [string, string];
    const queueId = Number(queueIdText);
    const body = randomBytes(random, randomInt(random, 8, 64));
    const result = await store.putMessage({ topic, queueId, body, tags: 'after' });
    assert.equal(
      result.status,
      'PUT_OK',
      why(`${context}: a put to ${key} after reopening: ${result.reason ?? ''}`),
    );
    const append = appendOf(result, `${context}: a put to ${key}`);
    assert.equal(append.queueOffset, next, why(`${context}: a put to ${key} takes the queue's next offset`));
    const room = segmentBytes - (expectedOffset % segmentBytes);
    const at = room >= append.wroteBytes + 8 ? expectedOffset : expectedOffset + room;
    assert.equal(
      append.wroteOffset,
      at,
      why(`${context}: a put to ${key} is appended at the end of the log`),
    );
    expectedOffset = at + append.wroteBytes;
    await waitUntil(
      () => store.getMaxOffsetInQueue(topic, queueId) > next,
      why(`${context}: the put to ${key} being dispatched`),
    );
    const read = await store.getMessage('corrupt-input', topic, queueId, next, 1);
    assert.equal(read.status, 'FOUND', why(`${context}: the new message of ${key} reads back`));
    assert.ok(read.messages[0]?.body.equals(body), why(`${context}: the new message of ${key} has its body`));
    added.push({
      topic,
      queueId,
      queueOffset: next,
      body,
      tags: 'after',
      keys: undefined,
      wroteOffset: append.wroteOffset,
      wroteBytes: append.wroteBytes,
      storeTimestamp: append.storeTimestamp,
    });
  }
  return added;
}

function report(store: MessageStore): RecoveryReport {
  return store.getRecoveryReport();
}

/** The store after a recovery that changed nothing the fixture wrote: everything served, puts go on. */
async function assertWholeStore(
  store: MessageStore,
  fixture: Fixture,
  random: Random,
  context: string,
): Promise<Written[]> {
  const readBack = await readEverything(store, fixture.written, context);
  assert.equal(readBack.skippedDamaged, 0, why(`${context}: no damaged record met`));
  assertServedExactly(readBack, fixture.written, context);
  const next = nextOffsets(fixture.written);
  assertQueueMax(store, next, context);
  const end = endOf(fixture.written.at(-1) as Written);
  assert.equal(store.getMaxPhyOffset(), end, why(`${context}: the log ends where it did`));
  return assertPutsContinue(store, random, next, end, fixture.segmentBytes, context);
}

// ---------------------------------------------------------------------------------------------
// Consume queue files.
// ---------------------------------------------------------------------------------------------

function cqUnit(commitLogOffset: number, size: number, tagsCode = 0): Buffer {
  const unit = Buffer.alloc(CQ_UNIT_BYTES);
  unit.writeBigInt64BE(BigInt(commitLogOffset), 0);
  unit.writeInt32BE(size, 8);
  unit.writeBigInt64BE(BigInt(tagsCode), 12);
  return unit;
}

/** Writes `unit` at queue offset `index` of a queue, creating (pre-sized) the file if needed. */
function writeCqUnit(root: string, topic: string, queueId: number, index: number, unit: Buffer): void {
  const logical = index * CQ_UNIT_BYTES;
  const from = logical - (logical % CQ_FILE_BYTES);
  const file = path.join(queueDir(root, topic, queueId), String(from).padStart(20, '0'));
  if (!fs.existsSync(file)) fs.writeFileSync(file, Buffer.alloc(CQ_FILE_BYTES));
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, unit, 0, unit.length, logical - from);
  } finally {
    fs.closeSync(fd);
  }
}

function cqFiles(root: string, topic: string, queueId: number): string[] {
  return fs.readdirSync(queueDir(root, topic, queueId)).sort();
}

function recordsOf(written: readonly Written[], topic: string, queueId: number): Written[] {
  return written.filter((w) => w.topic === topic && w.queueId === queueId);
}

// =============================================================================================
// The cases.
// =============================================================================================

describe('corrupt input: a flipped bit in a middle record', () => {
  it('in the last segment, which recovery scans, with valid records after it: refused, naming the offset and file, nothing changed (clean and crash)', async (t) => {
    const random = prng(SEED ^ 0x0101);
    const fixture = await sharedFixture('default');
    const lastFrom = lastSegmentStart(fixture);
    const final = fixture.written.at(-1) as Written;
    // Victims with valid records after them whose predecessor was stored before the checkpoint's
    // physicMsgTimestamp: durable data, not a write a crash tore.
    const victims = fixture.written.filter(
      (w, i) =>
        w.wroteOffset >= lastFrom &&
        i < fixture.written.length - 2 &&
        (fixture.written[i - 1]?.storeTimestamp ?? 0) < final.storeTimestamp,
    );
    assert.ok(victims.length >= 3, why(`the last segment holds candidate victims (${victims.length})`));
    for (const mode of MODES) {
      const copy = cloneFixture(t, fixture, mode);
      for (let round = 0; round < 6; round++) {
        const flip = planFlip(copy, random, pick(random, victims), pick(random, SCAN_CHECKED_FIELDS));
        await expectRefusedThenRepair(
          t,
          copy,
          `${mode}: ${flip.describe}`,
          () => {
            flipBit(copy, flip.offset, flip.bit);
            return () => flipBit(copy, flip.offset, flip.bit);
          },
          new RegExp(`offset ${flip.victim.wroteOffset}\\b`),
          new RegExp(segmentName(flip.victim.wroteOffset, copy.segmentBytes)),
          /damaged/,
        );
      }
      assertRepaired(fixture, copy, mode);
    }
  });

  it('in an older segment recovery does not scan (consume queues intact): opens, getMessage skips only that record (clean)', async (t) => {
    const random = prng(SEED ^ 0x0102);
    const fixture = await sharedFixture('default');
    const lastFrom = lastSegmentStart(fixture);
    const victims = fixture.written.filter((w) => endOf(w) <= lastFrom);
    for (let round = 0; round < 4; round++) {
      const copy = cloneFixture(t, fixture, 'clean');
      const flip = planFlip(copy, random, pick(random, victims), pick(random, READ_CHECKED_FIELDS));
      const context = `clean, older segment: ${flip.describe}`;
      flipBit(copy, flip.offset, flip.bit);
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      const r = report(store);
      assert.equal(r.lastExitOK, true, why(context));
      assert.equal(r.commitLog.truncatedBytes, 0, why(`${context}: nothing cut`));
      assert.equal(r.commitLog.stopReason, null, why(`${context}: the scan ended cleanly`));
      assert.equal(r.consumeQueues.unitsCut, 0, why(`${context}: no unit cut`));
      assertChangedOnly(before, copy.root, [], context);

      const readBack = await readEverything(store, copy.written, context);
      assert.equal(readBack.skippedDamaged, 1, why(`${context}: the damaged record is skipped, once`));
      assertServedExactly(
        readBack,
        copy.written.filter((w) => w !== flip.victim),
        context,
      );
      // The damaged message keeps its queue offset: the queue still counts it (skipped on read).
      const next = nextOffsets(copy.written);
      assertQueueMax(store, next, context);
      if (flip.field !== 'QUEUEOFFSET') {
        // (A wrong QUEUEOFFSET is only wrong relative to a queue; by offset the record is whole.)
        assert.equal(
          await store.lookMessageByOffset(flip.victim.wroteOffset),
          null,
          why(`${context}: lookMessageByOffset refuses the damaged record`),
        );
      }
      await assertPutsContinue(store, random, next, store.getMaxPhyOffset(), copy.segmentBytes, context);
      await store.shutdown();
    }
  });

  it('in an older segment after a crash: the recovery scan meets it among durable data and refuses, nothing changed', async (t) => {
    const random = prng(SEED ^ 0x0103);
    const fixture = await sharedFixture('default');
    const lastFrom = lastSegmentStart(fixture);
    const victims = fixture.written.filter((w) => endOf(w) <= lastFrom);
    // After a crash, recovery scans from the last segment whose first record is older than the
    // checkpoint's timestamps minus 3 s: with the whole fixture written within 3 s, that is the
    // first segment, so the scan meets every victim.
    const first = fixture.written[0] as Written;
    const final = fixture.written.at(-1) as Written;
    assert.ok(
      final.storeTimestamp - first.storeTimestamp < 3000,
      why(`the fixture was written within 3 s (${final.storeTimestamp - first.storeTimestamp} ms)`),
    );
    const copy = cloneFixture(t, fixture, 'crash');
    for (let round = 0; round < 5; round++) {
      const flip = planFlip(copy, random, pick(random, victims), pick(random, SCAN_CHECKED_FIELDS));
      await expectRefusedThenRepair(
        t,
        copy,
        `crash, older segment: ${flip.describe}`,
        () => {
          flipBit(copy, flip.offset, flip.bit);
          return () => flipBit(copy, flip.offset, flip.bit);
        },
        new RegExp(`offset ${flip.victim.wroteOffset}\\b`),
        new RegExp(segmentName(flip.victim.wroteOffset, copy.segmentBytes)),
      );
    }
    assertRepaired(fixture, copy, 'crash');
  });

  it('with whole-record CRCs (forceVerifyPropCRC), a bit of any field, topic and properties included, is caught: skipped in an older segment, refused in the last', async (t) => {
    const random = prng(SEED ^ 0x0104);
    const fixture = await sharedFixture('propCrc');
    const lastFrom = lastSegmentStart(fixture);
    const final = fixture.written.at(-1) as Written;
    const older = fixture.written.filter((w) => endOf(w) <= lastFrom);
    const inLast = fixture.written.filter(
      (w, i) =>
        w.wroteOffset >= lastFrom &&
        i < fixture.written.length - 2 &&
        (fixture.written[i - 1]?.storeTimestamp ?? 0) < final.storeTimestamp,
    );
    // The fields no body CRC covers, then some picked at random; each in both kinds of segment.
    // One copy serves every round: the opens change no data file (checked), the bit is flipped back.
    const fields: Field[] = ['TOPIC', 'PROPERTIES', 'QUEUEID', 'FLAG', 'STORETIMESTAMP'];
    while (fields.length < 7) fields.push(pick(random, FIELDS));
    const copy = cloneFixture(t, fixture, 'clean');
    for (let round = 0; round < fields.length * 2; round++) {
      const field = fields[round >> 1] as Field;
      const inOlder = round % 2 === 0;
      const flip = planFlip(copy, random, pick(random, inOlder ? older : inLast), field);
      const context = `forceVerifyPropCRC, ${inOlder ? 'older' : 'last'} segment: ${flip.describe}`;
      const damage = (): (() => void) => {
        flipBit(copy, flip.offset, flip.bit);
        return () => flipBit(copy, flip.offset, flip.bit);
      };
      if (!inOlder) {
        await expectRefusedThenRepair(
          t,
          copy,
          context,
          damage,
          new RegExp(`offset ${flip.victim.wroteOffset}\\b`),
        );
        continue;
      }
      const repair = damage();
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      const readBack = await readEverything(store, copy.written, context);
      assert.equal(readBack.skippedDamaged, 1, why(`${context}: the damaged record is skipped`));
      assertServedExactly(
        readBack,
        copy.written.filter((w) => w !== flip.victim),
        context,
      );
      assertQueueMax(store, nextOffsets(copy.written), context);
      assert.equal(await store.lookMessageByOffset(flip.victim.wroteOffset), null, why(context));
      await store.shutdown();
      assertChangedOnly(before, copy.root, [], context);
      repair();
    }
    assertRepaired(fixture, copy, 'forceVerifyPropCRC');
  });

  it('a flipped bit in the TOPIC or QUEUEID of a record in an older segment (body CRC only): the record is not served from its queue as a message of another', async (t) => {
    // Neither field is covered by the body CRC, so only the read path can notice: the record it
    // reads through a unit of TopicX/q must say TopicX/q.
    const random = prng(SEED ^ 0x0105);
    const fixture = await sharedFixture('default');
    const lastFrom = lastSegmentStart(fixture);
    const victims = fixture.written.filter((w) => endOf(w) <= lastFrom);
    for (const field of ['TOPIC', 'QUEUEID'] as const) {
      const copy = cloneFixture(t, fixture, 'clean');
      const victim = pick(random, victims);
      const record = readLog(copy, victim.wroteOffset, victim.wroteBytes);
      const [from, to] = fieldRanges(record)[field];
      // TOPIC: the case bit of a letter (the topic stays a legal name); QUEUEID: a low bit.
      const offset =
        field === 'TOPIC' ? victim.wroteOffset + randomInt(random, from, to) : victim.wroteOffset + to - 1;
      const bit = field === 'TOPIC' ? 5 : randomInt(random, 0, 4);
      const context = `clean, older segment: bit ${bit} of ${field} of ${keyOf(victim)} at ${victim.wroteOffset}`;
      flipBit(copy, offset, bit);
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      assertChangedOnly(before, copy.root, [], context);
      const readBack = await readEverything(store, copy.written, context);
      assert.equal(readBack.skippedDamaged, 1, why(`${context}: the damaged record is skipped`));
      assertServedExactly(
        readBack,
        copy.written.filter((w) => w !== victim),
        context,
      );
      const next = nextOffsets(copy.written);
      assertQueueMax(store, next, context);
      await assertPutsContinue(store, random, next, store.getMaxPhyOffset(), copy.segmentBytes, context);
      await store.shutdown();
    }
  });

  it('after a crash, a record whose TOPIC bit flipped (body CRC only) is refused or kept out of every queue, never indexed under a queue nobody wrote', async (t) => {
    const random = prng(SEED ^ 0x0106);
    const fixture = await sharedFixture('default');
    const lastFrom = lastSegmentStart(fixture);
    const victims = fixture.written.filter(
      (w, i) => w.wroteOffset >= lastFrom && i < fixture.written.length - 1,
    );
    const copy = cloneFixture(t, fixture, 'crash');
    const victim = pick(random, victims);
    const [from, to] = fieldRanges(readLog(copy, victim.wroteOffset, victim.wroteBytes)).TOPIC;
    const offset = victim.wroteOffset + randomInt(random, from, to);
    const context = `crash, last segment: the case bit of TOPIC byte ${offset - victim.wroteOffset - from} of ${keyOf(victim)} at ${victim.wroteOffset}`;
    flipBit(copy, offset, 5);
    const outcome = await tryOpen(t, copy, context);
    if (outcome.error !== null) {
      assert.equal(outcome.error.code, 'ERR_STORE_FILE_INVALID', why(context));
      return;
    }
    const store = outcome.store;
    const queues = store
      .getConsumeQueueStore()
      .all()
      .map((q) => queueKey(q.topic, q.queueId))
      .sort();
    assert.deepEqual(
      queues,
      QUEUES.map(([topic, queueId]) => queueKey(topic, queueId)).sort(),
      why(`${context}: recovery created no queue that was never written`),
    );
    const readBack = await readEverything(store, copy.written, context);
    assertServedExactly(
      readBack,
      copy.written.filter((w) => w !== victim),
      context,
    );
  });
});

/**
 * Cuts the last segment of a copy of `fixture` to `length` bytes and reopens it: the segment is
 * extended and named in the report, the log ends at the last record wholly inside the cut, the
 * report counts the partial record's bytes, the consume queues drop the lost records' units,
 * every surviving message (and none other) is served, and puts continue.
 */
async function assertLastSegmentCut(
  t: TestContext,
  fixture: Fixture,
  mode: Mode,
  random: Random,
  what: string,
  length: number,
): Promise<void> {
  const lastFrom = lastSegmentStart(fixture);
  const lastName = segmentName(lastFrom, fixture.segmentBytes);
  const copy = cloneFixture(t, fixture, mode);
  const context = `${mode}: last segment ${lastName} cut to ${length} bytes (${what})`;
  const original = readLog(copy, lastFrom, length);
  fs.truncateSync(path.join(commitLogDir(copy.root), lastName), length);
  const before = snapshotTree(copy.root, false);

  const survivors = fixture.written.filter((w) => endOf(w) <= lastFrom + length);
  const end = Math.max(lastFrom, ...survivors.map(endOf));
  const partial = original.subarray(end - lastFrom);
  let lastNonZero = partial.length - 1;
  while (lastNonZero >= 0 && partial[lastNonZero] === 0) lastNonZero--;

  const store = await openOk(t, copy, context);
  // What a reader sees first: exactly the whole records, each as it was put.
  const readBack = await readEverything(store, fixture.written, context);
  assert.equal(readBack.skippedDamaged, 0, why(context));
  assertServedExactly(readBack, survivors, context);

  const r = report(store).commitLog;
  assert.deepEqual(
    r.extendedFiles.map((f) => path.basename(f)),
    [lastName],
    why(`${context}: the report names the extended segment`),
  );
  assert.equal(r.maxPhyOffset, end, why(`${context}: the log ends at the last whole record`));
  assert.equal(store.getMaxPhyOffset(), end, why(context));
  assert.equal(
    r.truncatedBytes,
    lastNonZero + 1,
    why(`${context}: truncatedBytes counts the partial record`),
  );
  if (partial.subarray(0, 8).some((b) => b !== 0)) {
    assert.ok(r.stopReason !== null, why(`${context}: stopReason says why the scan stopped`));
  } else {
    assert.equal(r.stopReason, null, why(`${context}: nothing but zeros after the last record`));
  }
  assert.deepEqual(r.deletedFiles, [], why(context));
  const lost = fixture.written.filter((w) => !survivors.includes(w));
  assert.equal(
    report(store).consumeQueues.unitsCut,
    lost.length,
    why(`${context}: the units of the lost records are cut`),
  );
  const lostQueues = new Set(lost.map((w) => cqPath(w.topic, w.queueId)));
  const changed = assertChangedOnly(before, copy.root, [clPath(lastName), ...lostQueues], context);
  assert.ok(changed.includes(clPath(lastName)), why(`${context}: the last segment was extended`));
  assert.equal(
    fs.statSync(path.join(commitLogDir(copy.root), lastName)).size,
    copy.segmentBytes,
    why(`${context}: the segment has its full size again`),
  );
  const next = nextOffsets(survivors);
  assertQueueMax(store, next, context);
  await assertPutsContinue(store, random, next, end, copy.segmentBytes, context);
  await store.shutdown();
}

describe('corrupt input: a truncated last segment', () => {
  for (const mode of MODES) {
    it(`cut inside a body, at a record boundary, inside a header, to 1 byte, with earlier full segments: extended, reported, cut at the last whole record (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0201 : 0x0202));
      const fixture = await sharedFixture('default');
      const lastFrom = lastSegmentStart(fixture);
      const inLast = fixture.written.filter((w) => w.wroteOffset >= lastFrom);
      assert.ok(segmentNames(fixture.root).length >= 4, why('the fixture spans several segments'));
      const pickInLast = (): Written => inLast[randomInt(random, 1, inLast.length - 1)] as Written;
      const inBody = pickInLast();
      const bodyEnd = BODY_POSITION + inBody.body.length;
      const boundary = pickInLast();
      const header = pickInLast();
      const cuts: readonly (readonly [string, number])[] = [
        [
          `inside the body of ${keyOf(inBody)}`,
          inBody.wroteOffset - lastFrom + randomInt(random, BODY_POSITION, bodyEnd),
        ],
        [`at the record boundary before ${keyOf(boundary)}`, boundary.wroteOffset - lastFrom],
        [
          `inside the header of ${keyOf(header)}`,
          header.wroteOffset - lastFrom + randomInt(random, 4, BODY_POSITION),
        ],
        ['to 1 byte', 1],
      ];
      for (const [what, length] of cuts) await assertLastSegmentCut(t, fixture, mode, random, what, length);
    });

    it(`cut inside the properties of a record (a torn write that zeroes a record's tail): that record is not served (${mode})`, async (t) => {
      // With the default config only the body has a CRC: zeros in place of the topic or the
      // properties are only caught if the lengths no longer add up. A cut inside the properties
      // leaves every length intact.
      const random = prng(SEED ^ (mode === 'clean' ? 0x0205 : 0x0206));
      const fixture = await sharedFixture('default');
      const lastFrom = lastSegmentStart(fixture);
      const inLast = fixture.written.filter((w) => w.wroteOffset >= lastFrom);
      const victim = inLast[randomInt(random, 1, inLast.length - 1)] as Written;
      const [from, to] = fieldRanges(readLog(fixture, victim.wroteOffset, victim.wroteBytes)).PROPERTIES;
      const cutAt = victim.wroteOffset + randomInt(random, from, to);
      await assertLastSegmentCut(
        t,
        fixture,
        mode,
        random,
        `inside the properties of ${keyOf(victim)}, ${victim.wroteOffset + to - cutAt} bytes before its end`,
        cutAt - lastFrom,
      );
    });
  }

  it('a lone short segment that ends at a record boundary (maybe another mappedFileSize) is refused, nothing changed (clean and crash)', async (t) => {
    const random = prng(SEED ^ 0x0203);
    const fixture = await sharedFixture('lone');
    assert.deepEqual(segmentNames(fixture.root), [segmentName(0, 8192)], why('one segment'));
    const middle = fixture.written[randomInt(random, 2, fixture.written.length - 2)] as Written;
    for (const mode of MODES) {
      const copy = cloneFixture(t, fixture, mode);
      for (const [what, length] of [
        ['after a middle record', endOf(middle)],
        ['after the last record', endOf(fixture.written.at(-1) as Written)],
      ] as const) {
        await expectRefusedThenRepair(
          t,
          copy,
          `${mode}: the lone segment cut to ${length} bytes (${what})`,
          () => resize(path.join(commitLogDir(copy.root), segmentName(0, 8192)), length),
          new RegExp(segmentName(0, 8192)),
          new RegExp(`${length} bytes`),
          /8192/,
        );
      }
      assertRepaired(fixture, copy, mode);
    }
  });

  it('a lone segment cut mid-record is extended and recovered to its last whole record (clean and crash)', async (t) => {
    const random = prng(SEED ^ 0x0204);
    const fixture = await sharedFixture('lone');
    assert.deepEqual(segmentNames(fixture.root), [segmentName(0, 8192)], why('one segment'));
    for (const mode of MODES) {
      const victim = fixture.written[randomInt(random, 1, fixture.written.length)] as Written;
      const length =
        victim.wroteOffset + randomInt(random, BODY_POSITION, BODY_POSITION + victim.body.length);
      await assertLastSegmentCut(
        t,
        fixture,
        mode,
        random,
        `the lone segment, inside the body of ${keyOf(victim)}`,
        length,
      );
    }
  });
});

describe('corrupt input: garbage after the last record', () => {
  for (const mode of MODES) {
    it(`random bytes, a plausible header, a stale copy of an earlier record: cut, reported, zeroed on disk; a second reopen sees zeros; puts continue (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0301 : 0x0302));
      const fixture = await sharedFixture('default');
      const last = fixture.written.at(-1) as Written;
      const end = endOf(last);
      const lastName = segmentName(end, fixture.segmentBytes);
      const room = fixture.segmentBytes - (end % fixture.segmentBytes);

      const plausible = Buffer.alloc(BODY_POSITION);
      readLog(fixture, last.wroteOffset, BODY_POSITION).copy(plausible);
      plausible.writeBigInt64BE(BigInt(last.queueOffset + 1), 20);
      plausible.writeBigInt64BE(BigInt(end), 28);
      const stale = pick(random, fixture.written.slice(0, -1));
      const garbage: readonly (readonly [string, Buffer, RegExp])[] = [
        ['random bytes', randomBytes(random, randomInt(random, 16, Math.min(300, room))), /./],
        ['a plausible header at the right position', plausible, /CRC/],
        [
          `a stale copy of ${keyOf(stale)} (valid CRC, wrong PHYSICALOFFSET)`,
          readLog(fixture, stale.wroteOffset, stale.wroteBytes),
          /PHYSICALOFFSET/,
        ],
      ];
      for (const [what, bytes, reason] of garbage) {
        assert.ok(bytes.length <= room, why(`${what} fits after the last record`));
        const copy = cloneFixture(t, fixture, mode);
        const context = `${mode}: ${what} (${bytes.length} bytes) after the last record at ${end}`;
        writeLog(copy, end, bytes);
        const before = snapshotTree(copy.root, false);
        let lastNonZero = bytes.length - 1;
        while (lastNonZero >= 0 && bytes[lastNonZero] === 0) lastNonZero--;

        const store = await openOk(t, copy, context);
        const r = report(store).commitLog;
        assert.equal(r.maxPhyOffset, end, why(`${context}: the log ends at the last record`));
        assert.equal(r.truncatedBytes, lastNonZero + 1, why(`${context}: the report counts the garbage`));
        assert.match(r.stopReason ?? '', reason, why(`${context}: stopReason says why`));
        assert.deepEqual(r.deletedFiles, [], why(context));
        assert.deepEqual(r.extendedFiles, [], why(context));
        assert.equal(report(store).consumeQueues.unitsCut, 0, why(context));
        assert.deepEqual(
          assertChangedOnly(before, copy.root, [clPath(lastName)], context),
          [clPath(lastName)],
          why(`${context}: the garbage was removed from the last segment`),
        );
        const tail = fs
          .readFileSync(path.join(commitLogDir(copy.root), lastName))
          .subarray(end % copy.segmentBytes);
        assert.ok(
          tail.every((b) => b === 0),
          why(`${context}: the bytes after the last record are zeros on disk`),
        );
        const readBack = await readEverything(store, fixture.written, context);
        assert.equal(readBack.skippedDamaged, 0, why(context));
        assertServedExactly(readBack, fixture.written, context);
        assertQueueMax(store, nextOffsets(fixture.written), context);
        await store.shutdown();

        const again = await openOk(t, copy, `${context}, reopened`);
        const r2 = report(again).commitLog;
        assert.equal(report(again).lastExitOK, true, why(`${context}, reopened`));
        assert.equal(r2.truncatedBytes, 0, why(`${context}, reopened: nothing left to cut`));
        assert.equal(r2.stopReason, null, why(`${context}, reopened: zeros after the last record`));
        await assertWholeStore(again, copy, random, `${context}, reopened`);
        await again.shutdown();
      }
    });
  }
});

describe('corrupt input: a segment of the wrong size', () => {
  it('a commit log segment, first or middle, too long or too short, or the last too long: refused naming the file, nothing changed (clean and crash)', async (t) => {
    const random = prng(SEED ^ 0x0401);
    const fixture = await sharedFixture('default');
    const names = segmentNames(fixture.root);
    assert.ok(names.length >= 4, why('several segments'));
    const middle = names[randomInt(random, 1, names.length - 1)] as string;
    const cases: readonly (readonly [string, string, number])[] = [
      ['the first, too long', names[0] as string, SEGMENT_BYTES + randomInt(random, 1, 200)],
      ['the first, too short', names[0] as string, SEGMENT_BYTES - randomInt(random, 1, 200)],
      ['a middle one, too long', middle, SEGMENT_BYTES + 1],
      ['a middle one, too short', middle, SEGMENT_BYTES - 1],
      ['the last, too long', names.at(-1) as string, SEGMENT_BYTES + randomInt(random, 1, 200)],
    ];
    for (const mode of MODES) {
      const copy = cloneFixture(t, fixture, mode);
      for (const [what, name, size] of cases) {
        await expectRefusedThenRepair(
          t,
          copy,
          `${mode}: ${what} (${name} is ${size} bytes)`,
          () => resize(path.join(commitLogDir(copy.root), name), size),
          new RegExp(name),
          new RegExp(`${size} bytes`),
          /mappedFileSize/,
        );
      }
      assertRepaired(fixture, copy, mode);
    }
  });

  it('a middle commit log segment emptied (size 0): refused naming the file, nothing changed (clean and crash)', async (t) => {
    // A power loss can empty a segment that was never synced; one holding data the checkpoint
    // says was durable, with valid segments after it, was emptied behind the store.
    const random = prng(SEED ^ 0x0404);
    const fixture = await sharedFixture('default');
    const names = segmentNames(fixture.root);
    assert.ok(names.length >= 4, why('several segments'));
    const middle = names[randomInt(random, 1, names.length - 1)] as string;
    for (const mode of MODES) {
      const copy = cloneFixture(t, fixture, mode);
      await expectRefusedThenRepair(
        t,
        copy,
        `${mode}: ${middle} emptied`,
        () => resize(path.join(commitLogDir(copy.root), middle), 0),
        new RegExp(middle),
      );
      assertRepaired(fixture, copy, mode);
    }
  });

  for (const mode of MODES) {
    it(`a consume queue file of the wrong size, in each queue in turn: the queue is rebuilt from the commit log, every message readable (${mode})`, async (t) => {
      // Every queue in turn: whether recovery notices depends on which queue lost its file (the
      // one holding the log's last record, or another).
      const random = prng(SEED ^ (mode === 'clean' ? 0x0402 : 0x0403));
      const fixture = await sharedFixture('default');
      for (const [index, [topic, queueId]] of QUEUES.entries()) {
        const names = cqFiles(fixture.root, topic, queueId);
        assert.ok(names.length >= 3, why(`${queueKey(topic, queueId)} spans several consume queue files`));
        const middle = names[randomInt(random, 1, names.length - 1)] as string;
        const [what, size] =
          index % 2 === 0
            ? ['too long', CQ_FILE_BYTES + CQ_UNIT_BYTES * randomInt(random, 1, 4)]
            : ['too short', CQ_FILE_BYTES - randomInt(random, 1, CQ_FILE_BYTES)];
        const copy = cloneFixture(t, fixture, mode);
        const context = `${mode}: consume queue file ${queueKey(topic, queueId)}/${middle} ${what} (${size} bytes)`;
        fs.truncateSync(path.join(queueDir(copy.root, topic, queueId), middle), size);
        const before = snapshotTree(copy.root, false);
        const store = await openOk(t, copy, context);
        // What a reader sees first: every message, then what the report says.
        const readBack = await readEverything(store, fixture.written, context);
        assertServedExactly(readBack, fixture.written, context);
        const r = report(store).consumeQueues;
        assert.deepEqual(
          r.queuesReset,
          [queueKey(topic, queueId)],
          why(`${context}: the report names the reset queue`),
        );
        assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
        await assertWholeStore(store, copy, random, context);
        await store.shutdown();
      }
    });
  }
});

describe('corrupt input: a deleted checkpoint', () => {
  for (const mode of MODES) {
    it(`opens, reports checkpointCreated, every message present, puts continue (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0501 : 0x0502));
      const fixture = await sharedFixture('default');
      const copy = cloneFixture(t, fixture, mode);
      const context = `${mode}: checkpoint deleted`;
      fs.rmSync(path.join(copy.root, 'checkpoint'));
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      const r = report(store);
      assert.equal(r.checkpointCreated, true, why(`${context}: the report says the checkpoint was created`));
      assert.equal(r.lastExitOK, mode === 'clean', why(context));
      assert.equal(r.commitLog.truncatedBytes, 0, why(context));
      assert.equal(r.consumeQueues.unitsCut, 0, why(context));
      assert.equal(
        fs.statSync(path.join(copy.root, 'checkpoint')).size,
        4096,
        why(`${context}: a fresh checkpoint`),
      );
      assertChangedOnly(before, copy.root, [], context);
      const added = await assertWholeStore(store, copy, random, context);
      await store.shutdown();
      const again = await openOk(t, copy, `${context}, reopened`);
      assert.equal(report(again).checkpointCreated, false, why(`${context}, reopened`));
      const all = [...copy.written, ...added];
      const readBack = await readEverything(again, all, `${context}, reopened`);
      assertServedExactly(readBack, all, `${context}, reopened`);
      assertQueueMax(again, nextOffsets(all), `${context}, reopened`);
    });
  }
});

describe('corrupt input: consume queues longer than the commit log supports', () => {
  for (const mode of MODES) {
    it(`units appended past the end of the log (into a new file too) are cut and reported (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0601 : 0x0602));
      const fixture = await sharedFixture('default');
      const [topic, queueId] = pick(random, QUEUES);
      const held = recordsOf(fixture.written, topic, queueId).length;
      const end = endOf(fixture.written.at(-1) as Written);
      const copy = cloneFixture(t, fixture, mode);
      // Enough to fill the queue's last file and start another.
      const extra = CQ_UNITS_PER_FILE - (held % CQ_UNITS_PER_FILE) + randomInt(random, 1, 6);
      let at = end + randomInt(random, 0, 64);
      for (let i = 0; i < extra; i++) {
        const size = randomInt(random, 100, 300);
        writeCqUnit(copy.root, topic, queueId, held + i, cqUnit(at, size));
        at += size;
      }
      const context = `${mode}: ${extra} units past the end of the log (${end}) appended to ${queueKey(topic, queueId)}`;
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      const r = report(store);
      assert.equal(r.consumeQueues.unitsCut, extra, why(`${context}: the report counts the units cut`));
      assert.equal(r.commitLog.maxPhyOffset, end, why(context));
      assert.equal(r.commitLog.truncatedBytes, 0, why(context));
      assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
      await assertWholeStore(store, copy, random, context);
      await store.shutdown();
    });

    it(`a unit appended at the tail pointing inside the log, mid-record: never served, and not counted as a message (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0603 : 0x0604));
      const fixture = await sharedFixture('default');
      const [topic, queueId] = pick(random, QUEUES);
      const held = recordsOf(fixture.written, topic, queueId).length;
      const target = pick(random, fixture.written);
      const copy = cloneFixture(t, fixture, mode);
      const offset = target.wroteOffset + randomInt(random, 1, target.wroteBytes);
      writeCqUnit(copy.root, topic, queueId, held, cqUnit(offset, target.wroteBytes));
      const context = `${mode}: unit ${held} of ${queueKey(topic, queueId)} points at ${offset}, inside ${keyOf(target)}`;
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      const readBack = await readEverything(store, fixture.written, context);
      assertServedExactly(readBack, fixture.written, context);
      // The queue holds `held` messages: a unit that points at no message of the queue is no
      // message, and the next put must not land behind a hole that can never be read.
      assertQueueMax(store, nextOffsets(fixture.written), context);
      assert.equal(
        report(store).consumeQueues.unitsCut,
        1,
        why(`${context}: the report counts the unit cut`),
      );
      assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
      await assertPutsContinue(
        store,
        random,
        nextOffsets(fixture.written),
        store.getMaxPhyOffset(),
        copy.segmentBytes,
        context,
      );
      await store.shutdown();
    });
  }

  it('a unit in the middle of a queue redirected mid-record: getMessage skips it, serves every other message', async (t) => {
    const random = prng(SEED ^ 0x0605);
    const fixture = await sharedFixture('default');
    for (const mode of MODES) {
      const [topic, queueId] = pick(random, QUEUES);
      const own = recordsOf(fixture.written, topic, queueId);
      const victim = own[randomInt(random, 1, own.length - 1)] as Written;
      const target = pick(random, fixture.written);
      const offset = target.wroteOffset + randomInt(random, 1, target.wroteBytes);
      const copy = cloneFixture(t, fixture, mode);
      writeCqUnit(copy.root, topic, queueId, victim.queueOffset, cqUnit(offset, victim.wroteBytes));
      const context = `${mode}: unit ${keyOf(victim)} redirected to ${offset} (inside ${keyOf(target)})`;
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
      const readBack = await readEverything(store, fixture.written, context);
      // After a crash, recovery checks every unit written since the queues' last flush: when the
      // victim is among them (records stored in the last flush's millisecond), the queue is
      // rebuilt from it and the message is served. Otherwise the read path skips it.
      const repaired = store
        .getRecoveryReport()
        .consumeQueues.queuesTailRepaired.includes(`${topic}/${queueId}`);
      assert.ok(!repaired || mode === 'crash', why(`${context}: only a crash recovery checks past the tail`));
      assert.equal(
        readBack.skippedDamaged,
        repaired ? 0 : 1,
        why(
          `${context}: the unit's target fails its checks${repaired ? ', unless recovery rebuilt it' : ''}`,
        ),
      );
      assertServedExactly(
        readBack,
        repaired ? fixture.written : fixture.written.filter((w) => w !== victim),
        context,
      );
      assertQueueMax(store, nextOffsets(fixture.written), context);
      await store.shutdown();
    }
  });

  it('a unit in the middle of a queue redirected to a whole record of another queue with the same queue offset is never served', async (t) => {
    // The record it points to is valid (CRC, PHYSICALOFFSET, even QUEUEOFFSET match): only its
    // topic and queue id tell that it is not this queue's message.
    const random = prng(SEED ^ 0x0606);
    const fixture = await sharedFixture('default');
    for (const mode of MODES) {
      // Not a queue's last unit: this is about a unit in the middle (the tail is another case).
      const last = nextOffsets(fixture.written);
      const candidates = fixture.written.filter(
        (w) =>
          w.queueOffset < (last.get(queueKey(w.topic, w.queueId)) ?? 0) - 1 &&
          fixture.written.some(
            (o) =>
              o.queueOffset === w.queueOffset &&
              queueKey(o.topic, o.queueId) !== queueKey(w.topic, w.queueId),
          ),
      );
      const victim = pick(random, candidates);
      const other = pick(
        random,
        fixture.written.filter(
          (o) =>
            o.queueOffset === victim.queueOffset &&
            queueKey(o.topic, o.queueId) !== queueKey(victim.topic, victim.queueId),
        ),
      );
      const copy = cloneFixture(t, fixture, mode);
      writeCqUnit(
        copy.root,
        victim.topic,
        victim.queueId,
        victim.queueOffset,
        cqUnit(other.wroteOffset, other.wroteBytes),
      );
      const context = `${mode}: unit ${keyOf(victim)} redirected to ${keyOf(other)} at ${other.wroteOffset}`;
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      assertChangedOnly(before, copy.root, [cqPath(victim.topic, victim.queueId)], context);
      const readBack = await readEverything(store, fixture.written, context);
      assert.equal(readBack.skippedDamaged, 1, why(`${context}: the redirected unit is skipped`));
      assertServedExactly(
        readBack,
        fixture.written.filter((w) => w !== victim),
        context,
      );
      assertQueueMax(store, nextOffsets(fixture.written), context);
      await store.shutdown();
    }
  });

  for (const mode of MODES) {
    it(`a deleted consume queue directory, each queue in turn, is rebuilt (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0607 : 0x0608));
      const fixture = await sharedFixture('default');
      for (const [topic, queueId] of QUEUES) {
        const copy = cloneFixture(t, fixture, mode);
        fs.rmSync(queueDir(copy.root, topic, queueId), { recursive: true });
        const context = `${mode}: consume queue directory ${queueKey(topic, queueId)} deleted`;
        const before = snapshotTree(copy.root, false);
        const store = await openOk(t, copy, context);
        const readBack = await readEverything(store, fixture.written, context);
        assertServedExactly(readBack, fixture.written, context);
        assert.equal(
          report(store).consumeQueues.unitsRebuilt,
          recordsOf(fixture.written, topic, queueId).length,
          why(`${context}: the report counts the units rebuilt`),
        );
        assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
        await assertWholeStore(store, copy, random, context);
        await store.shutdown();
      }
    });

    it(`every consume queue deleted: all rebuilt (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x0609 : 0x060a));
      const fixture = await sharedFixture('default');
      const copy = cloneFixture(t, fixture, mode);
      fs.rmSync(path.join(copy.root, 'consumequeue'), { recursive: true });
      const context = `${mode}: the consumequeue directory deleted`;
      const before = snapshotTree(copy.root, false);
      const store = await openOk(t, copy, context);
      const r = report(store);
      assert.equal(r.consumeQueues.queuesLoaded, 0, why(context));
      assert.equal(
        r.consumeQueues.unitsRebuilt,
        fixture.written.length,
        why(`${context}: every unit rebuilt`),
      );
      assertChangedOnly(before, copy.root, ['consumequeue'], context);
      await assertWholeStore(store, copy, random, context);
      await store.shutdown();
    });

    it(`a consume queue file deleted in the middle, each queue in turn: the queue is rebuilt (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x060b : 0x060c));
      const fixture = await sharedFixture('default');
      for (const [topic, queueId] of QUEUES) {
        const names = cqFiles(fixture.root, topic, queueId);
        assert.ok(names.length >= 3, why(`${queueKey(topic, queueId)} spans several consume queue files`));
        const middle = names[randomInt(random, 1, names.length - 1)] as string;
        const copy = cloneFixture(t, fixture, mode);
        fs.rmSync(path.join(queueDir(copy.root, topic, queueId), middle));
        const context = `${mode}: consume queue file ${queueKey(topic, queueId)}/${middle} deleted`;
        const before = snapshotTree(copy.root, false);
        const store = await openOk(t, copy, context);
        const readBack = await readEverything(store, fixture.written, context);
        assertServedExactly(readBack, fixture.written, context);
        assert.deepEqual(report(store).consumeQueues.queuesReset, [queueKey(topic, queueId)], why(context));
        assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
        await assertWholeStore(store, copy, random, context);
        await store.shutdown();
      }
    });

    it(`a consume queue's last file cut short (at a unit boundary, inside a unit's offset or size, inside its tags code), each queue in turn: the lost units are rebuilt (${mode})`, async (t) => {
      const random = prng(SEED ^ (mode === 'clean' ? 0x060d : 0x060e));
      const fixture = await sharedFixture('default');
      const cutKinds = [
        ['at a unit boundary', 0, 1],
        ["inside a unit's offset or size", 1, 12],
        ["inside a unit's tags code", 13, CQ_UNIT_BYTES],
      ] as const;
      for (const [index, [topic, queueId]] of QUEUES.entries()) {
        const [kind, partialMin, partialMax] = cutKinds[index % cutKinds.length] as (typeof cutKinds)[number];
        const names = cqFiles(fixture.root, topic, queueId);
        const lastName = names.at(-1) as string;
        const own = recordsOf(fixture.written, topic, queueId);
        const lastFirstUnit = Number(lastName) / CQ_UNIT_BYTES;
        const kept = randomInt(random, 0, own.length - lastFirstUnit);
        const length = kept * CQ_UNIT_BYTES + randomInt(random, partialMin, partialMax);
        const lost = own.length - lastFirstUnit - kept;
        const copy = cloneFixture(t, fixture, mode);
        fs.truncateSync(path.join(queueDir(copy.root, topic, queueId), lastName), length);
        const context = `${mode}: consume queue file ${queueKey(topic, queueId)}/${lastName} cut to ${length} bytes, ${kind} (${lost} units lost)`;
        const before = snapshotTree(copy.root, false);
        const store = await openOk(t, copy, context);
        const readBack = await readEverything(store, fixture.written, context);
        assertServedExactly(readBack, fixture.written, context);
        // A consumer subscribed to a tag: the unit's tags code decides what it gets.
        for (const tag of new Set(own.map((w) => w.tags))) {
          const got = await readTagged(store, topic, queueId, tag, `${context}, tag ${tag}`);
          assert.deepEqual(
            got,
            own.filter((w) => w.tags === tag).map((w) => w.queueOffset),
            why(`${context}: a consumer of tag ${tag} gets every message with it`),
          );
        }
        assert.equal(
          report(store).consumeQueues.unitsRebuilt,
          lost,
          why(`${context}: the report counts the units rebuilt`),
        );
        assertChangedOnly(before, copy.root, [cqPath(topic, queueId)], context);
        await assertWholeStore(store, copy, random, context);
        await store.shutdown();
      }
    });
  }
});
