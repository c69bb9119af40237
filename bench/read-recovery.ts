import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { MessageStore, silentLogger } from 'rocketmq-ts/store';
import { median } from './stats.js';

/**
 * The read side of `npm run bench`:
 *
 * - read throughput: one queue of 1 KiB messages read from offset 0 to its end with getMessage
 *   (32 per call, RocketMQ's in-memory batch), beside a bare reader that preads the same bytes in
 *   the same batches and checks each body's CRC: the least a reader that verifies what it hands
 *   out must do.
 * - recovery: a 1 GiB commit log opened after a crash with nothing to start from (no checkpoint,
 *   no consume queues): every record is read, CRC-checked and dispatched again. Beside it, a bare
 *   sequential read of the same file with a CRC of every body.
 */

/** Record layout fields the bare readers use (IPv4 hosts, as the bench writes). */
const TOTALSIZE_POSITION = 0;
const BODYCRC_POSITION = 8;
const BODY_LENGTH_POSITION_V4 = 84;
const RECOVERY_WINDOW_BYTES = 8 * 1024 * 1024;
const READ_BATCH = 32;

/** Walks the records in `window[0..length)`, checking each body CRC; returns bytes consumed and count. */
function crcRecords(window: Buffer, length: number): { consumed: number; records: number } {
  let at = 0;
  let records = 0;
  while (at + BODY_LENGTH_POSITION_V4 + 4 <= length) {
    const size = window.readInt32BE(at + TOTALSIZE_POSITION);
    if (size <= 0 || at + size > length) break;
    const bodyLength = window.readInt32BE(at + BODY_LENGTH_POSITION_V4);
    const bodyStart = at + BODY_LENGTH_POSITION_V4 + 4;
    const crc = zlib.crc32(window.subarray(bodyStart, bodyStart + bodyLength)) & 0x7fffffff;
    if (crc !== window.readInt32BE(at + BODYCRC_POSITION)) throw new Error(`bad CRC at ${at}`);
    at += size;
    records++;
  }
  return { consumed: at, records };
}

/** Sequential read of `length` bytes of `file` in 8 MiB windows, every body CRC checked. */
function bareScan(file: string, length: number): { ms: number; records: number } {
  const start = performance.now();
  const fd = fs.openSync(file, 'r');
  const window = Buffer.allocUnsafe(RECOVERY_WINDOW_BYTES);
  let position = 0;
  let records = 0;
  try {
    while (position < length) {
      const n = fs.readSync(fd, window, 0, Math.min(RECOVERY_WINDOW_BYTES, length - position), position);
      if (n === 0) break;
      const { consumed, records: r } = crcRecords(window, n);
      if (consumed === 0) break;
      records += r;
      position += consumed;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { ms: performance.now() - start, records };
}

/** Writes back every dirty page of the machine (sync(1)), so a measurement starts from a quiet disk. */
function settleDisk(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

function pread(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, 0, length, position, (err, n) => (err === null ? resolve(n) : reject(err)));
  });
}

