/**
 * The user a workspace container runs as, as Docker's `--user` takes it: `uid[:gid]`
 * with numeric ids, or names (`dev`, `dev:staff`). Names are held to a conservative
 * pattern (POSIX-portable, like Debian's useradd) so that a value from A4C_TIERS or an
 * image label can never smuggle anything else into the container's configuration.
 */
const NAME = '[a-z_][a-z0-9_-]{0,31}';
const ID = '(?:0|[1-9][0-9]{0,9})';
const PART = `(?:${ID}|${NAME})`;
const USER_RE = new RegExp(`^${PART}(?::${PART})?$`);
/** uid_t is 32 bits and (uid_t)-1 means "no change" to the kernel. */
const MAX_ID = 4_294_967_294;

export const CONTAINER_USER_HINT = 'uid[:gid] with numeric ids (e.g. "1000:1000") or a user name (lowercase letters, digits, _ and -)';

/** Why `value` is not a valid container user, or undefined if it is. */
export function containerUserProblem(value: string): string | undefined {
  if (!USER_RE.test(value)) return `${JSON.stringify(value)} is not ${CONTAINER_USER_HINT}`;
  for (const part of value.split(':')) {
    if (/^[0-9]+$/.test(part) && Number(part) > MAX_ID) return `${JSON.stringify(value)}: id ${part} is out of range (0-${MAX_ID})`;
  }
  return undefined;
}

/**
 * True only for a user that is provably not root from the value alone: a numeric uid
 * other than 0. A name might map to uid 0 in the image's /etc/passwd, so, as
 * Kubernetes' runAsNonRoot does, a name does not count as non-root.
 */
export function isProvablyNonRoot(user: string): boolean {
  const uid = user.split(':')[0] ?? '';
  return /^[0-9]+$/.test(uid) && Number(uid) !== 0;
}
