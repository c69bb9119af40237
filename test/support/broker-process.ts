import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `rocketmq-ts broker` as a child process, started as an operator starts it (the CLI, from src/
 * through tsx), for tests that SIGKILL it.
 */

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A port nothing listens on right now (for a broker that must come back on the same one). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts the broker on 127.0.0.1:`port` over `storeDir`; resolves once it accepts clients. */
export async function spawnBroker(
  storeDir: string,
  port: number,
  extraArgs: readonly string[] = [],
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(REPO, 'src', 'cli', 'rocketmq-ts.ts'),
      'broker',
      '--store-path',
      storeDir,
      '--listen',
      `127.0.0.1:${port}`,
      ...extraArgs,
    ],
    { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('broker accepting clients')) resolve();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`broker exited (${code ?? signal}) before serving:\n${output}`)),
    );
  });
  child.removeAllListeners('exit');
  return child;
}

/** Sends `signal` and waits for the process to exit (at once if it already has). */
export async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}
