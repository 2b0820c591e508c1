import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, tmpDir } from './cluster.js';

export const CHROMIUM = '/usr/bin/chromium';

/** Where every run writes its screenshots (gitignored). */
export const ARTEFACTS = path.join(ROOT, 'test-artefacts/ui');

export interface Browser {
  context: BrowserContext;
  /** Console messages of every page: CSP violations show up here. */
  console: string[];
  close(): Promise<void>;
}

/**
 * Debian's Chromium, headless, on a fresh profile, driven by playwright-core: nothing
 * is downloaded. Every host name resolves to nothing except loopback, so the browser
 * can reach only the control plane under test.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (npm test does, as root)`);
  const profile = tmpDir('chromium');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1360, height: 880 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-domain-reliability',
      '--disable-client-side-phishing-detection',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
    ],
  });
  const console: string[] = [];
  const watch = (p: Page) => p.on('console', (m) => console.push(`${m.type()}: ${m.text()}`));
  context.pages().forEach(watch);
  context.on('page', watch);
  return {
    context,
    console,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; failureSummary?: string }[];
}

/** axe-core run in the page (through the DevTools protocol, which the page's CSP does not govern). */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  // A string: it runs in the page, where the test's TypeScript (no DOM types) does not reach.
  return (await page.evaluate(`axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target, failureSummary: n.failureSummary })),
  })))`)) as AxeViolation[];
}

/** The pages docs/dashboard.md shows. */
const DOCS_PAGES = ['sign-in', 'workspaces', 'terminal', 'hosts', 'builds', 'build'];

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTEFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTEFACTS, `${name}.png`), fullPage: true });
  // `A4C_DOCS_SCREENSHOTS=1 npm test -- --grep dashboard` refreshes the ones docs/dashboard.md shows.
  if (process.env.A4C_DOCS_SCREENSHOTS === '1' && DOCS_PAGES.includes(name)) {
    mkdirSync(path.join(ROOT, 'docs/screenshots'), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, 'docs/screenshots', `${name}.png`), fullPage: false });
  }
}
