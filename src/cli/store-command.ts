import type { Command } from 'commander';
import { inspectStore, type StoreInspection } from '../store/index.js';
import { type Progress, startProgress } from './progress.js';

/**
 * `rocketmq-ts store inspect DIR` and `rocketmq-ts store verify DIR`: a store directory looked
 * at offline, read only (no lock, no recovery), so also the directory of a running or crashed
 * broker. Exit codes: 0 healthy, 1 damage found, 2 the directory cannot be read. `verify` shows
 * its progress on stderr (a bar on a terminal, else a line a second); stdout has only the result.
 */

const EXIT_DAMAGED = 1;
const EXIT_UNREADABLE = 2;

export function registerStoreCommand(program: Command): void {
  const store = program
    .command('store')
    .description('look inside a store directory, offline')
    .addHelpText(
      'after',
      '\nExamples:\n  $ rocketmq-ts store inspect ~/store\n  $ rocketmq-ts store verify ~/store || echo damaged',
    );

  store
    .command('inspect')
    .description('segments, their positions, records, consume queues and checkpoint fields')
    .argument('<dir>', 'the store directory (storePathRootDir)')
    .option('--json', 'print JSON instead of text')
    .option('--records', 'list every record (offset, size, topic, queue, queue offset, id)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ rocketmq-ts store inspect ~/store\n  $ rocketmq-ts store inspect ~/store --json --records | jq .records[0]',
    )
    .action((dir: string, options: { json?: boolean; records?: boolean }) => {
      const inspection = inspectOrExit(dir, options.records === true);
      if (options.json === true) process.stdout.write(`${JSON.stringify(inspection, null, 2)}\n`);
      else process.stdout.write(describe(inspection, options.records === true));
    });

  store
    .command('verify')
    .description("check every record's CRC and layout and every consume queue unit against the commit log")
    .argument('<dir>', 'the store directory (storePathRootDir)')
    .option('--json', 'print the problems as JSON')
    .addHelpText(
      'after',
      '\nExits 0 when the store is healthy, 1 when it is damaged (each problem names its file and offset).\n' +
        'Progress goes to stderr: a bar on a terminal, otherwise a line a second ("verify: 42% (1234/2900 MiB)").\n\n' +
        'Examples:\n  $ rocketmq-ts store verify ~/store\n  $ rocketmq-ts store verify ~/store --json 2>/dev/null | jq .ok',
    )
    .action((dir: string, options: { json?: boolean }) => {
      const inspection = inspectOrExit(dir, false, 'verify');
      const { problems } = inspection;
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify({ ok: problems.length === 0, problems }, null, 2)}\n`);
      } else if (problems.length === 0) {
        const units = inspection.consumeQueues.reduce((n, q) => n + q.maxOffset - q.minOffset, 0);
        process.stdout.write(
          `ok: ${inspection.commitLog.records} records in ${inspection.commitLog.segments.length} segments, ` +
            `${units} consume queue units in ${inspection.consumeQueues.length} queues\n`,
        );
      } else {
        for (const p of problems)
          process.stdout.write(`DAMAGED ${p.file} at offset ${p.offset}: ${p.problem}\n`);
        process.stdout.write(`${problems.length} problem(s) found\n`);
      }
      if (problems.length > 0) process.exitCode = EXIT_DAMAGED;
    });
}

/** Inspects `dir`, showing progress on stderr under `progressLabel` when one is given. */
function inspectOrExit(dir: string, records: boolean, progressLabel?: string): StoreInspection {
  let progress: Progress | null = null;
  const onProgress = (done: number, total: number): void => {
    progress ??= startProgress({ label: progressLabel ?? 'inspect', total, unit: 'bytes' });
    progress.update(done, total);
  };
  const finishProgress = (): void => progress?.finish();
  try {
    return inspectStore(dir, { records, ...(progressLabel === undefined ? {} : { onProgress }) });
  } catch (err) {
    // Before the exit: a bar left running would leave the terminal's cursor hidden.
    finishProgress();
    process.stderr.write(`cannot inspect ${dir}: ${(err as Error).message}\n`);
    process.exit(EXIT_UNREADABLE);
  } finally {
    // Stops the bar's redraw timer, which would otherwise keep the process alive.
    finishProgress();
  }
}

function describe(inspection: StoreInspection, withRecords: boolean): string {
  const lines: string[] = [];
  const { commitLog } = inspection;
  lines.push(
    `store ${inspection.storePath}${inspection.abortFile ? ' (abort file present: running, or not shut down cleanly)' : ''}`,
  );
  lines.push(
    `commit log: ${commitLog.segments.length} segments of ${commitLog.segmentSize} bytes, offsets ${commitLog.minOffset}..${commitLog.maxOffset}, ${commitLog.records} records`,
  );
  for (const s of commitLog.segments) {
    lines.push(
      `  ${s.file}  from ${s.fromOffset}  data ${s.dataBytes} bytes  ${s.records} records  ends: ${s.end}`,
    );
  }
  lines.push(`consume queues: ${inspection.consumeQueues.length}`);
  for (const q of inspection.consumeQueues) {
    lines.push(
      `  ${q.topic}/${q.queueId}  offsets ${q.minOffset}..${q.maxOffset}  ${q.files.length} file(s)`,
    );
  }
  if (inspection.checkpoint !== null) {
    lines.push('checkpoint:');
    for (const [name, value] of Object.entries(inspection.checkpoint)) lines.push(`  ${name} ${value}`);
  }
  if (withRecords) {
    lines.push('records:');
    for (const r of inspection.records ?? []) {
      lines.push(
        `  ${r.offset}  ${r.size} B  ${r.topic}/${r.queueId}#${r.queueOffset}  ${new Date(r.storeTimestamp).toISOString()}  ${r.messageId ?? ''}`,
      );
    }
  }
  lines.push(
    `problems: ${inspection.problems.length}${inspection.problems.length > 0 ? ' (run store verify)' : ''}`,
  );
  return `${lines.join('\n')}\n`;
}
