import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createMessageStoreConfig } from '../../src/store/config/message-store-config.js';
import { ConsumeQueue, type ConsumeQueueUnit } from '../../src/store/consumequeue/consume-queue.js';
import { ConsumeQueueStore } from '../../src/store/consumequeue/consume-queue-store.js';
import { nodeStoreIO, silentLogger } from '../../src/store/index.js';
import { WriteBufferPool } from '../../src/store/mapped-file/write-buffer-pool.js';
import { onCleanup, prng, tempDir, testSeed } from '../support/helpers.js';

/**
 * Ports of RocketMQ's `ConsumeQueueTest` (store reference §4.13, §6), driving ConsumeQueue and
 * ConsumeQueueStore directly: cases the store facade cannot reach (a repeated or out-of-order
 * unit, pre-blank fill, min-offset correction, truncation) are set up here by hand.
 *
 * Queue files hold 10 units (200 bytes), so a few dozen units cross several files. Units and file
 * names are computed here from the format (store reference §2.7): unit i at byte i * 20, in file
 * floor(i * 20 / 200) * 200 named with 20 digits; a unit is [offset int64][size int32][tags int64].
 *
 * Where RocketMQ differs on purpose (documented in consume-queue.ts): a unit that would leave a
 * hole is refused (GAP) instead of being appended at the wrong place (RocketMQ #7355), and a
 * repeated unit is reported ALREADY_BUILT instead of "true".
 */

const UNIT = 20;
const UNITS_PER_FILE = 10;
const FILE_BYTES = UNIT * UNITS_PER_FILE;
/** Size of every message the test units point at (unit i points at i * MSG). */
const MSG = 100;
/** RocketMQ's pre-blank unit: offset 0, size Integer.MAX_VALUE, tags code 0. */
const BLANK_SIZE = 0x7fffffff;

type TestContext = Parameters<typeof tempDir>[0];

function javaHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

const tagsCodeOf = (i: number): number => javaHash(`tag-${i}`);

function fileName(byteOffset: number): string {
  return String(byteOffset).padStart(20, '0');
}

function queueDir(root: string, topic = 'T', queueId = 0): string {
  return path.join(root, topic, String(queueId));
}

/** A consume queue on `root` (the `consumequeue` directory), loaded; closed when the test ends. */
function openQueue(t: TestContext, root: string, topic = 'T', queueId = 0): ConsumeQueue {
  const queue = new ConsumeQueue({
    topic,
    queueId,
    rootPath: root,
    mappedFileSize: FILE_BYTES,
    io: nodeStoreIO,
    writeBufferPool: new WriteBufferPool(FILE_BYTES, 256),
    logger: silentLogger,
  });
  queue.load();
  onCleanup(t, () => queue.shutdown());
  return queue;
}

/** Puts units `from`..`to - 1`, unit i pointing at commit log offset i * MSG. */
function putUnits(queue: ConsumeQueue, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    assert.equal(queue.putMessagePositionInfo(i * MSG, MSG, tagsCodeOf(i), i), 'PUT_OK', `unit ${i}`);
  }
}

/** Commits and flushes everything appended (what the store does before a clean shutdown). */
async function persist(queue: ConsumeQueue): Promise<void> {
  await queue.commit();
  const mfq = queue.mappedFileQueue;
  for (let i = 0; i < 100 && mfq.flushedWhere < mfq.getMaxOffset(); i++) await queue.flush(0);
  assert.equal(mfq.flushedWhere, mfq.getMaxOffset(), 'everything flushed');
}

/** Shuts `queue` down and opens it again from its files, recovered as after a clean shutdown. */
async function reload(
  t: TestContext,
  root: string,
  queue: ConsumeQueue,
  minPhyOffset = 0,
): Promise<ConsumeQueue> {
  await persist(queue);
  queue.shutdown();
  const again = openQueue(t, root, queue.topic, queue.queueId);
  again.recover(false);
  again.correctMinOffset(minPhyOffset);
  return again;
}

