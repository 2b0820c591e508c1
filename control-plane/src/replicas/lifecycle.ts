import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from '@a4c/common';
import type { AgentMessage, ControlMessage } from '@a4c/proto';

type Call = grpc.ServerDuplexStream<AgentMessage, ControlMessage>;

/**
 * Trailer on a stream the control plane ends because it is going away: the agent
 * connects to its next address at once, without backoff (agent/src/session/session.ts).
 */
export const GO_ELSEWHERE = 'a4c-go-elsewhere';

/** The health services a load balancer may ask for: the server as a whole ('') and the agent stream. */
const HEALTH_SERVICES = ['', 'a4c.v1.AgentService'];

/**
 * One replica's life as a load balancer and its agents see it: serving, then draining
 * (gRPC health NOT_SERVING, /readyz 503, new agent streams refused, live ones told to
 * go elsewhere), then stopped within A4C_SHUTDOWN_GRACE_MS whatever the agents do.
 */
export class ReplicaLifecycle {
  private drainingSince: number | undefined;
  private readonly health = new HealthImplementation(Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'SERVING'])));
  private readonly calls = new Set<Call>();

  constructor(
    private readonly graceMs: number,
    private readonly log: Logger,
  ) {}

  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  /** Serves grpc.health.v1.Health (Check and Watch) on the agent plane's port. */
  serveHealth(server: grpc.Server): void {
    this.health.addToServer(server);
  }

  /** AgentService.Connect, refusing new streams while draining and remembering live ones. */
  guardConnect(connect: (call: Call) => void): (call: Call) => void {
    return (call) => {
      if (this.draining) {
        goElsewhere(call, 'this control-plane replica is shutting down');
        return;
      }
      this.calls.add(call);
      const forget = () => this.calls.delete(call);
      for (const e of ['cancelled', 'error', 'finish', 'close']) call.once(e, forget);
      connect(call);
    };
  }

  /**
   * Draining: health NOT_SERVING, every agent stream ended with GO_ELSEWHERE, then waits
   * until this replica holds no agent session (their disconnects recorded) or the grace
   * period is over. Streams opened meanwhile are refused the same way, so agents that
   * keep reconnecting cannot hold it up.
   */
  async drain(sessionCount: () => number): Promise<void> {
    if (this.draining) return;
    this.drainingSince = Date.now();
    for (const s of HEALTH_SERVICES) this.health.setStatus(s, 'NOT_SERVING');
    const agents = this.calls.size;
    for (const call of this.calls) goElsewhere(call, 'this control-plane replica is shutting down');
    this.log.info({ agents, graceMs: this.graceMs }, 'draining: agents told to connect to another replica');
    while ((sessionCount() > 0 || this.calls.size > 0) && this.remainingMs() > 0) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (sessionCount() > 0 || this.calls.size > 0) this.log.warn({ sessions: sessionCount(), streams: this.calls.size }, 'draining: agents still attached at the deadline; closing them');
  }

  /** Stops the gRPC server: lets tunnels and transfers finish within what is left of the grace period, then forces. */
  async shutdownGrpc(server: grpc.Server): Promise<void> {
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.log.warn('gRPC calls still open at the end of the shutdown grace period; forcing them closed');
        server.forceShutdown();
        resolve();
      }, this.remainingMs());
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  private remainingMs(): number {
    return Math.max(0, (this.drainingSince ?? Date.now()) + this.graceMs - Date.now());
  }
}

/** Ends an agent stream with UNAVAILABLE and the GO_ELSEWHERE trailer (emit('error') is how grpc-js sends a status). */
function goElsewhere(call: Call, message: string): void {
  const metadata = new grpc.Metadata();
  metadata.set(GO_ELSEWHERE, 'draining');
  call.emit('error', Object.assign(new Error(message), { code: grpc.status.UNAVAILABLE, details: message, metadata }));
}
