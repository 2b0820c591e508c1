import type { ErrorBody } from '@a4c/common';

export class CliError extends Error {
  constructor(
    message: string,
    readonly suggestion?: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/** The REST API over fetch; errors become CliErrors carrying the server's message and hint. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl.replace(/\/$/, '')}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new CliError(`cannot reach the control plane at ${this.baseUrl} (${cause})`, 'is it running? start one with `npm start`, or set A4C_URL', 1);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CliError(`the control plane answered ${res.status} with something that is not JSON`, undefined, 1);
    }
    if (!res.ok) {
      const err = parsed as Partial<ErrorBody>;
      throw new CliError(`${err.error ?? res.status}: ${err.message ?? text}`, err.suggestion, 1);
    }
    return parsed as T;
  }
}
