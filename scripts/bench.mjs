// `npm run bench -- <name>`: builds, starts a private Docker Engine with the base
// image, and runs bench/<name>.ts against it. Names: the .ts files in bench/.
// Like `npm test` it leaves nothing behind, also after Ctrl-C: the benchmark runs in a
// process group of its own under one run directory (TMPDIR), and both are ended and
// removed at the end (see scripts/lib/run.mjs).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBaseImage, ensureHostPackages, startPrivateDockerd } from './lib/engine.mjs';
import { onInterrupt } from './lib/hygiene.mjs';
import { endRun, interruptGroup, makeRunDir } from './lib/run.mjs';
import { build, ensureInstalled, ROOT } from './lib/setup.mjs';

const name = process.argv[2];
const script = name && path.join(ROOT, 'bench/dist', `${name}.js`);
ensureInstalled();
ensureHostPackages();
build();
if (!script || !existsSync(script)) {
  console.error(`usage: npm run bench -- <name>   (one of: agent-fleet, create-latency, placement, replicas, reconcile, build-queue, metrics-scrape, search, autostop)`);
  process.exit(2);
}

const runDir = makeRunDir('a4c-bench');
let bench;
let ended;
const end = () => (ended ??= endRun({ runDir, groups: bench?.pid ? [bench.pid] : [] }));
const signals = onInterrupt(async () => {
  await interruptGroup(bench);
  for (const line of await end()) console.error(`  ended ${line}`);
});

let code = 1;
let left = [];
try {
  const dataRoot = mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-docker-'));
  const engine = await startPrivateDockerd({ dataRoot, name: `a4c-bench-${process.pid}` });
  await ensureBaseImage(engine.dockerHost);
  bench = spawn(process.execPath, [script, ...process.argv.slice(3)], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, A4C_BENCH_DOCKER_HOST: engine.dockerHost, DOCKER_HOST: engine.dockerHost },
  });
  code = await new Promise((resolve) => bench.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
} catch (e) {
  console.error(e?.stack ?? e);
} finally {
  left = await end();
}
if (signals.interrupted()) await new Promise(() => setInterval(() => undefined, 60_000));
if (left.length) console.error(`left behind by the benchmark, now ended:\n${left.map((l) => `  ${l}`).join('\n')}`);
process.exit(code !== 0 ? code : left.length ? 1 : 0);
