import type * as grpc from '@grpc/grpc-js';
import { AgentServiceClient } from '@a4c/proto';

/**
 * gRPC clients for the streams the agent dials back to a control-plane replica (tunnels
 * for user sessions, transfers for moves): one per replica address, kept while the agent
 * runs. An empty address means the replica the agent is connected to (asked at each
 * dial: with several replicas that changes when the agent fails over).
 */
export class DialBackClients {
  private readonly clients = new Map<string, AgentServiceClient>();

  constructor(
    private readonly defaultAddress: () => string,
    private readonly credentials: () => Promise<grpc.ChannelCredentials>,
  ) {}

  async get(address: string): Promise<AgentServiceClient> {
    const target = address || this.defaultAddress();
    let c = this.clients.get(target);
    if (!c) {
      c = new AgentServiceClient(target, await this.credentials(), {
        'grpc.use_local_subchannel_pool': 1,
        // The HTTP/2 default window (64 KiB) caps a stream at one window per round trip.
        'grpc-node.flow_control_window': 1024 * 1024,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      });
      this.clients.set(target, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
