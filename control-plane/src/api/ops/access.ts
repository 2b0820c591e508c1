import { z } from 'zod';
import type { AccessService, SessionParams } from '../../access/service.js';
import type { Policy } from '../../auth/principals.js';
import type { Db } from '../../store/db.js';
import { listAccessSessions, type AccessSessionRow } from '../../store/access.js';
import type { WorkspaceService } from '../../workspaces/service.js';
import { op, type Ctx, type Operation } from '../operation.js';
import { boolQuery, intQuery, params, time } from '../schemas.js';

export interface AccessDeps {
  db: Db;
  workspaces: WorkspaceService;
  policy: Policy;
  access: AccessService;
}

const TAG = 'Getting into a workspace';

const UPGRADE = {
  101: {
    description:
      'Switching Protocols: a WebSocket (subprotocol `a4c.v1`; browsers may also offer `a4c.bearer.<base64url token>` instead of the Authorization header). See docs/api.md, "Getting into a workspace", for the frames.',
  },
};
/** Errors before the upgrade are ordinary JSON errors: not running (409), not a WebSocket request (426), limits (429). */
const ERRORS = [404, 409, 426, 429];

const arg = z.string().max(8192, 'an argument is at most 8192 characters');
const execQuery = z.strictObject({
  command: z
    .union([arg, z.array(arg).max(256, 'at most 256 arguments')])
    .optional()
    .meta({ description: 'The argv, one `command` parameter per argument. Absent (with tty=true): an interactive login shell.' }),
  tty: boolQuery('allocate a terminal (default: false for a command, true for a shell)').optional(),
  cols: intQuery('cols', 1, 1000).optional(),
  rows: intQuery('rows', 1, 1000).optional(),
  term: z
    .string()
    .regex(/^[A-Za-z0-9._+-]{1,64}$/, 'term is a terminal type such as xterm-256color')
    .optional()
    .meta({ description: 'TERM inside the workspace, with a terminal (default xterm-256color)' }),
});
const portQuery = z.strictObject({
  port: intQuery('port', 1, 65535).meta({ description: 'The TCP port on 127.0.0.1 inside the workspace' }),
});

const sessionView = z
  .strictObject({
    id: z.string(),
    kind: z.enum(['exec', 'shell', 'port-forward', 'ssh']),
    actor: z.string(),
    command: z.array(z.string()).nullable(),
    tty: z.boolean(),
    port: z.number().int().nullable(),
    openedAt: time,
    endedAt: time.nullable(),
    durationSeconds: z.number().nullable(),
    exitCode: z.number().int().nullable(),
    endReason: z.string().nullable(),
    bytesIn: z.number().int(),
    bytesOut: z.number().int(),
  })
  .meta({ id: 'AccessSession', description: 'One session into a workspace: who, how, for how long, how many bytes, how it ended.' });

function toView(r: AccessSessionRow): z.output<typeof sessionView> {
  return {
    id: r.id,
    kind: r.kind,
    actor: r.actor,
    command: r.command,
    tty: r.tty,
    port: r.port,
    openedAt: r.opened_at.toISOString(),
    endedAt: r.ended_at?.toISOString() ?? null,
    durationSeconds: r.ended_at ? Math.round((r.ended_at.getTime() - r.opened_at.getTime()) / 100) / 10 : null,
    exitCode: r.exit_code,
    endReason: r.end_reason,
    bytesIn: Number(r.bytes_in),
    bytesOut: Number(r.bytes_out),
  };
}

/**
 * Exec, shell, port-forward and SSH into a workspace: WebSockets on the REST port,
 * authorized like reading the workspace (its owner, their team's lead, an admin;
 * others get 404). Each session is recorded with who opened it, and ends with a
 * message saying why.
 */
export function accessOperations(d: AccessDeps): Operation[] {
  const readable = async (ctx: Ctx, id: string) => {
    const w = await d.workspaces.get(id);
    await d.policy.read(ctx.state.principal, w.userId, 'workspace', w.id);
    return w;
  };
  const open = async (ctx: Ctx, id: string, p: SessionParams) => d.access.open(ctx, await readable(ctx, id), p);

  return [
    op({
      method: 'get',
      path: '/v1/workspaces/{id}/exec',
      operationId: 'execWorkspace',
      summary: 'Run a command, or an interactive shell, in a workspace (WebSocket)',
      description:
        'Runs as the workspace\'s user in /workspace. Binary frames, the first byte names the channel: 0 stdin, 1 stdout, 2 stderr, 3 server control (JSON `started`, `exit` with `code`, `error`), 4 client control (JSON `resize` with `cols` and `rows`, `eof`).',
      tag: TAG,
      access: 'owner',
      params: params.workspace,
      query: execQuery,
      responses: UPGRADE,
      errors: ERRORS,
      handle: async (ctx, { params: p, query: q }) => {
        const command = q.command === undefined ? [] : Array.isArray(q.command) ? q.command : [q.command];
        await open(ctx, p.id, { kind: command.length ? 'exec' : 'shell', command, tty: q.tty ?? !command.length, cols: q.cols, rows: q.rows, term: q.term });
      },
    }),
    op({
      method: 'get',
      path: '/v1/workspaces/{id}/port-forward',
      operationId: 'portForwardWorkspace',
      summary: 'One TCP connection to a port inside a workspace (WebSocket)',
      description: 'Reaches 127.0.0.1:port in the workspace\'s own network namespace (works with network mode none). Binary frames are the raw bytes both ways; one WebSocket per connection.',
      tag: TAG,
      access: 'owner',
      params: params.workspace,
      query: portQuery,
      responses: UPGRADE,
      errors: ERRORS,
      handle: async (ctx, { params: p, query: q }) => open(ctx, p.id, { kind: 'port-forward', port: q.port }),
    }),
    op({
      method: 'get',
      path: '/v1/workspaces/{id}/ssh',
      operationId: 'sshWorkspace',
      summary: 'One SSH connection to a workspace (WebSocket)',
      description:
        'The raw bytes of an SSH connection to the workspace\'s host agent, which serves commands, shells with a PTY, `-L` forwarding and SFTP for this workspace. Use it as OpenSSH\'s ProxyCommand through `a4c ws ssh-proxy ID` (`a4c config-ssh` writes the config).',
      tag: TAG,
      access: 'owner',
      params: params.workspace,
      responses: UPGRADE,
      errors: ERRORS,
      handle: async (ctx, { params: p }) => open(ctx, p.id, { kind: 'ssh' }),
    }),
    op({
      method: 'get',
      path: '/v1/workspaces/{id}/sessions',
      operationId: 'listWorkspaceSessions',
      summary: "A workspace's sessions, newest first",
      description: 'Every exec, shell, port-forward and SSH session: who opened it, the command, when, for how long, the bytes each way and how it ended. Open sessions have no endedAt.',
      tag: TAG,
      access: 'owner',
      params: params.workspace,
      query: z.strictObject({ limit: intQuery('limit', 1, 1000).optional() }),
      responses: { 200: { description: 'The sessions', schema: z.strictObject({ sessions: z.array(sessionView) }) } },
      errors: [404],
      handle: async (ctx, { params: p, query: q }) => {
        const w = await readable(ctx, p.id);
        ctx.body = { sessions: (await listAccessSessions(d.db, w.id, q.limit ?? 100)).map(toView) };
      },
    }),
  ];
}
