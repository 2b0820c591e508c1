/**
 * Every kind of event the activity log holds: a stable list, documented in docs/api.md
 * (a test checks the two agree). Kinds are never renamed or reused; new ones are added.
 * Each says what happened, to what, in the past tense.
 */
import type { HostEventKind } from '@a4c/common';

export const EVENT_KINDS = {
  // workspaces: the owner's, their lead's and admins' to see
  'workspace.requested': 'created in a tier that needs approval: PENDING_APPROVAL, placed nowhere yet',
  'workspace.created': 'placed on a host: CREATING',
  'workspace.approved': 'an admin approved it: placed, CREATING',
  'workspace.rejected': 'an admin rejected it: REJECTED',
  'workspace.retried': 'a FAILED or LOST workspace placed again with the next attempt: CREATING',
  'workspace.stopping': 'stop asked: STOPPING',
  'workspace.starting': 'start asked: STARTING',
  'workspace.deleting': 'delete asked: DELETING (or straight to workspace.deleted when on no host)',
  'workspace.running': 'the agent reports its container running',
  'workspace.stopped': 'the agent reports its container stopped',
  'workspace.failed': 'the agent reported a failure, or it was stuck coming up past the timeout',
  'workspace.deleted': 'its container is gone from the host (or went with a lost host): DELETED',
  'workspace.disk_warning': "its writable layer and volume reached A4C_DISK_WARN_PERCENT (90 %) of its tier's disk (once per crossing); past 100 % it is stopped",
  'workspace.lost': 'its host was removed or unhealthy past A4C_HOST_LOST_AFTER_SECONDS: LOST',
  'workspace.autostop_warning': 'idle: it will be stopped at data.stopAt unless used (once per idle period)',
  'workspace.autostopped': 'stopped for idleness, saying since when and why nothing kept it alive (with workspace.stopping)',
  'workspace.dormant': 'stopped and unused for A4C_DORMANT_AFTER_SECONDS: marked dormant (dormantAt)',
  'workspace.drain_notice': "its host is being drained: it will be moved, or stopped at the deadline (data.deadlineAt)",
  'workspace.updated': 'its owner or an admin changed a setting (autostopAfterSeconds)',
  'workspace.dormant_warning': 'stopped and unused: it will be marked dormant at data.dormantAt unless started',
  'workspace.dormant_delete_warning': 'dormant: it will be deleted at data.deleteAt unless started',
  'workspace.dormant_deleted': 'dormant for A4C_DELETE_DORMANT_AFTER_SECONDS: deleted (with workspace.deleting); the volume stays',
  'workspace.move_started': 'a move to another host was asked (by a user, or a host drain): the destination holds its resources',
  'workspace.move_copying': 'stopped at the source; its writable layer and volume are being copied to the destination',
  'workspace.move_progress': 'bytes copied so far (data.bytesDone), at most once a second while copying',
  'workspace.move_verifying': 'copied; the SHA-256 sums of both ends are being compared',
  'workspace.moved': 'the copy was verified and it switched hosts (same id and hostname); its reservation moved with it',
  'workspace.move_succeeded': 'the move finished: it runs (or is stopped, as before) on the destination',
  'workspace.move_failed': 'the move failed (data.switched false: the original stays on its host and runs again if it ran)',
  'workspace.force_stopped': "its host's drain deadline passed with it still there: stopped",
  'agent.container_vanished': 'the agent found its container missing (and recreates it if it should run)',
  'agent.container_exited': 'its container exited (exit code, OOM-killed)',
  'agent.container_restarted': 'the agent restarted its crashed container',
  'agent.create_retried': "creating or starting its container met a transient engine error (busy, timeout); the agent tries again after a delay",
  'agent.orphan_removed': 'the agent removed a container nobody wants (admins; the owner when the workspace is known)',
  'agent.stale_attempt_removed': "the agent removed a container of an earlier attempt (before a retry's new container)",
  'agent.image_pulled': "the agent pulled the workspace's image from its registry (the host did not hold it)",
  // image builds: the owner's, their lead's and admins'
  'build.scheduled': 'queued: SCHEDULED',
  'build.claimed': 'a host claimed it: IN_PROGRESS',
  'build.completed': 'finished: COMPLETED, the image recorded on the host',
  'build.failed': 'finished: FAILED (the build failed, or its worker went silent too often)',
  'build.requeued': 'its worker went silent: back to SCHEDULED with retryCount + 1',
  'build.result_discarded': 'a worker that had lost its claim reported late; nothing changed',
  'build.cancelled': 'a user or an admin cancelled it: CANCELLED (a running build is stopped on its host)',
  // hosts: admins only
  'host.connected': "an agent's session began (capacity, version, heartbeat period; a takeover of its previous session)",
  'host.disconnected': "an agent's session ended",
  'host.drained': 'an admin drained it: nothing new is placed there',
  'host.activated': 'an admin activated it again',
  'host.drain_finished': 'a drain ended: everything moved off (DONE), or the deadline passed (DEADLINE_REACHED), or the host was activated (CANCELLED)',
  'host.enrolled': 'an agent enrolled with a join token and got a certificate',
  'host.removed': "an admin removed it: its certificates revoked, its workspaces LOST",
  'host.lost': 'no live agent session for longer than A4C_HOST_LOST_AFTER_SECONDS: its workspaces LOST',
  'agent.docker_unreachable': "the host's Docker Engine stopped answering",
  'agent.docker_reachable': "the host's Docker Engine answers again",
  'agent.image_pruned': "image garbage collection removed an unused A4C-built image (the host's disk was past A4C_IMAGE_GC_HIGH_PERCENT)",
  'agent.unknown': 'the agent reported an event of a kind this control plane does not know',
  'join_token.created': 'an admin created a join token',
  // the agent plane's CA, kept in PostgreSQL for every replica: admins only
  'ca.stored': 'the first replica stored the agent-plane CA (created, imported from its data directory, or supplied)',
  'ca.key_encrypted': 'the CA key kept unencrypted was encrypted with A4C_CA_ENCRYPTION_KEY',
  // users: the user's own, their lead's and admins'
  'user.created': 'a user was created (by an admin, or at first single sign-on)',
  'user.updated': "an admin changed a user's team or role",
  'user.token_issued': 'an API token was issued',
  'user.token_revoked': 'an API token was revoked',
  'user.quota_updated': "an admin changed a user's quota overrides",
  'team.quota_updated': "an admin changed a team's default quota (admins only)",
  // webhooks: the owner's (fleet-wide ones: admins only)
  'webhook.created': 'a webhook was created',
  'webhook.updated': 'a webhook was changed (url, kinds, enabled, secret replaced)',
  'webhook.deleted': 'a webhook was deleted, with its deliveries',
  'webhook.disabled': 'a webhook was disabled automatically after too many consecutive failed attempts',
  'webhook.ping': 'a test ping was asked for: delivered to that webhook only',
} as const;

export type EventKind = keyof typeof EVENT_KINDS;
export const EVENT_KIND_NAMES = Object.keys(EVENT_KINDS) as EventKind[];

/** Every kind an agent reports has its entry above: this fails to compile otherwise. */
const _everyAgentKindIsKnown: Record<`agent.${HostEventKind}`, string> = EVENT_KINDS;
void _everyAgentKindIsKnown;

/** The agent reports its own events by name; unknown names (a newer agent's) are logged as agent.unknown. */
export function agentEventKind(name: string): EventKind {
  const kind = `agent.${name}`;
  return kind in EVENT_KINDS ? (kind as EventKind) : 'agent.unknown';
}
