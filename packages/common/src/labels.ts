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

export function containerName(workspaceId: string): string {
  return `ws-${workspaceId}`;
}

/** The Docker volume that holds a user's files; it outlives every workspace of theirs. */
export function userVolumeName(userId: string): string {
  return `a4c-home-${userId}`;
}
