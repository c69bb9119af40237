// Rewrites the README's configuration reference from the config definitions (see
// src/cli/broker-config.ts); test/cli/broker-config.test.ts fails when the two differ.
import fs from 'node:fs';
import { configReference } from '../src/cli/broker-config.js';

const README = new URL('../README.md', import.meta.url);
const START = '<!-- config-reference:start -->';
const END = '<!-- config-reference:end -->';
const readme = fs.readFileSync(README, 'utf8');
const start = readme.indexOf(START);
const end = readme.indexOf(END);
if (start < 0 || end < start) throw new Error('README.md lacks the config-reference markers');
fs.writeFileSync(
  README,
  `${readme.slice(0, start + START.length)}\n\n${configReference()}\n\n${readme.slice(end)}`,
);
