import { ApiClient, CliError } from './client.js';

export const OUTPUT_FORMATS = ['table', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The global options, as the root program parsed them (flag, else environment, else default). */
export interface GlobalOptions {
  url: string;
  token?: string;
  user?: string;
  output: OutputFormat;
  timeout: number;
}

/** Where a command writes: stdout for its result, stderr for progress and errors. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/**
 * What every command's action needs. The global options are read when the action runs,
 * not when the command is defined, since commander parses them on the way to the action.
 */
export class Context {
  /** What the process exits with once the action has run. */
  exitCode = 0;
  private api: ApiClient | undefined;

  constructor(
    private readonly globals: () => GlobalOptions,
    /** Whether --user was given on the command line (not taken from A4C_USER or $USER). */
    readonly userFlagGiven: () => boolean,
    readonly io: Io,
  ) {}

  get json(): boolean {
    return this.globals().output === 'json';
  }

  /** Seconds to wait for a workspace or build to settle (--timeout). */
  get timeout(): number {
    return this.globals().timeout;
  }

  /** Whether a token was given (--token or A4C_TOKEN). */
  hasToken(): boolean {
    return Boolean(this.tokenOverride ?? this.globals().token);
  }

  /** A token from elsewhere (ssh-proxy's --token-file), when none was given. */
  useToken(token: string): void {
    this.tokenOverride = token;
    this.api = undefined;
  }

  private tokenOverride: string | undefined;

  get client(): ApiClient {
    if (this.api) return this.api;
    const { url } = this.globals();
    const token = this.tokenOverride ?? this.globals().token;
    if (!token) throw new CliError('no token: set A4C_TOKEN (npm start prints one) or pass --token');
    this.api = new ApiClient(url, token);
    return this.api;
  }

  /** The user the command acts for: --user, else A4C_USER, else $USER; may be empty. */
  get user(): string {
    return this.globals().user ?? process.env.USER ?? '';
  }

  /** The user, for a URL path; an error if there is none. */
  userPath(): string {
    if (!this.user) throw new CliError('no user: pass --user or set A4C_USER');
    return encodeURIComponent(this.user);
  }

  /** Prints the API's answer as JSON (-o json) or as the table or text a person reads. */
  print(value: unknown, text: () => string): void {
    this.io.out(this.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
  }

  /** Prints progress, a hint or a warning on stderr (stdout stays the result alone). */
  note(text: string): void {
    this.io.err(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Wraps an action so that the number it resolves to becomes the exit code. */
  action<A extends unknown[]>(fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
    return async (...args: A) => {
      this.exitCode = await fn(...args);
    };
  }
}
