// Bundles the dashboard into ui/dist (run by `npm run build`): type-checks src/, then
// esbuild makes one script and one stylesheet with content hashes in their names (so
// the control plane can cache them forever) and index.html naming them.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, 'dist');
const require = createRequire(import.meta.url);

try {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', HERE], { stdio: 'inherit' });
} catch {
  console.error('ui: type errors (above); the dashboard was not built');
  process.exit(1);
}

rmSync(OUT, { recursive: true, force: true });
mkdirSync(path.join(OUT, 'assets'), { recursive: true });
const result = await esbuild.build({
  entryPoints: { app: path.join(HERE, 'src/main.tsx') },
  bundle: true,
  // A classic script, not a module: the app reads its CSP nonce from document.currentScript.
  format: 'iife',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  outdir: path.join(OUT, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
const script = outputs.find((f) => /^app-.*\.js$/.test(f));
const style = outputs.find((f) => /^app-.*\.css$/.test(f));
if (!script || !style) throw new Error(`esbuild made no app script or stylesheet: ${outputs.join(', ')}`);
copyFileSync(path.join(HERE, 'src/favicon.svg'), path.join(OUT, 'assets/favicon.svg'));
const html = readFileSync(path.join(HERE, 'src/index.html'), 'utf8').replaceAll('{{script}}', script).replaceAll('{{style}}', style);
writeFileSync(path.join(OUT, 'index.html'), html);
console.error(`ui: ${path.relative(process.cwd(), OUT)}/ (${script}, ${style})`);