/** The units of the queue's files on disk, concatenated from byte `fromByte` (raw reading). */
function unitsOnDisk(root: string, fromByte = 0): { units: ConsumeQueueUnit[]; zeroTail: boolean } {
  const dir = queueDir(root);
  const names = fs.readdirSync(dir).sort();
  const bytes = Buffer.concat(names.map((n) => fs.readFileSync(path.join(dir, n))));
  const units: ConsumeQueueUnit[] = [];
  let at = 0;
  for (; at + UNIT <= bytes.length; at += UNIT) {
    const size = bytes.readInt32BE(at + 8);
    if (size === 0) break;
    units.push({
      commitLogOffset: Number(bytes.readBigInt64BE(at)),
      size,
      tagsCode: Number(bytes.readBigInt64BE(at + 12)),
    });
  }
  return { units: units.slice(fromByte / UNIT), zeroTail: bytes.subarray(at).every((b) => b === 0) };
}

function expectedUnits(from: number, to: number): ConsumeQueueUnit[] {
  return Array.from({ length: to - from }, (_, k) => ({
    commitLogOffset: (from + k) * MSG,
    size: MSG,
    tagsCode: tagsCodeOf(from + k),
  }));
}

async function readAll(queue: ConsumeQueue, from: number, to: number): Promise<ConsumeQueueUnit[]> {
  const out: ConsumeQueueUnit[] = [];
  for (let next = from; next < to; ) {
    const units = await queue.getUnits(next, to - next);
    assert.ok(units.length > 0, `units readable at ${next}`);
    out.push(...units);
    next += units.length;
  }
  return out;
}

describe('ConsumeQueueTest: putMessagePositionInfo', () => {
  it('writes unit i at byte i * 20 across file rolls; the files hold exactly those bytes', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 25);
    assert.equal(queue.getWrittenOffsetInQueue(), 25);
    await persist(queue);
    assert.equal(queue.getMaxOffsetInQueue(), 25);
    assert.equal(queue.getMinOffsetInQueue(), 0);
    assert.equal(queue.getMaxPhysicOffset(), 25 * MSG);
    assert.deepEqual(fs.readdirSync(queueDir(root)).sort(), [0, 200, 400].map(fileName));
    for (const name of fs.readdirSync(queueDir(root))) {
      assert.equal(fs.statSync(path.join(queueDir(root), name)).size, FILE_BYTES, `${name} is pre-sized`);
    }
    const disk = unitsOnDisk(root);
    assert.deepEqual(disk.units, expectedUnits(0, 25));
    assert.ok(disk.zeroTail, 'zeros after the last unit');
    assert.ok(
      expectedUnits(0, 25).some((u) => u.tagsCode < 0),
      'some tags codes are negative: sign-extended to int64',
    );
  });

  it('getMaxOffsetInQueue counts only readable (committed) units, also when the appended ones span several files', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 6);
    assert.deepEqual(await queue.getUnits(0, 1), [], 'appended, not committed: not readable');
    assert.equal(queue.getMaxOffsetInQueue(), 0, '6 units appended in file 0, none committed');
    await queue.commit();
    assert.equal(queue.getMaxOffsetInQueue(), 6);
    // 19 more: file 0 fills, file 200 fills, file 400 takes 5. None of them committed.
    putUnits(queue, 6, 25);
    assert.equal(queue.getWrittenOffsetInQueue(), 25);
    assert.deepEqual(await queue.getUnits(6, 1), [], 'unit 6 is not readable before the commit');
    assert.deepEqual(await queue.getUnits(10, 1), [], 'unit 10 is not readable before the commit');
    // The end of what readers may read is still 6 (consume-queue.ts; MessageStore.getMaxOffsetInQueue:
    // "the queue offset after the last readable message").
    assert.equal(queue.getMaxOffsetInQueue(), 6, 'max offset while units 6..24 wait for their commit');
    await queue.commit();
    assert.equal(queue.getMaxOffsetInQueue(), 25);
  });

  it('testPutMessagePositionInfo_buildCQRepeatedly: a repeated unit is ALREADY_BUILT and nothing changes', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 15);
    await persist(queue);
    const before = unitsOnDisk(root);
    // Every unit again, as dispatch repeats itself after a recovery.
    for (let i = 0; i < 15; i++) {
      assert.equal(
        queue.putMessagePositionInfo(i * MSG, MSG, tagsCodeOf(i), i),
        'ALREADY_BUILT',
        `unit ${i}`,
      );
    }
    // A unit for an existing queue offset pointing further into the log: still not written twice.
    assert.equal(queue.putMessagePositionInfo(5000, MSG, 7, 3), 'ALREADY_BUILT', 'an existing offset');
    assert.equal(queue.putMessagePositionInfo(5000, MSG, 7, 14), 'ALREADY_BUILT', 'the last offset');
    assert.equal(queue.getWrittenOffsetInQueue(), 15);
    await persist(queue);
    assert.equal(queue.getMaxOffsetInQueue(), 15);
    assert.equal(queue.getMaxPhysicOffset(), 15 * MSG);
    assert.deepEqual(unitsOnDisk(root), before, 'the files did not change');
    // And the queue goes on.
    assert.equal(queue.putMessagePositionInfo(15 * MSG, MSG, tagsCodeOf(15), 15), 'PUT_OK');
  });

  it('a hole is refused with GAP: nothing is written at the wrong place, and the right unit is still taken', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 7);
    // RocketMQ would append unit 9 at index 7 ("[BUG]logic queue order maybe wrong"); we refuse.
    assert.equal(queue.putMessagePositionInfo(9 * MSG, MSG, tagsCodeOf(9), 9), 'GAP');
    assert.equal(queue.getWrittenOffsetInQueue(), 7);
    assert.equal(queue.getMaxPhysicOffset(), 7 * MSG, 'a refused unit does not move the max physic offset');
    // Across a file end: the queue holds 10 (file 0 full), a unit for 25 is refused.
    putUnits(queue, 7, 10);
    assert.equal(queue.putMessagePositionInfo(25 * MSG, MSG, tagsCodeOf(25), 25), 'GAP');
    assert.equal(queue.getWrittenOffsetInQueue(), 10);
    await persist(queue);
    const disk = unitsOnDisk(root);
    assert.deepEqual(disk.units, expectedUnits(0, 10), 'only units 0..9, each where it belongs');
    assert.ok(disk.zeroTail, 'nothing at index 10 or at 25');
    // The missing units arrive: accepted in order, across the file roll.
    putUnits(queue, 10, 26);
    await persist(queue);
    assert.deepEqual(unitsOnDisk(root).units, expectedUnits(0, 26));
    assert.equal(queue.getMaxOffsetInQueue(), 26);
  });
});

