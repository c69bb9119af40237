import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { errnoCode } from '../store/errors.js';
import { BrokerError } from './errors.js';

/**
 * RocketMQ's `ConfigManager` persistence for one small JSON file (topics.json,
 * subscriptionGroup.json, consumerOffset.json), kept beside two siblings:
 *
 *   <file>       the current content
 *   <file>.bak   the content before the last persist (RocketMQ's fallback when <file> is bad)
 *   <file>.tmp   the next content while it is being written; never read
 *
 * A persist never leaves <file> half-written: the new content goes to <file>.tmp and is
 * fdatasynced, the previous content is copied to <file>.bak, then <file>.tmp is renamed over
 * <file> and the directory is fsynced so the rename itself is durable. A crash at any point
 * leaves either the old or the new <file>, and a .bak of the old one.
 *
 * The files are a few KB and written on admin changes or a periodic offset flush, so the
 * synchronous fs calls block the event loop for no longer than one fsync.
 */

/** Where `load()` found the content: the file itself, its `.bak`, or nowhere (start empty). */
export type ConfigLoadSource = 'file' | 'bak' | 'none';

export const BAK_SUFFIX = '.bak';
export const TMP_SUFFIX = '.tmp';

/**
 * Turns the file's text into the manager's table; throws on anything it cannot take (bad
 * JSON, a wrong shape). A throw makes `load()` try the `.bak`.
 */
export type ConfigDecoder<T> = (text: string) => T;

export class ConfigFile<T> {
  readonly path: string;
  readonly bakPath: string;
  readonly tmpPath: string;
  readonly #decode: ConfigDecoder<T>;
  #lastLoadSource: ConfigLoadSource | null = null;

  constructor(filePath: string, decode: ConfigDecoder<T>) {
    this.path = filePath;
    this.bakPath = filePath + BAK_SUFFIX;
    this.tmpPath = filePath + TMP_SUFFIX;
    this.#decode = decode;
  }

  /** Where the last `load()` found its content; null before the first load. */
  get lastLoadSource(): ConfigLoadSource | null {
    return this.#lastLoadSource;
  }

  /**
   * The decoded content of the file, else of its `.bak` (RocketMQ's `loadBak`), else null when
   * neither exists. When a file exists but neither it nor the `.bak` decodes, this throws
   * `ERR_CONFIG_FILE_INVALID` rather than start empty: an empty table would be persisted over
   * the unreadable one at the next change and the topics/offsets in it would be lost for good.
   */
  load(): T | null {
    const main = readIfExists(this.path);
    let mainError: unknown;
    if (main !== null) {
      try {
        const value = this.#decode(main);
        this.#lastLoadSource = 'file';
        return value;
      } catch (err) {
        mainError = err;
      }
    }
    const bak = readIfExists(this.bakPath);
    let bakError: unknown;
    if (bak !== null) {
      try {
        const value = this.#decode(bak);
        this.#lastLoadSource = 'bak';
        return value;
      } catch (err) {
        bakError = err;
      }
    }
    if (main === null && bak === null) {
      this.#lastLoadSource = 'none';
      return null;
    }
    // Name the file the operator has to look at: the main file when it exists, else the .bak.
    const file = main !== null ? this.path : this.bakPath;
    const reasons = [
      main === null ? `${this.path} is missing` : `${this.path}: ${describe(mainError)}`,
      bak === null ? `${this.bakPath} is missing` : `${this.bakPath}: ${describe(bakError)}`,
    ];
    throw new BrokerError(
      'ERR_CONFIG_FILE_INVALID',
      `config file ${file} cannot be parsed and has no usable backup (${reasons.join('; ')})`,
      { cause: mainError ?? bakError, file },
    );
  }

  /**
   * Replaces the file's content with `json`, durably (see the file comment). The previous
   * content is copied to `.bak` only when it still decodes: after `load()` fell back to the
   * `.bak` because the file was corrupt, copying the corrupt file would destroy the last good
   * backup. Throws `ERR_CONFIG_FILE_WRITE` when any step fails.
   */
  persist(json: string): void {
    const dir = path.dirname(this.path);
    try {
      ensureDirectory(dir);
      writeDurably(this.tmpPath, Buffer.from(json, 'utf8'));
      const previous = readIfExists(this.path);
      if (previous !== null && this.#decodes(previous))
        writeDurably(this.bakPath, Buffer.from(previous, 'utf8'));
      fs.renameSync(this.tmpPath, this.path);
      fsyncDirectory(dir);
    } catch (err) {
      throw new BrokerError(
        'ERR_CONFIG_FILE_WRITE',
        `persisting config file ${this.path} failed: ${describe(err)}`,
        { cause: err, file: this.path },
      );
    }
  }

  #decodes(text: string): boolean {
    try {
      this.#decode(text);
      return true;
    } catch {
      return false;
    }
  }
}

/** A decoded config file: its table, its data version, and top-level keys kept as read. */
export interface DecodedConfig<E> {
  readonly entries: Map<string, E>;
  readonly dataVersion: DataVersion;
  /** Top-level keys other than the table and version (RocketMQ 5's `forbiddenTable`, ...). */
  readonly extra: Record<string, unknown>;
}

/**
 * RocketMQ's `ConfigManager` for one named table (`topicConfigTable`, `subscriptionGroupTable`,
 * `offsetTable`): what the three managers share. The table is written back with the top-level
 * keys it was read with, and never before `load()` (an empty table would replace the file's).
 */
