/**
 * Ownership lives in Docker labels, never in names alone: an agent touches a container
 * only if a4c.managed=true and a4c.host.id is its own host id.
 */
export const LABEL_MANAGED = 'a4c.managed';
export const LABEL_WORKSPACE_ID = 'a4c.workspace.id';
export const LABEL_USER_ID = 'a4c.user.id';
export const LABEL_HOST_ID = 'a4c.host.id';
/** Creation attempt of the workspace the container was made for (see WorkspaceSpec.attempt). */
export const LABEL_ATTEMPT = 'a4c.attempt';

/** Image labels that tell which project, arch and change an image was built for. */
export const LABEL_IMAGE_PROJECT = 'a4c.project';
export const LABEL_IMAGE_ARCH = 'a4c.arch';
export const LABEL_IMAGE_CHANGE = 'a4c.change';
/** The build that made an image: an image with it is A4C's own, which image garbage collection may prune. */
export const LABEL_IMAGE_BUILD_ID = 'a4c.build.id';

export function containerName(workspaceId: string): string {
  return `ws-${workspaceId}`;
}

/** The Docker volume that holds a user's files; it outlives every workspace of theirs. */
export function userVolumeName(userId: string): string {
  return `a4c-home-${userId}`;
}

/**
 * Image labels by which an image asks for a stricter workspace container than its tier
 * gives (see workspaceConfinement in agent/src/runtime/confinement.ts):
 * `a4c.workspace.read-only=true` for a read-only root filesystem, and
 * `a4c.workspace.user=uid[:gid]` (or a name) to run as. They only ever add confinement.
 */
export const LABEL_IMAGE_READ_ONLY = 'a4c.workspace.read-only';
export const LABEL_IMAGE_USER = 'a4c.workspace.user';
