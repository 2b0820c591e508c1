import { containerUserProblem, isProvablyNonRoot, LABEL_IMAGE_READ_ONLY, LABEL_IMAGE_USER } from '@a4c/common';

/** What the workspace's tier asks for (WorkspaceSpec.confinement). */
export interface TierConfinement {
  readOnlyRootFs: boolean;
  /** '' when the tier sets none. */
  user: string;
  runAsNonRoot: boolean;
}

/** What the image says about itself: its labels and its USER. */
export interface ImageConfig {
  labels: Record<string, string>;
  /** The image's USER; '' means root. */
  user: string;
}

export interface Confinement {
  readOnlyRootFs: boolean;
  /** For the container's Config.User; undefined leaves the image's USER in force. */
  user: string | undefined;
}

export type ConfinementResult = { ok: true; confinement: Confinement } | { ok: false; error: string };

/**
 * Combines the tier's and the image's wishes; the stricter wins. Read-only if either
 * asks for it (an image cannot make a read-only tier writable). The tier's user wins
 * over the image's label, which wins over the image's USER: the operator's setting is
 * the policy, the label is the image author's opt-in. A label that cannot be read is
 * refused rather than ignored: an image that asked for confinement must not silently
 * run without it.
 */
export function workspaceConfinement(tier: TierConfinement, image: ImageConfig): ConfinementResult {
  const roLabel = image.labels[LABEL_IMAGE_READ_ONLY];
  let imageReadOnly = false;
  if (roLabel !== undefined) {
    const v = roLabel.trim().toLowerCase();
    if (v !== 'true' && v !== 'false') {
      return { ok: false, error: `the image's label ${LABEL_IMAGE_READ_ONLY}=${JSON.stringify(roLabel)} must be true or false` };
    }
    imageReadOnly = v === 'true';
  }
  if (tier.user) {
    const problem = containerUserProblem(tier.user);
    if (problem) return { ok: false, error: `the tier's user ${problem}` };
  }
  const userLabel = image.labels[LABEL_IMAGE_USER];
  if (userLabel !== undefined && userLabel !== '') {
    const problem = containerUserProblem(userLabel);
    if (problem) return { ok: false, error: `the image's label ${LABEL_IMAGE_USER}: ${problem}` };
  }
  const user = tier.user || userLabel || undefined;
  if (tier.runAsNonRoot) {
    const effective = user ?? image.user;
    if (!effective || !isProvablyNonRoot(effective)) {
      const source = tier.user ? "the tier's user" : userLabel ? `the image's label ${LABEL_IMAGE_USER}` : "the image's USER";
      return {
        ok: false,
        error: `the tier requires a non-root user, but ${source} is ${JSON.stringify(effective || 'root')}: set a numeric uid other than 0 (a name could be root in the image)`,
      };
    }
  }
  return { ok: true, confinement: { readOnlyRootFs: tier.readOnlyRootFs || imageReadOnly, user } };
}

const MiB = 1024 * 1024;

/**
 * The writable scratch places of a read-only container, as HostConfig.Tmpfs. Sizes
 * follow the workspace's memory because tmpfs pages are charged to the container's
 * memory cgroup: the bounds keep one directory from being what gets the workspace
 * OOM-killed, and together stay under the limit.
 *
 * `exec` on purpose (Docker's tmpfs default is noexec): developers run what they build
 * and tools unpack and run helpers in /tmp (go test, native npm/pip modules, JITs);
 * noexec would break them while stopping nothing, as /workspace is writable and
 * executable anyway. nosuid and nodev stay: no setuid binaries or device nodes there.
 * /run is root's (sshd's privilege separation directory, pid files); /tmp and /var/tmp
 * are sticky and world-writable as on any Linux system. (runc before 1.1.8 gives a
 * tmpfs the mode of the image's directory under it instead of mode=: an image whose
 * /tmp is not 1777 then has a /tmp only root can write.)
 */
export function scratchTmpfs(memoryBytes: number): Record<string, string> {
  const size = (fraction: number, min: number, max = Infinity) =>
    `size=${Math.max(min, Math.min(max, Math.floor((memoryBytes * fraction) / MiB))) * MiB}`;
  return {
    '/tmp': `rw,exec,nosuid,nodev,mode=1777,${size(1 / 2, 1)}`,
    '/var/tmp': `rw,exec,nosuid,nodev,mode=1777,${size(1 / 4, 1)}`,
    '/run': `rw,noexec,nosuid,nodev,mode=755,${size(1 / 16, 1, 64)}`,
  };
}
