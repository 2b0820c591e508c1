export { ApiClient, CliError } from './client.js';
export { Context, type GlobalOptions, type Io } from './context.js';
export { buildProgram, commandPath, leafCommands, run } from './program.js';
