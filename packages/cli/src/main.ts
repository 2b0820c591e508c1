#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { SETTLED_STATUSES, type Build, type HostView, type Workspace } from '@a4c/common';
import { ApiClient, CliError } from './client.js';
import { buildDetails, buildsTable, hostsTable, quotaText, table, workspaceDetails, workspacesTable } from './format.js';

const HELP = `a4c: developer workspaces on A4C.

Usage: a4c <command> [options]

Workspaces:
  a4c ws create --project P --arch A --tier T [--name N] [--change C] [--image I] [--no-wait] [--timeout S]
                         ask for a workspace; waits, showing progress, until it runs or fails
  a4c ws list [--all]    your workspaces (--all: deleted ones too)
  a4c ws get ID          one workspace
  a4c ws stop ID         stop it (the container and its data stay)
  a4c ws start ID        start it again (the same container)
  a4c ws rm ID           delete it (your volume stays)
  a4c ws retry ID        retry a FAILED workspace (what the failed attempt left is cleaned first)
  a4c ws approve ID      (admin) approve a workspace whose tier needs it (xl)
  a4c ws reject ID [--reason R]
                         (admin) reject it

Hosts:
  a4c hosts              every host with status, capacity, reservations and usage
  a4c hosts get ID       one host
  a4c hosts drain ID     (admin) place nothing new on the host
  a4c hosts activate ID  (admin) end the drain

Image builds:
  a4c build schedule --image-name N --project P --arch A --change C [--no-wait]
                         queue a build; follows its log until it completes or fails
  a4c build get ID       one build, with its last log lines
  a4c build list [--status S] [--project P] [--arch A] [--mine]
  a4c build logs ID [--follow]

Quotas and users (admin):
  a4c quota get [--user U | --team T]
  a4c quota set (--user U | --team T) [--max-workspaces N] [--max-disk-gb N] [--max-builds N]
                         a value of "inherit" clears an override
  a4c users set-team --user U --team T
  a4c users create --user U [--team T] [--role user|lead|admin]
  a4c users list
  a4c tokens issue [--user U] [--name N] [--ttl SECONDS]
                         a new API token for U (yourself by default), shown once
  a4c tokens list [--user U]
  a4c tokens revoke ID [--user U]
  a4c audit [--actor A]  the audit log, newest first

Options:
  --user U               act for user U (default A4C_USER, else $USER)
  --url URL              control plane (default A4C_URL, else http://127.0.0.1:8080)
  --token T              bearer token (default A4C_TOKEN)
  -o, --output FORMAT    table (default) or json
  --no-wait              return as soon as the request is accepted
  --timeout S            how long to wait, in seconds (default 300)
  -h, --help             this text

Archs: linux-x64, linux-arm64, darwin-arm64. Tiers: standard, large, xl (approval), and
whatever the control plane adds (A4C_TIERS).
`;

