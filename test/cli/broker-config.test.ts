import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configReference, environmentName, parseProperties } from '../../src/cli/broker-config.js';
import { CLI_BIN } from '../support/cli.js';
import { tempDir } from '../support/helpers.js';

/**
 * The broker's configuration: broker.conf, then ROCKETMQ_* environment variables, then flags;
 * unknown keys and bad values refused with their names; `--print-config` tells each value's
 * source. Run through the built binary, as an operator would.
 */

const BIN = CLI_BIN;
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

function broker(args: string[], env: Record<string, string> = {}) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ROCKETMQ_')));
  const result = spawnSync(process.execPath, [BIN, 'broker', ...args], {
    encoding: 'utf8',
    env: { ...clean, ...env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function printed(stdout: string): Map<string, { value: string; source: string }> {
  const out = new Map<string, { value: string; source: string }>();
  for (const line of stdout.trim().split('\n')) {
    const match = /^(\w+)=(.*?) {2}# (\S+)$/.exec(line);
    assert.ok(match !== null, `a key=value  # source line: ${line}`);
    out.set(match[1] as string, { value: match[2] as string, source: match[3] as string });
  }
  return out;
}

describe('broker configuration', () => {
  it('broker.conf, then the environment, then flags; --print-config names each source', (t) => {
    const dir = tempDir(t);
    const conf = path.join(dir, 'broker.conf');
    fs.writeFileSync(
      conf,
      [
        '# a RocketMQ-style broker.conf',
        'flushDiskType=SYNC_FLUSH',
        'maxMessageSize = 1048576',
        'brokerName: broker-x',
        '! another comment',
        'defaultTopicQueueNums=8',
        '',
      ].join('\n'),
    );
    const result = broker(
      ['-c', conf, '--flush-disk-type', 'ASYNC_FLUSH', '--store-path', dir, '--print-config'],
      { ROCKETMQ_MAX_MESSAGE_SIZE: '2097152' },
    );
    assert.equal(result.status, 0, result.stderr);
    const config = printed(result.stdout);
    assert.deepEqual(config.get('brokerName'), { value: 'broker-x', source: 'broker.conf' });
    assert.deepEqual(config.get('defaultTopicQueueNums'), { value: '8', source: 'broker.conf' });
    assert.deepEqual(config.get('maxMessageSize'), { value: '2097152', source: 'environment' });
    assert.deepEqual(config.get('flushDiskType'), { value: 'ASYNC_FLUSH', source: 'flag' });
    assert.deepEqual(config.get('storePathRootDir'), { value: dir, source: 'flag' });
    assert.deepEqual(config.get('flushIntervalCommitLog'), { value: '500', source: 'default' });
  });

  it('unknown keys and bad values are all reported with their names, and the broker does not start', (t) => {
    const dir = tempDir(t);
    const conf = path.join(dir, 'broker.conf');
    fs.writeFileSync(
      conf,
      'flushDiskTyp=SYNC_FLUSH\nmaxMessageSize=abc\nflushDiskType=SOMETIMES\nno separator here?\n',
    );
    const result = broker(['-c', conf, '--store-path', dir], { ROCKETMQ_SYNC_FLUSH_TIMEOUT: '-5' });
    assert.equal(result.status, 2);
    for (const expected of [
      'line 1: unknown key flushDiskTyp',
      'line 2: maxMessageSize must be an integer, got "abc"',
      'line 3: flushDiskType must be one of',
      'ROCKETMQ_SYNC_FLUSH_TIMEOUT: syncFlushTimeout must be between',
    ]) {
      assert.ok(result.stderr.includes(expected), `${expected}\n in:\n${result.stderr}`);
    }
    assert.equal(fs.existsSync(path.join(dir, 'commitlog')), false, 'nothing was started');
  });

  it('an unknown ROCKETMQ_ variable is refused by name; a missing config file is named', (t) => {
    const dir = tempDir(t);
    const unknown = broker(['--store-path', dir, '--print-config'], {
      ROCKETMQ_FLUSH_DISK_TYP: 'SYNC_FLUSH',
    });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown variable ROCKETMQ_FLUSH_DISK_TYP/);
    const missing = broker(['-c', path.join(dir, 'nope.conf'), '--print-config']);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /nope\.conf/);
  });

  it('Java properties: separators, comments, blank lines', () => {
    const { entries, problems } = parseProperties('a=1\n b : two words \n# c=3\n!d=4\n\ne 5\nbad\n');
    assert.deepEqual(
      entries.map(([k, v]) => [k, v]),
      [
        ['a', '1'],
        ['b', 'two words'],
        ['e', '5'],
      ],
    );
    assert.equal(problems.length, 1);
    assert.equal(environmentName('flushDiskType'), 'ROCKETMQ_FLUSH_DISK_TYPE');
    assert.equal(environmentName('checkCRCOnRecover'), 'ROCKETMQ_CHECK_CRC_ON_RECOVER');
  });

  it("the README's configuration reference is the one the definitions generate", () => {
    const readme = fs.readFileSync(README, 'utf8');
    const start = readme.indexOf('<!-- config-reference:start -->');
    const end = readme.indexOf('<!-- config-reference:end -->');
    assert.ok(start >= 0 && end > start, 'the README has the reference markers');
    // Cells compared, not spacing: the formatter aligns the table's columns.
    const cells = (table: string): string[][] =>
      table
        .trim()
        .split('\n')
        .filter((row) => !/^\|[\s|:-]+\|$/.test(row.trim()))
        .map((row) =>
          row
            .trim()
            .replace(/^\||\|$/g, '')
            .split('|')
            .map((cell) => cell.trim()),
        );
    const table = readme.slice(start + '<!-- config-reference:start -->'.length, end);
    assert.deepEqual(
      cells(table),
      cells(configReference()),
      'regenerate it: npx tsx scripts/config-reference.ts',
    );
  });
});
