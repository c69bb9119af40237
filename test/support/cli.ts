import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The built `rocketmq-ts` binary run as a user runs it (`npm test` builds first): a child
 * process with real arguments, stdin, stdout and stderr piped (so never a terminal: progress
 * comes as plain lines, logs as JSON). Spawned asynchronously, so a broker in the test's own
 * process keeps serving while it runs.
 */

export const CLI_BIN = fileURLToPath(new URL('../../dist/cli/rocketmq-ts.js', import.meta.url));

/** How long one run may take before it counts as hung, ms (a loaded 2-core machine is slow). */
const CLI_DEADLINE_MS = 60_000;

export interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Non-empty lines of stdout. */
  readonly lines: string[];
  /** Wall time of the child, spawn to exit, ms. */
  readonly ms: number;
  /** When its first stdout arrived (Date.now()), or null. */
  readonly firstOutputAt: number | null;
}

export function runCli(
  args: readonly string[],
  options: { input?: string; env?: NodeJS.ProcessEnv; deadlineMs?: number } = {},
): Promise<CliRun> {
  const started = Date.now();
  const deadlineMs = options.deadlineMs ?? CLI_DEADLINE_MS;
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  let stdout = '';
  let stderr = '';
  let firstOutputAt: number | null = null;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    firstOutputAt ??= Date.now();
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    const hang = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`rocketmq-ts ${args.join(' ')} did not finish in ${deadlineMs} ms:\n${stdout}${stderr}`),
      );
    }, deadlineMs);
    child.once('error', (err) => {
      clearTimeout(hang);
      reject(err);
    });
    child.once('close', (status) => {
      clearTimeout(hang);
      resolve({
        status,
        stdout,
        stderr,
        lines: stdout.split('\n').filter((line) => line !== ''),
        ms: Date.now() - started,
        firstOutputAt,
      });
    });
  });
}
