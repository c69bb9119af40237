import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { warmUpBodyCrcWorker } from '../../src/store/commitlog/body-crc-verifier.js';
import { type ScanEnd, scanSegment, scanSegmentAsync } from '../../src/store/commitlog/commit-log-scanner.js';
import { MessageStore, nodeStoreIO, silentLogger } from '../../src/store/index.js';
import { MappedFile } from '../../src/store/mapped-file/mapped-file.js';
import { WriteBufferPool } from '../../src/store/mapped-file/write-buffer-pool.js';
import type { RecordHeader } from '../../src/store/message/message-decoder.js';
import { BLANK_MAGIC_CODE } from '../../src/store/message/message-format.js';
import { prng, tempDir, testSeed } from '../support/helpers.js';

/**
 * Recovery scans with read-ahead (`scanSegmentAsync`): the next window is read while the current
 * one is checked, and a record a window cut off is joined to the next window in its headroom.
 * It must see exactly what the plain scan sees. With the smallest window (64 KiB) and records
 * from a few bytes to larger than a window, records straddle window ends all the time.
 */

const SEED = testSeed();
const SEGMENT_BYTES = 1024 * 1024;
const WINDOW_BYTES = 64 * 1024;

type Seen = [offset: number, size: number, queueOffset: number, topic: string, storeTimestamp: number];

async function bothScans(
  file: MappedFile,
  start: number,
  limit: number,
): Promise<{
  plain: [Seen[], ScanEnd];
  ahead: [Seen[], ScanEnd];
  worker: [Seen[], ScanEnd];
  onWorker: number;
}> {
  const options = { checkCRC: true, forceVerifyPropCRC: false, windowSizeBytes: WINDOW_BYTES };
  const collect = (into: Seen[]) => (h: RecordHeader, window: Buffer) => {
    // The window must hold the record's bytes where the header says (the body checked again here).
    assert.ok(h.bodyOffset + h.bodyLength <= window.length, 'the record lies inside its window');
    into.push([h.physicalOffset, h.size, h.queueOffset, h.topic, h.storeTimestamp]);
    return true;
  };
  const plainSeen: Seen[] = [];
  const plainEnd = scanSegment(file, start, options, collect(plainSeen), limit);
  const aheadSeen: Seen[] = [];
  const aheadEnd = await scanSegmentAsync(file, start, options, collect(aheadSeen), limit);
  assert.equal(aheadEnd.bodyCrcsOnWorker ?? 0, 0, 'a scan below the worker threshold checks its own CRCs');
  // With the CRC worker from the first byte (the thread started before the scan).
  await warmUpBodyCrcWorker();
  const workerSeen: Seen[] = [];
  const workerEnd = await scanSegmentAsync(
    file,
    start,
    { ...options, crcWorkerMinScanBytes: 0 },
    collect(workerSeen),
    limit,
  );
  // A record running past the limit is reported with the bytes its window held, which differ.
  const normal = ({ bodyCrcsOnWorker: _, ...end }: ScanEnd): ScanEnd => ({
    ...end,
    reason: end.reason?.replace(/readable \d+ bytes/, 'readable N bytes') ?? null,
  });
  return {
    plain: [plainSeen, normal(plainEnd)],
    ahead: [aheadSeen, normal(aheadEnd)],
    worker: [workerSeen, normal(workerEnd)],
    onWorker: workerEnd.bodyCrcsOnWorker ?? 0,
  };
}

