import { notifySuperseded } from '../events/notify.js';
import { certificateRows, certificateVerdict } from '../pki/enrollment.js';
import type { Db, Tx } from './db.js';
import { inTx } from './db.js';
import { changesOf } from './events.js';
import { replaceImagesOf, type HelloRow } from './host-sessions.js';

/** One agent's Hello, claiming its host for a new session. */
export interface HelloClaim extends HelloRow {
  sessionId: string;
  /** The agent's previous session id (Hello.previous_session_id); '' for none. */
  previousSessionId: string;
  /** The client certificate's serial to check (mutual TLS); null without TLS. */
  serial: string | null;
}

export type ClaimResult =
  | {
      ok: true;
      /** The period this session's Welcome tells (and its liveness is judged by). */
      heartbeatIntervalMs: number;
      /** The host's previous session, if it was still marked connected: its replica closes it. */
      superseded: string | null;
      /** The previous session looked alive and was replaced because the Hello named it. */
      takeover: boolean;
    }
  | { ok: false; refusal: 'live' | 'certificate'; message: string };

export interface ClaimPolicy {
  /** The configured liveness window (A4C_HEARTBEAT_MS × A4C_HEARTBEAT_MISS_LIMIT); a session's own may only be longer. */
  liveWithinSeconds: number;
  heartbeatMissLimit: number;
  /** The heartbeat period for a fleet of this many connected hosts (agents/heartbeat-period.ts). */
  periodMs(connectedHosts: number): number;
}

/** The host's session as the claim found it, its row locked. */
interface Held {
  host_id: string;
  session_id: string | null;
  connected: boolean;
  live: boolean;
}

/**
 * Claims their hosts for many new agent sessions in one transaction, with one statement
 * per table for the whole batch: host rows, session rows, image inventories and the
 * host.connected events. Each Hello is judged alone: a certificate that does not hold,
 * or a host whose live session (a heartbeat within its window) keeps it, refuses that
 * Hello only. A live session is replaced only when the Hello names it as its previous
 * session (the agent that held it is back, e.g. after its replica was killed); the
 * replaced session is NOTIFYed so the replica holding it closes it. Host ids must be
 * unique within a batch. Results are in the order of `claims`.
 */
export async function openHostSessions(db: Db, claims: HelloClaim[], p: ClaimPolicy): Promise<ClaimResult[]> {
  // Two claims of one host in one batch would both be judged against the same old session.
  const seen = new Set<string>();
  for (const c of claims) {
    if (seen.has(c.hostId)) throw new Error(`two Hellos for host ${c.hostId} in one batch: they must be recorded one after the other`);
    seen.add(c.hostId);
  }
  return inTx(db, async (tx) => {
    const results = new Map<HelloClaim, ClaimResult>();
    const serials = claims.flatMap((c) => (c.serial ? [c.serial] : []));
    const certs = serials.length ? await certificateRows(tx, serials) : new Map();
    for (const c of claims) {
      if (!c.serial) continue;
      const v = certificateVerdict(certs.get(c.serial), c.serial, c.hostId);
      if (!v.ok) results.set(c, { ok: false, refusal: 'certificate', message: v.reason });
    }
    // Host id order everywhere: batches of two replicas (an agent flapping between them) never deadlock.
    const cands = claims.filter((c) => !results.has(c)).sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
    if (cands.length) await claimHosts(tx, cands, p, results);
    return claims.map((c) => results.get(c) as ClaimResult);
  });
}

