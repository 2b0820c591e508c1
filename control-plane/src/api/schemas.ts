/**
 * Every shape the REST API accepts or returns, as zod schemas. Requests are parsed with
 * them (api/operation.ts) and the OpenAPI document is generated from them
 * (api/openapi.ts), so the document cannot drift from what the server does. The
 * response schemas are checked against the TypeScript model types at compile time (the
 * `z.ZodType<T>` annotations) and against real responses in test/openapi.test.ts.
 */
import { z } from 'zod';
import {
  ARCHES,
  BUILD_STATUSES,
  ERROR_CODES,
  ID_PATTERN,
  ID_RULE,
  MAX_AUTOSTOP_SECONDS,
  WORKSPACE_STATUSES,
  type Build,
  type BuildLogLine,
  type ErrorBody,
  type HostView,
  type Workspace,
} from '@a4c/common';
import type { TokenView } from '../auth/principals.js';
import { EVENT_KIND_NAMES } from '../events/kinds.js';
import { CURSOR_PATTERN, type EventView } from '../store/events.js';
import type { UserQuotaView } from '../quotas/quotas.js';

// ---------------------------------------------------------------- building blocks

export const id = (what: string) => z.string().regex(ID_PATTERN, `${what} must ${ID_RULE}`);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const uuid = (what: string, hint: string) => z.string().regex(UUID, `must be ${what} id (a lowercase UUID); ${hint}`);
const arch = z.enum(ARCHES, { error: `must be one of ${ARCHES.join(', ')}` });
export const time = z.iso.datetime({ offset: true });
/** A workspace's own idle period: 0 or null never stops it, else 60 s to a year. */
const autostopAfterSeconds = z
  .number({ error: 'must be a whole number of seconds, 0, or null' })
  .int('must be a whole number of seconds')
  .min(0, 'must be 0 (never) or at least 60')
  .max(MAX_AUTOSTOP_SECONDS, `must be at most ${MAX_AUTOSTOP_SECONDS} (a year); 0 or null: never`)
  .refine((v) => v === 0 || v >= 60, 'must be 0 (never) or at least 60')
  .nullable()
  .meta({ description: "stop the workspace after this many seconds idle; 0 or null: never; absent: its tier's autostopAfterSeconds. Users may only shorten the tier's" });
const changeNumber = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a change number is 1-64 letters, digits, ".", "_" or "-"');

/** Docker image reference: [registry/]repository[:tag][@digest], conservatively. */
const IMAGE_REF = /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;

/** A whole number in a query string, from min to max. */
export function intQuery(name: string, min: number, max: number) {
  const rule = `${name} must be a whole number from ${min} to ${max}`;
  return z
    .string()
    .regex(/^\d{1,10}$/, rule)
    .transform(Number)
    .refine((n) => n >= min && n <= max, rule)
    .meta({ description: rule });
}

export const boolQuery = (description: string) =>
  z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .transform((v) => v === 'true')
    .meta({ description });

const limit = (what: string, int: boolean) =>
  (int ? z.number().int(`${what} must be a whole number`) : z.number()).min(0, `${what} cannot be negative`).max(1e9).nullable().optional();

const role = z.enum(['user', 'lead', 'admin']);
/** A user id that may name a users row: "admin" is what the audit log calls the admin token. */
const newUserId = id('a user id').refine((v) => v !== 'admin', 'admin is reserved for the admin token; choose another id');

/** A comma-separated list of values from a fixed set, e.g. ?status=FAILED,STOPPED. */
function listQuery<T extends string>(name: string, values: readonly T[], description: string) {
  const rule = `${name} must be one or more of ${values.join(', ')}, separated by commas`;
  return z
    .string()
    .max(2000)
    .transform((v, ctx) => {
      const items = [...new Set(v.split(',').map((x) => x.trim()).filter(Boolean))];
      if (!items.length || items.some((x) => !(values as readonly string[]).includes(x))) {
        ctx.addIssue({ code: 'custom', message: rule });
        return z.NEVER;
      }
      return items as T[];
    })
    .meta({ description: `${description}; ${rule}` });
}

const eventCursor = z
  .string()
  .regex(CURSOR_PATTERN, 'must be a cursor from an earlier answer (nextCursor, or an event\'s cursor)')
  .meta({ description: "only events after this cursor (nextCursor of the previous page, or an event's cursor)" });

