import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { CLI_BIN } from '../support/cli.js';

/**
 * Every command of the built binary, found by walking `--help` from the top (so a command added
 * later is covered without touching this file), has help with examples.
 */

const BIN = CLI_BIN;

function help(path: readonly string[]): string {
  const result = spawnSync(process.execPath, [BIN, ...path, '--help'], { encoding: 'utf8' });
  assert.equal(result.status, 0, `${path.join(' ')} --help: ${result.stderr}`);
  return result.stdout;
}

/** The subcommand names listed under "Commands:" (commander's help layout), without `help`. */
function subcommands(text: string): string[] {
  const section = /\nCommands:\n([\s\S]*?)(?:\n\n|$)/.exec(text)?.[1] ?? '';
  return section
    .split('\n')
    .map((line) => /^ {2}([a-z][a-z-]*)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined && name !== 'help');
}

describe('rocketmq-ts --help (the built CLI)', () => {
  it('every command has help with at least one example', () => {
    const seen: string[] = [];
    const walk = (path: string[]): void => {
      const text = help(path);
      seen.push(path.join(' ') || '(top)');
      assert.match(
        text,
        /\nExamples?:\n {2}\$ rocketmq-ts /,
        `${path.join(' ') || 'rocketmq-ts'} --help has no example`,
      );
      for (const name of subcommands(text)) walk([...path, name]);
    };
    walk([]);
    // The walk found the commands the README documents, nested ones included.
    for (const expected of [
      'broker',
      'store inspect',
      'store verify',
      'bench',
      'produce',
      'consume',
      'topic create',
      'topic update',
      'topic list',
      'topic describe',
      'topic delete',
      'group list',
      'group describe',
      'group reset-offset',
    ]) {
      assert.ok(seen.includes(expected), `${expected} not found; walked ${seen.join(', ')}`);
    }
  });

  it('--version prints the package version', () => {
    const result = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(result.status, 0);
    assert.equal(result.stdout.trim(), pkg.version);
  });

  it('an unknown command or option is bad usage: exit 2, named', () => {
    const unknownCommand = spawnSync(process.execPath, [BIN, 'brokr'], { encoding: 'utf8' });
    assert.equal(unknownCommand.status, 2);
    assert.match(unknownCommand.stderr, /unknown command 'brokr'/);
    const unknownOption = spawnSync(process.execPath, [BIN, 'store', 'verify', '--jsn', '/tmp'], {
      encoding: 'utf8',
    });
    assert.equal(unknownOption.status, 2);
    assert.match(unknownOption.stderr, /unknown option '--jsn'/);
  });
});
