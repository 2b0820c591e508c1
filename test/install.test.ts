import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { ROOT, tmpDir } from './support/cluster.js';

describe('a fresh clone installs', () => {
  it('package-lock.json is in sync with every package.json: npm ci accepts it (offline, nothing installed)', function () {
    this.timeout(60_000);
    // npm ci checks the lock against the package.json files before it installs anything;
    // --dry-run stops it there and --offline keeps it off the network.
    const dir = tmpDir('npm-ci');
    const { workspaces } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
    for (const f of ['package.json', 'package-lock.json', ...workspaces.map((w) => `${w}/package.json`)]) {
      mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      copyFileSync(path.join(ROOT, f), path.join(dir, f));
    }
    let out = '';
    try {
      out = execFileSync('npm', ['ci', '--dry-run', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      const stderr = (e as { stderr?: string }).stderr ?? String(e);
      expect.fail(`npm ci refuses package-lock.json; run npm install at the root and commit the lock:\n${stderr.split('\n').filter((l) => /Missing|Invalid|sync/.test(l)).join('\n')}`);
    }
    expect(out).to.match(/added \d+ packages/);
  });
});