interface Globals {
  client: ApiClient;
  user: string;
  json: boolean;
  wait: boolean;
  timeout: number;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      user: { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'no-wait': { type: 'boolean' },
      timeout: { type: 'string' },
      all: { type: 'boolean' },
      project: { type: 'string' },
      arch: { type: 'string' },
      tier: { type: 'string' },
      name: { type: 'string' },
      change: { type: 'string' },
      image: { type: 'string' },
      team: { type: 'string' },
      reason: { type: 'string' },
      'max-workspaces': { type: 'string' },
      'max-disk-gb': { type: 'string' },
      'max-builds': { type: 'string' },
      'image-name': { type: 'string' },
      status: { type: 'string' },
      mine: { type: 'boolean' },
      follow: { type: 'boolean', short: 'f' },
      role: { type: 'string' },
      ttl: { type: 'string' },
      actor: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP);
    return 0;
  }
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') throw new CliError(`--output must be table or json, not ${JSON.stringify(output)}`);
  const timeout = values.timeout === undefined ? 300 : Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > 3600) throw new CliError('--timeout must be a whole number of seconds from 0 to 3600');
  const token = values.token ?? process.env.A4C_TOKEN;
  if (!token) throw new CliError('no token: set A4C_TOKEN (npm start prints one) or pass --token');
  const user = values.user ?? process.env.A4C_USER ?? process.env.USER ?? '';
  const g: Globals = {
    client: new ApiClient(values.url ?? process.env.A4C_URL ?? 'http://127.0.0.1:8080', token),
    user,
    json: output === 'json',
    wait: !values['no-wait'],
    timeout,
  };
  const [group, verb, id, ...rest] = positionals;
  if (rest.length) throw new CliError(`unexpected argument ${JSON.stringify(rest[0])}; see a4c --help`);
  const needUser = () => {
    if (!g.user) throw new CliError('no user: pass --user or set A4C_USER');
    return encodeURIComponent(g.user);
  };
  const needId = () => {
    if (!id) throw new CliError(`a4c ${group} ${verb} needs an id; see a4c --help`);
    return encodeURIComponent(id);
  };

  if (group === 'ws' || group === 'workspace' || group === 'workspaces') {
    switch (verb) {
      case 'create': {
        const body: Record<string, string> = {};
        for (const [flag, field] of [['project', 'projectName'], ['arch', 'arch'], ['tier', 'tier']] as const) {
          const v = values[flag];
          if (!v) throw new CliError(`a4c ws create needs --${flag}; see a4c --help`);
          body[field] = v;
        }
        if (values.name) body.name = values.name;
        if (values.change) body.changeNumber = values.change;
        if (values.image) body.image = values.image;
        const ws = await g.client.request<Workspace>('POST', `/v1/users/${needUser()}/workspaces`, body);
        return finish(g, await follow(g, ws));
      }
      case 'list':
      case 'ls': {
        const r = await g.client.request<{ workspaces: Workspace[] }>('GET', `/v1/users/${needUser()}/workspaces${values.all ? '?includeDeleted=true' : ''}`);
        print(g, r, () => workspacesTable(r.workspaces));
        return 0;
      }
      case 'get':
      case 'show': {
        const ws = await g.client.request<Workspace>('GET', `/v1/workspaces/${needId()}`);
        print(g, ws, () => workspaceDetails(ws));
        return 0;
      }
      case 'approve':
      case 'retry': {
        const ws = await g.client.request<Workspace>('POST', `/v1/workspaces/${needId()}/${verb}`);
        return finish(g, await follow(g, ws));
      }
      case 'reject': {
        const ws = await g.client.request<Workspace>('POST', `/v1/workspaces/${needId()}/reject`, values.reason ? { reason: values.reason } : {});
        print(g, ws, () => workspaceDetails(ws));
        return 0;
      }
      case 'stop':
      case 'start':
      case 'rm':
      case 'delete': {
        const path = `/v1/workspaces/${needId()}`;
        const ws =
          verb === 'rm' || verb === 'delete'
            ? await g.client.request<Workspace>('DELETE', path)
            : await g.client.request<Workspace>('POST', `${path}/${verb}`);
        return finish(g, await follow(g, ws));
      }
      default:
        throw new CliError(`unknown command "a4c ws ${verb ?? ''}"; try create, list, get, stop, start or rm`);
    }
  }
  if (group === 'hosts' || group === 'host') {
    if (!verb || verb === 'list' || verb === 'ls') {
      const r = await g.client.request<{ hosts: HostView[] }>('GET', '/v1/hosts');
      print(g, r, () => hostsTable(r.hosts));
      return 0;
    }
    if (verb === 'get' || verb === 'show') {
      const h = await g.client.request<HostView>('GET', `/v1/hosts/${needId()}`);
      print(g, h, () => hostsTable([h]));
      return 0;
    }
    if (verb === 'drain' || verb === 'activate') {
      const h = await g.client.request<HostView>('POST', `/v1/hosts/${needId()}/${verb}`);
      print(g, h, () => hostsTable([h]));
      return 0;
    }
    throw new CliError(`unknown command "a4c hosts ${verb}"; try a4c hosts, get, drain or activate`);
  }
  if (group === 'build' || group === 'builds') {
    switch (verb) {
      case 'schedule': {
        const body: Record<string, string> = {};
        for (const [flag, field] of [['image-name', 'imageName'], ['project', 'project'], ['arch', 'arch'], ['change', 'changeNumber']] as const) {
          const v = values[flag];
          if (!v) throw new CliError(`a4c build schedule needs --${flag}; see a4c --help`);
          body[field] = v;
        }
        const b = await g.client.request<Build>('POST', `/v1/users/${needUser()}/image-schedules`, body);
        if (!g.wait) {
          print(g, b, () => buildDetails(b));
          return 0;
        }
        return finishBuild(g, await followBuild(g, b.id, !g.json));
      }
      case 'get':
      case 'show': {
        const b = await g.client.request<Build>('GET', `/v1/image-schedules/${needId()}`);
        print(g, b, () => buildDetails(b));
        return 0;
      }
      case 'list':
      case 'ls': {
        const q = new URLSearchParams();
        if (values.status) q.set('status', values.status);
        if (values.project) q.set('project', values.project);
        if (values.arch) q.set('arch', values.arch);
        if (values.mine) q.set('userId', g.user);
        const r = await g.client.request<{ builds: Build[] }>('GET', `/v1/image-schedules${q.size ? `?${q}` : ''}`);
        print(g, r, () => buildsTable(r.builds));
        return 0;
      }
      case 'logs': {
        const id = needId();
        if (values.follow) return finishBuild(g, await followBuild(g, id, true));
        const r = await g.client.request<{ lines: { line: string }[] }>('GET', `/v1/image-schedules/${id}/logs`);
        print(g, r, () => r.lines.map((l) => l.line).join('\n'));
        return 0;
      }
      default:
        throw new CliError(`unknown command "a4c build ${verb ?? ''}"; try schedule, get, list or logs`);
    }
  }
  if (group === 'quota') {
    if (values.user && values.team) throw new CliError('pass --user or --team, not both');
    const path = values.team ? `/v1/teams/${encodeURIComponent(values.team)}/quota` : `/v1/users/${needUser()}/quota`;
    if (verb === 'get' || verb === undefined) {
      const q = await g.client.request<Record<string, unknown>>('GET', path);
      print(g, q, () => quotaText(q));
      return 0;
    }
    if (verb === 'set') {
      const body: Record<string, number | null> = {};
      for (const [flag, field] of [['max-workspaces', 'maxWorkspaces'], ['max-disk-gb', 'maxDiskGb'], ['max-builds', 'maxConcurrentBuilds']] as const) {
        const v = values[flag];
        if (v === undefined) continue;
        if (v === 'inherit') body[field] = null;
        else if (/^\d+(\.\d+)?$/.test(v)) body[field] = Number(v);
        else throw new CliError(`--${flag} must be a number or "inherit", not ${JSON.stringify(v)}`);
      }
      if (!Object.keys(body).length) throw new CliError('a4c quota set needs --max-workspaces, --max-disk-gb or --max-builds');
      const q = await g.client.request<Record<string, unknown>>('PUT', path, body);
      print(g, q, () => quotaText(q));
      return 0;
    }
    throw new CliError(`unknown command "a4c quota ${verb}"; try get or set`);
  }
  if (group === 'users' || group === 'user') {
    if (verb === 'set-team') {
      if (!values.team) throw new CliError('a4c users set-team needs --team T (or --team none)');
      const teamId = values.team === 'none' ? null : values.team;
      const u = await g.client.request<{ id: string; teamId: string | null }>('PUT', `/v1/users/${needUser()}`, { teamId });
      print(g, u, () => `${u.id}: team ${u.teamId ?? '(none)'}`);
      return 0;
    }
    if (verb === 'create') {
      const body: Record<string, string> = { id: g.user };
      if (values.team) body.teamId = values.team;
      if (values.role) body.role = values.role;
      const u = await g.client.request<{ id: string; teamId: string | null; role: string }>('POST', '/v1/users', body);
      print(g, u, () => `${u.id}: role ${u.role}, team ${u.teamId ?? '(none)'}`);
      return 0;
    }
    if (verb === 'list' || verb === 'ls') {
      const r = await g.client.request<{ users: { id: string; teamId: string | null; role: string }[] }>('GET', '/v1/users');
      print(g, r, () => table(['USER', 'ROLE', 'TEAM'], r.users.map((u) => [u.id, u.role, u.teamId ?? '-'])));
      return 0;
    }
    throw new CliError(`unknown command "a4c users ${verb ?? ''}"; try create, list or set-team`);
  }
  if (group === 'tokens' || group === 'token') {
    const base = `/v1/users/${needUser()}/tokens`;
    if (verb === 'issue') {
      const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
      if (ttl !== undefined && !Number.isInteger(ttl)) throw new CliError('--ttl must be a whole number of seconds');
      const t = await g.client.request<{ id: string; token: string; expiresAt: string | null }>('POST', base, { name: values.name ?? 'cli', ...(ttl ? { ttlSeconds: ttl } : {}) });
      print(g, t, () => `${t.token}\n(id ${t.id}; expires ${t.expiresAt ?? 'never'}; shown only now: store it, e.g. export A4C_TOKEN=...)`);
      return 0;
    }
    if (verb === 'list' || verb === 'ls' || verb === undefined) {
      const r = await g.client.request<{ tokens: { id: string; name: string; prefix: string; expiresAt: string | null; revokedAt: string | null; lastUsedAt: string | null }[] }>('GET', base);
      print(g, r, () => table(['ID', 'NAME', 'PREFIX', 'EXPIRES', 'REVOKED', 'LAST USED'], r.tokens.map((t) => [t.id, t.name, t.prefix, t.expiresAt ?? '-', t.revokedAt ?? '-', t.lastUsedAt ?? '-'])));
      return 0;
    }
    if (verb === 'revoke') {
      const t = await g.client.request<Record<string, unknown>>('DELETE', `${base}/${needId()}`);
      print(g, t, () => `revoked ${String(t.id)}`);
      return 0;
    }
    throw new CliError(`unknown command "a4c tokens ${verb}"; try issue, list or revoke`);
  }
  if (group === 'audit') {
    const r = await g.client.request<{ entries: { at: string; actor: string; action: string; target: string; outcome: number }[] }>(
      'GET',
      `/v1/audit${values.actor ? `?actor=${encodeURIComponent(values.actor)}` : ''}`,
    );
    print(g, r, () => table(['AT', 'ACTOR', 'ACTION', 'TARGET', 'STATUS'], r.entries.map((e) => [e.at, e.actor, e.action, e.target, String(e.outcome)])));
    return 0;
  }
  throw new CliError(`unknown command "${group}"; see a4c --help`);
}

