import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  FlushDiskType,
  MessageStore,
  type MessageStoreConfigInput,
  nodeStoreIO,
  type PutMessageResult,
  type StoreFileHandle,
  type StoreIO,
  silentLogger,
} from '../../src/store/index.js';
import { type CrashOptions, SECTOR_SIZE_BYTES, SimulatedDisk } from '../../src/store/io/simulated-disk.js';
import { prng, tempDir } from '../support/helpers.js';

const S = SECTOR_SIZE_BYTES;

/** A disk with `/d` created durably. */
function diskWithDir(): SimulatedDisk {
  const disk = new SimulatedDisk();
  disk.mkdirSync('/d');
  disk.syncAll();
  return disk;
}

/** Creates `/d/{name}` holding `content`, data and directory entry durable. */
function durableFile(disk: SimulatedDisk, name: string, content: Buffer): void {
  const file = disk.openSync(`/d/${name}`, 'create-new');
  file.writeSync(content, 0);
  file.datasyncSync();
  file.closeSync();
  disk.fsyncDirectorySync('/d');
}

function crashAndReboot(disk: SimulatedDisk, options: CrashOptions): SimulatedDisk {
  disk.crash(options);
  return disk.reboot();
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

function assertEio(fn: () => unknown, what: string): void {
  assert.throws(fn, (err: unknown) => codeOf(err) === 'EIO', `${what} throws EIO`);
}

/** The sectors of `content` that equal `fill` everywhere, as a string of 'N' (new) / 'O' (old). */
function sectorPattern(content: Buffer, newFill: number, oldFill: number): string {
  let pattern = '';
  for (let i = 0; i < content.length / S; i++) {
    const sector = content.subarray(i * S, (i + 1) * S);
    if (sector.every((b) => b === newFill)) pattern += 'N';
    else if (sector.every((b) => b === oldFill)) pattern += 'O';
    else pattern += '?';
  }
  return pattern;
}

/** 16 sectors of 'A' durable, then all of them overwritten with 'B', unsynced; crash with `options`. */
function tornScenario(options: CrashOptions): string {
  const disk = diskWithDir();
  durableFile(disk, 'f', Buffer.alloc(16 * S, 0x41));
  const file = disk.openSync('/d/f', 'read-write');
  file.writeSync(Buffer.alloc(16 * S, 0x42), 0);
  const after = crashAndReboot(disk, options);
  return sectorPattern(after.readFileSync('/d/f'), 0x42, 0x41);
}

describe('SimulatedDisk: data durability', () => {
  it('drops unsynced writes at a crash without torn writes, keeps synced ones', () => {
    const disk = diskWithDir();
    durableFile(disk, 'f', Buffer.from('hello'));
    const file = disk.openSync('/d/f', 'read-write');
    file.writeSync(Buffer.from('HE'), 0); // an overwrite inside the durable size
    file.writeSync(Buffer.from(' world'), 5); // an append
    assert.equal(disk.readFileSync('/d/f').toString(), 'HEllo world', 'the process sees its writes');
    assert.equal(disk.durableContent('/d/f')?.toString(), 'hello');

    const after = crashAndReboot(disk, { seed: 1, tornWrites: false });
    assert.equal(after.readFileSync('/d/f').toString(), 'hello');
    assert.equal(after.statSync('/d/f')?.size, 5);
  });

  it('keeps every write that was datasynced, through an async write and datasync', async () => {
    const disk = diskWithDir();
    durableFile(disk, 'f', Buffer.alloc(0));
    const file = disk.openSync('/d/f', 'read-write');
    await file.write([Buffer.from('abc'), Buffer.from('def')], 0);
    await file.datasync();
    file.writeSync(Buffer.from('XYZ'), 0);
    // keepProbability 0: torn writes on, but no dirty sector survives.
    const after = crashAndReboot(disk, { seed: 7, keepProbability: 0 });
    assert.equal(after.readFileSync('/d/f').toString(), 'abcdef');
  });

  it('tears unsynced writes at 512-byte sectors, the same way for the same seed', () => {
    const patterns = new Map<number, string>();
    for (let seed = 0; seed < 20; seed++) {
      const pattern = tornScenario({ seed });
      assert.match(pattern, /^[NO]{16}$/, `seed ${seed}: every sector is wholly new or wholly old`);
      assert.equal(tornScenario({ seed }), pattern, `seed ${seed} tears the same sectors every time`);
      patterns.set(seed, pattern);
    }
    const all = [...patterns.values()];
    assert.ok(
      all.some((p) => p.includes('N') && p.includes('O')),
      'some seed keeps part of a write and reverts the rest',
    );
    assert.ok(new Set(all).size > 10, 'different seeds tear differently');
    const kept = all
      .join('')
      .split('')
      .filter((c) => c === 'N').length;
    assert.ok(kept > 100 && kept < 220, `about half of 320 sectors kept at p = 0.5 (kept ${kept})`);
    assert.equal(tornScenario({ seed: 3, keepProbability: 1 }), 'N'.repeat(16));
    assert.equal(tornScenario({ seed: 3, keepProbability: 0 }), 'O'.repeat(16));
    assert.equal(tornScenario({ seed: 3, tornWrites: false, keepProbability: 1 }), 'O'.repeat(16));
    // The draw follows keepProbability.
    const rare = Array.from({ length: 20 }, (_, seed) => tornScenario({ seed, keepProbability: 0.1 })).join(
      '',
    );
    const rareKept = rare.split('').filter((c) => c === 'N').length;
    assert.ok(rareKept > 5 && rareKept < 70, `about 10% of 320 sectors kept at p = 0.1 (kept ${rareKept})`);
  });

  it('can bring back a record half new, half old when it straddles a sector boundary', () => {
    let halfAndHalf = 0;
    for (let seed = 0; seed < 16; seed++) {
      const disk = diskWithDir();
      durableFile(disk, 'f', Buffer.alloc(2 * S, 0x2e));
      const file = disk.openSync('/d/f', 'read-write');
      // A 100-byte record across the boundary of sectors 0 and 1.
      file.writeSync(Buffer.alloc(100, 0x52), S - 50);
      const after = crashAndReboot(disk, { seed });
      const record = after.readFileSync('/d/f').subarray(S - 50, S + 50);
      const first = record.subarray(0, 50);
      const second = record.subarray(50);
      for (const half of [first, second]) {
        assert.ok(
          half.every((b) => b === 0x52) || half.every((b) => b === 0x2e),
          'each half is wholly new or wholly old',
        );
      }
      if (first[0] !== second[0]) halfAndHalf++;
    }
    assert.ok(halfAndHalf > 0, 'some seed brings the record back torn');
  });

  it('loses bytes written past the durable size even when their sectors are kept', () => {
    const disk = diskWithDir();
    durableFile(disk, 'f', Buffer.alloc(S + 10, 0x41));
    const file = disk.openSync('/d/f', 'read-write');
    file.writeSync(Buffer.alloc(3 * S, 0x42), 0);
    const after = crashAndReboot(disk, { seed: 1, keepProbability: 1 });
    const content = after.readFileSync('/d/f');
    assert.equal(content.length, S + 10, 'the size is the synced one');
    assert.ok(
      content.every((b) => b === 0x42),
      'the kept sectors inside it are new',
    );
  });

  it('makes a size change durable only with datasync', () => {
    const disk = diskWithDir();
    durableFile(disk, 'grow', Buffer.from('abc'));
    durableFile(disk, 'grown', Buffer.from('abc'));
    durableFile(disk, 'shrink', Buffer.alloc(2 * S, 0x41));
    durableFile(disk, 'shrunk', Buffer.alloc(2 * S, 0x41));
    disk.openSync('/d/grow', 'read-write').truncateSync(4096);
    const grown = disk.openSync('/d/grown', 'read-write');
    grown.truncateSync(4096);
    grown.datasyncSync();
    disk.openSync('/d/shrink', 'read-write').truncateSync(10);
    const shrunk = disk.openSync('/d/shrunk', 'read-write');
    shrunk.truncateSync(10);
    shrunk.datasyncSync();
    assert.equal(disk.statSync('/d/grow')?.size, 4096, 'the process sees the new size at once');

    const after = crashAndReboot(disk, { seed: 5, tornWrites: false });
    assert.equal(after.statSync('/d/grow')?.size, 3);
    assert.equal(after.statSync('/d/grown')?.size, 4096);
    assert.deepEqual(after.readFileSync('/d/grown'), Buffer.concat([Buffer.from('abc'), Buffer.alloc(4093)]));
    assert.deepEqual(after.readFileSync('/d/shrink'), Buffer.alloc(2 * S, 0x41), 'the cut bytes come back');
    assert.deepEqual(after.readFileSync('/d/shrunk'), Buffer.alloc(10, 0x41));
  });

  it('zero-fills on truncate-then-extend, in the process and after a sync and crash', () => {
    const disk = diskWithDir();
    durableFile(disk, 'f', Buffer.alloc(3 * S, 0x41));
    const file = disk.openSync('/d/f', 'read-write');
    file.truncateSync(S + 7);
    file.truncateSync(3 * S);
    const expected = Buffer.concat([Buffer.alloc(S + 7, 0x41), Buffer.alloc(2 * S - 7)]);
    assert.deepEqual(disk.readFileSync('/d/f'), expected);
    file.datasyncSync();
    const after = crashAndReboot(disk, { seed: 2 });
    assert.deepEqual(after.readFileSync('/d/f'), expected);
  });

  it('reads through a handle only up to the size, and sees later writes (no stale copy)', () => {
    const disk = diskWithDir();
    const file = disk.openSync('/d/f', 'create-new');
    file.writeSync(Buffer.from('0123456789'), 0);
    const out = Buffer.alloc(20, 0xff);
    assert.equal(file.readSync(out, 0, 20, 4), 6);
    assert.equal(out.subarray(0, 6).toString(), '456789');
    assert.equal(file.readSync(out, 0, 20, 10), 0, 'at the end');
    assert.equal(file.readSync(out, 0, 20, 99), 0, 'past the end');
    file.datasyncSync();
    file.writeSync(Buffer.from('ab'), 0);
    assert.equal(disk.readFileSync('/d/f').toString(), 'ab23456789');
    assert.equal(file.sizeSync(), 10);
    assert.equal(disk.durableContent('/d/f'), null, 'the directory entry is not durable yet');
    disk.fsyncDirectorySync('/d');
    assert.equal(disk.durableContent('/d/f')?.toString(), '0123456789', 'synced data, not the later write');
  });
});

describe('SimulatedDisk: directory entries', () => {
  it('keeps a file named by a directory sync, drops one created after it however synced its data', () => {
    const disk = diskWithDir();
    const named = disk.openSync('/d/named', 'create-new');
    named.writeSync(Buffer.from('data'), 0);
    named.datasyncSync();
    const entryOnly = disk.openSync('/d/entry-only', 'create-new');
    entryOnly.writeSync(Buffer.from('data'), 0); // never datasynced
    disk.fsyncDirectorySync('/d');
    const late = disk.openSync('/d/late', 'create-new');
    late.writeSync(Buffer.from('data'), 0);
    late.datasyncSync();
    assert.deepEqual(disk.readdirSync('/d'), ['entry-only', 'late', 'named']);

    const after = crashAndReboot(disk, { seed: 9, keepProbability: 1 });
    assert.deepEqual(after.readdirSync('/d'), ['entry-only', 'named']);
    assert.equal(after.readFileSync('/d/named').toString(), 'data');
    assert.equal(after.statSync('/d/entry-only')?.size, 0, 'the entry survived, the unsynced size did not');
    assert.equal(after.statSync('/d/late'), null);
  });

  it('drops a file created after the last directory sync', () => {
    const disk = diskWithDir();
    const file = disk.openSync('/d/f', 'create-new');
    file.writeSync(Buffer.from('data'), 0);
    file.datasyncSync();
    assert.equal(disk.durableContent('/d/f'), null);
    const after = crashAndReboot(disk, { seed: 1 });
    assert.equal(after.statSync('/d/f'), null);
    assert.deepEqual(after.readdirSync('/d'), []);
  });

  it('brings back an unlinked file whose unlink was not synced, with its durable content', () => {
    const disk = diskWithDir();
    durableFile(disk, 'back', Buffer.from('durable'));
    durableFile(disk, 'gone', Buffer.from('durable'));
    const handle = disk.openSync('/d/back', 'read-write');
    handle.writeSync(Buffer.from('DUR'), 0); // unsynced
    disk.unlinkSync('/d/back');
    disk.unlinkSync('/d/gone');
    assert.equal(disk.statSync('/d/back'), null);
    // An open handle still reaches the unlinked inode.
    const out = Buffer.alloc(7);
    assert.equal(handle.readSync(out, 0, 7, 0), 7);
    assert.equal(out.toString(), 'DURable');
    assert.equal(disk.durableContent('/d/back')?.toString(), 'durable');
    // A sync of /d would make both unlinks durable; sync only a different directory instead.
    disk.mkdirSync('/other');
    disk.fsyncDirectorySync('/');

    const after = crashAndReboot(disk, { seed: 4, tornWrites: false });
    assert.equal(after.readFileSync('/d/back').toString(), 'durable');
    assert.equal(after.readFileSync('/d/gone').toString(), 'durable');
    assert.deepEqual(after.readdirSync('/'), ['d', 'other']);

    after.unlinkSync('/d/gone');
    after.fsyncDirectorySync('/d');
    const again = crashAndReboot(after, { seed: 4 });
    assert.deepEqual(again.readdirSync('/d'), ['back']);
  });

  it('makes a rename durable with the directory sync, atomically inside one directory', () => {
    const disk = diskWithDir();
    durableFile(disk, 'old', Buffer.from('one'));
    durableFile(disk, 'target', Buffer.from('two'));
    disk.renameSync('/d/old', '/d/target');
    assert.deepEqual(disk.readdirSync('/d'), ['target']);
    const unsynced = crashAndReboot(disk, { seed: 1 });
    assert.equal(unsynced.readFileSync('/d/old').toString(), 'one');
    assert.equal(unsynced.readFileSync('/d/target').toString(), 'two');

    unsynced.renameSync('/d/old', '/d/target');
    unsynced.fsyncDirectorySync('/d');
    const synced = crashAndReboot(unsynced, { seed: 1 });
    assert.deepEqual(synced.readdirSync('/d'), ['target']);
    assert.equal(synced.readFileSync('/d/target').toString(), 'one');
  });

  it('drops an unsynced mkdir with everything under it; keeps one whose parent was synced', () => {
    const disk = new SimulatedDisk();
    disk.mkdirSync('/a/b/c');
    disk.fsyncDirectorySync('/');
    disk.fsyncDirectorySync('/a'); // /a/b named durably, but /a/b/c is not
    const file = disk.openSync('/a/b/c/f', 'create-new');
    file.writeSync(Buffer.from('x'), 0);
    file.datasyncSync();
    disk.fsyncDirectorySync('/a/b/c');
    disk.mkdirSync('/z');
    const after = crashAndReboot(disk, { seed: 1 });
    assert.deepEqual(after.readdirSync('/'), ['a']);
    assert.deepEqual(after.readdirSync('/a/b'), []);
    assert.equal(after.statSync('/a/b')?.isDirectory, true);
    assert.deepEqual(after.listFiles(), []);
  });

  it('mkdir -p creates every missing level and is a no-op on an existing directory', () => {
    const disk = new SimulatedDisk();
    disk.mkdirSync('/x/y/z');
    const ops = disk.stats.operations;
    disk.mkdirSync('/x/y/z');
    disk.mkdirSync('/x');
    assert.equal(disk.stats.operations, ops, 'an existing directory is not an operation');
    assert.equal(disk.statSync('/x/y/z')?.isDirectory, true);
    assert.equal(disk.statSync('x/y')?.isDirectory, true, 'a relative path is taken from /');
    disk.syncAll();
    const after = crashAndReboot(disk, { seed: 0 });
    assert.equal(after.statSync('/x/y/z')?.isDirectory, true, 'syncAll made the tree durable');
  });
});

describe('SimulatedDisk: a crash kills the process that used it', () => {
  it('makes every later call on the old disk and its handles throw EIO', async () => {
    const disk = diskWithDir();
    durableFile(disk, 'f', Buffer.from('content'));
    const handle = disk.openSync('/d/f', 'read-write');
    const readOnly = disk.openSync('/d/f', 'read-only');
    disk.crash({ seed: 1 });
    assert.equal(disk.isCrashed, true);

    assertEio(() => handle.writeSync(Buffer.from('x'), 0), 'writeSync');
    assertEio(() => handle.readSync(Buffer.alloc(1), 0, 1, 0), 'readSync');
    assertEio(() => handle.datasyncSync(), 'datasyncSync');
    assertEio(() => handle.truncateSync(0), 'truncateSync');
    assertEio(() => handle.sizeSync(), 'sizeSync');
    assertEio(() => readOnly.closeSync(), 'closeSync');
    await assert.rejects(handle.write([Buffer.from('x')], 0), { code: 'EIO' });
    await assert.rejects(handle.read(Buffer.alloc(1), 0, 1, 0), { code: 'EIO' });
    await assert.rejects(handle.datasync(), { code: 'EIO' });
    await assert.rejects(handle.close(), { code: 'EIO' });

    assertEio(() => disk.openSync('/d/f', 'read-only'), 'openSync');
    assertEio(() => disk.openSync('/d/new', 'create-new'), 'openSync create');
    assertEio(() => disk.mkdirSync('/e'), 'mkdirSync');
    assertEio(() => disk.readdirSync('/d'), 'readdirSync');
    assertEio(() => disk.statSync('/d/f'), 'statSync');
    assertEio(() => disk.unlinkSync('/d/f'), 'unlinkSync');
    assertEio(() => disk.renameSync('/d/f', '/d/g'), 'renameSync');
    assertEio(() => disk.fsyncDirectorySync('/d'), 'fsyncDirectorySync');
    assertEio(() => disk.readFileSync('/d/f'), 'readFileSync');
    assertEio(() => disk.syncAll(), 'syncAll');
    await assert.rejects(disk.fsyncDirectory('/d'), { code: 'EIO' });
    assert.throws(() => disk.crash({ seed: 2 }), /already crashed/);

    // The test helpers still work, and show the disk the next boot will see.
    assert.equal(disk.snapshotFile('/d/f')?.toString(), 'content');
    const next = disk.reboot();
    assert.throws(() => disk.reboot(), /already been rebooted/);
    assert.equal(next.isCrashed, false);
    assert.equal(next.readFileSync('/d/f').toString(), 'content');
    assert.equal(next.stats.operations, 0, 'a new boot counts from zero');
    assertEio(() => handle.sizeSync(), 'an old handle after the reboot');
    next.openSync('/d/f', 'read-write').writeSync(Buffer.from('C'), 0);
    assert.equal(next.readFileSync('/d/f').toString(), 'Content');
  });

  it('fails an async write that was in flight when the power went, and it never lands', async () => {
    const disk = diskWithDir();
    durableFile(disk, 'f', Buffer.from('old'));
    const handle = disk.openSync('/d/f', 'read-write');
    const inFlight = handle.write([Buffer.from('new')], 0);
    const syncing = handle.datasync();
    disk.crash({ seed: 1, keepProbability: 1 });
    await assert.rejects(inFlight, { code: 'EIO' });
    await assert.rejects(syncing, { code: 'EIO' });
    assert.equal(disk.reboot().readFileSync('/d/f').toString(), 'old');
  });

  it('lets async calls take effect in a later microtask, in call order', async () => {
    const disk = diskWithDir();
    const handle = disk.openSync('/d/f', 'create-new');
    const order: string[] = [];
    const write = handle.write([Buffer.from('abc')], 0).then(() => order.push('write'));
    const sync = handle.datasync().then(() => order.push('datasync'));
    order.push('caller');
    assert.equal(handle.sizeSync(), 0, 'nothing happened synchronously');
    await Promise.all([write, sync]);
    assert.deepEqual(order, ['caller', 'write', 'datasync']);
    disk.fsyncDirectorySync('/d');
    assert.equal(disk.durableContent('/d/f')?.toString(), 'abc');
  });

  it('refuses reboot before a crash, and bad crash options', () => {
    const disk = new SimulatedDisk();
    assert.throws(() => disk.reboot(), /follows crash/);
    assert.throws(() => disk.crash({ seed: 1, keepProbability: 2 }), RangeError);
    assert.throws(() => disk.crashAfterOperations(0, { seed: 1 }), RangeError);
    assert.throws(() => disk.crashAfterOperations(1, { seed: Number.NaN }), RangeError);
    assert.equal(disk.isCrashed, false);
  });
});

describe('SimulatedDisk: crashAfterOperations', () => {
  it('fires right before the n-th mutating operation; reads and lookups do not count', () => {
    const disk = diskWithDir();
    const handle = disk.openSync('/d/f', 'create-new');
    disk.fsyncDirectorySync('/d');
    const before = disk.stats.operations;
    disk.crashAfterOperations(3, { seed: 1, tornWrites: false });
    assert.equal(disk.operationsUntilCrash, 3);
    handle.writeSync(Buffer.from('one'), 0); // 1
    handle.readSync(Buffer.alloc(3), 0, 3, 0);
    disk.statSync('/d/f');
    disk.readdirSync('/d');
    disk.openSync('/d/f', 'open-or-create').closeSync(); // exists: not a creation
    disk.mkdirSync('/d'); // exists
    assert.throws(() => disk.unlinkSync('/d/missing'), { code: 'ENOENT' }); // failed: not counted
    handle.datasyncSync(); // 2
    assert.equal(disk.operationsUntilCrash, 1);
    assert.throws(() => handle.writeSync(Buffer.from('two'), 3), { code: 'EIO' }); // 3: the crash
    assert.equal(disk.isCrashed, true);
    assert.equal(disk.stats.operations, before + 2, 'the crashing operation did not happen');
    assertEio(() => disk.statSync('/d/f'), 'after the armed crash');
    assert.equal(disk.reboot().readFileSync('/d/f').toString(), 'one');
  });

  it('puts the crash at every point of a workload, deterministically', async () => {
    // Each step is one mutating operation; record i is durable once its datasync ran.
    const workload = async (io: StoreIO): Promise<void> => {
      io.mkdirSync('/w');
      const handle = io.openSync('/w/log', 'create-new');
      io.fsyncDirectorySync('/');
      await io.fsyncDirectory('/w');
      for (let i = 0; i < 5; i++) {
        await handle.write([Buffer.from(`r${i};`)], i * 3);
        await handle.datasync();
      }
    };
    const counting = new SimulatedDisk();
    await workload(counting);
    const total = counting.stats.operations;
    assert.equal(total, 4 + 2 * 5);

    for (let n = 1; n <= total + 1; n++) {
      const disk = new SimulatedDisk();
      disk.crashAfterOperations(n, { seed: n, tornWrites: false });
      let error: unknown = null;
      await workload(disk).catch((err: unknown) => {
        error = err;
      });
      if (n <= total) {
        assert.equal(codeOf(error), 'EIO', `crash point ${n}: the n-th operation fails`);
        assert.equal(disk.stats.operations, n - 1, `crash point ${n}: ${n - 1} operations took effect`);
      } else {
        assert.equal(error, null, 'past the end nothing fires');
        disk.crash({ seed: n, tornWrites: false });
      }
      const after = disk.reboot();
      // Steps 1-4 create and name the log; then write/datasync pairs.
      const synced = n <= 4 ? -1 : Math.floor((n - 5) / 2);
      const content = after.snapshotFile('/w/log');
      if (synced < 0) assert.equal(content, null, `crash point ${n}: the log is not named durably yet`);
      else {
        const expected = Array.from({ length: synced }, (_, i) => `r${i};`).join('');
        assert.equal(content?.toString(), expected, `crash point ${n}: exactly the synced records`);
      }
    }
  });

  it('fails an async operation when the armed crash fires on it', async () => {
    const disk = diskWithDir();
    const handle = disk.openSync('/d/f', 'create-new');
    disk.crashAfterOperations(1, { seed: 1 });
    await assert.rejects(handle.write([Buffer.from('x')], 0), { code: 'EIO' });
    assert.equal(disk.isCrashed, true);
  });

  it('logs the mutating operations when asked, to name a crash point', () => {
    const disk = new SimulatedDisk({ logOperations: true });
    disk.mkdirSync('/l');
    const file = disk.openSync('/l/f', 'create-new');
    file.writeSync(Buffer.from('x'), 0);
    file.readSync(Buffer.alloc(1), 0, 1, 0);
    file.datasyncSync();
    disk.renameSync('/l/f', '/l/g');
    disk.fsyncDirectorySync('/l');
    assert.deepEqual(disk.operationLog, [
      'mkdir /l',
      'open /l/f',
      'write /l/f',
      'fdatasync /l/f',
      'rename /l/f -> /l/g',
      'fsync /l',
    ]);
    assert.deepEqual(new SimulatedDisk().operationLog, [], 'off by default');
  });

  it('can be cancelled', () => {
    const disk = diskWithDir();
    disk.crashAfterOperations(1, { seed: 1 });
    disk.cancelCrash();
    assert.equal(disk.operationsUntilCrash, null);
    disk.mkdirSync('/e');
    assert.equal(disk.isCrashed, false);
  });
});

describe('SimulatedDisk: errors as Node gives them', () => {
  type Attempt = (io: StoreIO, root: string) => unknown;

  /** Runs `attempt` on the real disk and on the simulated one; both must fail the same way, or both succeed. */
  function sameOutcome(realRoot: string, disk: SimulatedDisk, what: string, attempt: Attempt): void {
    const outcome = (io: StoreIO, root: string): string => {
      try {
        const result = attempt(io, root);
        return typeof result === 'object' && result !== null && 'path' in result
          ? 'ok: a handle'
          : `ok: ${JSON.stringify(result)}`;
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'ERR_OUT_OF_RANGE' || e instanceof RangeError) return 'RangeError';
        return `${e.code} ${e.errno} ${e.syscall} ${e.message.split(root).join('<root>')}`;
      }
    };
    assert.equal(outcome(disk, '/sim'), outcome(nodeStoreIO, realRoot), what);
  }

  /** Runs `fn` on a read-only handle of `filePath`, closing it after (no descriptor leaks on the real disk). */
  function readOnly(io: StoreIO, filePath: string, fn: (file: StoreFileHandle) => unknown): unknown {
    const file = io.openSync(filePath, 'read-only');
    try {
      return fn(file);
    } finally {
      file.closeSync();
    }
  }

  it('matches the real disk on missing files, existing files, directories and bad descriptors', (t) => {
    const realRoot = tempDir(t, 'rmq-simdisk-');
    const disk = new SimulatedDisk();
    const setUp = (io: StoreIO, root: string): void => {
      io.mkdirSync(path.join(root, 'dir', 'sub'));
      io.mkdirSync(path.join(root, 'empty'));
      const file = io.openSync(path.join(root, 'file'), 'create-new');
      file.writeSync(Buffer.from('content'), 0);
      file.closeSync();
      io.openSync(path.join(root, 'dir', 'sub', 'inner'), 'create-new').closeSync();
    };
    setUp(nodeStoreIO, realRoot);
    setUp(disk, '/sim');
    const j = path.join;
    const cases: [string, Attempt][] = [
      ['open read-write of a missing file', (io, r) => io.openSync(j(r, 'missing'), 'read-write')],
      ['open read-only of a missing file', (io, r) => io.openSync(j(r, 'missing'), 'read-only')],
      ['create-new of an existing file', (io, r) => io.openSync(j(r, 'file'), 'create-new')],
      ['create-new of an existing directory', (io, r) => io.openSync(j(r, 'dir'), 'create-new')],
      ['open read-write of a directory', (io, r) => io.openSync(j(r, 'dir'), 'read-write')],
      ['open-or-create of a directory', (io, r) => io.openSync(j(r, 'dir'), 'open-or-create')],
      ['open-or-create in a missing directory', (io, r) => io.openSync(j(r, 'nope', 'f'), 'open-or-create')],
      ['open under a file', (io, r) => io.openSync(j(r, 'file', 'x'), 'open-or-create')],
      ['readdir of a missing directory', (io, r) => io.readdirSync(j(r, 'missing'))],
      ['readdir of a file', (io, r) => io.readdirSync(j(r, 'file'))],
      ['stat of a missing file', (io, r) => io.statSync(j(r, 'missing'))],
      ['stat under a missing directory', (io, r) => io.statSync(j(r, 'nope', 'x'))],
      ['stat under a file', (io, r) => io.statSync(j(r, 'file', 'x'))],
      ['unlink of a missing file', (io, r) => io.unlinkSync(j(r, 'missing'))],
      ['unlink of a directory', (io, r) => io.unlinkSync(j(r, 'dir'))],
      ['unlink under a file', (io, r) => io.unlinkSync(j(r, 'file', 'x'))],
      ['rename of a missing file', (io, r) => io.renameSync(j(r, 'missing'), j(r, 'x'))],
      ['rename into a missing directory', (io, r) => io.renameSync(j(r, 'file'), j(r, 'nope', 'x'))],
      ['rename of a file onto a directory', (io, r) => io.renameSync(j(r, 'file'), j(r, 'empty'))],
      ['rename of a directory onto a file', (io, r) => io.renameSync(j(r, 'empty'), j(r, 'file'))],
      ['rename onto a non-empty directory', (io, r) => io.renameSync(j(r, 'empty'), j(r, 'dir'))],
      ['rename of a directory into itself', (io, r) => io.renameSync(j(r, 'dir'), j(r, 'dir', 'sub', 'x'))],
      ['rename of a file onto itself', (io, r) => io.renameSync(j(r, 'file'), j(r, 'file'))],
      ['mkdir -p over a file', (io, r) => io.mkdirSync(j(r, 'file'))],
      ['mkdir -p under a file', (io, r) => io.mkdirSync(j(r, 'file', 'x', 'y'))],
      ['readFile of a missing file', (io, r) => io.readFileSync(j(r, 'missing'))],
      ['readFile of a directory', (io, r) => io.readFileSync(j(r, 'dir'))],
      ['fsync of a missing directory', (io, r) => io.fsyncDirectorySync(j(r, 'missing'))],
      ['fsync of a file path', (io, r) => io.fsyncDirectorySync(j(r, 'file'))],
      [
        'write through a read-only handle',
        (io, r) => readOnly(io, j(r, 'file'), (f) => f.writeSync(Buffer.from('x'), 0)),
      ],
      [
        'ftruncate through a read-only handle',
        (io, r) => readOnly(io, j(r, 'file'), (f) => f.truncateSync(0)),
      ],
      [
        'fdatasync through a read-only handle',
        (io, r) => readOnly(io, j(r, 'file'), (f) => f.datasyncSync()),
      ],
      [
        'read through a directory handle',
        (io, r) => readOnly(io, j(r, 'dir'), (f) => f.readSync(Buffer.alloc(4), 0, 4, 0)),
      ],
      ['fstat of a directory handle', (io, r) => readOnly(io, j(r, 'dir'), (f) => f.sizeSync())],
      [
        'read after close',
        (io, r) => {
          const file = io.openSync(j(r, 'file'), 'read-only');
          file.closeSync();
          file.closeSync(); // idempotent
          return file.readSync(Buffer.alloc(4), 0, 4, 0);
        },
      ],
      [
        'read longer than the buffer',
        (io, r) => readOnly(io, j(r, 'file'), (f) => f.readSync(Buffer.alloc(4), 0, 8, 0)),
      ],
    ];
    for (const [what, attempt] of cases) sameOutcome(realRoot, disk, what, attempt);
    // Spot checks that the comparison compares something.
    assert.throws(() => disk.openSync('/sim/missing', 'read-write'), {
      code: 'ENOENT',
      message: "ENOENT: no such file or directory, open '/sim/missing'",
    });
    assert.throws(() => disk.openSync('/sim/file', 'create-new'), { code: 'EEXIST', errno: -17 });
  });

  it('reports stat like the real disk: size, kind', () => {
    const disk = new SimulatedDisk();
    disk.mkdirSync('/s');
    const file = disk.openSync('/s/f', 'create-new');
    file.truncateSync(1000);
    assert.deepEqual(
      { ...disk.statSync('/s/f'), mtimeMs: 0 },
      { size: 1000, isFile: true, isDirectory: false, mtimeMs: 0 },
    );
    assert.equal(disk.statSync('/s')?.isDirectory, true);
    assert.deepEqual(disk.listFiles(), ['/s/f']);
  });
});

