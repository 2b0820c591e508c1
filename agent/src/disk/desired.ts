import type { WorkspaceSpec } from '@a4c/proto';

/**
 * The latest desired state as the disk and image modules need it: each workspace's disk
 * (its tier's), its volume, and the images the host must keep. Fed from the agent's
 * DesiredState handler; read by the storage-opt hook, the disk meter and image GC.
 */
export class DesiredView {
  private specs = new Map<string, WorkspaceSpec>();
  /** False until the first desired state: image GC then prunes nothing (never act on ignorance). */
  known = false;

  update(workspaces: WorkspaceSpec[]): void {
    this.specs = new Map(workspaces.map((w) => [w.workspaceId, w]));
    this.known = true;
  }

  diskBytes(workspaceId: string): number {
    return this.specs.get(workspaceId)?.resources?.diskBytes ?? 0;
  }

  volume(workspaceId: string): string | undefined {
    return this.specs.get(workspaceId)?.volume || undefined;
  }

  /** Image references the desired workspaces run (and, with a registry, the refs they pull from). */
  images(): string[] {
    return [...this.specs.values()].flatMap((w) => [w.image, w.pullFrom].filter((r): r is string => Boolean(r)));
  }
}