describe(`scanSegmentAsync against scanSegment (TEST_SEED=${SEED})`, () => {
  it('the same records and the same end: whole segments, limits, damage, records larger than a window', async (t) => {
    const random = prng(SEED);
    const root = tempDir(t);
    const store = await MessageStore.open(
      { storePathRootDir: root, mappedFileSizeCommitLog: SEGMENT_BYTES },
      { logger: silentLogger },
    );
    // Mostly small records, some of tens of KiB, a few larger than a window.
    let bytes = 0;
    for (let i = 0; bytes < 2.5 * SEGMENT_BYTES; i++) {
      const r = random();
      const size =
        r < 0.7
          ? 1 + Math.floor(random() * 2000)
          : r < 0.95
            ? 2000 + Math.floor(random() * 40_000)
            : WINDOW_BYTES + Math.floor(random() * 100_000);
      const result = await store.putMessage({
        topic: `Scan${i % 3}`,
        queueId: i % 2,
        body: Buffer.alloc(size, i % 251),
      });
      assert.equal(result.status, 'PUT_OK');
      bytes += size + 100;
    }
    await store.shutdown();
    const dir = path.join(root, 'commitlog');
    const names = fs.readdirSync(dir).sort();
    assert.ok(names.length >= 3, 'several segments');
    const pool = new WriteBufferPool(SEGMENT_BYTES, 1);
    for (const name of names.slice(0, 2)) {
      const filePath = path.join(dir, name);
      const context = `${name} (TEST_SEED=${SEED})`;
      let file = MappedFile.open(nodeStoreIO, filePath, SEGMENT_BYTES, pool);
      try {
        const whole = await bothScans(file, 0, SEGMENT_BYTES);
        assert.ok(whole.plain[0].length > 20, `${context}: records seen`);
        assert.equal(whole.plain[1].stop, 'blank', `${context}: a full segment ends in its BLANK`);
        assert.deepEqual(whole.ahead, whole.plain, `${context}: whole segment`);
        assert.deepEqual(whole.worker, whole.plain, `${context}: whole segment, CRC worker`);
        assert.ok(whole.onWorker > 0, `${context}: the worker checked some body CRCs`);
        // Limits anywhere, and starts at record boundaries.
        for (let k = 0; k < 20; k++) {
          const limit = Math.floor(random() * SEGMENT_BYTES);
          const startRecord = whole.plain[0][Math.floor(random() * whole.plain[0].length)] as Seen;
          const start = startRecord[0] % SEGMENT_BYTES;
          if (start >= limit) continue;
          const cut = await bothScans(file, start, limit);
          assert.deepEqual(cut.ahead, cut.plain, `${context}: from ${start} to ${limit}`);
          assert.deepEqual(cut.worker, cut.plain, `${context}: from ${start} to ${limit}, CRC worker`);
        }
      } finally {
        file.close();
      }
      // Damage: a flipped body byte in a record past the first window stops both at that record.
      const victim = flipBodyByte(filePath, random);
      file = MappedFile.open(nodeStoreIO, filePath, SEGMENT_BYTES, pool);
      try {
        const damaged = await bothScans(file, 0, SEGMENT_BYTES);
        assert.equal(damaged.plain[1].stop, 'invalid', `${context}: the flipped record stops the scan`);
        assert.equal(damaged.plain[1].position, victim, `${context}: at the flipped record`);
        assert.deepEqual(damaged.ahead, damaged.plain, `${context}: damaged at ${victim}`);
        assert.deepEqual(damaged.worker, damaged.plain, `${context}: damaged at ${victim}, CRC worker`);
      } finally {
        file.close();
      }
    }
  });
});

describe(`the body CRC worker (TEST_SEED=${SEED})`, () => {
  it('checks nearly every body CRC of a long scan, and a bad one still stops the scan at its record', async (t) => {
    const random = prng(SEED ^ 0xc4c);
    const root = tempDir(t);
    const store = await MessageStore.open(
      { storePathRootDir: root, mappedFileSizeCommitLog: SEGMENT_BYTES },
      { logger: silentLogger },
    );
    // Small records, none cut by anything but a window end: 16 windows of a few hundred records.
    for (let i = 0, bytes = 0; bytes < SEGMENT_BYTES - 4096; i++) {
      const size = 1 + Math.floor(random() * 300);
      const put = store.putMessage({ topic: 'Crc', queueId: i % 4, body: Buffer.alloc(size, i % 251) });
      bytes += size + 100;
      if (i % 256 === 0) assert.equal((await put).status, 'PUT_OK');
    }
    await store.shutdown();
    const filePath = path.join(root, 'commitlog', '00000000000000000000');
    const pool = new WriteBufferPool(SEGMENT_BYTES, 1);
    let file = MappedFile.open(nodeStoreIO, filePath, SEGMENT_BYTES, pool);
    try {
      const whole = await bothScans(file, 0, SEGMENT_BYTES);
      const records = whole.plain[0].length;
      assert.deepEqual(whole.worker, whole.plain);
      // The first window is the main thread's (the worker starts its chain there), and so is the
      // record each window cut off: everything else is the worker's.
      const windows = Math.ceil(SEGMENT_BYTES / WINDOW_BYTES);
      const firstWindowRecords = whole.plain[0].filter(([offset]) => offset < WINDOW_BYTES).length;
      assert.ok(
        whole.onWorker >= records - firstWindowRecords - windows,
        `the worker checked ${whole.onWorker} of ${records} body CRCs (TEST_SEED=${SEED})`,
      );
    } finally {
      file.close();
    }
    const victim = flipBodyByte(filePath, random);
    file = MappedFile.open(nodeStoreIO, filePath, SEGMENT_BYTES, pool);
    try {
      const damaged = await bothScans(file, 0, SEGMENT_BYTES);
      assert.equal(
        damaged.plain[1].position,
        victim,
        `the flipped record stops the scan (TEST_SEED=${SEED})`,
      );
      assert.deepEqual(damaged.worker, damaged.plain, `damaged at ${victim} (TEST_SEED=${SEED})`);
    } finally {
      file.close();
    }
  });
});