describe('SimulatedDisk: under a MessageStore', () => {
  const ROOT = '/sim/store';
  const config: MessageStoreConfigInput = {
    storePathRootDir: ROOT,
    flushDiskType: FlushDiskType.SYNC_FLUSH,
    mappedFileSizeCommitLog: 4096,
  };

  function assertPutOk(result: PutMessageResult, context: string): void {
    assert.equal(
      result.status,
      'PUT_OK',
      `${context}: ${result.reason ?? ''} ${result.error?.message ?? ''}`,
    );
  }

  /** Fails the test instead of hanging when `promise` does not settle in time. */
  async function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    });
    const outcome = await Promise.race([
      promise.then(
        () => 'settled',
        () => 'settled',
      ),
      timeout,
    ]);
    clearTimeout(timer);
    assert.equal(outcome, 'settled', `${what} settles within ${ms} ms`);
  }

  interface Acked {
    readonly offset: number;
    readonly queueOffset: number;
    readonly queueId: number;
    readonly body: Buffer;
  }

  it('keeps every SYNC_FLUSH-acknowledged message through a power loss, and takes new puts', async () => {
    const random = prng(20240601);
    const disk = new SimulatedDisk();
    // The store creates its root with mkdir -p but never syncs the root's parent (MessageStore
    // leaves that to whoever made the directory): make it durable, as an installer would.
    disk.mkdirSync(ROOT);
    disk.syncAll();
    const store = await MessageStore.open(config, { io: disk, logger: silentLogger });
    const acked: Acked[] = [];
    const put = async (i: number): Promise<void> => {
      const size = 20 + Math.floor(random() * 900);
      const body = Buffer.alloc(size, `m${i}-`);
      const queueId = i % 2;
      const result = await store.putMessage({ topic: 'SimTopic', queueId, body });
      assertPutOk(result, `put ${i}`);
      const append = result.appendResult;
      assert.ok(append !== null);
      acked.push({ offset: append.wroteOffset, queueOffset: append.queueOffset, queueId, body });
    };
    for (let i = 0; i < 12; i++) await put(i); // one at a time
    await Promise.all(Array.from({ length: 12 }, (_, k) => put(12 + k))); // group commits
    assert.ok(store.getMaxPhyOffset() > 3 * 4096, 'the puts rolled over several segments');

    // Unacknowledged puts in flight while the power goes.
    const inFlight = Array.from({ length: 4 }, (_, k) =>
      store.putMessage({ topic: 'SimTopic', queueId: 0, body: Buffer.alloc(300, `late${k}`) }),
    );
    disk.crash({ seed: 77 });
    const late = await Promise.all(inFlight);
    for (const result of late)
      assert.notEqual(result.status, 'PUT_OK', 'nothing is acknowledged after a crash');
    const afterCrash = await store.putMessage({ topic: 'SimTopic', queueId: 0, body: Buffer.from('x') });
    assert.notEqual(afterCrash.status, 'PUT_OK');
    // The dead store's shutdown fails fast (EIO everywhere) instead of hanging.
    const oldShutdown = store.shutdown();
    await settlesWithin(oldShutdown, 5000, 'the shutdown of the crashed store');
    await oldShutdown.catch(() => undefined);

    const rebooted = disk.reboot();
    const reopened = await MessageStore.open(config, { io: rebooted, logger: silentLogger });
    try {
      const report = reopened.getRecoveryReport();
      assert.equal(report.lastExitOK, false, 'the abort file says the last run crashed');
      for (const message of acked) {
        const back = await reopened.lookMessageByOffset(message.offset);
        assert.ok(back !== null, `the acknowledged message at ${message.offset} is there`);
        assert.deepEqual(back.body, message.body, `the message at ${message.offset} is byte-identical`);
        assert.equal(back.queueOffset, message.queueOffset);
        assert.equal(back.queueId, message.queueId);
      }
      for (const queueId of [0, 1]) {
        const count = acked.filter((m) => m.queueId === queueId).length;
        assert.ok(
          reopened.getQueueOffset('SimTopic', queueId) >= count,
          `queue ${queueId} keeps its offsets`,
        );
      }
      const next = await reopened.putMessage({ topic: 'SimTopic', queueId: 1, body: Buffer.from('after') });
      assertPutOk(next, 'a put after the reopen');
      const nextBack = await reopened.lookMessageByOffset(next.appendResult?.wroteOffset ?? -1);
      assert.equal(nextBack?.body.toString(), 'after');
    } finally {
      await reopened.shutdown();
    }
    // A clean shutdown leaves nothing to recover, even through another power loss.
    const clean = await MessageStore.open(config, {
      io: crashAndReboot(rebooted, { seed: 78 }),
      logger: silentLogger,
    });
    try {
      assert.equal(clean.getRecoveryReport().lastExitOK, true);
      assert.equal(clean.getRecoveryReport().commitLog.truncatedBytes, 0);
    } finally {
      await clean.shutdown();
    }
  });

  it('fails fast and recovers at every crash point of an open and a few puts (smoke sweep)', async () => {
    /** Opens the store and puts `count` messages; returns the acknowledged ones and the store. */
    const workload = async (io: SimulatedDisk, count: number) => {
      const acked: Acked[] = [];
      let store: MessageStore;
      try {
        store = await MessageStore.open(config, { io, logger: silentLogger });
      } catch {
        return { acked, store: null };
      }
      const pending: Promise<void>[] = [];
      for (let i = 0; i < count; i++) {
        const body = Buffer.alloc(40 + ((i * 211) % 900), i + 1);
        const put = store.putMessage({ topic: 'Sweep', queueId: 0, body }).then((result) => {
          const append = result.appendResult;
          if (result.status === 'PUT_OK' && append !== null) {
            acked.push({ offset: append.wroteOffset, queueOffset: append.queueOffset, queueId: 0, body });
          }
        });
        if (i % 2 === 0) await put;
        else pending.push(put);
      }
      await Promise.all(pending);
      return { acked, store };
    };
    const freshDisk = (): SimulatedDisk => {
      const disk = new SimulatedDisk({ logOperations: true });
      disk.mkdirSync(ROOT);
      disk.syncAll();
      return disk;
    };
    const counting = freshDisk();
    const setUpOperations = counting.stats.operations; // the mkdir of the root, before any arming
    const full = await workload(counting, 10);
    await full.store?.shutdown();
    const total = counting.stats.operations - setUpOperations;
    assert.ok(total > 20, `the workload has crash points (${total})`);

    for (let n = 1; n <= total; n++) {
      const disk = freshDisk();
      disk.crashAfterOperations(n, { seed: n });
      const { acked, store } = await workload(disk, 10);
      // A crashed store's shutdown fails fast; otherwise it is a clean one and the last crash
      // points fall inside it.
      if (store !== null) {
        const shutdown = store.shutdown();
        await settlesWithin(shutdown, 5000, `crash point ${n}: the store's shutdown`);
        await shutdown.catch(() => undefined);
      }
      assert.ok(disk.isCrashed, `crash point ${n} lies inside the workload`);
      const crashedBefore = counting.operationLog[setUpOperations + n - 1];
      const reopened = await MessageStore.open(config, { io: disk.reboot(), logger: silentLogger });
      try {
        for (const message of acked) {
          const back = await reopened.lookMessageByOffset(message.offset);
          assert.deepEqual(
            back?.body,
            message.body,
            `crash point ${n} (before ${crashedBefore}): acknowledged message at ${message.offset}`,
          );
        }
        assertPutOk(
          await reopened.putMessage({ topic: 'Sweep', queueId: 0, body: Buffer.from('next') }),
          `crash point ${n} (before ${crashedBefore}): a put after the reopen`,
        );
      } finally {
        await reopened.shutdown();
      }
    }
  });

  it('reopens on the rebooted disk while the crashed store was never shut down', async () => {
    const disk = new SimulatedDisk();
    disk.mkdirSync(ROOT);
    disk.syncAll();
    assert.notEqual(disk.lockScope, new SimulatedDisk().lockScope, 'every disk has its own lock scope');
    const dead = await MessageStore.open(config, { io: disk, logger: silentLogger });
    const put = await dead.putMessage({ topic: 'Abandoned', queueId: 0, body: Buffer.from('kept') });
    assertPutOk(put, 'the put before the crash');
    disk.crash({ seed: 11 });
    const rebooted = disk.reboot();
    assert.notEqual(rebooted.lockScope, disk.lockScope, 'a reboot is a new lock scope');
    // No shutdown of `dead`: a killed process never gets to run one.
    const reopened = await MessageStore.open(config, { io: rebooted, logger: silentLogger });
    try {
      const back = await reopened.lookMessageByOffset(put.appendResult?.wroteOffset ?? -1);
      assert.equal(back?.body.toString(), 'kept');
    } finally {
      await reopened.shutdown();
      await dead.shutdown().catch(() => undefined); // releases its timers; fails fast with EIO
    }
  });
});
