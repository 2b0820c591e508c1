import { z } from 'zod';
import { containerUserProblem, isProvablyNonRoot } from './container-user.js';
import { ConfigError } from './env.js';

export interface Tier {
  name: string;
  memoryMb: number;
  cpus: number;
  diskGb: number;
  pidsLimit: number;
  /** Only placed after an admin approves the request. */
  requiresApproval: boolean;
  /**
   * The container's root filesystem is read-only; /tmp, /var/tmp and /run are tmpfs.
   * An image can ask for the same with the label a4c.workspace.read-only=true: either
   * one makes it read-only.
   */
  readOnlyRootFs: boolean;
  /**
   * Who the container's processes run as (Docker's --user: uid[:gid] or a name). It
   * overrides the image's a4c.workspace.user label; with neither, the image's USER.
   */
  user?: string;
  /**
   * The container is created only if it provably runs as a numeric uid other than 0
   * (from this tier's user, else the image's label, else the image's USER); otherwise
   * the workspace fails at step create.
   */
  runAsNonRoot: boolean;
  /**
   * A running workspace of this tier idle (no open session, no session traffic, no CPU
   * above A4C_AUTOSTOP_CPU_PERCENT) this long is stopped; 0 or absent: never.
   */
  autostopAfterSeconds?: number;
}

const DEFAULT_PIDS_LIMIT = 4096;
/** The longest idle period a tier or a workspace may have before autostop: a year. */
export const MAX_AUTOSTOP_SECONDS = 365 * 86_400;

/** The spec's tiers. A4C_TIERS adds tiers or overrides these by name. */
export const DEFAULT_TIERS: readonly Tier[] = [
  { name: 'standard', memoryMb: 8 * 1024, cpus: 2, diskGb: 50, pidsLimit: DEFAULT_PIDS_LIMIT, requiresApproval: false, readOnlyRootFs: false, runAsNonRoot: false },
  { name: 'large', memoryMb: 16 * 1024, cpus: 4, diskGb: 100, pidsLimit: DEFAULT_PIDS_LIMIT, requiresApproval: false, readOnlyRootFs: false, runAsNonRoot: false },
  { name: 'xl', memoryMb: 32 * 1024, cpus: 8, diskGb: 200, pidsLimit: DEFAULT_PIDS_LIMIT, requiresApproval: true, readOnlyRootFs: false, runAsNonRoot: false },
];

const tierSpec = z
  .strictObject({
    memoryMb: z.number().int().min(6, 'Docker needs at least 6 MB'),
    cpus: z.number().positive().max(1024),
    diskGb: z.number().positive(),
    pidsLimit: z.number().int().min(16).optional(),
    requiresApproval: z.boolean().optional(),
    readOnlyRootFs: z.boolean().optional(),
    user: z.string().superRefine((v, ctx) => {
      const problem = containerUserProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }).optional(),
    runAsNonRoot: z.boolean().optional(),
    autostopAfterSeconds: z.number().int().min(0).max(MAX_AUTOSTOP_SECONDS).refine((v) => v === 0 || v >= 60, 'is 0 (never) or at least 60 s').optional(),
  })
  .superRefine((t, ctx) => {
    // Caught here rather than as a failed workspace on some host later.
    if (t.runAsNonRoot && t.user !== undefined && !isProvablyNonRoot(t.user)) {
      ctx.addIssue({
        code: 'custom',
        path: ['user'],
        message: `runAsNonRoot needs a numeric uid other than 0, got ${JSON.stringify(t.user)} (a name could be root in the image)`,
      });
    }
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
      readOnlyRootFs: t.readOnlyRootFs ?? false,
      ...(t.user !== undefined ? { user: t.user } : {}),
      runAsNonRoot: t.runAsNonRoot ?? false,
      ...(t.autostopAfterSeconds ? { autostopAfterSeconds: t.autostopAfterSeconds } : {}),
    });
  }
  return tiers;
}