/** Flips one body byte of a record that starts past the first window; returns its position. */
function flipBodyByte(filePath: string, random: () => number): number {
  const bytes = fs.readFileSync(filePath);
  const starts: number[] = [];
  for (let pos = 0; pos + 8 <= bytes.length; ) {
    const size = bytes.readInt32BE(pos);
    if (size <= 0 || bytes.readInt32BE(pos + 4) === BLANK_MAGIC_CODE) break;
    if (pos > WINDOW_BYTES) starts.push(pos);
    pos += size;
  }
  const victim = starts[Math.floor(random() * starts.length)] as number;
  // BODYLENGTH sits at 84 for IPv4 hosts; the body follows it.
  const bodyLength = bytes.readInt32BE(victim + 84);
  assert.ok(bodyLength > 0, 'the victim has a body');
  const at = victim + 88 + Math.floor(random() * bodyLength);
  const fd = fs.openSync(filePath, 'r+');
  try {
    fs.writeSync(fd, Buffer.from([(bytes[at] as number) ^ 0x40]), 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
  return victim;
}

describe('recovery of segments larger than a scan window', () => {
  // 16 MiB segments: two 8 MiB scan windows each, so read-ahead and the background commits run.
  // 64 MiB segments: long enough a scan for the body CRC worker (started before, so it is used).
  for (const segmentMiB of [16, 64]) {
    it(`rebuilds every consume queue unit (written between windows) and reads every message back (${segmentMiB} MiB segments)`, async (t) => {
      const random = prng(SEED ^ 0x5ca7);
      const root = tempDir(t);
      const config = { storePathRootDir: root, mappedFileSizeCommitLog: segmentMiB * 1024 * 1024 };
      const store = await MessageStore.open(config, { logger: silentLogger });
      const sent: { queueId: number; size: number }[] = [];
      let bytes = 0;
      while (bytes < 22 * 1024 * 1024) {
        const size = 1 + Math.floor(random() * 8000);
        const queueId = Math.floor(random() * 3);
        const put = store.putMessage({
          topic: 'BigScan',
          queueId,
          body: Buffer.alloc(size, sent.length % 256),
        });
        sent.push({ queueId, size });
        bytes += size + 110;
        if (sent.length % 256 === 0) await put;
      }
      await store.shutdown();
      // As after a crash with every consume queue lost: all of them rebuilt by the scan.
      fs.rmSync(path.join(root, 'consumequeue'), { recursive: true, force: true });
      fs.rmSync(path.join(root, 'checkpoint'), { force: true });
      fs.writeFileSync(path.join(root, 'abort'), '');
      if (segmentMiB >= 64) await warmUpBodyCrcWorker();
      const reopened = await MessageStore.open(config, { logger: silentLogger });
      try {
        const report = reopened.getRecoveryReport();
        assert.equal(report.lastExitOK, false);
        assert.equal(report.consumeQueues.unitsRebuilt, sent.length, `TEST_SEED=${SEED}`);
        if (segmentMiB >= 64) {
          assert.ok(report.commitLog.bodyCrcsOnWorker > sent.length / 2, `the worker checked most body CRCs`);
        } else {
          assert.equal(report.commitLog.bodyCrcsOnWorker, 0, 'a short scan checks its own CRCs');
        }
        for (let queueId = 0; queueId < 3; queueId++) {
          const expected = sent.map((m, i) => ({ ...m, i })).filter((m) => m.queueId === queueId);
          assert.equal(reopened.getMaxOffsetInQueue('BigScan', queueId), expected.length);
          let offset = 0;
          while (offset < expected.length) {
            const got = await reopened.getMessage('g', 'BigScan', queueId, offset, 32);
            assert.equal(got.status, 'FOUND');
            assert.equal(got.skippedDamaged, 0);
            for (const message of got.messages) {
              const want = expected[offset] as { size: number; i: number };
              assert.equal(message.body.length, want.size, `queue ${queueId} offset ${offset}`);
              assert.equal(message.body[0], want.i % 256, `queue ${queueId} offset ${offset}`);
              offset++;
            }
          }
        }
      } finally {
        await reopened.shutdown();
      }
    });
  }
});
