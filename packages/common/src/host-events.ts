/**
 * The events an agent reports on its own (HostEvent.kind in the agent protocol). The
 * control plane records each as `agent.<kind>`; its list of event kinds must name every
 * one of these (checked at compile time in control-plane/src/events/kinds.ts), so an
 * agent event is never filed as agent.unknown by mistake.
 */
export const HOST_EVENT_KINDS = [
  'orphan_removed',
  'container_vanished',
  'container_exited',
  'container_restarted',
  'create_retried',
  'stale_attempt_removed',
  'image_pulled',
  'docker_unreachable',
  'docker_reachable',
] as const;

export type HostEventKind = (typeof HOST_EVENT_KINDS)[number];
