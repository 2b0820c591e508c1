import type { ImageConfig } from './confinement.js';

/**
 * The one seam between the agent and the container engine. The Docker implementation
 * is in docker.ts; the reconciler knows nothing of dockerode.
 */
export interface OwnedContainer {
  id: string;
  name: string;
  workspaceId: string;
  /** Creation attempt, from the a4c.attempt label (0 if absent). */
  attempt: number;
  state: 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';
}

export interface ContainerDetails {
  id: string;
  running: boolean;
  exitCode: number;
  oomKilled: boolean;
  error: string;
  finishedAt: string;
}

export interface CreateSpec {
  workspaceId: string;
  attempt: number;
  userId: string;
  image: string;
  hostname: string;
  memoryBytes: number;
  cpus: number;
  pidsLimit: number;
  volume: string;
  /** The image as inspectImage found it (the reconciler's image step): its labels may ask for confinement. */
  imageConfig: ImageConfig;
  /**
   * The tier's confinement (WorkspaceSpec.confinement); absent: none from the tier.
   * The runtime combines it with the image's labels (confinement.ts).
   */
  readOnlyRootFs?: boolean;
  /** '' or absent: the image's a4c.workspace.user label, else its USER. */
  user?: string;
  runAsNonRoot?: boolean;
}

export interface ImageSummary {
  ref: string;
  imageId: string;
  labels: Record<string, string>;
  createdUnix: number;
}

export interface EngineInfo {
  dataRoot: string;
  containers: number;
}

export interface ContainerRuntime {
  ping(): Promise<void>;
  info(): Promise<EngineInfo>;
  /** Containers labelled as A4C workspaces of this host; never anyone else's. */
  listOwned(): Promise<OwnedContainer[]>;
  inspect(id: string): Promise<ContainerDetails | undefined>;
  /** The image's labels and USER; undefined when the image is not on this host. */
  inspectImage(ref: string): Promise<ImageConfig | undefined>;
  /** Pulls `from` (a registry reference) and tags it `as`. */
  pullAs(from: string, as: string): Promise<void>;
  listImages(): Promise<ImageSummary[]>;
  /** The container's CPU time so far (ns) and when the engine read it (ms since the epoch); undefined if it is gone. */
  cpuUsage(id: string): Promise<{ usageNs: number; atMs: number } | undefined>;
  create(spec: CreateSpec): Promise<string>;
  start(id: string): Promise<void>;
  stop(id: string, timeoutSeconds: number): Promise<void>;
  remove(id: string): Promise<void>;
  /** Calls onEvent for lifecycle events of this host's containers until the returned function is called. */
  watch(onEvent: () => void, onEnd: (err?: Error) => void): Promise<() => void>;
}
