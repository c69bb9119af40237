import fs from 'node:fs';
import { type BrokerConfig, DEFAULT_BROKER_CONFIG } from '../broker/index.js';
import { type ConfigRule, checkConfigValue, messageStoreConfigKeys } from '../store/index.js';

/**
 * The broker's configuration as an operator gives it, RocketMQ style: a `broker.conf` of Java
 * properties (`flushDiskType=SYNC_FLUSH`, every store and broker key by its RocketMQ name),
 * overridden by environment variables (`ROCKETMQ_<KEY>`, e.g. `ROCKETMQ_FLUSH_DISK_TYPE`), overridden
 * by command-line flags, in that order. Unknown keys and bad values are reported with the key's
 * name, all at once, never ignored. Each effective value remembers where it came from
 * (`--print-config`).
 */

export type ConfigSource = 'default' | 'broker.conf' | 'environment' | 'flag';

export interface ConfigKey {
  readonly key: string;
  readonly layer: 'store' | 'broker';
  readonly rule: ConfigRule;
  readonly default: unknown;
}

export interface EffectiveConfig {
  readonly values: Readonly<Record<string, unknown>>;
  readonly sources: Readonly<Record<string, ConfigSource>>;
}

/** A broker config's rule from its default's type (every broker key is a count, a time, a switch or a name). */
function brokerRule(value: unknown): ConfigRule {
  if (typeof value === 'boolean') return { kind: 'bool' };
  if (typeof value === 'number') return { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER };
  return { kind: 'string' };
}

/** Every key a broker.conf may set. */
export function configKeys(): readonly ConfigKey[] {
  const store = messageStoreConfigKeys()
    .filter((k) => k.key !== 'storePathCommitLog')
    .map((k) => ({ key: k.key, layer: 'store' as const, rule: k.rule, default: k.default }));
  const broker = Object.entries(DEFAULT_BROKER_CONFIG).map(([key, value]) => ({
    key,
    layer: 'broker' as const,
    rule: brokerRule(value),
    default: value,
  }));
  return [...store, ...broker].sort((a, b) => a.key.localeCompare(b.key));
}

/** `flushDiskType` -> `ROCKETMQ_FLUSH_DISK_TYPE`; `checkCRCOnRecover` -> `ROCKETMQ_CHECK_CRC_ON_RECOVER`. */
export function environmentName(key: string): string {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2');
  return `ROCKETMQ_${words.toUpperCase()}`;
}

/** Java `.properties` lines: `key=value`, `key: value` or `key value`; `#` and `!` comments. */
export function parseProperties(text: string): { entries: [string, string, number][]; problems: string[] } {
  const entries: [string, string, number][] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('!')) return;
    const match = /^([^=:\s]+)\s*[=:\s]\s*(.*)$/.exec(line);
    if (match === null) {
      problems.push(`line ${index + 1}: ${JSON.stringify(line)} is not key=value`);
      return;
    }
    entries.push([match[1] as string, (match[2] as string).trim(), index + 1]);
  });
  return { entries, problems };
}

/** A text value as the key's rule reads it, or why it cannot be. */
function coerce(key: string, text: string, rule: ConfigRule): { value: unknown } | { problem: string } {
  let value: unknown = text;
  if (rule.kind === 'int') value = /^-?\d+$/.test(text) ? Number(text) : text;
  if (rule.kind === 'bool') value = text === 'true' ? true : text === 'false' ? false : text;
  const problem = checkConfigValue(key, value, rule);
  return problem === null ? { value } : { problem };
}

/**
 * Merges defaults, the file (if any), the environment and the flags (already typed, by key).
 * Throws one error listing every unknown key and bad value.
 */
export function resolveConfig(options: {
  readonly file?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly flags: Readonly<Record<string, unknown>>;
}): EffectiveConfig {
  const keys = new Map(configKeys().map((k) => [k.key, k]));
  const values: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};
  for (const k of keys.values()) {
    if (k.default !== undefined) {
      values[k.key] = k.default;
      sources[k.key] = 'default';
    }
  }
  const problems: string[] = [];
  if (options.file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(options.file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the config file ${options.file}: ${(err as Error).message}`);
    }
    const parsed = parseProperties(text);
    problems.push(...parsed.problems.map((p) => `${options.file}: ${p}`));
    for (const [key, text, line] of parsed.entries) {
      const definition = keys.get(key);
      if (definition === undefined) {
        problems.push(`${options.file} line ${line}: unknown key ${key}`);
        continue;
      }
      const coerced = coerce(key, text, definition.rule);
      if ('problem' in coerced) problems.push(`${options.file} line ${line}: ${coerced.problem}`);
      else {
        values[key] = coerced.value;
        sources[key] = 'broker.conf';
      }
    }
  }
  for (const [name, text] of Object.entries(options.env)) {
    if (!name.startsWith('ROCKETMQ_') || text === undefined) continue;
    const definition = [...keys.values()].find((k) => environmentName(k.key) === name);
    if (definition === undefined) {
      // Other ROCKETMQ_* variables (the store's log level, say) are not config keys.
      if (name.startsWith('ROCKETMQ_TS_')) continue;
      problems.push(`environment: unknown variable ${name}`);
      continue;
    }
    const coerced = coerce(definition.key, text, definition.rule);
    if ('problem' in coerced) problems.push(`environment ${name}: ${coerced.problem}`);
    else {
      values[definition.key] = coerced.value;
      sources[definition.key] = 'environment';
    }
  }
  for (const [key, value] of Object.entries(options.flags)) {
    if (value === undefined) continue;
    values[key] = value;
    sources[key] = 'flag';
  }
  if (problems.length > 0) throw new Error(`invalid configuration:\n  ${problems.join('\n  ')}`);
  return { values, sources };
}

/** The store and broker parts of an effective config, for MessageStore.open and BrokerController.open. */
export function splitConfig(config: EffectiveConfig): {
  store: Record<string, unknown> & { storePathRootDir: string };
  broker: Partial<BrokerConfig>;
} {
  const store: Record<string, unknown> = {};
  const broker: Record<string, unknown> = {};
  for (const k of configKeys()) {
    if (config.values[k.key] === undefined) continue;
    (k.layer === 'store' ? store : broker)[k.key] = config.values[k.key];
  }
  return {
    store: store as Record<string, unknown> & { storePathRootDir: string },
    broker: broker as Partial<BrokerConfig>,
  };
}

/** `key=value  # source`, one line per key, for `--print-config`. */
export function formatConfig(config: EffectiveConfig): string {
  return `${configKeys()
    .map((k) => `${k.key}=${String(config.values[k.key] ?? '')}  # ${config.sources[k.key] ?? 'unset'}`)
    .join('\n')}\n`;
}

/** The README's configuration reference, generated from the definitions. */
export function configReference(): string {
  const rows = configKeys().map((k) => {
    const rule =
      k.rule.kind === 'int'
        ? `integer ${k.rule.min}..${k.rule.max === Number.MAX_SAFE_INTEGER ? '' : k.rule.max}`
        : k.rule.kind === 'enum'
          ? k.rule.values.join(' / ')
          : k.rule.kind === 'bool'
            ? 'true / false'
            : 'text';
    return `| \`${k.key}\` | ${k.layer} | ${rule} | ${k.default === undefined ? '(required)' : `\`${String(k.default)}\``} | \`${environmentName(k.key)}\` |`;
  });
  return [
    '| key | layer | values | default | environment |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
