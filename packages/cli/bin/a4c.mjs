#!/usr/bin/env node
// The `a4c` command that npm links into node_modules/.bin. It is committed, unlike dist/,
// so that npm makes the link on a fresh clone, when it installs before anything is built
// (npm skips a bin whose file does not exist yet, and `npx a4c` then finds nothing to run).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(
    `a4c: the CLI is not built yet (${fileURLToPath(main)} is missing)\n` +
      'hint: run `npm run build` at the root of the A4C checkout (`npm start` and `npm test` build it too)\n',
  );
  process.exit(1);
}
await import(main.href);