export class ConfigTable<E> {
  readonly #file: ConfigFile<DecodedConfig<E>>;
  readonly #owner: string;
  readonly #tableKey: string;
  readonly #encodeEntry: (entry: E) => unknown;
  #entries = new Map<string, E>();
  #dataVersion = newDataVersion();
  #extra: Record<string, unknown> = {};
  #loaded = false;

  constructor(options: {
    readonly filePath: string;
    /** Named in the assertion that guards persisting before load(). */
    readonly owner: string;
    readonly tableKey: string;
    readonly decode: ConfigDecoder<DecodedConfig<E>>;
    readonly encodeEntry: (entry: E) => unknown;
  }) {
    this.#file = new ConfigFile(options.filePath, options.decode);
    this.#owner = options.owner;
    this.#tableKey = options.tableKey;
    this.#encodeEntry = options.encodeEntry;
  }

  get path(): string {
    return this.#file.path;
  }

  /** Where the last `load()` found the table: the file, its .bak, or nowhere. */
  get loadedFrom(): ConfigLoadSource | null {
    return this.#file.lastLoadSource;
  }

  get dataVersion(): Readonly<DataVersion> {
    return { ...this.#dataVersion };
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  /** The table; a change made through it is written by the next `persist()`. */
  get entries(): Map<string, E> {
    return this.#entries;
  }

  /** Reads the file (or its .bak; empty when neither exists); throws `ERR_CONFIG_FILE_INVALID`. */
  load(): void {
    const table = this.#file.load();
    this.#entries = table?.entries ?? new Map();
    this.#dataVersion = table?.dataVersion ?? newDataVersion();
    this.#extra = table?.extra ?? {};
    this.#loaded = true;
  }

  /** Writes the table under `dataVersion`, which becomes the table's once the write succeeded. */
  persist(dataVersion: DataVersion = this.#dataVersion): void {
    assert.ok(this.#loaded, `${this.#owner} persisted before load()`);
    const table: Record<string, unknown> = {};
    for (const [name, entry] of this.#entries) table[name] = this.#encodeEntry(entry);
    const json = { ...this.#extra, [this.#tableKey]: table, dataVersion };
    this.#file.persist(JSON.stringify(json, null, 2));
    this.#dataVersion = dataVersion;
  }

  /**
   * Sets (or deletes) one entry and persists under the next data version. When the persist
   * fails the change is undone, so memory never claims what the file would lose at a restart.
   */
  apply(name: string, entry: E | undefined): void {
    const previous = this.#entries.get(name);
    if (entry === undefined) this.#entries.delete(name);
    else this.#entries.set(name, entry);
    try {
      this.persist(nextDataVersion(this.#dataVersion));
    } catch (err) {
      if (previous === undefined) this.#entries.delete(name);
      else this.#entries.set(name, previous);
      throw err;
    }
  }
}

/**
 * The JSON data version RocketMQ keeps beside each table (`DataVersion`): the name server and
 * slaves compare it to tell whether a broker's table changed since they last pulled it.
 */
export interface DataVersion {
  stateVersion: number;
  /** Milliseconds since the epoch of the last change. */
  timestamp: number;
  /** Bumped on every change. */
  counter: number;
}

export function newDataVersion(): DataVersion {
  return { stateVersion: 0, timestamp: Date.now(), counter: 0 };
}

/** RocketMQ's `DataVersion.nextVersion()`. */
export function nextDataVersion(version: DataVersion): DataVersion {
  return { stateVersion: version.stateVersion, timestamp: Date.now(), counter: version.counter + 1 };
}

/** Reads a `dataVersion` object; a missing one is a fresh version (older RocketMQ files). */
export function decodeDataVersion(value: unknown, what: string): DataVersion {
  if (value === undefined) return newDataVersion();
  const record = expectRecord(value, what);
  const field = (name: keyof DataVersion): number => {
    const n = record[name];
    if (n === undefined) return 0;
    if (!Number.isSafeInteger(n)) throw new Error(`${what}.${name} is not an integer`);
    return n as number;
  };
  return { stateVersion: field('stateVersion'), timestamp: field('timestamp'), counter: field('counter') };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `value` as a JSON object, or throws naming `what` (decoders throw so `load()` tries the .bak). */
export function expectRecord(value: unknown, what: string): Record<string, unknown> {
  if (!isRecord(value)) throw new Error(`${what} is not a JSON object`);
  return value;
}

/** The top-level object of a config file. An empty file is an error, not an empty table. */
export function parseJsonObject(text: string): Record<string, unknown> {
  return expectRecord(JSON.parse(text) as unknown, 'the file');
}

/** The file's text, or null when it does not exist. Other read errors are not "missing". */
function readIfExists(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw new BrokerError('ERR_CONFIG_FILE_READ', `reading config file ${file} failed: ${describe(err)}`, {
      cause: err,
      file,
    });
  }
}

function writeDurably(file: string, bytes: Buffer): void {
  const fd = fs.openSync(file, 'w');
  try {
    let written = 0;
    while (written < bytes.length) written += fs.writeSync(fd, bytes, written, bytes.length - written);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates `dir` if needed and fsyncs the parents of what it created, so the entries survive. */
function ensureDirectory(dir: string): void {
  const target = path.resolve(dir);
  const firstCreated = fs.mkdirSync(target, { recursive: true });
  if (firstCreated === undefined) return;
  const stop = path.dirname(path.resolve(firstCreated));
  const created: string[] = [];
  for (let d = target; d !== stop && d !== path.dirname(d); d = path.dirname(d)) created.push(d);
  // Deepest first: each directory's parent records its entry.
  for (const d of created) fsyncDirectory(path.dirname(d));
}

function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
