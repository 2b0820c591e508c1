import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type Docker from 'dockerode';
import tar from 'tar-stream';
import { startExec } from './exec.js';

/**
 * Files inside a workspace container, through the Engine API only (the agent may not
 * enter the container's namespaces). The archive endpoints (HEAD/GET/PUT
 * /containers/{id}/archive, what `docker cp` uses) resolve paths inside the
 * container's root and see its volumes; what they cannot do (list a directory,
 * remove, rename, chmod) runs as a small busybox command through exec, as the
 * workspace's user.
 */

/** What the Engine's X-Docker-Container-Path-Stat header says about a path. */
export interface PathStat {
  name: string;
  size: number;
  /** POSIX st_mode: file type and permission bits. */
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Set for a symbolic link: where it points, resolved inside the container. */
  linkTarget: string;
}

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** A path-level failure with the errno-like kind the SFTP status codes need. */
export class FileError extends Error {
  constructor(
    readonly kind: 'not-found' | 'denied' | 'exists' | 'failure' | 'unsupported',
    message: string,
  ) {
    super(message);
  }
}

function statusCode(e: unknown): number | undefined {
  return (e as { statusCode?: number }).statusCode;
}

/** Go's os.FileMode (what the Engine reports) as a POSIX st_mode. */
export function posixMode(goMode: number): number {
  const bit = (n: number) => Math.floor(goMode / 2 ** n) % 2 === 1;
  let mode = goMode % 0o1000;
  if (bit(23)) mode |= 0o4000;
  if (bit(22)) mode |= 0o2000;
  if (bit(20)) mode |= 0o1000;
  if (bit(31)) return mode | S_IFDIR;
  if (bit(27)) return mode | S_IFLNK;
  if (bit(25)) return mode | 0o010000;
  if (bit(24)) return mode | 0o140000;
  if (bit(26)) return mode | (bit(21) ? 0o020000 : 0o060000);
  return mode | S_IFREG;
}

/** lstat(2) inside the container; undefined when nothing is there. */
export async function statPath(docker: Docker, containerId: string, p: string): Promise<PathStat | undefined> {
  let res: Readable & { headers?: Record<string, string | string[] | undefined> };
  try {
    res = (await docker.getContainer(containerId).infoArchive({ path: p })) as typeof res;
  } catch (e) {
    if (statusCode(e) === 404) return undefined;
    throw e;
  }
  res.resume();
  const header = res.headers?.['x-docker-container-path-stat'];
  if (typeof header !== 'string') throw new Error(`the Docker Engine gave no stat for ${p}`);
  const raw = JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as { name: string; size: number; mode: number; mtime: string; linkTarget: string };
  return { name: raw.name, size: raw.size, mode: posixMode(raw.mode), mtime: Math.floor(Date.parse(raw.mtime) / 1000), linkTarget: raw.linkTarget ?? '' };
}

/** stat(2): follows symbolic links (a few hops, as the kernel would). */
export async function statFollow(docker: Docker, containerId: string, p: string): Promise<PathStat | undefined> {
  let at = p;
  for (let hop = 0; hop < 8; hop++) {
    const st = await statPath(docker, containerId, at);
    if (!st || (st.mode & S_IFMT) !== S_IFLNK) return st;
    if (!st.linkTarget) return undefined;
    at = path.posix.resolve(path.posix.dirname(at), st.linkTarget);
  }
  throw new FileError('failure', `${p}: too many levels of symbolic links`);
}

/** A regular file's content from offset 0, as the archive endpoint streams it. */
export interface FileStream {
  size: number;
  content: Readable;
  /** Stops the download (the HTTP response and the tar parser). */
  close(): void;
}

export async function readFileStream(docker: Docker, containerId: string, p: string): Promise<FileStream> {
  let res: Readable;
  try {
    res = (await docker.getContainer(containerId).getArchive({ path: p })) as Readable;
  } catch (e) {
    if (statusCode(e) === 404) throw new FileError('not-found', `${p}: no such file`);
    throw e;
  }
  const extract = tar.extract();
  res.pipe(extract);
  const close = () => {
    res.destroy();
    extract.destroy();
  };
  const first = await extract[Symbol.asyncIterator]().next();
  if (first.done) {
    close();
    throw new FileError('not-found', `${p}: no such file`);
  }
  const entry = first.value;
  if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
    close();
    throw new FileError('failure', `${p}: not a regular file`);
  }
  // tar-stream's entries are streamx streams; async iteration is what callers use.
  return { size: entry.header.size ?? 0, content: entry as unknown as Readable, close };
}