describe('ConsumeQueueTest: pre-blank units and testFillBankThenCorrectMinOffset', () => {
  it('a queue whose first unit is 23: blank units fill its first file up to it; min 23, max 24', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    assert.equal(queue.putMessagePositionInfo(5000, MSG, 77, 23), 'PUT_OK');
    await persist(queue);
    assert.deepEqual(fs.readdirSync(queueDir(root)), [fileName(400)], 'one file, where unit 23 belongs');
    assert.equal(queue.getMinOffsetInQueue(), 23);
    assert.equal(queue.getMaxOffsetInQueue(), 24);
    const blanks = await queue.getUnits(20, 3);
    assert.deepEqual(
      blanks,
      [20, 21, 22].map(() => ({ commitLogOffset: 0, size: BLANK_SIZE, tagsCode: 0 })),
    );
    assert.deepEqual(await queue.getUnits(23, 5), [{ commitLogOffset: 5000, size: MSG, tagsCode: 77 }]);
    assert.deepEqual(await queue.getUnits(5, 1), [], 'nothing below the first file');
    // The raw file: three blank units, then the unit.
    const raw = fs.readFileSync(path.join(queueDir(root), fileName(400)));
    for (let k = 0; k < 3; k++) {
      assert.equal(raw.readBigInt64BE(k * UNIT), 0n);
      assert.equal(raw.readInt32BE(k * UNIT + 8), BLANK_SIZE);
      assert.equal(raw.readBigInt64BE(k * UNIT + 12), 0n);
    }
    assert.equal(raw.readBigInt64BE(3 * UNIT), 5000n);

    // The real unit survives a reload: min 23 (blanks are skipped), max 24.
    const again = await reload(t, root, queue);
    assert.equal(again.getMinOffsetInQueue(), 23);
    assert.equal(again.getMaxOffsetInQueue(), 24);
    assert.equal(again.getMaxPhysicOffset(), 5000 + MSG);
    assert.equal(again.putMessagePositionInfo(5100, MSG, 78, 24), 'PUT_OK');
  });

  it('only blank units left (RocketMQ initializeWithOffset): a reload keeps min == max == the offset, and the queue goes on from there', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    assert.equal(queue.putMessagePositionInfo(5000, MSG, 77, 23), 'PUT_OK');
    await persist(queue);
    // The commit log is cut before that message: the unit goes, the blanks stay.
    queue.truncateDirtyLogicFiles(5000);
    assert.equal(queue.getMaxOffsetInQueue(), 23);
    assert.equal(queue.getMinOffsetInQueue(), 23);
    let current = queue;
    for (const minPhy of [0, 1_000_000]) {
      current = await reload(t, root, current, minPhy);
      assert.equal(current.getMaxOffsetInQueue(), 23, `max after a reload (min phy ${minPhy})`);
      assert.equal(current.getMinOffsetInQueue(), 23, `min after a reload (min phy ${minPhy})`);
    }
    const last = current;
    assert.equal(last.putMessagePositionInfo(5000, MSG, 77, 23), 'PUT_OK');
    await persist(last);
    assert.equal(last.getMinOffsetInQueue(), 23);
    assert.equal(last.getMaxOffsetInQueue(), 24);
  });

  it('a first unit exactly at a file start needs no blanks', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    assert.equal(queue.putMessagePositionInfo(3000, MSG, 1, 20), 'PUT_OK');
    assert.equal(queue.putMessagePositionInfo(3100, MSG, 2, 21), 'PUT_OK');
    await persist(queue);
    assert.deepEqual(fs.readdirSync(queueDir(root)), [fileName(400)]);
    const raw = fs.readFileSync(path.join(queueDir(root), fileName(400)));
    assert.equal(raw.readBigInt64BE(0), 3000n, 'unit 20 is the first bytes of its file');
    assert.equal(queue.getMinOffsetInQueue(), 20);
    assert.equal(queue.getMaxOffsetInQueue(), 22);
  });
});

