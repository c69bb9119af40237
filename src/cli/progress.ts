/**
 * Progress of a long CLI job (verifying a store, recovering one, a benchmark), always on stderr:
 * stdout carries the job's result, often `--json` that a script parses, so progress never goes
 * there.
 *
 * - On a terminal: a cli-progress bar, redrawn in place.
 * - Anywhere else (a pipe, a file, CI): plain lines such as `verify: 42% (1234/2900 MiB)`, at
 *   most one per `PLAIN_LINE_INTERVAL_MS`, plus one when the job reaches 100% (and a last one
 *   from `finish()` if it ended elsewhere), so logs stay readable.
 */
import { Presets, SingleBar } from 'cli-progress';

/** What `done` and `total` count: bytes are shown in MiB, messages as they are. */
export type ProgressUnit = 'bytes' | 'messages';

export interface ProgressOptions {
  /** Names the job at the start of the bar or line (`verify`, `recovery`, `put`). */
  readonly label: string;
  /** The amount of work (0 when not known yet: give it with `update`). */
  readonly total: number;
  readonly unit: ProgressUnit;
  /** Where progress goes; default stderr. Tests pass a fake terminal. */
  readonly stream?: NodeJS.WriteStream;
}

export interface Progress {
  /** `done` of the total so far; a new `total` replaces the old one (work found along the way). */
  update(done: number, total?: number): void;
  /** The job ended: the bar stops (its timer too) or the last line is printed. Idempotent. */
  finish(): void;
}

/** Plain lines (no terminal): at most one per second, so a log gets a line a second, not thousands. */
export const PLAIN_LINE_INTERVAL_MS = 1000;
/** Redraws of the terminal bar per second. */
const BAR_REDRAWS_PER_SECOND = 10;
const BYTES_PER_MIB = 1024 * 1024;
/** Totals from this many MiB on are shown in whole MiB; smaller ones with decimals. */
const WHOLE_MIB_FROM_MIB = 100;

export function startProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  return stream.isTTY === true ? new BarProgress(options, stream) : new LineProgress(options, stream);
}

/**
 * A progress started on the first `update`, for callbacks that may never fire (a store with
 * nothing to recover prints nothing). It finishes itself when `done` reaches `total`.
 */
export function startProgressOnFirstUpdate(options: Omit<ProgressOptions, 'total'>): Progress {
  let progress: Progress | null = null;
  let finished = false;
  // Closures, not methods: `update` is handed over as a bare callback (`onRecoveryProgress`).
  const finish = (): void => {
    finished = true;
    progress?.finish();
  };
  const update = (done: number, total?: number): void => {
    if (finished) return;
    progress ??= startProgress({ ...options, total: total ?? 0 });
    progress.update(done, total);
    if (total !== undefined && done >= total) finish();
  };
  return { update, finish };
}

/** `done` and `total` as shown, in the unit's terms (`12.5`, `2900`), with the unit's name. */
export function formatAmounts(done: number, total: number, unit: ProgressUnit): [string, string, string] {
  if (unit === 'messages') return [String(done), String(total), 'messages'];
  const totalMiB = total / BYTES_PER_MIB;
  const decimals = totalMiB >= WHOLE_MIB_FROM_MIB ? 0 : totalMiB >= 1 ? 1 : 2;
  return [(done / BYTES_PER_MIB).toFixed(decimals), totalMiB.toFixed(decimals), 'MiB'];
}

function percentOf(done: number, total: number): number {
  return total <= 0 ? 100 : Math.min(100, Math.floor((done / total) * 100));
}

class LineProgress implements Progress {
  readonly #options: ProgressOptions;
  readonly #stream: NodeJS.WriteStream;
  #done = 0;
  #total: number;
  /** The first line waits a whole interval too: a job done within a second prints one line. */
  #lastLineAt = performance.now();
  #lastLine = '';
  #finished = false;

  constructor(options: ProgressOptions, stream: NodeJS.WriteStream) {
    this.#options = options;
    this.#stream = stream;
    this.#total = options.total;
  }

  update(done: number, total?: number): void {
    if (this.#finished) return;
    if (total !== undefined) this.#total = total;
    this.#done = done;
    const complete = done >= this.#total;
    if (complete || performance.now() - this.#lastLineAt >= PLAIN_LINE_INTERVAL_MS) this.#print();
  }

  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#print();
  }

  /** Prints the current state unless it is the line printed last (the 100% line, once). */
  #print(): void {
    const [done, total, unit] = formatAmounts(this.#done, this.#total, this.#options.unit);
    const line = `${this.#options.label}: ${percentOf(this.#done, this.#total)}% (${done}/${total} ${unit})`;
    this.#lastLineAt = performance.now();
    if (line === this.#lastLine) return;
    this.#lastLine = line;
    this.#stream.write(`${line}\n`);
  }
}

class BarProgress implements Progress {
  readonly #bar: SingleBar;
  readonly #unit: ProgressUnit;
  #total: number;
  #finished = false;

  constructor(options: ProgressOptions, stream: NodeJS.WriteStream) {
    this.#unit = options.unit;
    this.#total = options.total;
    this.#bar = new SingleBar(
      {
        stream,
        fps: BAR_REDRAWS_PER_SECOND,
        format: `${options.label} [{bar}] {percentage}% | {doneText}/{totalText} {unitText} | ETA {eta_formatted}`,
        hideCursor: true,
        // The bar's own SIGINT handler would race the broker's graceful shutdown; `finish` stops it.
        gracefulExit: false,
      },
      Presets.shades_classic,
    );
    this.#bar.start(Math.max(1, this.#total), 0, this.#payload(0));
  }

  update(done: number, total?: number): void {
    if (this.#finished) return;
    if (total !== undefined && total !== this.#total) {
      this.#total = total;
      this.#bar.setTotal(Math.max(1, total));
    }
    // A total of 0 (nothing to do) is drawn as a full bar of 1.
    this.#bar.update(this.#total <= 0 ? 1 : done, this.#payload(done));
  }

  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#bar.stop();
  }

  #payload(done: number): { doneText: string; totalText: string; unitText: string } {
    const [doneText, totalText, unitText] = formatAmounts(done, this.#total, this.#unit);
    return { doneText, totalText, unitText };
  }
}
