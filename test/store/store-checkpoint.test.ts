import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  CHECKPOINT_FILE_SIZE_BYTES,
  CHECKPOINT_MIN_TIMESTAMP_MARGIN_MS,
  StoreCheckpoint,
} from '../../src/store/checkpoint/store-checkpoint.js';
import { nodeStoreIO } from '../../src/store/index.js';
import { tempDir } from '../support/helpers.js';

/**
 * Port of RocketMQ's StoreCheckpointTest (store reference §2.9, §6), plus the byte layout: one
 * 4096-byte page of big-endian int64s at 0 (physic), 8 (logics), 16 (index), 24 (master flushed
 * offset), 32 (confirm offset), zeros after.
 */

describe('StoreCheckpoint', () => {
  it('keeps physic/logics timestamps across flush and reopen (StoreCheckpointTest)', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    assert.equal(checkpoint.createdOnOpen, true);
    const physicMsgTimestamp = 0xaabb;
    const logicsMsgTimestamp = 0xaabbcc;
    checkpoint.physicMsgTimestamp = physicMsgTimestamp;
    checkpoint.logicsMsgTimestamp = logicsMsgTimestamp;
    await checkpoint.flush();
    const diff = physicMsgTimestamp - checkpoint.getMinTimestamp();
    assert.equal(diff, CHECKPOINT_MIN_TIMESTAMP_MARGIN_MS);
    assert.equal(diff, 3000);
    await checkpoint.shutdown();

    const reopened = StoreCheckpoint.open(nodeStoreIO, file);
    try {
      assert.equal(reopened.createdOnOpen, false);
      assert.equal(reopened.physicMsgTimestamp, physicMsgTimestamp);
      assert.equal(reopened.logicsMsgTimestamp, logicsMsgTimestamp);
    } finally {
      await reopened.shutdown();
    }
  });

  it('keeps all five fields across reopen, with real millisecond timestamps', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const now = Date.now();
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    checkpoint.physicMsgTimestamp = now;
    checkpoint.logicsMsgTimestamp = now - 10;
    checkpoint.indexMsgTimestamp = now - 20;
    checkpoint.masterFlushedOffset = 2 ** 40 + 7;
    checkpoint.confirmPhyOffset = 123456789;
    await checkpoint.flush();
    await checkpoint.shutdown();

    const reopened = StoreCheckpoint.open(nodeStoreIO, file);
    try {
      assert.deepEqual(
        [
          reopened.physicMsgTimestamp,
          reopened.logicsMsgTimestamp,
          reopened.indexMsgTimestamp,
          reopened.masterFlushedOffset,
          reopened.confirmPhyOffset,
        ],
        [now, now - 10, now - 20, 2 ** 40 + 7, 123456789],
      );
    } finally {
      await reopened.shutdown();
    }
  });

  it('getMinTimestamp is min(physic, logics) - 3000, never negative; getMinTimestampIndex also bounds by index', async (t) => {
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, path.join(tempDir(t), 'checkpoint'));
    try {
      checkpoint.physicMsgTimestamp = 1_000_000;
      checkpoint.logicsMsgTimestamp = 2_000_000;
      assert.equal(checkpoint.getMinTimestamp(), 1_000_000 - 3000, 'physic < logics');
      checkpoint.logicsMsgTimestamp = 500_000;
      assert.equal(checkpoint.getMinTimestamp(), 500_000 - 3000, 'logics < physic');

      checkpoint.physicMsgTimestamp = 1000;
      checkpoint.logicsMsgTimestamp = 2000;
      assert.equal(checkpoint.getMinTimestamp(), 0, 'never negative');
      checkpoint.physicMsgTimestamp = 0;
      checkpoint.logicsMsgTimestamp = 0;
      assert.equal(checkpoint.getMinTimestamp(), 0);

      checkpoint.physicMsgTimestamp = 1_000_000;
      checkpoint.logicsMsgTimestamp = 1_000_000;
      checkpoint.indexMsgTimestamp = 5_000;
      assert.equal(checkpoint.getMinTimestampIndex(), 5_000);
      checkpoint.indexMsgTimestamp = 2_000_000;
      assert.equal(checkpoint.getMinTimestampIndex(), 1_000_000 - 3000);
    } finally {
      await checkpoint.shutdown();
    }
  });

  it('writes exactly 4096 bytes with the fields big-endian at 0/8/16/24/32 and zeros after', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    const values = [0x0102030405, 0x1112131415, 0x2122232425, 0x3132333435, 0x4142434445];
    checkpoint.physicMsgTimestamp = values[0] as number;
    checkpoint.logicsMsgTimestamp = values[1] as number;
    checkpoint.indexMsgTimestamp = values[2] as number;
    checkpoint.masterFlushedOffset = values[3] as number;
    checkpoint.confirmPhyOffset = values[4] as number;
    await checkpoint.flush();
    await checkpoint.shutdown();

    const raw = fs.readFileSync(file);
    assert.equal(raw.length, CHECKPOINT_FILE_SIZE_BYTES);
    assert.equal(raw.length, 4096);
    values.forEach((value, i) => {
      assert.equal(raw.readBigInt64BE(i * 8), BigInt(value), `field ${i} at byte ${i * 8}`);
    });
    // Spot-check the byte order of the first field by hand: 00 00 00 01 02 03 04 05.
    assert.deepEqual([...raw.subarray(0, 8)], [0, 0, 0, 1, 2, 3, 4, 5]);
    assert.ok(
      raw.subarray(40).every((b) => b === 0),
      'bytes 40..4095 are zeros',
    );
  });

  it('reads a checkpoint written by someone else (RocketMQ layout)', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const page = Buffer.alloc(4096);
    page.writeBigInt64BE(1_700_000_000_123n, 0);
    page.writeBigInt64BE(1_700_000_000_456n, 8);
    page.writeBigInt64BE(1_700_000_000_000n, 16);
    fs.writeFileSync(file, page);
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    try {
      assert.equal(checkpoint.createdOnOpen, false);
      assert.equal(checkpoint.physicMsgTimestamp, 1_700_000_000_123);
      assert.equal(checkpoint.logicsMsgTimestamp, 1_700_000_000_456);
      assert.equal(checkpoint.indexMsgTimestamp, 1_700_000_000_000);
      assert.equal(checkpoint.getMinTimestamp(), 1_700_000_000_123 - 3000);
    } finally {
      await checkpoint.shutdown();
    }
  });

  it('creates a missing file, zero-filled and 4096 bytes long', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    assert.equal(fs.existsSync(file), false);
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    try {
      assert.equal(checkpoint.createdOnOpen, true);
      assert.equal(checkpoint.physicMsgTimestamp, 0);
      assert.equal(checkpoint.logicsMsgTimestamp, 0);
      assert.equal(checkpoint.indexMsgTimestamp, 0);
      assert.equal(checkpoint.getMinTimestamp(), 0);
      const raw = fs.readFileSync(file);
      assert.equal(raw.length, 4096);
      assert.ok(raw.every((b) => b === 0));
    } finally {
      await checkpoint.shutdown();
    }
  });

  it('tolerates a short file: reads the fields it has and extends it to 4096 bytes', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const head = Buffer.alloc(20);
    head.writeBigInt64BE(123_456_789n, 0);
    head.writeBigInt64BE(987_654_321n, 8);
    fs.writeFileSync(file, head); // index field cut after 4 of its 8 bytes
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    try {
      assert.equal(checkpoint.createdOnOpen, true);
      assert.equal(checkpoint.physicMsgTimestamp, 123_456_789);
      assert.equal(checkpoint.logicsMsgTimestamp, 987_654_321);
      assert.equal(checkpoint.indexMsgTimestamp, 0);
      assert.equal(checkpoint.masterFlushedOffset, 0);
      assert.equal(fs.statSync(file).size, 4096);
    } finally {
      await checkpoint.shutdown();
    }

    const empty = path.join(path.dirname(file), 'checkpoint-empty');
    fs.writeFileSync(empty, Buffer.alloc(0));
    const fromEmpty = StoreCheckpoint.open(nodeStoreIO, empty);
    try {
      assert.equal(fromEmpty.createdOnOpen, true);
      assert.equal(fromEmpty.physicMsgTimestamp, 0);
      assert.equal(fs.statSync(empty).size, 4096);
    } finally {
      await fromEmpty.shutdown();
    }
  });

  it('never trusts a negative timestamp from a corrupt page', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const page = Buffer.alloc(4096);
    page.writeBigInt64BE(-5n, 0);
    page.writeBigInt64BE(1_000_000n, 8);
    fs.writeFileSync(file, page);
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    try {
      assert.equal(checkpoint.physicMsgTimestamp, 0);
      assert.equal(checkpoint.logicsMsgTimestamp, 1_000_000);
      assert.equal(checkpoint.getMinTimestamp(), 0);
    } finally {
      await checkpoint.shutdown();
    }
  });

  it('serializes concurrent flushes: the last values written win', async (t) => {
    const file = path.join(tempDir(t), 'checkpoint');
    const checkpoint = StoreCheckpoint.open(nodeStoreIO, file);
    const flushes: Promise<void>[] = [];
    for (let i = 1; i <= 20; i++) {
      checkpoint.physicMsgTimestamp = i * 1000;
      flushes.push(checkpoint.flush());
    }
    await Promise.all(flushes);
    await checkpoint.shutdown();
    assert.equal(fs.readFileSync(file).readBigInt64BE(0), 20_000n);
  });
});
