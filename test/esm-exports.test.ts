// esm/index.mjs lists the CommonJS exports by hand (static names, so bundlers and TypeScript
// see them); this pins that list to dist/index.js so a new export cannot be forgotten there.
// It runs in a plain Node child: vitest's own module loader would hide how Node resolves ESM.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');

function runModule(source: string): unknown {
  if (!existsSync(join(root, 'dist', 'index.js'))) {
    throw new Error('dist/index.js is missing: run `npm run build` first (`npm test` does)');
  }
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, BATCHNORM_BACKEND: 'js' },
  });
  if (child.status !== 0) throw new Error(`node exited with ${child.status}:\n${child.stderr}`);
  return JSON.parse(child.stdout);
}

describe('ESM entry point', () => {
  it('exports exactly the CommonJS export names, plus the module as default', () => {
    const { esm, cjs } = runModule(`
      import { createRequire } from 'node:module';
      import * as esm from './esm/index.mjs';
      const cjs = createRequire(import.meta.url)('./dist/index.js');
      console.log(JSON.stringify({ esm: Object.keys(esm), cjs: Object.keys(cjs) }));
    `) as { esm: string[]; cjs: string[] };
    const named = esm.filter((name) => name !== 'default');
    const missing = cjs.filter((name) => !named.includes(name));
    const extra = named.filter((name) => !cjs.includes(name));
    expect({ missing, extra }, 'update the export list in esm/index.mjs').toEqual({ missing: [], extra: [] });
    expect(esm).toContain('default');
  });

  it('shares one module instance with require()', () => {
    const same = runModule(`
      import { createRequire } from 'node:module';
      import * as esm from './esm/index.mjs';
      const cjs = createRequire(import.meta.url)('./dist/index.js');
      const names = Object.keys(cjs);
      console.log(JSON.stringify(esm.default === cjs && names.every((name) => esm[name] === cjs[name])));
    `);
    expect(same).toBe(true);
  });
});