describe('ConsumeQueueTest: testCorrectMinOffset', () => {
  it('the minimum becomes the first unit whose commit log offset is >= the min commit log offset', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 100);
    await persist(queue);
    const cases: [number, number][] = [
      [0, 0],
      [2000, 20], // exactly unit 20's offset
      [2050, 21], // between units 20 and 21
      [2100, 21],
      [2101, 22],
      [5599, 56], // inside a later file
      [9900, 99], // the last unit
    ];
    for (const [minPhy, expected] of cases) {
      queue.correctMinOffset(minPhy);
      assert.equal(queue.getMinOffsetInQueue(), expected, `correctMinOffset(${minPhy})`);
    }
    // The minimum never moves back: the old units still point below the old minimum.
    queue.correctMinOffset(0);
    assert.equal(queue.getMinOffsetInQueue(), 99, 'correctMinOffset(0) after 99');
    // Everything points below: the queue is empty but keeps its position (min == max).
    queue.correctMinOffset(9901);
    assert.equal(queue.getMinOffsetInQueue(), 100);
    assert.equal(queue.getMaxOffsetInQueue(), 100);
    queue.correctMinOffset(100 * MSG);
    assert.equal(queue.getMinOffsetInQueue(), 100);
  });

  it('on irregular offsets it matches a linear search (seeded)', async (t) => {
    const seed = testSeed();
    const random = prng(seed);
    const root = tempDir(t);
    const queue = openQueue(t, root);
    const offsets: number[] = [];
    let pos = 0;
    for (let i = 0; i < 60; i++) {
      const size = 50 + Math.floor(random() * 400);
      offsets.push(pos);
      assert.equal(queue.putMessagePositionInfo(pos, size, 0, i), 'PUT_OK');
      pos += size + Math.floor(random() * 3) * 1000; // other queues' messages in between
    }
    await persist(queue);
    const probes = Array.from({ length: 40 }, () => Math.floor(random() * (pos + 500))).sort((a, b) => a - b);
    for (const minPhy of probes) {
      queue.correctMinOffset(minPhy);
      const first = offsets.findIndex((o) => o >= minPhy);
      assert.equal(
        queue.getMinOffsetInQueue(),
        first < 0 ? offsets.length : first,
        `seed ${seed}: correctMinOffset(${minPhy})`,
      );
    }
  });
});

