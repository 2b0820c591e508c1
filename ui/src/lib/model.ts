/**
 * The API's shapes as the dashboard reads them, and the few reads that have two ways
 * to be answered: an API that newer control planes have (fleet search, the activity
 * log) and the fallback for the ones that do not yet. Each is probed once per page load.
 */
import type { Build, BuildLogLine, HostView, Workspace, WorkspaceStatus } from '@a4c/common';
import { ApiError, get, isMissingRoute, qs } from './api.js';

export type { Build, BuildLogLine, HostView, Workspace, WorkspaceStatus };

export type Role = 'user' | 'lead' | 'admin';
export interface Me {
  id: string;
  role: Role;
  teamId: string | null;
}
export interface User {
  id: string;
  teamId: string | null;
  role: Role;
}
export interface Token {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}
export interface QuotaLimits {
  maxWorkspaces: number;
  maxDiskGb: number;
  maxConcurrentBuilds: number;
}
export interface UserQuota {
  userId: string;
  teamId: string | null;
  limits: QuotaLimits;
  source: Record<keyof QuotaLimits, 'user' | 'team' | 'default'>;
  overrides: Record<keyof QuotaLimits, number | null>;
  usage: { workspaces: number; diskGb: number; concurrentBuilds: number };
}
export interface TeamQuota {
  teamId: string;
  limits: QuotaLimits;
  overrides: Record<keyof QuotaLimits, number | null>;
  members: number;
}
export interface AuditEntry {
  id: number;
  at: string;
  requestId: string;
  actor: string;
  action: string;
  target: string;
  outcome: number;
  error: string | null;
}

/** One activity-log event (GET /v1/events, /v1/events/stream). */
export interface A4cEvent {
  /** The cursor: resume after it (`after=`, `Last-Event-ID`). */
  id: string;
  at: string;
  kind: string;
  actor: string;
  workspaceId: string | null;
  hostId: string | null;
  userId: string | null;
  data: Record<string, unknown>;
}

export const WORKSPACE_STATUSES = [
  'CREATING',
  'RUNNING',
  'STOPPING',
  'STOPPED',
  'STARTING',
  'FAILED',
  'DELETING',
  'DELETED',
  'PENDING_APPROVAL',
  'REJECTED',
  'LOST',
] as const satisfies readonly WorkspaceStatus[];

export const ARCHES = ['linux-x64', 'linux-arm64', 'darwin-arm64'] as const;

