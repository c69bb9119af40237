import { Worker } from 'node:worker_threads';

/**
 * Starts a worker thread running a TypeScript module. Node 20 does not pass `--import tsx` on to
 * worker threads, so a small bootstrap registers tsx's loader inside the worker first.
 */
export function startTsWorker(moduleUrl: URL, workerData: unknown): Worker {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap =
    `import(${JSON.stringify(tsxApi)})` +
    '.then((api) => { api.register(); ' +
    `return import(${JSON.stringify(moduleUrl.href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData });
}

/** The first message a worker posts; rejects if it fails or exits first. */
export function firstMessage<T>(worker: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    worker.once('message', (message: T) => resolve(message));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited (${code}) before posting a message`)));
  });
}

/** Resolves with the worker's exit code. */
export function exitOf(worker: Worker): Promise<number> {
  return new Promise((resolve) => worker.once('exit', resolve));
}
