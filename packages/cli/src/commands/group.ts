import type { CommandUnknownOpts } from '@commander-js/extra-typings';

export const ADMIN_HEADING = 'Quotas, users, tokens and the audit log:';

/** A group of commands (a4c ws ...), listed with its commands under one heading in a4c --help. */
export function commandGroup(program: CommandUnknownOpts, name: string, heading: string) {
  return program.command(name).helpGroup(heading).commandsGroup(heading);
}
