import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { A4cError, ID_PATTERN, ID_RULE, type Logger } from '@a4c/common';
import type { OidcConfig } from '../config.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import type { Principal, Role } from './principals.js';

/**
 * A compact JWS: three base64url parts. The signature may be empty (alg "none"), so
 * such a token is refused for what it is rather than as an unknown API token.
 */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function looksLikeJwt(token: string): boolean {
  return token.length <= 16_384 && JWT_SHAPE.test(token);
}

/** A JWT with single sign-on off: say so, rather than "invalid token". */
export async function authenticateJwt(sso: OidcVerifier | undefined, token: string): Promise<Principal> {
  if (sso) return sso.authenticate(token);
  throw new A4cError('UNAUTHENTICATED', 'this control plane does not accept JWTs: single sign-on (OIDC) is not configured', {
    suggestion: 'use an A4C API token (POST /v1/users/<you>/tokens), or ask the operator to set A4C_OIDC_ISSUER, A4C_OIDC_AUDIENCE and A4C_OIDC_JWKS_URL',
  });
}

/** The identity provider's key set could not be had: not the caller's fault. */
class KeySetUnavailable extends Error {}

/** Thrown by the key lookup for the token's own sake: its kid names no published key. */
const TOKEN_KEY_ERRORS = [errors.JWKSNoMatchingKey, errors.JWKSMultipleMatchingKeys];

/**
 * Single sign-on: verifies JWTs from the configured OpenID Connect issuer against its
 * published keys (fetched, cached and refetched for unknown key ids by jose), and maps
 * one claim to an A4C user.
 *
 * The token names the user and nothing more. Role and team come from the users table,
 * as for API tokens; a user seen for the first time is created as a plain `user` with
 * no team, and an admin promotes or assigns them (PUT /v1/users/<id>). Taking roles
 * from the token would hand A4C's authorization to whoever administers the IdP's
 * claims.
 */
export class OidcVerifier {
  private readonly keys: JWTVerifyGetKey;

  constructor(
    private readonly config: OidcConfig,
    private readonly db: Db,
    private readonly log: Logger,
  ) {
    const remote = createRemoteJWKSet(new URL(config.jwksUrl), { cooldownDuration: config.jwksCooldownSeconds * 1000 });
    // Everything but "no key matches this token" is the key set's failure (unreachable,
    // timed out, not 200, not a key set): 503, not a 401 blaming the token.
    this.keys = async (header, token) => {
      try {
        return await remote(header, token);
      } catch (e) {
        if (TOKEN_KEY_ERRORS.some((k) => e instanceof k)) throw e;
        throw new KeySetUnavailable((e as Error).message, { cause: e });
      }
    };
    log.info({ issuer: config.issuer, audience: config.audience, jwksUrl: config.jwksUrl, userClaim: config.userClaim }, 'single sign-on (OIDC) enabled');
  }

  async authenticate(token: string): Promise<Principal> {
    const userId = this.userId(await this.verify(token));
    return this.principal(userId);
  }

