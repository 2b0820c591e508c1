import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Context } from '../context.js';
import { registerAccess } from './access.js';
import { registerAudit } from './audit.js';
import { registerConfigSsh } from './config-ssh.js';
import { registerEvents } from './events.js';
import { registerBuilds } from './builds.js';
import { registerHosts } from './hosts.js';
import { registerMoves } from './moves.js';
import { registerQuota } from './quota.js';
import { registerTokens } from './tokens.js';
import { registerUsers } from './users.js';
import { registerWebhooks } from './webhooks.js';
import { registerWorkspaces } from './workspaces.js';

/**
 * Every command group, in the order help lists them. A new group is a module under
 * commands/ exporting a register function, added here; its commands, options and help
 * come from its own definitions.
 */
export const COMMAND_GROUPS: readonly ((program: CommandUnknownOpts, ctx: Context) => void)[] = [
  registerWorkspaces,
  registerMoves,
  registerAccess,
  registerConfigSsh,
  registerBuilds,
  registerHosts,
  registerEvents,
  registerWebhooks,
  registerQuota,
  registerUsers,
  registerTokens,
  registerAudit,
];