/** Polls until the workspace settles, printing each status it passes through to stderr. */
async function follow(g: Globals, first: Workspace): Promise<Workspace> {
  let ws = first;
  if (!g.wait || SETTLED_STATUSES.includes(ws.status)) return ws;
  const started = Date.now();
  const deadline = started + g.timeout * 1000;
  let shown = '';
  const show = (w: Workspace) => {
    const line = `${w.status}${w.hostId ? ` on ${w.hostId}` : ''}`;
    if (line !== shown) {
      process.stderr.write(`${w.name}: ${line} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
      shown = line;
    }
  };
  show(ws);
  while (!SETTLED_STATUSES.includes(ws.status)) {
    if (Date.now() > deadline) {
      process.stderr.write(`still ${ws.status} after ${g.timeout} s; follow it with: a4c ws get ${ws.id}\n`);
      return ws;
    }
    const left = Math.max(1, Math.min(20, Math.ceil((deadline - Date.now()) / 1000)));
    ws = await g.client.request<Workspace>('GET', `/v1/workspaces/${ws.id}`);
    show(ws);
    if (!SETTLED_STATUSES.includes(ws.status)) await new Promise((r) => setTimeout(r, Math.min(250, left * 1000)));
  }
  return ws;
}

/** Prints a build's new log lines (to stderr, with its progress) until it completes or fails. */
async function followBuild(g: Globals, id: string, showLines: boolean): Promise<Build> {
  const deadline = Date.now() + g.timeout * 1000;
  let after = 0;
  let lastStatus = '';
  for (;;) {
    const r = await g.client.request<{ status: string; lines: { seq: number; line: string }[] }>('GET', `/v1/image-schedules/${id}/logs?after=${after}`);
    for (const l of r.lines) {
      if (showLines) process.stderr.write(`  | ${l.line}\n`);
      after = l.seq;
    }
    if (r.status !== lastStatus) {
      const b = await g.client.request<Build>('GET', `/v1/image-schedules/${id}`);
      process.stderr.write(`build ${b.imageTag}: ${b.status}${b.worker ? ` on ${b.worker}` : ''} (${b.progress}%)\n`);
      lastStatus = r.status;
    }
    if (r.status === 'COMPLETED' || r.status === 'FAILED') return g.client.request<Build>('GET', `/v1/image-schedules/${id}`);
    if (Date.now() > deadline) {
      process.stderr.write(`still ${r.status} after ${g.timeout} s; follow it with: a4c build logs ${id} --follow\n`);
      return g.client.request<Build>('GET', `/v1/image-schedules/${id}`);
    }
    await new Promise((res) => setTimeout(res, 500));
  }
}

function finishBuild(g: Globals, b: Build): number {
  print(g, b, () => buildDetails(b));
  if (b.status === 'FAILED') {
    if (!g.json) process.stderr.write(`build failed: ${b.error}\nsee its log: a4c build logs ${b.id}\n`);
    return 1;
  }
  return 0;
}

function finish(g: Globals, ws: Workspace): number {
  print(g, ws, () => workspaceDetails(ws));
  if (ws.status === 'FAILED') {
    if (!g.json) process.stderr.write(`failed at step "${ws.failedStep}": ${ws.error}\nretry it with: a4c ws retry ${ws.id}\n`);
    return 1;
  }
  if (ws.status === 'PENDING_APPROVAL' && !g.json) process.stderr.write(`tier ${ws.tier} needs an admin's approval: a4c ws approve ${ws.id}\n`);
  return 0;
}

function print(g: Globals, value: unknown, table: () => string): void {
  process.stdout.write(g.json ? `${JSON.stringify(value, null, 2)}\n` : `${table()}\n`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof CliError) {
      process.stderr.write(`a4c: ${e.message}\n`);
      if (e.suggestion) process.stderr.write(`hint: ${e.suggestion}\n`);
      process.exit(e.exitCode);
    }
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`a4c: ${(e as Error).message}; see a4c --help\n`);
      process.exit(2);
    }
    process.stderr.write(`a4c: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
