// `npm test`: installs what the suite needs (npm packages, Debian's docker.io and
// busybox-static, promtool from Debian's prometheus), builds, starts a private Docker Engine with a locally made base
// image, runs every mocha test against it, and tears the engine down.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBaseImage, ensureHostPackages, ensurePromtool, startPrivateDockerd } from './lib/engine.mjs';
import { build, ensureInstalled, ROOT } from './lib/setup.mjs';

const started = Date.now();
ensureInstalled();
ensureHostPackages();
const promtool = ensurePromtool(ROOT);
build();

const dataRoot = mkdtempSync(path.join(os.tmpdir(), 'a4c-test-docker-'));
const engine = await startPrivateDockerd({ dataRoot, name: `a4c-test-${process.pid}` });
console.error(`test Docker Engine: ${engine.dockerHost}`);
await ensureBaseImage(engine.dockerHost);

const args = [path.join(ROOT, 'node_modules/mocha/bin/mocha.js'), '--config', path.join(ROOT, 'test/.mocharc.json'), ...process.argv.slice(2)];
const mocha = spawn(process.execPath, args, {
  cwd: ROOT,
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, A4C_TEST_DOCKER_HOST: engine.dockerHost, A4C_PROMTOOL: promtool, A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' },
});
let out = '';
mocha.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  out += chunk.toString();
  if (out.length > 1_000_000) out = out.slice(-100_000);
});
const code = await new Promise((resolve) => mocha.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));

await engine.stop();
try {
  rmSync(dataRoot, { recursive: true, force: true });
} catch {
  // overlay mounts may linger a moment; the directory is under /tmp either way
}
const passed = Number(/(\d+) passing/.exec(out)?.[1] ?? 0);
const failed = Number(/(\d+) failing/.exec(out)?.[1] ?? 0);
const pending = Number(/(\d+) pending/.exec(out)?.[1] ?? 0);
console.log(`\n${passed} passed, ${failed} failed${pending ? `, ${pending} skipped` : ''}`);
console.error(`npm test took ${Math.round((Date.now() - started) / 1000)} s`);
process.exit(code !== 0 ? code : passed === 0 ? 1 : 0);
