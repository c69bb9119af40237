/**
 * A child process for the crash-recovery regression test: opens an ASYNC_FLUSH store with 4 KiB
 * segments on the directory given as its first argument, puts as many messages as the second
 * argument says (each awaited to PUT_OK: in the page cache, never fdatasync'ed, the flush service
 * is told to wait an hour), prints "count <n> maxPhyOffset <offset> flushedWhere <offset>", and
 * SIGKILLs itself: the abort file stays and nothing is flushed at shutdown.
 * Run it with `node --import tsx crash-child.ts <storePathRootDir> <messages>`.
 */
import { MessageStore, silentLogger } from '../../src/store/index.js';

const root = process.argv[2];
const messages = Number(process.argv[3]);
if (root === undefined || !Number.isInteger(messages) || messages <= 0) {
  process.stderr.write('usage: crash-child <storePathRootDir> <messages>\n');
  process.exit(2);
}
const store = await MessageStore.open(
  {
    storePathRootDir: root,
    mappedFileSizeCommitLog: 4096,
    flushDiskType: 'ASYNC_FLUSH',
    flushIntervalCommitLog: 3_600_000,
    flushCommitLogThoroughInterval: 3_600_000,
  },
  { logger: silentLogger },
);
let count = 0;
for (let i = 0; i < messages; i++) {
  const result = await store.putMessage({ topic: 'Crash', queueId: 0, body: Buffer.alloc(100, i & 0xff) });
  if (result.status !== 'PUT_OK') {
    process.stderr.write(`put ${i}: ${result.status} ${result.reason ?? ''}\n`);
    process.exit(1);
  }
  count++;
}
const flushedWhere = store.getCommitLog().mappedFileQueue.flushedWhere;
process.stdout.write(
  `count ${count} maxPhyOffset ${store.getMaxPhyOffset()} flushedWhere ${flushedWhere}\n`,
  () => {
    process.kill(process.pid, 'SIGKILL');
  },
);
