// Runs every test file under test/ with node:test through tsx. Node 20's --test takes paths,
// not globs, so the files are listed here. Extra arguments are passed to node (e.g. a single
// file: `node scripts/run-tests.mjs test/store/codec.test.ts`).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function findTests(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(full));
    else if (entry.name.endsWith('.test.ts')) out.push(full);
  }
  return out.sort();
}

const args = process.argv.slice(2);
const files = args.some((a) => a.endsWith('.ts')) ? args.filter((a) => a.endsWith('.ts')) : findTests('test');
const nodeArgs = args.filter((a) => !a.endsWith('.ts'));
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-timeout=120000', ...nodeArgs, ...files],
  { stdio: 'inherit', env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '8' } },
);
process.exit(result.status ?? 1);