/** A cursor of the fleet and build listings: opaque, from the previous page's nextCursor. */
const pageCursor = z
  .string()
  .max(300)
  .regex(/^[A-Za-z0-9_-]+$/, 'must be the nextCursor of the previous page')
  .meta({ description: 'nextCursor of the previous page' });

/** Free text to search for: at most 200 characters. */
const searchText = z
  .string()
  .trim()
  .min(1, 'q must not be empty')
  .max(200, 'q is at most 200 characters')
  .meta({ description: 'text to find (substring, case-insensitive, typos tolerated)' });

// ---------------------------------------------------------------- path parameters

export const params = {
  userId: z.strictObject({ userId: id('a user id') }),
  /** Where a users row may be written. */
  newUserId: z.strictObject({ userId: newUserId }),
  teamId: z.strictObject({ teamId: id('a team id') }),
  hostId: z.strictObject({ id: id('a host id') }),
  workspace: z.strictObject({ id: uuid('a workspace', 'list workspaces with `a4c ws list`') }),
  userWorkspace: z.strictObject({ userId: id('a user id'), id: uuid('a workspace', 'list workspaces with `a4c ws list`') }),
  build: z.strictObject({ id: uuid('an image build', 'list builds with `a4c build list`') }),
  userToken: z.strictObject({ userId: id('a user id'), tokenId: uuid('a token', 'list tokens with `a4c tokens list <user>`') }),
};

/** ?wait=S on operations that change a workspace: answer once it settles or S seconds pass. */
export const waitQuery = (maxWaitSeconds: number) =>
  z.strictObject({
    wait: intQuery('wait', 0, maxWaitSeconds)
      .meta({ description: `Answer once the workspace is settled or this many seconds (0-${maxWaitSeconds}) have passed, whichever is first.` })
      .optional(),
  });

// ---------------------------------------------------------------- request bodies and queries

