// `npm test`: installs what the suite needs (npm packages, Debian's docker.io and
// busybox-static, promtool from Debian's prometheus), builds, starts a private Docker Engine (in network and mount
// namespaces of its own, see scripts/lib/engine.mjs) with a locally made base image,
// runs every mocha test against it, and tears everything down.
//
// It leaves nothing behind, also after Ctrl-C or a failure: everything it makes on disk
// is under one run directory (TMPDIR for mocha too); mocha runs in a process group of
// its own, so whatever the tests start and fail to stop is found and ended; every
// private engine under the run directory is stopped; a check then fails the run if the
// suite or an engine left a process running.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBaseImage, ensureHostPackages, ensurePromtool, startPrivateDockerd } from './lib/engine.mjs';
import { onInterrupt } from './lib/hygiene.mjs';
import { endRun, interruptGroup, makeRunDir } from './lib/run.mjs';
import { build, ensureInstalled, ROOT } from './lib/setup.mjs';

const started = Date.now();
ensureInstalled();
ensureHostPackages();
const promtool = ensurePromtool(ROOT);
build();

const runDir = makeRunDir('a4c-test');
let mocha;
let ended;
const end = () => (ended ??= endRun({ runDir, groups: mocha?.pid ? [mocha.pid] : [] }));
const signals = onInterrupt(async () => {
  await interruptGroup(mocha);
  for (const line of await end()) console.error(`  ended ${line}`);
});

let code = 1;
let out = '';
let left = [];
try {
  const dataRoot = mkdtempSync(path.join(os.tmpdir(), 'a4c-test-docker-'));
  const engine = await startPrivateDockerd({ dataRoot, name: `a4c-test-${process.pid}` });
  console.error(`test Docker Engine: ${engine.dockerHost}`);
  await ensureBaseImage(engine.dockerHost);

  const args = [path.join(ROOT, 'node_modules/mocha/bin/mocha.js'), '--config', path.join(ROOT, 'test/.mocharc.json'), ...process.argv.slice(2)];
  mocha = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, A4C_TEST_DOCKER_HOST: engine.dockerHost, A4C_PROMTOOL: promtool, A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' },
  });
  mocha.stdout.on('data', (chunk) => {
    process.stdout.write(chunk);
    out += chunk.toString();
    if (out.length > 1_000_000) out = out.slice(-100_000);
  });
  code = await new Promise((resolve) => mocha.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
} catch (e) {
  console.error(e?.stack ?? e);
} finally {
  left = await end();
}

// Interrupted: the handler reports and exits once the cleanup is done.
if (signals.interrupted()) await new Promise(() => setInterval(() => undefined, 60_000));

// Once mocha has exited on its own, nothing of the run may still be running: the
// suite's engine stopped cleanly (dockerd ends containerd and every shim) and each
// test stopped what it started.
if (left.length) {
  console.error(`\nleft behind by the suite, now ended (a test or the engine did not clean up):\n${left.map((l) => `  ${l}`).join('\n')}`);
}
const passed = Number(/(\d+) passing/.exec(out)?.[1] ?? 0);
const failed = Number(/(\d+) failing/.exec(out)?.[1] ?? 0);
const pending = Number(/(\d+) pending/.exec(out)?.[1] ?? 0);
console.log(`\n${passed} passed, ${failed} failed${pending ? `, ${pending} skipped` : ''}${left.length ? `; ${left.length} leftovers` : ''}`);
console.error(`npm test took ${Math.round((Date.now() - started) / 1000)} s`);
process.exit(code !== 0 ? code : passed === 0 || left.length ? 1 : 0);