describe('ConsumeQueueTest: truncateDirtyLogicFiles', () => {
  it('drops every unit pointing at or past the cut, whole files first, and zeros the bytes after it', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 25);
    await persist(queue);
    queue.truncateDirtyLogicFiles(12 * MSG);
    assert.equal(queue.getMaxOffsetInQueue(), 12);
    assert.equal(queue.getWrittenOffsetInQueue(), 12);
    assert.equal(queue.getMaxPhysicOffset(), 12 * MSG);
    assert.deepEqual(fs.readdirSync(queueDir(root)).sort(), [0, 200].map(fileName), 'file 400 deleted');
    const disk = unitsOnDisk(root);
    assert.deepEqual(disk.units, expectedUnits(0, 12));
    assert.ok(disk.zeroTail, 'units 12..19 of file 200 are zeros now');
    assert.deepEqual(await queue.getUnits(12, 1), []);
    // The queue continues at 12.
    putUnits(queue, 12, 14);
    const again = await reload(t, root, queue);
    assert.equal(again.getMaxOffsetInQueue(), 14);
    assert.deepEqual(await readAll(again, 0, 14), expectedUnits(0, 14));
  });

  it('a cut at a file boundary deletes the next file and leaves the previous one full', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 15);
    await persist(queue);
    queue.truncateDirtyLogicFiles(10 * MSG);
    assert.deepEqual(fs.readdirSync(queueDir(root)), [fileName(0)]);
    assert.equal(queue.getMaxOffsetInQueue(), 10);
    assert.equal(queue.getMaxPhysicOffset(), 10 * MSG);
    putUnits(queue, 10, 11);
    await persist(queue);
    assert.deepEqual(fs.readdirSync(queueDir(root)).sort(), [0, 200].map(fileName), 'file 200 made again');
    assert.deepEqual(unitsOnDisk(root).units, expectedUnits(0, 11));
  });

  it('a cut past the last unit changes nothing; a cut at 0 empties the queue', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 15);
    await persist(queue);
    const before = unitsOnDisk(root);
    queue.truncateDirtyLogicFiles(15 * MSG);
    queue.truncateDirtyLogicFiles(1_000_000);
    assert.equal(queue.getMaxOffsetInQueue(), 15);
    assert.deepEqual(unitsOnDisk(root), before);
    queue.truncateDirtyLogicFiles(0);
    assert.equal(queue.getMaxOffsetInQueue(), 0);
    assert.equal(queue.getMaxPhysicOffset(), -1);
    assert.deepEqual(fs.readdirSync(queueDir(root)), [fileName(0)]);
    assert.deepEqual(unitsOnDisk(root).units, []);
    putUnits(queue, 0, 3);
    await persist(queue);
    assert.deepEqual(unitsOnDisk(root).units, expectedUnits(0, 3));
  });
});

