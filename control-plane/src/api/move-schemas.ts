/**
 * Shapes of moves, volumes and drains (issue 12), beside schemas.ts so the resources
 * that grew them stay separate; the same rules apply: requests are parsed with these,
 * responses are checked against them in test/openapi.test.ts.
 */
import { z } from 'zod';
import type { DrainView } from '../store/drains.js';
import type { MoveView } from '../store/moves.js';
import type { VolumeView } from '../store/volumes.js';
import { host, id, time } from './schemas.js';

const MOVE_STATUSES = ['STOPPING', 'COPYING', 'VERIFYING', 'STARTING', 'SUCCEEDED', 'FAILED'] as const;
const sum = z.strictObject({ bytes: z.number().int().nullable(), sha256: z.string().nullable() });

export const move: z.ZodType<MoveView> = z
  .strictObject({
    id: z.string(),
    workspaceId: z.string(),
    fromHostId: z.string(),
    toHostId: z.string(),
    actor: z.string(),
    drainId: z.string().nullable(),
    status: z.enum(MOVE_STATUSES),
    error: z.string().nullable(),
    wasRunning: z.boolean(),
    bytesDone: z.number().int(),
    image: sum.meta({ description: "the writable layer (`docker save` of the committed container): length and SHA-256 verified at both ends" }),
    volume: sum.meta({ description: 'the tar of /workspace: length and SHA-256 verified at both ends' }),
    createdAt: time,
    updatedAt: time,
    finishedAt: time.nullable(),
  })
  .meta({ id: 'WorkspaceMove' });

export const volume: z.ZodType<VolumeView> = z
  .strictObject({
    name: z.string(),
    hostId: z.string(),
    project: z.string(),
    sizeBytes: z.number().int().nullable().meta({ description: 'as the agent measured it; null until measured' }),
    measuredAt: time.nullable(),
    lastUsedAt: time,
  })
  .meta({ id: 'Volume' });

const DRAIN_STATUSES = ['ACTIVE', 'DONE', 'DEADLINE_REACHED', 'CANCELLED'] as const;

export const drain: z.ZodType<DrainView> = z
  .strictObject({
    id: z.string(),
    status: z.enum(DRAIN_STATUSES),
    migrate: z.boolean(),
    parallelism: z.number().int(),
    deadlineAt: time.nullable(),
    actor: z.string(),
    remaining: z.number().int(),
    moving: z.number().int(),
    moved: z.number().int(),
    moveFailures: z.number().int(),
    forceStopped: z.number().int(),
    startedAt: time,
    finishedAt: time.nullable(),
  })
  .meta({ id: 'HostDrain' });

/** A host with its latest drain (GET /v1/hosts/{id}, drain and activate). */
export const hostWithDrain = (host as unknown as z.ZodObject<z.ZodRawShape>)
  .extend({ drain: drain.nullable().meta({ description: 'the latest drain with a deadline or --migrate, with its progress; null if none' }) })
  .meta({ id: 'HostDetail' });

export const moveRequest = z.strictObject({
  toHostId: id('a host id').optional().meta({ description: 'the destination; default: the best host that fits (one holding the user\'s volume for the project first)' }),
});

export const drainRequest = z.strictObject({
  deadlineSeconds: z
    .number()
    .int('deadlineSeconds must be a whole number of seconds')
    .min(0, 'deadlineSeconds must be 0 or more')
    .max(30 * 24 * 3600, 'deadlineSeconds is at most 30 days')
    .optional()
    .meta({ description: 'stop whatever still runs on the host this many seconds from now' }),
  migrate: z.boolean().optional().meta({ description: 'move the workspaces off the host (with their files)' }),
  parallelism: z.number().int('parallelism must be a whole number').min(1, 'parallelism must be at least 1').max(64, 'parallelism is at most 64').optional()
    .meta({ description: 'moves at once; default A4C_DRAIN_PARALLELISM (1)' }),
});
