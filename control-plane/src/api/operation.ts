import type Router from '@koa/router';
import type { RouterContext } from '@koa/router';
import { z } from 'zod';
import type { Policy } from '../auth/principals.js';
import { checkText, readJson, type State } from './http.js';
import { parse } from './validate.js';

export type Ctx = RouterContext<State>;
export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/**
 * Who may call an operation, checked before the body is read:
 *  - `public`: no credential (probes; enrollment carries its own in the body);
 *  - `anyone`: any authenticated principal;
 *  - `admin`: admins only (403 for others);
 *  - `self`: the user named by the `userId` path parameter, or an admin (404 for others);
 *  - `self-or-lead`: as `self`, and also that user's team lead, read-only (404 for others);
 *  - `owner`: the handler looks the resource up and checks its owner (Policy), because
 *    who owns it is only known from the database row; 404 for those who may not read it.
 */
export type Access = 'public' | 'anyone' | 'admin' | 'self' | 'self-or-lead' | 'owner';

export const ACCESS_TEXT: Record<Access, string> = {
  public: 'No credential needed.',
  anyone: 'Any authenticated caller.',
  admin: 'Admins only (others get 403).',
  self: 'The user named in the path, or an admin. Others get 404: another user\'s resources do not exist for them.',
  'self-or-lead': 'The user named in the path, their team\'s lead (read only), or an admin. Others get 404.',
  owner: 'The owner of the resource, or an admin; a lead of the owner\'s team may read it. Others get 404.',
};

type AnyObject = z.ZodObject<z.ZodRawShape>;

export interface ResponseSpec {
  description: string;
  /** The body's schema; absent for bodies the document leaves free. */
  schema?: z.ZodType;
  /** The body's media type; default application/json. */
  contentType?: string;
  headers?: Record<string, string>;
}

export interface OperationSpec<P extends AnyObject, Q extends AnyObject, B extends z.ZodType> {
  method: Method;
  /** OpenAPI path template under the server root, e.g. `/v1/workspaces/{id}`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  access: Access;
  params?: P;
  query?: Q;
  body?: B;
  /** Largest body accepted, in bytes; default 64 KiB. */
  maxBodyBytes?: number;
  /** Success responses by status; the error statuses are listed in `errors`. */
  responses: Record<number, ResponseSpec>;
  /** Error statuses this operation can answer besides the ones every operation can (400, 401, 429, 500, 503). */
  errors?: number[];
  handle(ctx: Ctx, input: { params: z.output<P>; query: z.output<Q>; body: z.output<B> }): Promise<void> | void;
}

/** An operation with its types erased, as the router and the document see it. */
export type Operation = OperationSpec<AnyObject, AnyObject, z.ZodType>;

/** Declares an operation; typed so that the handler sees the parsed input. */
export function op<P extends AnyObject = z.ZodObject<{}>, Q extends AnyObject = z.ZodObject<{}>, B extends z.ZodType = z.ZodUndefined>(
  spec: OperationSpec<P, Q, B>,
): Operation {
  return spec as unknown as Operation;
}

const NO_QUERY = z.strictObject({});

/**
 * Mounts operations on a koa router. For each request, in this order: path parameters,
 * query and (for operations that take one) the body are parsed with the operation's
 * schemas — the first problem is a 400 naming the field — the access rule is checked,
 * then the handler runs with the parsed input. Nothing reaches a handler unvalidated.
 */
export function mountOperations(router: Router<State>, ops: readonly Operation[], policy: Policy | undefined): void {
  for (const o of ops) {
    const koaPath = o.path.replace(/\{(\w+)\}/g, ':$1');
    router[o.method](koaPath, async (ctx: Ctx) => {
      // NUL and lone surrogates cannot reach PostgreSQL, whatever a schema allows.
      checkText({ ...ctx.params }, '');
      const params = o.params ? parse(o.params, { ...ctx.params }, '') : {};
      checkText({ ...ctx.query }, '');
      const query = parse(o.query ?? NO_QUERY, { ...ctx.query }, '', 'query parameter');
      await authorize(o, ctx, params as Record<string, unknown>, policy);
      const body = o.body ? parse(o.body, await readJson(ctx, o.maxBodyBytes)) : undefined;
      await o.handle(ctx, { params, query, body });
    });
  }
}

async function authorize(o: Operation, ctx: Ctx, params: Record<string, unknown>, policy: Policy | undefined): Promise<void> {
  if (o.access === 'public' || o.access === 'anyone' || o.access === 'owner') return;
  if (!policy) throw new Error(`operation ${o.operationId} needs a policy`);
  const p = ctx.state.principal;
  const userId = params.userId as string;
  if (o.access === 'admin') policy.admin(p);
  else if (o.access === 'self') policy.write(p, userId);
  else await policy.read(p, userId);
}