export const BUILD_STATUSES = ['SCHEDULED', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;

/** Statuses from which nothing happens without someone asking. */
export const SETTLED: readonly WorkspaceStatus[] = ['RUNNING', 'STOPPED', 'DELETED', 'FAILED', 'PENDING_APPROVAL', 'REJECTED', 'LOST'];

export interface WorkspaceFilter {
  status?: string;
  userId?: string;
  hostId?: string;
  project?: string;
  tier?: string;
  q?: string;
  includeDeleted?: boolean;
}

/** Whether the control plane answers GET /v1/workspaces (fleet search); undefined until asked. */
let fleetSearch: boolean | undefined;

export function hasFleetSearch(): boolean | undefined {
  return fleetSearch;
}

/**
 * Workspaces the caller may see, filtered. With fleet search, the server filters
 * (admins: everyone's, leads: their team's, users: their own). Without it, the
 * caller's own list (an admin's: every user's, one call per user) filtered here.
 */
export async function searchWorkspaces(me: Me, f: WorkspaceFilter, signal?: AbortSignal): Promise<Workspace[]> {
  if (fleetSearch !== false) {
    try {
      const r = await get<{ workspaces: Workspace[] }>(
        `/v1/workspaces${qs({ status: f.status, userId: f.userId, hostId: f.hostId, project: f.project, tier: f.tier, q: f.q, limit: 200 })}`,
        signal,
      );
      fleetSearch = true;
      return f.includeDeleted || f.status === 'DELETED' ? r.workspaces : r.workspaces.filter((w) => w.status !== 'DELETED');
    } catch (e) {
      if (!isMissingRoute(e)) throw e;
      fleetSearch = false;
    }
  }
  const users = me.role === 'admin' && !f.userId ? [...new Set([me.id, ...(await get<{ users: User[] }>('/v1/users', signal)).users.map((u) => u.id)])] : [f.userId ?? me.id];
  const lists = await Promise.all(
    users.map((u) =>
      get<{ workspaces: Workspace[] }>(`/v1/users/${encodeURIComponent(u)}/workspaces${qs({ includeDeleted: f.includeDeleted || f.status === 'DELETED' ? 'true' : undefined })}`, signal).then(
        (r) => r.workspaces,
        (e: unknown) => {
          // A user another user cannot see answers 404: nothing of theirs to show.
          if (e instanceof ApiError && e.status === 404 && users.length > 1) return [];
          throw e;
        },
      ),
    ),
  );
  return lists
    .flat()
    .filter((w) => matches(w, f))
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

function matches(w: Workspace, f: WorkspaceFilter): boolean {
  if (f.status && w.status !== f.status) return false;
  if (f.hostId && w.hostId !== f.hostId) return false;
  if (f.project && w.projectName !== f.project) return false;
  if (f.tier && w.tier !== f.tier) return false;
  if (f.userId && w.userId !== f.userId) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    const text = [w.name, w.projectName, w.hostname, w.error, w.id, w.userId, w.hostId].filter(Boolean).join(' ').toLowerCase();
    if (!q.split(/\s+/).every((word) => text.includes(word))) return false;
  }
  return true;
}

export interface EventFilter {
  workspaceId?: string;
  hostId?: string;
  userId?: string;
  kind?: string;
  since?: string;
  after?: string;
  limit?: number;
}

/** Whether the control plane has the activity log API; undefined until asked. */
let eventsApi: boolean | undefined;
export function hasEventsApi(): boolean | undefined {
  return eventsApi;
}
export function setEventsApi(v: boolean): void {
  eventsApi = v;
}

export interface EventPage {
  events: A4cEvent[];
  /** Where the log was read up to: follow the stream from here, and nothing is missed or repeated. */
  nextCursor: string | undefined;
}

/**
 * The activity log, oldest first; undefined when this control plane has no /v1/events
 * yet. With `pages` above 1, reads on while pages come back full and keeps the last
 * `limit` events (the newest, for a page that starts at `since`).
 */
export async function listEvents(f: EventFilter, signal?: AbortSignal, pages = 1): Promise<EventPage | undefined> {
  if (eventsApi === false) return undefined;
  const limit = f.limit ?? 200;
  let events: A4cEvent[] = [];
  let after = f.after;
  try {
    for (let i = 0; i < pages; i++) {
      const r = await get<{ events: RawEvent[]; nextCursor?: string }>(`/v1/events${qs({ ...f, after, limit })}`, signal);
      eventsApi = true;
      events = [...events, ...r.events.map(normalizeEvent)].slice(-limit);
      after = r.nextCursor ?? events[events.length - 1]?.id ?? after;
      if (r.events.length < limit) break;
    }
    return { events, nextCursor: after };
  } catch (e) {
    if (isMissingRoute(e)) {
      eventsApi = false;
      return undefined;
    }
    throw e;
  }
}

export type RawEvent = Partial<Omit<A4cEvent, 'id'>> & { id?: string | number; cursor?: string | number; data?: Record<string, unknown> | null };

/** Tolerant of the id being a number or a string and of absent optional fields. */
export function normalizeEvent(r: RawEvent): A4cEvent {
  const data = r.data ?? {};
  const str = (v: unknown) => (typeof v === 'string' && v ? v : null);
  return {
    id: String(r.cursor ?? r.id ?? ''),
    at: r.at ?? new Date().toISOString(),
    kind: r.kind ?? 'event',
    actor: r.actor ?? '',
    workspaceId: r.workspaceId ?? str(data.workspaceId),
    hostId: r.hostId ?? str(data.hostId),
    userId: r.userId ?? str(data.userId),
    data,
  };
}