async function claimHosts(tx: Tx, cands: HelloClaim[], p: ClaimPolicy, results: Map<HelloClaim, ClaimResult>): Promise<void> {
  const ids = cands.map((c) => c.hostId);
  await tx.query(
    `INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[], $6::bigint[])
     ON CONFLICT (id) DO NOTHING`,
    [ids, cands.map((c) => c.arch), cands.map((c) => c.agentVersion), cands.map((c) => c.memoryBytes), cands.map((c) => c.cpus), cands.map((c) => c.diskBytes)],
  );
  await tx.query(`INSERT INTO host_status (host_id, arch) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (host_id) DO NOTHING`, [ids, cands.map((c) => c.arch)]);
  // FOR UPDATE: a write of a session being replaced that is under way (it holds its row
  // FOR KEY SHARE, see sessionGuard) commits first, and the check and the claim are one step.
  const { rows } = await tx.query<Held>(
    `SELECT s.host_id, s.session_id, s.connected,
            COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($2, s.live_within_seconds)), false) AS live
       FROM host_status s WHERE s.host_id = ANY($1::text[]) ORDER BY s.host_id FOR UPDATE`,
    [ids, p.liveWithinSeconds],
  );
  const held = new Map(rows.map((r) => [r.host_id, r]));
  const won: Array<{ c: HelloClaim; was: Held | undefined; takeover: boolean }> = [];
  for (const c of cands) {
    const was = held.get(c.hostId);
    const takeover = !!was?.live && !!c.previousSessionId && was.session_id === c.previousSessionId;
    if (was?.live && !takeover) {
      results.set(c, {
        ok: false,
        refusal: 'live',
        message: `host ${c.hostId} already has a live agent session; stop the other agent with this host id, or set A4C_HOST_ID to a unique value`,
      });
    } else {
      won.push({ c, was, takeover });
    }
  }
  if (!won.length) return;
  const wonIds = won.map((w) => w.c.hostId);
  // Nomad's heartbeat TTL: the period grows with the hosts that heartbeat (the connected
  // ones elsewhere, and this batch's).
  const { rows: n } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM host_status WHERE connected AND NOT host_id = ANY($1::text[])', [wonIds]);
  const periodMs = p.periodMs((n[0]?.n ?? 0) + won.length);
  const liveWithin = (periodMs * p.heartbeatMissLimit) / 1000;
  const wc = won.map((w) => w.c);
  await tx.query(
    `UPDATE host_status s SET arch = t.arch, session_id = t.sid, connected = true, connected_at = now(), last_heartbeat_at = now(),
            stats = t.stats::jsonb, disk_percent = t.disk, memory_percent = t.mem, docker_ready = t.ready,
            heartbeat_interval_ms = $8, live_within_seconds = $9
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::bool[]) AS t(host_id, arch, sid, stats, disk, mem, ready)
      WHERE s.host_id = t.host_id`,
    [
      wonIds,
      wc.map((c) => c.arch),
      wc.map((c) => c.sessionId),
      wc.map((c) => c.stats.json),
      wc.map((c) => c.stats.diskPercent),
      wc.map((c) => c.stats.memoryPercent),
      wc.map((c) => c.stats.dockerReady),
      periodMs,
      liveWithin,
    ],
  );
  const { rows: before } = await tx.query<{ id: string; arch: string; agent_version: string; memory_bytes: string; cpus: number; disk_bytes: string }>(
    'SELECT id, arch, agent_version, memory_bytes, cpus, disk_bytes FROM hosts WHERE id = ANY($1::text[])',
    [wonIds],
  );
  const was = new Map(before.map((b) => [b.id, { arch: b.arch, agentVersion: b.agent_version, memoryBytes: Number(b.memory_bytes), cpus: b.cpus, diskBytes: Number(b.disk_bytes) }]));
  await tx.query(
    `UPDATE hosts h SET arch = t.arch, agent_version = t.version, memory_bytes = t.mem, cpus = t.cpus, disk_bytes = t.disk, updated_at = now()
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[], $6::bigint[]) AS t(id, arch, version, mem, cpus, disk)
      WHERE h.id = t.id`,
    [wonIds, wc.map((c) => c.arch), wc.map((c) => c.agentVersion), wc.map((c) => c.memoryBytes), wc.map((c) => c.cpus), wc.map((c) => c.diskBytes)],
  );
  await replaceImagesOf(tx, wc);
  await tx.query(
    `INSERT INTO events (kind, actor, reason, host_id, changes, data)
     SELECT 'host.connected', 'agent:' || t.host_id, t.reason, t.host_id, t.changes::jsonb, t.data::jsonb
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(host_id, reason, changes, data)`,
    [
      wonIds,
      won.map((w) => (w.takeover ? 'its agent came back and replaced its previous session, which still looked alive' : 'its agent opened a session')),
      won.map(({ c }) =>
        JSON.stringify(
          changesOf(
            { connected: false, ...was.get(c.hostId) },
            { connected: true, arch: c.arch, agentVersion: c.agentVersion, memoryBytes: c.memoryBytes, cpus: c.cpus, diskBytes: c.diskBytes },
          ),
        ),
      ),
      won.map(({ c, was: h, takeover }) =>
        JSON.stringify({
          sessionId: c.sessionId,
          agentVersion: c.agentVersion,
          containers: c.containers,
          lastAppliedRevision: c.lastAppliedRevision,
          heartbeatIntervalMs: periodMs,
          ...(h?.connected && h.session_id ? { supersededSessionId: h.session_id, takeover } : {}),
        }),
      ),
    ],
  );
  const superseded = won.flatMap(({ c, was: h }) => (h?.connected && h.session_id ? [{ hostId: c.hostId, sessionId: h.session_id }] : []));
  await notifySuperseded(tx, superseded);
  for (const { c, was: h, takeover } of won) {
    results.set(c, { ok: true, heartbeatIntervalMs: periodMs, superseded: h?.connected && h.session_id ? h.session_id : null, takeover });
  }
}