/** One entry to add to a directory with the archive endpoint. */
export interface NewEntry {
  name: string;
  type: 'file' | 'directory';
  mode: number;
  uid: number;
  gid: number;
  mtime?: Date;
  size?: number;
  /** For a file: its content, exactly `size` bytes. */
  content?: Readable;
}

/**
 * Writes one file or directory into `dir` (which must exist). noOverwriteDirNonDir:
 * without it the Engine would replace an existing directory by a file of that name.
 */
export async function putEntry(docker: Docker, containerId: string, dir: string, e: NewEntry): Promise<void> {
  const pack = tar.pack();
  const header = { name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime ?? new Date(), size: e.type === 'file' ? (e.size ?? 0) : 0 };
  const upload = docker.getContainer(containerId).putArchive(pack as unknown as NodeJS.ReadableStream, { path: dir, noOverwriteDirNonDir: true });
  const written = new Promise<void>((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve())) as unknown as Writable;
    if (e.type === 'file' && e.content) {
      e.content.on('error', (err) => sink.destroy(err));
      e.content.pipe(sink);
    } else sink.end();
  });
  try {
    await written;
    pack.finalize();
    await upload;
  } catch (err) {
    pack.destroy();
    const code = statusCode(err);
    if (code === 404) throw new FileError('not-found', `${dir}: no such directory`);
    if (code === 403) throw new FileError('denied', `${dir}: read-only file system`);
    if (code === 400 || code === 500) throw new FileError('failure', `${path.posix.join(dir, e.name)}: ${engineMessage(err)}`);
    throw err;
  }
}

function engineMessage(e: unknown): string {
  const json = (e as { json?: { message?: string } }).json;
  return json?.message ?? (e as Error).message;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Exit status of a shell whose command was not found: the image lacks a tool. */
export const NOT_FOUND = 127;

/**
 * Runs a short command in the container (no stdin) and collects its output, up to
 * `maxOutput` bytes (past it the command is stopped and this fails).
 */
export async function runCommand(docker: Docker, containerId: string, cmd: string[], user: string | undefined, maxOutput = 32 * 1024 * 1024): Promise<CommandResult> {
  const proc = await startExec(docker, containerId, { cmd, tty: false, stdin: false, ...(user ? { user } : {}), workingDir: '/' });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let total = 0;
  const collect = (into: Buffer[]) => (c: Buffer) => {
    total += c.length;
    if (total > maxOutput) {
      proc.close();
      return;
    }
    into.push(c);
  };
  proc.stdout.on('data', collect(out));
  proc.stderr.on('data', collect(err));
  const [code] = await Promise.all([proc.exit, drained(proc.stdout), drained(proc.stderr)]);
  if (total > maxOutput) throw new FileError('failure', `${cmd[0]} printed more than ${maxOutput} bytes`);
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8').trim() };
}

/** Resolves once a readable has emitted all its data. */
function drained(r: Readable): Promise<void> {
  if (r.readableEnded || r.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    r.once('end', resolve);
    r.once('close', resolve);
    r.once('error', () => resolve());
  });
}

/** The numeric uid and gid of the workspace's user, as files it creates should carry. */
export async function userIds(docker: Docker, containerId: string, user: string | undefined): Promise<{ uid: number; gid: number }> {
  const numeric = /^(\d+)(?::(\d+))?$/.exec(user ?? '');
  if (numeric?.[2] !== undefined) return { uid: Number(numeric[1]), gid: Number(numeric[2]) };
  if (!user || user === 'root' || user === '0') return { uid: 0, gid: 0 };
  const r = await runCommand(docker, containerId, ['sh', '-c', 'id -u && id -g'], user);
  const [uid, gid] = r.stdout.trim().split('\n').map(Number);
  if (r.code !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid)) {
    if (numeric) return { uid: Number(numeric[1]), gid: 0 };
    throw new FileError('failure', `cannot tell the uid of the workspace user ${JSON.stringify(user)} (${r.stderr || `exit ${r.code}`}): the image needs busybox's sh and id`);
  }
  return { uid: uid as number, gid: gid as number };
}