describe('ConsumeQueueTest: recover and getUnits', () => {
  it('recover after a reload finds every unit across files (6 files: it scans the last 3, the others are full)', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 55);
    const again = await reload(t, root, queue);
    assert.equal(again.getMaxOffsetInQueue(), 55);
    assert.equal(again.getWrittenOffsetInQueue(), 55);
    assert.equal(again.getMinOffsetInQueue(), 0);
    assert.equal(again.getMaxPhysicOffset(), 55 * MSG);
    assert.deepEqual(await readAll(again, 0, 55), expectedUnits(0, 55));
    // Appending goes on at 55, in the last file, then rolls.
    putUnits(again, 55, 62);
    await persist(again);
    assert.deepEqual(unitsOnDisk(root).units, expectedUnits(0, 62));
    assert.deepEqual(
      fs.readdirSync(queueDir(root)).sort(),
      [0, 1, 2, 3, 4, 5, 6].map((f) => fileName(f * FILE_BYTES)),
    );
  });

  it('recover cuts at the first invalid unit; after a crash it also zeros what lies behind the hole', async (t) => {
    for (const afterCrash of [false, true]) {
      const root = tempDir(t);
      const queue = openQueue(t, root);
      putUnits(queue, 0, 25);
      await persist(queue);
      queue.shutdown();
      // Unit 22 (file 400, position 40) was never written: zeros, with units 23 and 24 after it.
      const file = path.join(queueDir(root), fileName(400));
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.alloc(UNIT), 0, UNIT, 2 * UNIT);
      fs.closeSync(fd);
      const again = openQueue(t, root);
      again.recover(afterCrash);
      assert.equal(again.getMaxOffsetInQueue(), 22, `afterCrash ${afterCrash}`);
      assert.equal(again.getMaxPhysicOffset(), 22 * MSG, `afterCrash ${afterCrash}`);
      if (afterCrash) {
        const raw = fs.readFileSync(file);
        assert.ok(
          raw.subarray(3 * UNIT).every((b) => b === 0),
          'units 23 and 24, behind the hole, are zeroed',
        );
        // The next unit 22 is written where it belongs; a reload sees exactly 23 units.
        putUnits(again, 22, 23);
        const reloaded = await reload(t, root, again);
        assert.equal(reloaded.getMaxOffsetInQueue(), 23, 'after a reload');
        assert.deepEqual(await readAll(reloaded, 0, 23), expectedUnits(0, 23));
        reloaded.shutdown();
      } else {
        again.shutdown();
      }
    }
  });

  it('getUnits: whole units from the offset, fewer at the end of a file or of the queue, none uncommitted', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 25);
    await persist(queue);
    assert.deepEqual(await queue.getUnits(0, 3), expectedUnits(0, 3));
    assert.deepEqual(await queue.getUnits(8, 5), expectedUnits(8, 10), 'stops at the end of file 0');
    assert.deepEqual(await queue.getUnits(10, 5), expectedUnits(10, 15), 'from the start of file 200');
    assert.deepEqual(await queue.getUnits(19, 1), expectedUnits(19, 20), 'the last unit of a file');
    assert.deepEqual(await queue.getUnits(23, 10), expectedUnits(23, 25), 'stops at the end of the queue');
    assert.deepEqual(await queue.getUnits(25, 1), [], 'at the end');
    assert.deepEqual(await queue.getUnits(100, 1), [], 'past the end');
    putUnits(queue, 25, 28);
    assert.deepEqual(await queue.getUnits(25, 3), [], 'appended, not committed: not readable');
    assert.equal(queue.getMaxOffsetInQueue(), 25);
    assert.equal(queue.getWrittenOffsetInQueue(), 28);
    await queue.commit();
    assert.deepEqual(await queue.getUnits(25, 3), expectedUnits(25, 28));
    assert.equal(queue.getMaxOffsetInQueue(), 28);
  });
});

describe('ConsumeQueue read-ahead', () => {
  it('later pulls are served from the units one read kept, never fewer than the file holds, never stale after a cut', async (t) => {
    const root = tempDir(t);
    const queue = openQueue(t, root);
    putUnits(queue, 0, 5);
    await persist(queue);
    assert.deepEqual(await queue.getUnits(0, 2), expectedUnits(0, 2));
    // Units appended and committed after the read that kept units 0..4: a pull past what was
    // kept must see them.
    putUnits(queue, 5, 8);
    await queue.commit();
    assert.deepEqual(await queue.getUnits(2, 10), expectedUnits(2, 8));
    assert.deepEqual(await queue.getUnits(3, 2), expectedUnits(3, 5));
    // The cut of a recovery: kept units pointing past it must not come back.
    queue.truncateDirtyLogicFiles(6 * MSG);
    assert.equal(queue.getMaxOffsetInQueue(), 6);
    assert.deepEqual(await queue.getUnits(4, 10), expectedUnits(4, 6));
    putUnits(queue, 6, 7);
    await queue.commit();
    assert.deepEqual(await queue.getUnits(6, 1), expectedUnits(6, 7));
  });
});

