/**
 * Shapes of many workspace creates in one request (POST /v1/workspace-batches), beside
 * schemas.ts so the resource that grew them stays separate; the same rules apply:
 * requests are parsed with these, responses are checked against them in
 * test/openapi.test.ts.
 */
import { z } from 'zod';
import { errorBody, id, requests, workspace } from './schemas.js';

/** One create of a batch: the body of POST /v1/users/{userId}/workspaces, and whose it is. */
export const batchItem = requests.createWorkspace.extend({
  userId: id('a user id').meta({ description: 'whose workspace: yourself, or anyone if you are an admin (as POST /v1/users/{userId}/workspaces decides)' }),
});

/** The request: at most maxItems creates. */
export const workspaceBatch = (maxItems: number) =>
  z.strictObject({
    workspaces: z
      .array(batchItem)
      .min(1, 'give at least one workspace to create')
      .max(maxItems, `at most ${maxItems} workspaces in one request (A4C_WORKSPACE_BATCH_MAX); send the rest in another request`)
      .meta({ description: `the creates, 1 to ${maxItems}; placed in this order, each under the same rules as a single create` }),
  });

const itemCommon = {
  index: z.number().int().meta({ description: 'its position in the request' }),
  userId: z.string(),
  name: z.string().nullable().meta({ description: 'the name asked for (null: none given, the workspace got a default one)' }),
};

export const batchResult = z
  .union([
    z.strictObject({
      ...itemCommon,
      status: z.literal(201).meta({ description: 'created: placed (CREATING) or waiting for approval (PENDING_APPROVAL)' }),
      workspace,
    }),
    z.strictObject({
      ...itemCommon,
      status: z.number().int().min(400).max(599).meta({ description: 'the status a single create would have answered' }),
      error: errorBody,
    }),
  ])
  .meta({ id: 'WorkspaceBatchResult' });

export const batchResponse = z
  .strictObject({
    created: z.number().int().meta({ description: 'how many were created' }),
    failed: z.number().int().meta({ description: 'how many were refused, each with its own error' }),
    results: z.array(batchResult).meta({ description: 'one per requested workspace, in the request order' }),
  })
  .meta({ id: 'WorkspaceBatch' });
