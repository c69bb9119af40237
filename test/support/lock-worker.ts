/**
 * A worker thread for the lock regression test: tries to open the store directory it is given
 * (`workerData.root`) and posts what happened: `{ opened: true }` (then it shut the store down),
 * or `{ opened: false, code, message }`. Start it through `startTsWorker` (see ts-worker.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MessageStore, StoreError, silentLogger } from '../../src/store/index.js';

export interface LockWorkerResult {
  readonly opened: boolean;
  readonly code: string | null;
  readonly message: string;
}

const { root } = workerData as { root: string };
let result: LockWorkerResult;
try {
  const store = await MessageStore.open(
    { storePathRootDir: root, mappedFileSizeCommitLog: 1 << 20 },
    { logger: silentLogger },
  );
  await store.shutdown();
  result = { opened: true, code: null, message: 'opened the directory' };
} catch (err) {
  result = {
    opened: false,
    code: err instanceof StoreError ? err.code : null,
    message: err instanceof Error ? err.message : String(err),
  };
}
parentPort?.postMessage(result);