  private async verify(token: string): Promise<JWTPayload> {
    const c = this.config;
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: c.issuer,
        audience: c.audience,
        algorithms: c.algorithms,
        clockTolerance: c.clockToleranceSeconds,
        requiredClaims: ['exp'],
      });
      return payload;
    } catch (e) {
      throw this.refusal(e, token);
    }
  }

  /**
   * Why a token is refused, saying what to do, without echoing anything secret. Other
   * errors (not the token's) are returned as they are, for the error middleware.
   */
  private refusal(e: unknown, token: string): unknown {
    const c = this.config;
    const refuse = (message: string, suggestion: string) => new A4cError('UNAUTHENTICATED', `SSO token refused: ${message}`, { suggestion });
    const signIn = 'sign in again to get a fresh token from your identity provider';
    if (e instanceof KeySetUnavailable) {
      // fetch() hides the socket error (ECONNREFUSED, ENOTFOUND...) one cause deeper.
      const detail = ((e.cause as Error | undefined)?.cause as Error | undefined)?.message;
      this.log.warn({ jwksUrl: c.jwksUrl, err: e.message, detail }, 'identity provider unreachable: could not fetch its key set');
      return new A4cError('UNAVAILABLE', 'identity provider unreachable: its signing keys (JWKS) could not be fetched, so the token cannot be checked; nothing was changed', {
        suggestion: 'retry in a minute; if it persists, an operator should check A4C_OIDC_JWKS_URL and the control plane log',
      });
    }
    if (e instanceof errors.JWTExpired) {
      const exp = typeof e.payload.exp === 'number' ? ` at ${new Date(e.payload.exp * 1000).toISOString()}` : '';
      return refuse(`token expired${exp}`, signIn);
    }
    if (e instanceof errors.JWTClaimValidationFailed) {
      const missing = e.reason === 'missing';
      switch (e.claim) {
        case 'iss':
          return refuse(missing ? 'token has no issuer (iss)' : `token issuer is not ${JSON.stringify(c.issuer)}`, `sign in through ${c.issuer}`);
        case 'aud':
          return refuse(missing ? 'token has no audience (aud)' : `token audience is not ${JSON.stringify(c.audience)}`, `use a token issued for the client ${JSON.stringify(c.audience)}`);
        case 'exp':
          return refuse('token has no expiry (exp); only expiring tokens are accepted', 'use an ID or access token from the identity provider');
        case 'nbf':
          return refuse('token is not valid yet (nbf is in the future)', 'check the clocks of the identity provider and of this machine');
        default:
          return refuse(`token claim ${JSON.stringify(e.claim)} is invalid`, signIn);
      }
    }
    if (e instanceof errors.JOSEAlgNotAllowed) {
      let alg = 'its algorithm';
      try {
        alg = JSON.stringify(decodeProtectedHeader(token).alg);
      } catch {
        // the header was readable enough for jose to reject its alg; keep the generic words
      }
      return refuse(`token algorithm ${alg} is not accepted (accepted: ${c.algorithms.join(', ')})`, `use a token signed by ${c.issuer}`);
    }
    if (e instanceof errors.JWSSignatureVerificationFailed || e instanceof errors.JWKSNoMatchingKey) {
      return refuse("token signature does not match the issuer's keys", `use a token issued by ${c.issuer}`);
    }
    if (e instanceof errors.JWKSMultipleMatchingKeys) {
      return refuse('token names no key id (kid) and the issuer publishes several keys', `use a token issued by ${c.issuer}`);
    }
    if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid || e instanceof errors.JOSENotSupported) {
      return refuse('not a well-formed signed JWT', 'send the token exactly as the identity provider issued it');
    }
    return e;
  }

  private userId(payload: JWTPayload): string {
    const claim = this.config.userClaim;
    const value = payload[claim];
    const mapping = `the user id is the token's ${JSON.stringify(claim)} claim (A4C_OIDC_USER_CLAIM)`;
    if (value === undefined) {
      throw new A4cError('UNAUTHENTICATED', `SSO token refused: token has no ${JSON.stringify(claim)} claim`, { suggestion: `${mapping}; ask the identity provider's admin to include it` });
    }
    if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
      throw new A4cError('UNAUTHENTICATED', `SSO token refused: its ${JSON.stringify(claim)} claim ${JSON.stringify(value).slice(0, 80)} is not a valid A4C user id (${ID_RULE})`, {
        suggestion: `${mapping}; an operator can map another claim, or the identity provider can supply a conforming value`,
      });
    }
    // "admin" is what the audit log calls the admin token: no SSO user may appear as it.
    if (value === 'admin') {
      throw new A4cError('UNAUTHENTICATED', 'SSO token refused: the user id "admin" is reserved for the admin token', { suggestion: `${mapping}; rename the user at the identity provider` });
    }
    return value;
  }

  /** Role and team from the users table; the first sign-in creates a plain user. */
  private async principal(userId: string): Promise<Principal> {
    const { rows } = await this.db.query<{ role: Role; team_id: string | null }>('SELECT role, team_id FROM users WHERE id = $1', [userId]);
    const row = rows[0] ?? (await this.provision(userId));
    return { id: userId, role: row.role, teamId: row.team_id };
  }

  private async provision(userId: string): Promise<{ role: Role; team_id: string | null }> {
    return inTx(this.db, async (tx) => {
      const created = await tx.query<{ role: Role; team_id: string | null }>(
        "INSERT INTO users (id, role) VALUES ($1, 'user') ON CONFLICT (id) DO NOTHING RETURNING role, team_id",
        [userId],
      );
      if (created.rows[0]) {
        await appendEvent(tx, {
          kind: 'user.created',
          actor: userId,
          reason: 'first single sign-on',
          userId,
          changes: { role: { from: null, to: 'user' } },
          data: { userId, teamId: null, role: 'user', via: 'oidc' },
        });
        this.log.info({ userId }, 'first single sign-on: user created');
        return created.rows[0];
      }
      // Created meanwhile by a concurrent first request: this statement sees it.
      const { rows } = await tx.query<{ role: Role; team_id: string | null }>('SELECT role, team_id FROM users WHERE id = $1', [userId]);
      if (!rows[0]) throw new Error(`user ${userId} neither created nor found`);
      return rows[0];
    });
  }
}
