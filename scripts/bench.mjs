// `npm run bench -- <name>`: builds, starts a private Docker Engine with the base
// image, and runs bench/<name>.ts against it. Names: the .ts files in bench/.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBaseImage, ensureHostPackages, startPrivateDockerd } from './lib/engine.mjs';
import { build, ensureInstalled, ROOT } from './lib/setup.mjs';

const name = process.argv[2];
const script = name && path.join(ROOT, 'bench/dist', `${name}.js`);
ensureInstalled();
ensureHostPackages();
build();
if (!script || !existsSync(script)) {
  console.error(`usage: npm run bench -- <name>   (one of: create-latency, placement, reconcile, build-queue, search)`);
  process.exit(2);
}
const dataRoot = mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-docker-'));
const engine = await startPrivateDockerd({ dataRoot, name: `a4c-bench-${process.pid}` });
await ensureBaseImage(engine.dockerHost);
const r = spawnSync(process.execPath, [script, ...process.argv.slice(3)], {
  stdio: 'inherit',
  env: { ...process.env, A4C_BENCH_DOCKER_HOST: engine.dockerHost, DOCKER_HOST: engine.dockerHost },
});
await engine.stop();
rmSync(dataRoot, { recursive: true, force: true });
process.exit(r.status ?? 1);