describe('ConsumeQueueStore', () => {
  function openStoreQueues(t: TestContext, root: string): ConsumeQueueStore {
    const config = createMessageStoreConfig({
      storePathRootDir: root,
      mappedFileSizeConsumeQueue: FILE_BYTES,
    });
    const store = new ConsumeQueueStore({ config, io: nodeStoreIO, logger: silentLogger });
    onCleanup(t, () => store.shutdown());
    return store;
  }

  it('loads every topic/queue directory, recovers them, and reports the highest physic offset', async (t) => {
    const root = tempDir(t);
    const first = openStoreQueues(t, root);
    assert.deepEqual(first.load(), []);
    const a0 = first.findOrCreate('A', 0);
    const a3 = first.findOrCreate('A', 3);
    const b1 = first.findOrCreate('B', 1);
    assert.equal(first.findOrCreate('A', 0), a0, 'one queue per topic/queue id');
    putUnits(a0, 0, 12);
    for (let i = 0; i < 4; i++) assert.equal(a3.putMessagePositionInfo(5000 + i * MSG, MSG, 0, i), 'PUT_OK');
    assert.equal(b1.putMessagePositionInfo(7000, MSG, 0, 0), 'PUT_OK');
    await first.commitAll();
    await first.flushEverything();
    assert.equal(first.getMaxPhysicOffset(), 7000 + MSG);
    first.shutdown();

    // Junk that is not a queue: ignored.
    fs.mkdirSync(path.join(root, 'consumequeue', 'A', 'not-a-queue'));
    const second = openStoreQueues(t, root);
    assert.deepEqual(second.load(), []);
    assert.deepEqual(second.topics().sort(), ['A', 'B']);
    assert.deepEqual(second.queueIds('A'), [0, 3]);
    assert.deepEqual(second.recover(false), []);
    assert.equal(second.find('A', 0)?.getMaxOffsetInQueue(), 12);
    assert.equal(second.find('A', 3)?.getMaxOffsetInQueue(), 4);
    assert.equal(second.find('B', 1)?.getMaxOffsetInQueue(), 1);
    assert.equal(second.find('B', 0), null);
    assert.equal(second.getMaxPhysicOffset(), 7000 + MSG);
    // The commit log was cut at 5200: every queue drops what points past it.
    second.truncateDirtyLogicFiles(5200);
    assert.equal(second.find('A', 0)?.getMaxOffsetInQueue(), 12);
    assert.equal(second.find('A', 3)?.getMaxOffsetInQueue(), 2);
    assert.equal(second.find('B', 1)?.getMaxOffsetInQueue(), 0);
    assert.equal(second.getMaxPhysicOffset(), 5200);
    second.correctMinOffset(500);
    assert.equal(second.find('A', 0)?.getMinOffsetInQueue(), 5);
    assert.equal(second.find('A', 3)?.getMinOffsetInQueue(), 0);
  });

  it('a queue with a file of the wrong size is deleted to be rebuilt, and reported', async (t) => {
    const root = tempDir(t);
    const first = openStoreQueues(t, root);
    first.load();
    putUnits(first.findOrCreate('C', 0), 0, 5);
    putUnits(first.findOrCreate('C', 1), 0, 5);
    await first.commitAll();
    await first.flushEverything();
    first.shutdown();
    fs.truncateSync(path.join(root, 'consumequeue', 'C', '1', fileName(0)), 77);
    fs.writeFileSync(path.join(root, 'consumequeue', 'C', '1', fileName(200)), Buffer.alloc(FILE_BYTES));
    const second = openStoreQueues(t, root);
    assert.deepEqual(second.load(), ['C/1']);
    second.recover(false);
    assert.equal(second.find('C', 0)?.getMaxOffsetInQueue(), 5);
    assert.equal(second.find('C', 1)?.getMaxOffsetInQueue(), 0);
    assert.deepEqual(fs.readdirSync(path.join(root, 'consumequeue', 'C', '1')), [], 'its files are gone');
  });
});