export const requests = {
  createWorkspace: z.strictObject({
    projectName: id('a project name'),
    arch,
    tier: z.string().min(1).max(32).meta({ description: 'standard, large, xl, or a tier from A4C_TIERS' }),
    name: id('a workspace name').optional().meta({ description: "unique among the user's live workspaces; default <project>-<6 hex>" }),
    changeNumber: changeNumber.optional(),
    image: z
      .string()
      .max(255)
      .regex(IMAGE_REF, 'must be a Docker image reference such as a4c-base:latest')
      .optional()
      .meta({ description: 'default: the newest image built for project + arch, else A4C_DEFAULT_IMAGE' }),
    autostopAfterSeconds: autostopAfterSeconds.optional(),
  }),
  updateWorkspace: z.strictObject({ autostopAfterSeconds }),
  listWorkspaces: z.strictObject({ includeDeleted: boolQuery('also list deleted workspaces').optional() }),
  reject: z.strictObject({ reason: z.string().max(500).optional() }),
  scheduleBuild: z.strictObject({
    imageName: z
      .string()
      .regex(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, 'an image name is lowercase letters, digits and . _ - / separators')
      .max(128),
    project: id('a project name'),
    arch,
    changeNumber,
  }),
  buildFilter: z.strictObject({
    status: z.enum(BUILD_STATUSES).optional(),
    project: id('a project name').optional(),
    arch: z.enum(ARCHES).optional(),
    userId: id('a user id').optional(),
    hostId: id('a host id').meta({ description: 'only builds this host claimed' }).optional(),
    q: searchText.meta({ description: 'text to find in the error or the log lines (substring, case-insensitive)' }).optional(),
    limit: intQuery('limit', 1, 1000).optional(),
    cursor: pageCursor.optional(),
  }),
  logQuery: z.strictObject({
    after: intQuery('after', 0, 2 ** 31 - 1).meta({ description: 'only lines after this sequence number' }).optional(),
    limit: intQuery('limit', 1, 5000).optional(),
  }),
  quota: z.strictObject({
    maxWorkspaces: limit('maxWorkspaces', true),
    maxDiskGb: limit('maxDiskGb', false),
    maxConcurrentBuilds: limit('maxConcurrentBuilds', true),
  }),
  user: z.strictObject({ teamId: id('a team id').nullable().optional(), role: role.optional() }),
  newUser: z.strictObject({ id: newUserId, teamId: id('a team id').nullable().optional(), role: role.optional() }),
  newToken: z.strictObject({
    name: z.string().min(1).max(100),
    ttlSeconds: z.number().int().min(60, 'a token lives at least 60 s').max(10 * 365 * 86400).optional(),
  }),
  events: z.strictObject({
    workspaceId: uuid('a workspace', 'list workspaces with `a4c ws list`').optional(),
    hostId: id('a host id').optional(),
    userId: id('a user id').optional(),
    buildId: uuid('an image build', 'list builds with `a4c build list`').optional(),
    kind: listQuery('kind', EVENT_KIND_NAMES, 'only events of these kinds').optional(),
    since: time.meta({ description: 'only events at or after this time (RFC 3339)' }).optional(),
    after: eventCursor.optional(),
    limit: intQuery('limit', 1, 1000).meta({ description: 'at most this many events (default 100)' }).optional(),
  }),
  eventStream: z.strictObject({
    workspaceId: uuid('a workspace', 'list workspaces with `a4c ws list`').optional(),
    hostId: id('a host id').optional(),
    userId: id('a user id').optional(),
    buildId: uuid('an image build', 'list builds with `a4c build list`').optional(),
    kind: listQuery('kind', EVENT_KIND_NAMES, 'only events of these kinds').optional(),
    since: time.meta({ description: 'start with the events at or after this time (without it, and without a cursor: from now on)' }).optional(),
    after: eventCursor.meta({ description: 'start after this cursor; the Last-Event-ID header, when sent, wins' }).optional(),
  }),
  fleet: z.strictObject({
    status: listQuery('status', WORKSPACE_STATUSES, 'only workspaces in these statuses (default: all but DELETED)').optional(),
    userId: id('a user id').optional(),
    teamId: id('a team id').optional(),
    hostId: id('a host id').optional(),
    project: id('a project name').optional(),
    tier: z.string().min(1).max(32).optional(),
    q: searchText.optional(),
    sort: z
      .enum(['-createdAt', 'createdAt', '-updatedAt', 'updatedAt'], { error: 'sort must be one of -createdAt, createdAt, -updatedAt, updatedAt' })
      .meta({ description: 'order (default -createdAt: newest first)' })
      .optional(),
    limit: intQuery('limit', 1, 500).meta({ description: 'at most this many (default 50)' }).optional(),
    cursor: pageCursor.optional(),
  }),
  auditQuery: z.strictObject({
    actor: z.string().min(1).max(100).optional(),
    after: intQuery('after', 0, Number.MAX_SAFE_INTEGER).meta({ description: 'only entries with a larger id' }).optional(),
    limit: intQuery('limit', 1, 1000).optional(),
  }),
};

// ---------------------------------------------------------------- responses

export const errorBody: z.ZodType<ErrorBody> = z
  .looseObject({
    error: z.enum(ERROR_CODES),
    message: z.string(),
    field: z.string().optional().meta({ description: 'the request field the error is about (INVALID_ARGUMENT)' }),
    suggestion: z.string().optional().meta({ description: 'what to do next' }),
    requestId: z.string().optional(),
  })
  .meta({ id: 'Error' });

const keepAlive = z
  .discriminatedUnion('reason', [
    z.strictObject({ reason: z.literal('open-sessions'), kind: z.string(), actor: z.string(), count: z.number().int(), message: z.string() }),
    z.strictObject({ reason: z.literal('cpu'), cpuPercent: z.number(), thresholdPercent: z.number(), sampledAt: time, message: z.string() }),
    z.strictObject({ reason: z.literal('recent-activity'), source: z.enum(['session', 'cpu', 'started']), at: time, message: z.string() }),
  ])
  .meta({ id: 'KeepAliveReason' });

/** Only in reads of one workspace (GET /v1/workspaces/{id}, GET /v1/users/{userId}/workspaces/{id}, PATCH). */
const autostopFields = {
  autostopAfterSeconds: z.number().int().nullable().optional().meta({ description: "the idle period in force (the workspace's own, else its tier's); null: never" }),
  autostopAt: time.nullable().optional().meta({ description: 'when it stops if nothing keeps it alive from now on (moves forward with activity); null: never, or not running' }),
  keptAliveBecause: z.array(keepAlive).optional().meta({ description: 'why it is still running: open sessions (kind, actor, count), CPU above the threshold, the latest activity' }),
  dormantAt: time.nullable().optional().meta({ description: 'stopped and unused long enough to be marked dormant; starting it clears this' }),
  deleteAt: time.nullable().optional().meta({ description: 'a dormant workspace is deleted then (only if the admin set A4C_DELETE_DORMANT_AFTER_SECONDS)' }),
};

