import { Command, CommanderError, Help, InvalidArgumentError, Option, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { CliError } from './client.js';
import { COMMAND_GROUPS } from './commands/index.js';
import { Context, OUTPUT_FORMATS, processIo, type Io } from './context.js';

function timeoutSeconds(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 3600) throw new InvalidArgumentError('It must be a whole number of seconds from 0 to 3600.');
  return n;
}

/** "a4c ws create", as a person types it. */
export function commandPath(cmd: CommandUnknownOpts): string {
  const names: string[] = [];
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Every command that runs something (not a group), depth first, in definition order. */
export function leafCommands(cmd: CommandUnknownOpts): CommandUnknownOpts[] {
  return cmd.commands.flatMap((c) => (c.commands.length ? leafCommands(c) : [c]));
}

function walk(cmd: CommandUnknownOpts, visit: (c: CommandUnknownOpts) => void): void {
  visit(cmd);
  for (const c of cmd.commands) walk(c, visit);
}

/**
 * The a4c program: global options on the root, one group of commands per module under
 * commands/. Global options are recognised anywhere before a `--` (commander's default, not
 * enablePositionalOptions): `a4c ws list -o json` works, and everything after `--` reaches
 * the command as operands, untouched, so a command declared `<id> <cmd...>` gets
 * `a4c ws exec ID -- ls -la` as ["ls", "-la"].
 */
export function buildProgram(io: Io = processIo): { program: CommandUnknownOpts; ctx: Context } {
  const program = new Command('a4c')
    .description('a4c: developer workspaces on A4C.')
    .usage('<command> [options]')
    .addOption(new Option('--url <url>', 'the control plane').env('A4C_URL').default('http://127.0.0.1:8080'))
    .addOption(new Option('--token <token>', 'bearer token (npm start prints one; a4c tokens issue makes more)').env('A4C_TOKEN'))
    .addOption(new Option('--user <user>', 'act for this user (default: $USER)').env('A4C_USER'))
    .addOption(new Option('-o, --output <format>', 'how to print results').choices(OUTPUT_FORMATS).default('table'))
    .addOption(new Option('--timeout <seconds>', 'how long to wait for a workspace or build to settle').argParser(timeoutSeconds).default(300))
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showSuggestionAfterError(true);
  const ctx = new Context(
    () => program.opts(),
    () => program.getOptionValueSource('user') === 'cli',
    io,
  );
  // The root's help lists every command in full ("ws create [options]"), under its group's
  // heading; a group's or a command's own help is commander's.
  const base = new Help();
  const visibleLeaves = (cmd: CommandUnknownOpts): CommandUnknownOpts[] =>
    base
      .visibleCommands(cmd)
      .filter((c) => cmd.commands.includes(c))
      .flatMap((c) => (c.commands.length ? visibleLeaves(c) : [c]));
  let rendering: CommandUnknownOpts | undefined;
  program.configureHelp({
    showGlobalOptions: true,
    formatHelp: (cmd, helper) => {
      rendering = cmd;
      return base.formatHelp(cmd, helper);
    },
    // At the root: the leaves of every group not hidden, then commander's help command.
    visibleCommands: (cmd) => (cmd === program ? [...visibleLeaves(program), ...base.visibleCommands(cmd).filter((c) => !program.commands.includes(c))] : base.visibleCommands(cmd)),
    subcommandTerm: (cmd) => (rendering === program && cmd.parent && cmd.parent !== program ? `${cmd.parent.name()} ${base.subcommandTerm(cmd)}` : base.subcommandTerm(cmd)),
    optionDescription: (option) => `${base.optionDescription(option)}${option.mandatory ? ' (required)' : ''}`,
  });
  // Subcommands copy the help settings when they are made: configure help before them.
  for (const register of COMMAND_GROUPS) register(program, ctx);
  program.addHelpText(
    'after',
    ['', "A command's own options: a4c <command> --help, e.g. a4c ws create --help.", 'The global options go anywhere before a "--".'].join('\n'),
  );

  // Errors in one voice: "a4c: what went wrong", then what to run next.
  walk(program, (cmd) => {
    cmd.configureOutput({
      outputError: (message, write) => {
        const what = message.replace(/^error: /, '').trimEnd();
        const next = cmd === program ? 'run a4c --help to see every command' : cmd.commands.length ? `run ${commandPath(cmd)} --help to see its commands` : `see ${commandPath(cmd)} --help`;
        write(`a4c: ${what}\nhint: ${next}\n`);
      },
    });
  });
  return { program, ctx };
}

/** Runs a4c with these arguments; resolves to the exit code (0 done, 1 failed, 2 usage). */
export async function run(argv: readonly string[], io: Io = processIo): Promise<number> {
  const { program, ctx } = buildProgram(io);
  if (argv.length === 0) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    // commander has already printed its message (or the help) through the output above.
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof CliError) {
      io.err(`a4c: ${e.message}\n`);
      if (e.suggestion) io.err(`hint: ${e.suggestion}\n`);
      return e.exitCode;
    }
    io.err(`a4c: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
