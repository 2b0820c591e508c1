import { EVENT_KIND_NAMES } from '../events/kinds.js';

/**
 * What a webhook may subscribe to: a kind of the activity log (events/kinds.ts), or a
 * prefix ending in `*` that matches at least one of them (`workspace.*`,
 * `host.drain_*`, `*` for all). A prefix also matches kinds added later, so a
 * subscription to `workspace.*` receives new workspace events without a change.
 * The database trigger (migration 060) matches with the same rule.
 */
export function kindPatternProblem(p: string): string | undefined {
  if (p.endsWith('*')) {
    const prefix = p.slice(0, -1);
    if (prefix.includes('*')) return 'only one *, at the end';
    if (!EVENT_KIND_NAMES.some((k) => k.startsWith(prefix))) return `${JSON.stringify(p)} matches no event kind (docs/api.md lists them)`;
    return undefined;
  }
  if (!(EVENT_KIND_NAMES as readonly string[]).includes(p)) return `${JSON.stringify(p)} is not an event kind (docs/api.md lists them; a prefix ending in * such as workspace.* matches several)`;
  return undefined;
}

export function kindMatches(pattern: string, kind: string): boolean {
  return pattern === kind || (pattern.endsWith('*') && kind.startsWith(pattern.slice(0, -1)));
}

