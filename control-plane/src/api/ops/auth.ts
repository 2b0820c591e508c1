import { z } from 'zod';
import type { BrowserSignInSettings } from '../../auth/oidc-browser.js';
import { op, type Operation } from '../operation.js';

const AuthConfig = z.strictObject({
  oidc: z
    .strictObject({
      issuer: z.string().describe('The issuer; ID tokens must carry it as iss'),
      clientId: z.string().describe("The dashboard's client id (public client: no secret)"),
      authorizationEndpoint: z.string().describe('Where the browser is sent to sign in (authorization code flow with PKCE S256)'),
      tokenEndpoint: z.string().describe('Where the browser exchanges the code and its code_verifier for tokens'),
      scopes: z.array(z.string()).describe('Scopes to ask for; includes openid'),
      algorithms: z.array(z.string()).describe('ID token signature algorithms the API accepts'),
    })
    .nullable()
    .describe('null: single sign-on is off; sign in with an API token'),
});

/** How to sign in, for the dashboard before anyone has: public, and holds no secret. */
export function authOperations(sso: BrowserSignInSettings | undefined): Operation[] {
  return [
    op({
      method: 'get',
      path: '/v1/auth/config',
      operationId: 'getAuthConfig',
      summary: 'How to sign in: single sign-on settings for a browser, or null',
      description:
        'Tells the dashboard whether single sign-on (OIDC) is configured and, if so, the identity provider endpoints, client id and scopes of the authorization code flow with PKCE. ' +
        "Endpoints not configured explicitly come from the issuer's discovery document, read by the control plane; if it cannot be read the answer is 503.",
      tag: 'Auth',
      access: 'public',
      responses: { 200: { description: 'The sign-in settings', schema: AuthConfig } },
      handle: async (ctx) => {
        ctx.set('cache-control', 'no-store');
        ctx.body = { oidc: sso ? await sso.get() : null };
      },
    }),
  ];
}