async function fillStore(dir: string, segmentBytes: number, messages: number, body: Buffer): Promise<number> {
  const store = await MessageStore.open(
    { storePathRootDir: dir, flushDiskType: 'ASYNC_FLUSH', mappedFileSizeCommitLog: segmentBytes },
    { logger: silentLogger },
  );
  const message = { topic: 'BenchRead', queueId: 0, body };
  let inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < messages; i++) {
    inFlight.push(store.putMessage(message));
    if (inFlight.length === 1024) {
      const results = (await Promise.all(inFlight)) as { status: string }[];
      if (results.some((r) => r.status !== 'PUT_OK')) throw new Error('a bench put failed');
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  const end = store.getMaxPhyOffset();
  await store.shutdown();
  return end;
}

export interface ReadBenchRow {
  readonly messages: number;
  readonly storeMsgsPerSec: number;
  readonly bareMsgsPerSec: number;
  readonly ratio: number;
}

/** Reads `messages` 1 KiB messages back, store and bare, `pairs` times; medians. */
export async function benchRead(baseDir: string, messages: number, pairs: number): Promise<ReadBenchRow> {
  const dir = fs.mkdtempSync(path.join(baseDir, 'rmq-bench-read-'));
  try {
    const body = Buffer.alloc(1024, 0x44);
    const end = await fillStore(dir, 1024 * 1024 * 1024, messages, body);
    const store = await MessageStore.open({ storePathRootDir: dir }, { logger: silentLogger });
    const segment = path.join(dir, 'commitlog', '00000000000000000000');
    const storeRates: number[] = [];
    const bareRates: number[] = [];
    const ratios: number[] = [];
    try {
      for (let pair = 0; pair < pairs; pair++) {
        let start = performance.now();
        let offset = 0;
        let read = 0;
        while (offset < messages) {
          const result = await store.getMessage('bench', 'BenchRead', 0, offset, READ_BATCH);
          if (result.status !== 'FOUND') throw new Error(`read at ${offset}: ${result.status}`);
          read += result.messages.length;
          offset = result.nextBeginOffset;
        }
        if (read !== messages) throw new Error(`read ${read} of ${messages}`);
        const storeRate = read / ((performance.now() - start) / 1000);

        start = performance.now();
        const fd = fs.openSync(segment, 'r');
        let bareRead = 0;
        try {
          const recordBytes = end / messages;
          const batch = Buffer.allocUnsafe(READ_BATCH * recordBytes);
          for (let position = 0; position < end; ) {
            const length = Math.min(batch.length, end - position);
            const n = await pread(fd, batch, length, position);
            const { consumed, records } = crcRecords(batch, n);
            bareRead += records;
            position += consumed;
          }
        } finally {
          fs.closeSync(fd);
        }
        if (bareRead !== messages) throw new Error(`bare read ${bareRead} of ${messages}`);
        const bareRate = bareRead / ((performance.now() - start) / 1000);
        storeRates.push(storeRate);
        bareRates.push(bareRate);
        ratios.push(storeRate / bareRate);
      }
    } finally {
      await store.shutdown();
    }
    return {
      messages,
      storeMsgsPerSec: median(storeRates),
      bareMsgsPerSec: median(bareRates),
      ratio: median(ratios),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface RecoveryBenchRow {
  readonly logBytes: number;
  readonly messages: number;
  readonly abnormalMs: number;
  readonly normalMs: number;
  readonly bareMs: number;
  readonly ratio: number;
}

/**
 * A 1 GiB commit log of 1 KiB messages; each pair: a full abnormal recovery (abort file, no
 * checkpoint, no consume queues) timed around MessageStore.open, then the bare scan.
 */
export async function benchRecovery(
  baseDir: string,
  logBytes: number,
  pairs: number,
): Promise<RecoveryBenchRow> {
  const dir = fs.mkdtempSync(path.join(baseDir, 'rmq-bench-recovery-'));
  try {
    const body = Buffer.alloc(1024, 0x45);
    const recordBytes = 91 + body.length + 'BenchRead'.length;
    // One segment holding the whole log, filled to just under its end.
    const messages = Math.floor((logBytes - 8) / recordBytes);
    const end = await fillStore(dir, logBytes, messages, body);
    const segment = path.join(dir, 'commitlog', '00000000000000000000');
    const abnormal: number[] = [];
    const bare: number[] = [];
    const ratios: number[] = [];
    let normalMs = Number.NaN;
    for (let pair = 0; pair < pairs; pair++) {
      fs.rmSync(path.join(dir, 'consumequeue'), { recursive: true, force: true });
      fs.rmSync(path.join(dir, 'checkpoint'), { force: true });
      fs.writeFileSync(path.join(dir, 'abort'), '0');
      // Recovery fsyncs what it writes; write-back left by the sections before (gigabytes of
      // puts) or the last pair's shutdown would land on those fsyncs and not on the bare scan.
      settleDisk();
      let start = performance.now();
      const store = await MessageStore.open({ storePathRootDir: dir }, { logger: silentLogger });
      const ms = performance.now() - start;
      const report = store.getRecoveryReport();
      if (report.lastExitOK || report.consumeQueues.unitsRebuilt !== messages) {
        throw new Error(`recovery rebuilt ${report.consumeQueues.unitsRebuilt} of ${messages} units`);
      }
      await store.shutdown();
      start = performance.now();
      const reopened = await MessageStore.open({ storePathRootDir: dir }, { logger: silentLogger });
      normalMs = performance.now() - start;
      await reopened.shutdown();
      settleDisk();
      const scan = bareScan(segment, end);
      if (scan.records !== messages) throw new Error(`bare scan saw ${scan.records} of ${messages}`);
      abnormal.push(ms);
      bare.push(scan.ms);
      ratios.push(ms / scan.ms);
    }
    return {
      logBytes,
      messages,
      abnormalMs: median(abnormal),
      normalMs,
      bareMs: median(bare),
      ratio: median(ratios),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
