import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { ROOT, tmpDir } from './support/cluster.js';

describe('the committed generated code', () => {
  const buf = path.join(ROOT, 'node_modules/.bin/buf');

  it('passes buf lint', () => {
    execFileSync(buf, ['lint'], { cwd: ROOT, stdio: 'pipe' });
  });

  it('is exactly what `npm run proto` generates from proto/ (regenerate and commit if this fails)', () => {
    const out = tmpDir('proto');
    execFileSync(buf, ['generate', '-o', out], { cwd: ROOT, stdio: 'pipe' });
    const generatedDir = path.join(out, 'packages/proto/src/a4c/v1');
    const committedDir = path.join(ROOT, 'packages/proto/src/a4c/v1');
    const files = readdirSync(generatedDir).sort();
    expect(readdirSync(committedDir).sort()).to.deep.equal(files);
    for (const f of files) {
      const fresh = readFileSync(path.join(generatedDir, f), 'utf8');
      const committed = readFileSync(path.join(committedDir, f), 'utf8');
      expect(committed === fresh, `packages/proto/src/a4c/v1/${f} is stale: run npm run proto and commit`).to.equal(true);
    }
  });
});
