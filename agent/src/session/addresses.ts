import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** One control-plane endpoint to dial. */
export interface Target {
  /** host:port for grpc-js (an IP when a name was resolved). */
  address: string;
  /** The DNS name the server's certificate is checked against when address is one of its resolved IPs. */
  serverName?: string;
}

export type Resolve = (host: string) => Promise<string[]>;

const resolveAll: Resolve = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

const hostPort = (host: string, port: number) => (isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`);

/**
 * The control-plane replicas an agent may use (A4C_CONTROL_PLANE, comma-separated),
 * tried in an order of its own: shuffled once, so a fleet given the same list spreads
 * over the replicas, and a dead replica's agents spread over the others. A DNS name
 * is resolved at every pass and each of its addresses tried in turn.
 */
export class ControlPlaneAddresses {
  private readonly order: { host: string; port: number }[];
  private pass: Target[] = [];
  private index = 0;

  constructor(
    list: { host: string; port: number }[],
    private readonly resolve: Resolve = resolveAll,
    random: () => number = Math.random,
  ) {
    this.order = [...list];
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [this.order[i], this.order[j]] = [this.order[j] as { host: string; port: number }, this.order[i] as { host: string; port: number }];
    }
  }

  /** Targets in the current pass (at least one). */
  get count(): number {
    return Math.max(1, this.pass.length);
  }

  /** The next target to dial; after the last one a new pass starts, resolving names again. */
  async next(): Promise<Target> {
    if (this.index >= this.pass.length) {
      this.pass = await this.expand();
      this.index = 0;
    }
    return this.pass[this.index++] as Target;
  }

  private async expand(): Promise<Target[]> {
    const out: Target[] = [];
    for (const { host, port } of this.order) {
      if (isIP(host)) {
        out.push({ address: hostPort(host, port) });
        continue;
      }
      const ips = await this.resolve(host).catch(() => [] as string[]);
      // Unresolvable now: dial the name anyway, so the error the agent reports names it.
      if (!ips.length) out.push({ address: hostPort(host, port) });
      for (const ip of [...new Set(ips)]) out.push({ address: hostPort(ip, port), serverName: host });
    }
    return out;
  }
}

/** A4C_CONTROL_PLANE as host:port entries (validated by the caller's parseHostPort). */
export function splitAddressList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
