/**
 * A start-up failure a person can act on: what failed, and the fix. main.ts prints both
 * and exits non-zero; every step of start-up that can fail for a reason outside the
 * code (database, ports, CA files, data directory) throws one of these.
 */
export class StartupError extends Error {
  constructor(
    readonly what: string,
    readonly fix: string,
  ) {
    super(what);
    this.name = 'StartupError';
  }
}

/** Any thrown value as text: libraries reject with undefined or strings, too. */
export function describeFailure(e: unknown): string {
  if (e instanceof StartupError) return `${e.what}\n  fix: ${e.fix}`;
  if (e instanceof Error) return e.stack ?? e.message;
  if (e === undefined) return 'an unknown error (something rejected without saying why)';
  return String(e);
}

/** Listening failed: name the setting that chose the port and what to do. */
export function listenFailure(e: unknown, what: string, address: string, setting: string): StartupError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const text = (e as Error | undefined)?.message ?? String(e);
  if (code === 'EADDRINUSE' || /address already in use|EADDRINUSE|No address added out of total/i.test(text)) {
    return new StartupError(`${what} cannot listen on ${address}: another process already uses that port`, `stop that process (\`ss -ltnp | grep ${address.split(':').pop()}\` shows it), or set ${setting} to a free port`);
  }
  if (code === 'EACCES' || /EACCES|permission denied/i.test(text)) {
    return new StartupError(`${what} cannot listen on ${address}: permission denied`, `ports below 1024 need root or CAP_NET_BIND_SERVICE; set ${setting} to a port above 1023`);
  }
  if (code === 'EADDRNOTAVAIL') {
    return new StartupError(`${what} cannot listen on ${address}: no interface of this machine has that address`, 'set A4C_BIND_ADDRESS to an address of this machine, or 0.0.0.0');
  }
  return new StartupError(`${what} cannot listen on ${address}: ${text}`, `check ${setting} and A4C_BIND_ADDRESS`);
}

/** The first contact with PostgreSQL failed: say which server, why, and what to do. */
export function databaseFailure(e: unknown, url: string, embedded: boolean): StartupError {
  let where = 'the database';
  try {
    const u = new URL(url);
    where = `PostgreSQL at ${u.hostname}:${u.port || 5432}, database ${u.pathname.slice(1) || '(default)'}, user ${decodeURIComponent(u.username) || '(default)'}`;
  } catch {
    // not a URL: leave it unnamed rather than print a password
  }
  const err = e as { code?: string; message?: string } | undefined;
  const text = err?.message ?? String(e);
  const setting = embedded ? 'the embedded PostgreSQL (unset DATABASE_URL)' : 'DATABASE_URL';
  const failed = `cannot use ${where}: ${text}`;
  switch (err?.code) {
    case 'ECONNREFUSED':
      return new StartupError(failed, `start PostgreSQL there, or correct host and port in ${setting}`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new StartupError(failed, `the host name does not resolve: correct it in ${setting}`);
    case '28P01':
    case '28000':
      return new StartupError(failed, `the user or password was refused: correct them in ${setting}, or allow this host in pg_hba.conf`);
    case '3D000':
      return new StartupError(failed, `create the database (\`createdb\`) or name an existing one in ${setting}`);
    case '42501':
      return new StartupError(failed, 'the user may not create tables: the control plane needs to own its schema (GRANT CREATE ON DATABASE, or make it the owner)');
    default:
      return new StartupError(failed, `check that PostgreSQL answers at ${setting} and that this user may create tables there`);
  }
}

/** Errors of reaching or logging in to PostgreSQL, not of the SQL run once in. */
export function isConnectionFailure(e: unknown): boolean {
  const code = String((e as { code?: unknown } | undefined)?.code ?? '');
  return ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET', '3D000', '42501'].includes(code) || code.startsWith('28') || code.startsWith('08');
}