export const workspace: z.ZodType<Workspace> = z
  .strictObject({
    id: z.string(),
    userId: z.string(),
    name: z.string(),
    projectName: z.string(),
    arch,
    tier: z.string(),
    image: z.string(),
    status: z.enum(WORKSPACE_STATUSES),
    hostId: z.string().nullable(),
    hostLost: z.boolean().meta({ description: "the host stopped heartbeating: the status is the last one known" }),
    containerId: z.string().nullable(),
    hostname: z.string().nullable(),
    sshCommand: z.string().nullable().meta({ description: 'works once `a4c config-ssh` wrote the SSH config' }),
    lastActivityAt: time.nullable().meta({ description: 'the last session into the workspace began, ended or moved bytes (to the minute)' }),
    failedStep: z.string().nullable(),
    error: z.string().nullable(),
    attempt: z.number().int(),
    disk: z
      .strictObject({
        usedBytes: z.number().meta({ description: 'writableBytes + volumeBytes: what counts against the limit' }),
        limitBytes: z.number().meta({ description: "the tier's disk; warned at A4C_DISK_WARN_PERCENT (90 %), stopped past 100 % with the reason in error" }),
        writableBytes: z.number().meta({ description: "the container's writable layer" }),
        volumeBytes: z.number().meta({ description: "the user's volume at /workspace (shared by the user's workspaces on the host)" }),
        layerLimitEnforced: z.boolean().meta({ description: 'the storage driver also caps the writable layer (--storage-opt size)' }),
        measuredAt: time,
      })
      .nullable()
      .meta({ description: "disk use as the host's agent last measured it (every A4C_DISK_MEASURE_INTERVAL_MS); null before the first measure" }),
    createdAt: time,
    updatedAt: time,
    ...autostopFields,
  })
  .meta({ id: 'Workspace' });

const resources = z.strictObject({ memoryBytes: z.number(), cpus: z.number(), diskBytes: z.number() });

export const host: z.ZodType<HostView> = z
  .strictObject({
    id: z.string(),
    arch,
    status: z.enum(['healthy', 'unhealthy', 'draining']),
    connected: z.boolean(),
    agentVersion: z.string(),
    sessionId: z.string().nullable(),
    capacity: resources,
    allocatable: resources,
    reserved: resources,
    stats: z
      .strictObject({
        diskPercent: z.number(),
        memoryPercent: z.number(),
        cpuPercent: z.number(),
        workspaceContainers: z.number().int(),
        engineContainers: z.number().int(),
        dockerReady: z.boolean(),
        diskUsedBytes: z.number(),
        diskTotalBytes: z.number(),
        memoryUsedBytes: z.number(),
        memoryTotalBytes: z.number(),
      })
      .nullable(),
    workspaceCount: z.number().int(),
    revision: z.number().int(),
    appliedRevision: z.number().int(),
    images: z.array(z.string()),
    lastHeartbeatAt: time.nullable(),
    heartbeatIntervalMs: z.number().int().nullable(),
    connectedAt: time.nullable(),
  })
  .meta({ id: 'Host' });

export const build: z.ZodType<Build> = z
  .strictObject({
    id: z.string(),
    userId: z.string(),
    imageName: z.string(),
    project: z.string(),
    arch,
    changeNumber: z.string(),
    status: z.enum(BUILD_STATUSES),
    worker: z.string().nullable(),
    attempts: z.number().int(),
    retryCount: z.number().int(),
    progress: z.number(),
    imageTag: z.string(),
    imageId: z.string().nullable(),
    error: z.string().nullable(),
    createdAt: time,
    claimedAt: time.nullable(),
    heartbeatAt: time.nullable(),
    finishedAt: time.nullable(),
    updatedAt: time,
    logTail: z.array(z.string()),
  })
  .meta({ id: 'ImageBuild' });

