import { z } from 'zod';
import { ConfigError } from './env.js';

export interface Tier {
  name: string;
  memoryMb: number;
  cpus: number;
  diskGb: number;
  pidsLimit: number;
  /** Only placed after an admin approves the request. */
  requiresApproval: boolean;
}

const DEFAULT_PIDS_LIMIT = 4096;

/** The spec's tiers. A4C_TIERS adds tiers or overrides these by name. */
export const DEFAULT_TIERS: readonly Tier[] = [
  { name: 'standard', memoryMb: 8 * 1024, cpus: 2, diskGb: 50, pidsLimit: DEFAULT_PIDS_LIMIT, requiresApproval: false },
  { name: 'large', memoryMb: 16 * 1024, cpus: 4, diskGb: 100, pidsLimit: DEFAULT_PIDS_LIMIT, requiresApproval: false },
  { name: 'xl', memoryMb: 32 * 1024, cpus: 8, diskGb: 200, pidsLimit: DEFAULT_PIDS_LIMIT, requiresApproval: true },
];

const tierSpec = z.strictObject({
  memoryMb: z.number().int().min(6, 'Docker needs at least 6 MB'),
  cpus: z.number().positive().max(1024),
  diskGb: z.number().positive(),
  pidsLimit: z.number().int().min(16).optional(),
  requiresApproval: z.boolean().optional(),
});
const tiersSpec = z.record(z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'tier names are lowercase letters, digits and dashes'), tierSpec);

/** Parses A4C_TIERS, e.g. {"tiny":{"memoryMb":64,"cpus":0.25,"diskGb":1}}. */
export function parseTiers(json: string | undefined): Map<string, Tier> {
  const tiers = new Map(DEFAULT_TIERS.map((t) => [t.name, t]));
  if (!json) return tiers;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new ConfigError('A4C_TIERS', `is not valid JSON (${(e as Error).message})`);
  }
  const parsed = tiersSpec.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError('A4C_TIERS', `at ${issue?.path.join('.') || '(top)'}: ${issue?.message}`);
  }
  for (const [name, t] of Object.entries(parsed.data)) {
    tiers.set(name, {
      name,
      memoryMb: t.memoryMb,
      cpus: t.cpus,
      diskGb: t.diskGb,
      pidsLimit: t.pidsLimit ?? DEFAULT_PIDS_LIMIT,
      requiresApproval: t.requiresApproval ?? false,
    });
  }
  return tiers;
}
