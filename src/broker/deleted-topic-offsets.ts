import path from 'node:path';
import { ConfigFile, expectRecord, parseJsonObject } from './config-file.js';

/**
 * Where each queue of a deleted topic ended, so that a topic created again under the name starts
 * empty for its consumers, as it does in RocketMQ (whose `deleteTopic` removes the consume
 * queues). Here the consume queues and the messages stay (they go with the commit log segments
 * that hold them) and the queue offsets continue; what makes the old messages unreadable is this
 * floor under each queue's first readable offset. Persisted in
 * `<storePathRootDir>/config/deletedTopicOffsets.json`, a file of ours RocketMQ does not read:
 *
 *   { "offsetTable": { "Orders": { "0": 31, "1": 12 } } }
 *
 * A second delete of the name raises the floors to where the queues end then.
 */

export const DELETED_TOPIC_OFFSETS_FILE = path.join('config', 'deletedTopicOffsets.json');

type Table = Map<string, Map<number, number>>;

function decode(text: string): Table {
  const root = parseJsonObject(text);
  const table: Table = new Map();
  for (const [topic, queues] of Object.entries(expectRecord(root.offsetTable ?? {}, 'offsetTable'))) {
    const floors = new Map<number, number>();
    for (const [queueId, offset] of Object.entries(expectRecord(queues, `offsetTable.${topic}`))) {
      const id = Number(queueId);
      if (!Number.isSafeInteger(id) || id < 0 || !Number.isSafeInteger(offset) || (offset as number) < 0) {
        throw new Error(
          `offsetTable.${topic}.${queueId} must map a queue id to an offset, got ${String(offset)}`,
        );
      }
      floors.set(id, offset as number);
    }
    table.set(topic, floors);
  }
  return table;
}

export class DeletedTopicOffsets {
  readonly #file: ConfigFile<Table>;
  #table: Table = new Map();

  constructor(options: { storePathRootDir: string }) {
    this.#file = new ConfigFile(path.join(options.storePathRootDir, DELETED_TOPIC_OFFSETS_FILE), decode);
  }

  /** Reads the file (or its .bak; empty when neither exists); throws `ERR_CONFIG_FILE_INVALID`. */
  load(): void {
    this.#table = this.#file.load() ?? new Map();
  }

  /** The first offset of the queue a reader may see: where it ended when its topic was last deleted, else 0. */
  floor(topic: string, queueId: number): number {
    return this.#table.get(topic)?.get(queueId) ?? 0;
  }

  /** Records where each queue of `topic` ends now that it is deleted, and persists it. */
  recordDeletion(topic: string, ends: ReadonlyMap<number, number>): void {
    const floors = new Map(this.#table.get(topic) ?? []);
    for (const [queueId, offset] of ends) floors.set(queueId, Math.max(offset, floors.get(queueId) ?? 0));
    this.#table.set(topic, floors);
    const offsetTable: Record<string, Record<string, number>> = {};
    for (const [name, queues] of this.#table) offsetTable[name] = Object.fromEntries(queues);
    this.#file.persist(JSON.stringify({ offsetTable }, null, 2));
  }
}