const logLine: z.ZodType<BuildLogLine> = z.strictObject({ seq: z.number().int(), at: time, line: z.string() });
export const buildLogs = z.strictObject({ status: z.enum(BUILD_STATUSES), lines: z.array(logLine) }).meta({ id: 'ImageBuildLogs' });

export const user = z.strictObject({ id: z.string(), teamId: z.string().nullable(), role }).meta({ id: 'User' });

const tokenObject = z.strictObject({
  id: z.string(),
  userId: z.string(),
  name: z.string(),
  prefix: z.string().meta({ description: 'the first characters of the token, to recognise it' }),
  createdAt: time,
  expiresAt: time.nullable(),
  revokedAt: time.nullable(),
  lastUsedAt: time.nullable(),
});
export const token: z.ZodType<TokenView> = tokenObject.meta({ id: 'ApiToken' });

export const issuedToken = tokenObject
  .extend({ token: z.string().meta({ description: 'the secret: shown once, never again' }) })
  .meta({ id: 'IssuedApiToken' });

const quotaLimits = z.strictObject({ maxWorkspaces: z.number(), maxDiskGb: z.number(), maxConcurrentBuilds: z.number() });
const quotaOverride = z.strictObject({ maxWorkspaces: z.number().nullable(), maxDiskGb: z.number().nullable(), maxConcurrentBuilds: z.number().nullable() });
const quotaSource = z.enum(['user', 'team', 'default']);

export const userQuota: z.ZodType<UserQuotaView> = z
  .strictObject({
    userId: z.string(),
    teamId: z.string().nullable(),
    limits: quotaLimits,
    source: z.strictObject({ maxWorkspaces: quotaSource, maxDiskGb: quotaSource, maxConcurrentBuilds: quotaSource }),
    overrides: quotaOverride,
    usage: z.strictObject({ workspaces: z.number().int(), diskGb: z.number(), concurrentBuilds: z.number().int() }),
  })
  .meta({ id: 'UserQuota' });

export const teamQuota = z
  .strictObject({ teamId: z.string(), limits: quotaLimits, overrides: quotaOverride, members: z.number().int() })
  .meta({ id: 'TeamQuota' });

export const auditEntry = z
  .strictObject({
    id: z.number().int(),
    at: time,
    requestId: z.string(),
    actor: z.string(),
    action: z.string().meta({ description: 'method and route template, e.g. POST /v1/workspaces/:id/stop' }),
    target: z.string().meta({ description: 'the request path' }),
    outcome: z.number().int().meta({ description: 'the HTTP status answered' }),
    error: z.string().nullable(),
  })
  .meta({ id: 'AuditEntry' });

const changes = z.record(z.string(), z.strictObject({ from: z.unknown(), to: z.unknown() }));

export const event: z.ZodType<EventView> = z
  .strictObject({
    id: z.number().int(),
    cursor: z.string().meta({ description: 'where this event is in the log: pass it as after, or Last-Event-ID' }),
    at: time,
    kind: z.string().meta({ description: 'one of the kinds listed in docs/api.md' }),
    actor: z.string().meta({ description: 'a user id, admin, agent:<host>, or control-plane' }),
    reason: z.string(),
    workspaceId: z.string().nullable(),
    hostId: z.string().nullable(),
    userId: z.string().nullable().meta({ description: 'whose thing the event is about' }),
    buildId: z.string().nullable(),
    changes: changes.meta({ description: 'each changed field: {from, to}' }),
    data: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'Event' });

export const eventPage = z
  .strictObject({
    events: z.array(event),
    nextCursor: z.string().meta({ description: 'pass as after to read on; also when no events came (nothing to skip next time)' }),
  })
  .meta({ id: 'EventPage' });

export const eventStream = z.string().meta({
  description:
    'text/event-stream: per event `id:` its cursor, `event:` its kind, `data:` the Event as JSON; a comment line every 15 s. Reconnect with Last-Event-ID.',
});

export const page = <K extends string>(key: K, item: z.ZodType) =>
  z.strictObject({
    [key]: z.array(item),
    nextCursor: z.string().nullable().meta({ description: 'pass as cursor for the next page; null: this was the last' }),
  } as Record<K | 'nextCursor', z.ZodType>);

export const list = <K extends string>(key: K, item: z.ZodType) => z.strictObject({ [key]: z.array(item) } as Record<K, z.ZodArray<z.ZodType>>);
