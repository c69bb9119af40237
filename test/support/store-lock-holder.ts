/**
 * A child process for the lock tests: opens a store on the directory given as its argument,
 * prints "locked", and holds the store open until its stdin closes; then it shuts the store down
 * cleanly, prints "released" and exits. Run it with `node --import tsx store-lock-holder.ts <dir>`.
 */
import { MessageStore, silentLogger } from '../../src/store/index.js';

const root = process.argv[2];
if (root === undefined) {
  process.stderr.write('usage: store-lock-holder <storePathRootDir>\n');
  process.exit(2);
}
const store = await MessageStore.open({ storePathRootDir: root }, { logger: silentLogger });
process.stdout.write(`locked ${process.pid}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  store.shutdown().then(
    () => {
      process.stdout.write('released\n');
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`shutdown failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
});
