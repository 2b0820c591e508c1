import { randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from '@a4c/common';
import ssh2, { type Attributes, type FileEntry, type SFTPWrapper } from 'ssh2';
import {
  FileError,
  NOT_FOUND,
  putEntry,
  readFileStream,
  runCommand,
  S_IFDIR,
  S_IFMT,
  statFollow,
  statPath,

  type PathStat,
} from './container-files.js';
import { LIST_SCRIPT, parseListing, SequentialReader, stage } from './sftp-files.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** What the SFTP subsystem of one SSH connection works on. */
export interface SftpContext {
  docker: Docker;
  containerId: string;
  /**
   * The workspace's user, in Docker's --user form (undefined: root), and whether it is
   * root: root passes every permission check, so none is made for it.
   */
  workspaceUser(): Promise<{ user: string | undefined; isRoot: boolean }>;
  /** uid and gid of the workspace's user: files and directories made over SFTP get them. */
  ids(): Promise<{ uid: number; gid: number }>;
  /** The default directory: relative paths start here (the user's volume, /workspace). */
  home: string;
  /** Where uploads are staged on the agent's disk before they go into the container. */
  tmpDir: string;
  /** The largest file one upload may stage. */
  maxUploadBytes: number;
  log: Logger;
}

/** What the SFTP subsystem did, for the session's summary. */
export interface SftpStats {
  filesRead: number;
  filesWritten: number;
  bytesRead: number;
  bytesWritten: number;
}

/** The most one READ returns: OpenSSH asks for 32 KiB and accepts SFTP packets up to 256 KiB; a larger ask is not an allocation the client may choose. */
const MAX_READ = 255 * 1024;

/** Entries per READDIR reply: OpenSSH takes any count; this keeps each reply small. */
const DIR_BATCH = 128;

interface ReadHandle {
  kind: 'read';
  path: string;
  stat: PathStat;
  reader: SequentialReader;
}
interface WriteHandle {
  kind: 'write';
  path: string;
  tmpPath: string;
  file: FileHandle;
  size: number;
  mode: number;
  mtime: Date | undefined;
  append: boolean;
}
interface DirHandle {
  kind: 'dir';
  path: string;
  entries: FileEntry[] | undefined;
}
type Handle = (ReadHandle | WriteHandle | DirHandle) & { queue: Promise<void> };

/**
 * Serves the SFTP subsystem (what `scp` uses by default since OpenSSH 9, and `sftp`)
 * on the workspace container, through the Engine API only:
 *
 * - stat, download, upload and mkdir go through the archive endpoints (HEAD/GET/PUT
 *   /containers/{id}/archive, as `docker cp` does): the Engine resolves each path
 *   inside the container's root, volumes included. Files and directories made here
 *   get the workspace user's uid and gid.
 * - An upload is staged in a temporary file on the agent's disk (a tar header needs the
 *   size first), bounded by maxUploadBytes, and goes into the container on CLOSE; a
 *   connection that drops mid-upload leaves the old file untouched.
 * - A download is streamed from the archive endpoint; OpenSSH reads sequentially, and
 *   a read behind the current position restarts the download.
 * - Listing, remove, rmdir, rename, chmod/chown/utimes, readlink and symlink run as
 *   busybox commands (find, stat, rm, rmdir, mv, chmod, chown, touch, truncate,
 *   readlink, ln) through exec as the workspace's user; an image without them gets an
 *   error naming what to add.
 *
 * The archive endpoints act as root inside the container: for a workspace user that is
 * not root, each open and mkdir first asks the container (`test -r`/`test -w` as that
 * user) whether the user may, so SFTP never grants more than the user's own shell has.
 */
export function serveSftp(sftp: SFTPWrapper, ctx: SftpContext): { done: Promise<void>; stats: SftpStats } {
  const handles = new Map<string, Handle>();
  const stats: SftpStats = { filesRead: 0, filesWritten: 0, bytesRead: 0, bytesWritten: 0 };
  let nextHandle = 0;
  let closed = false;

  const resolve = (p: string) => path.posix.resolve(ctx.home, p || '.');

  const newHandle = (h: Omit<ReadHandle, 'queue'> | Omit<WriteHandle, 'queue'> | Omit<DirHandle, 'queue'>): Buffer => {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(nextHandle++);
    handles.set(id.toString('hex'), { ...h, queue: Promise.resolve() } as Handle);
    return id;
  };

  const fail = (reqId: number, e: unknown) => {
    if (closed) return;
    if (e instanceof FileError) {
      const code = {
        'not-found': STATUS_CODE.NO_SUCH_FILE,
        denied: STATUS_CODE.PERMISSION_DENIED,
        exists: STATUS_CODE.FAILURE,
        failure: STATUS_CODE.FAILURE,
        unsupported: STATUS_CODE.OP_UNSUPPORTED,
      }[e.kind];
      sftp.status(reqId, code, e.message);
      return;
    }
    ctx.log.warn({ err: e }, 'sftp request failed');
    sftp.status(reqId, STATUS_CODE.FAILURE, (e as Error).message ?? String(e));
  };

  /** Runs a request; its reply is sent by `op` or, on error, as a status. */
  const serve = (reqId: number, op: () => Promise<void>) => {
    op().catch((e: unknown) => fail(reqId, e));
  };

  /** Runs a request on a handle, after the handle's earlier requests (OpenSSH pipelines them). */
  const onHandle = (reqId: number, raw: Buffer, op: (h: Handle) => Promise<void>) => {
    const h = handles.get(raw.toString('hex'));
    if (!h) {
      sftp.status(reqId, STATUS_CODE.FAILURE, 'invalid handle');
      return;
    }
    h.queue = h.queue.then(() => op(h)).catch((e: unknown) => fail(reqId, e));
  };

  const ok = (reqId: number) => {
    if (!closed) sftp.status(reqId, STATUS_CODE.OK);
  };

  /** A busybox command as the workspace user, with its failure mapped to a status. */
  const shell = async (what: string, tools: string, script: string, args: string[]): Promise<string> => {
    const { user } = await ctx.workspaceUser();
    const r = await runCommand(ctx.docker, ctx.containerId, ['sh', '-c', script, 'sh', ...args], user);
    if (r.code === 0) return r.stdout;
    if (r.code === NOT_FOUND || (r.code === 126 && /not found|no such file/i.test(r.stderr))) {
      throw new FileError('unsupported', `${what} runs ${tools} inside the workspace, which its image lacks (${r.stderr || `exit ${r.code}`}): add busybox to the image`);
    }
    throw commandError(r.stderr || `${what} failed (exit ${r.code})`);
  };

  const mayAccess = async (p: string, mode: 'r' | 'w') => {
    const { user, isRoot } = await ctx.workspaceUser();
    if (isRoot) return;
    const r = await runCommand(ctx.docker, ctx.containerId, ['test', `-${mode}`, p], user);
    if (r.code !== 0) throw new FileError('denied', `${p}: permission denied`);
  };

  const statOrFail = async (p: string, follow: boolean): Promise<PathStat> => {
    const st = follow ? await statFollow(ctx.docker, ctx.containerId, p) : await statPath(ctx.docker, ctx.containerId, p);
    if (!st) throw new FileError('not-found', `${p}: no such file or directory`);
    return st;
  };

  /** The path itself, or where its chain of symbolic links ends. */
  const followLinks = async (p: string): Promise<string> => {
    let at = p;
    for (let hop = 0; hop < 8; hop++) {
      const st = await statPath(ctx.docker, ctx.containerId, at);
      if (!st?.linkTarget) return at;
      at = path.posix.resolve(path.posix.dirname(at), st.linkTarget);
    }
    return at;
  };

  sftp.on('REALPATH', (reqId: number, p: string) => {
    const abs = resolve(p);
    sftp.name(reqId, [{ filename: abs, longname: abs, attrs: {} as Attributes }]);
  });

  sftp.on('STAT', (reqId: number, p: string) => serve(reqId, async () => sftp.attrs(reqId, attrsOf(await statOrFail(resolve(p), true)))));
  sftp.on('LSTAT', (reqId: number, p: string) => serve(reqId, async () => sftp.attrs(reqId, attrsOf(await statOrFail(resolve(p), false)))));

  sftp.on('OPEN', (reqId: number, filename: string, flags: number, attrs: Partial<Attributes>) =>
    serve(reqId, async () => {
      const p = resolve(filename);
      const writing = (flags & (OPEN_MODE.WRITE | OPEN_MODE.APPEND)) !== 0;
      const st = await statFollow(ctx.docker, ctx.containerId, p);
      if (st && (st.mode & S_IFMT) === S_IFDIR) throw new FileError('failure', `${p}: is a directory`);
      if (!writing) {
        if (!st) throw new FileError('not-found', `${p}: no such file`);
        const target = await followLinks(p);
        await mayAccess(target, 'r');
        sftp.handle(reqId, newHandle({ kind: 'read', path: target, stat: st, reader: new SequentialReader(() => readFileStream(ctx.docker, ctx.containerId, target)) }));
        stats.filesRead++;
        return;
      }
      if (st && flags & OPEN_MODE.EXCL) throw new FileError('exists', `${p}: already exists`);
      if (!st && !(flags & OPEN_MODE.CREAT)) throw new FileError('not-found', `${p}: no such file`);
      const target = st ? await followLinks(p) : p;
      const dir = path.posix.dirname(target);
      const parent = await statFollow(ctx.docker, ctx.containerId, dir);
      if (!parent || (parent.mode & S_IFMT) !== S_IFDIR) throw new FileError('not-found', `${dir}: no such directory`);
      await mayAccess(st ? target : dir, 'w');
      const tmpPath = path.join(ctx.tmpDir, `a4c-sftp-${randomBytes(8).toString('hex')}`);
      const file = await open(tmpPath, 'wx+', 0o600);
      let size = 0;
      try {
        if (st && !(flags & OPEN_MODE.TRUNC)) size = await stage(readFileStream(ctx.docker, ctx.containerId, target), file, ctx.maxUploadBytes);
      } catch (e) {
        await file.close();
        await unlink(tmpPath).catch(() => undefined);
        throw e;
      }
      const mode = typeof attrs.mode === 'number' ? attrs.mode & 0o7777 : st ? st.mode & 0o7777 : 0o644;
      sftp.handle(reqId, newHandle({ kind: 'write', path: target, tmpPath, file, size, mode, mtime: undefined, append: (flags & OPEN_MODE.APPEND) !== 0 }));
      stats.filesWritten++;
    }),
  );

  sftp.on('READ', (reqId: number, raw: Buffer, offset: number, len: number) =>
    onHandle(reqId, raw, async (h) => {
      if (h.kind === 'dir') throw new FileError('failure', 'a directory handle cannot be read');
      len = Math.min(len, MAX_READ);
      let data: Buffer | null;
      if (h.kind === 'read') data = await h.reader.read(offset, len);
      else {
        const n = Math.max(0, Math.min(len, h.size - offset));
        data = n ? (await h.file.read(Buffer.alloc(n), 0, n, offset)).buffer : null;
      }
      if (closed) return;
      if (!data || !data.length) sftp.status(reqId, STATUS_CODE.EOF);
      else {
        stats.bytesRead += data.length;
        sftp.data(reqId, data);
      }
    }),
  );

  sftp.on('WRITE', (reqId: number, raw: Buffer, offset: number, data: Buffer) =>
    onHandle(reqId, raw, async (h) => {
      if (h.kind !== 'write') throw new FileError('denied', 'the file was not opened for writing');
      const at = h.append ? h.size : offset;
      if (at + data.length > ctx.maxUploadBytes) {
        throw new FileError('failure', `the file would be larger than the ${ctx.maxUploadBytes} bytes one upload may stage on the agent`);
      }
      await h.file.write(data, 0, data.length, at);
      h.size = Math.max(h.size, at + data.length);
      stats.bytesWritten += data.length;
      ok(reqId);
    }),
  );

  sftp.on('FSTAT', (reqId: number, raw: Buffer) =>
    onHandle(reqId, raw, async (h) => {
      if (h.kind === 'read') sftp.attrs(reqId, attrsOf(h.stat));
      else if (h.kind === 'write') sftp.attrs(reqId, { size: h.size, mode: h.mode | 0o100000, ...(h.mtime ? { mtime: h.mtime.getTime() / 1000, atime: h.mtime.getTime() / 1000 } : {}) } as Attributes);
      else sftp.attrs(reqId, attrsOf(await statOrFail(h.path, true)));
    }),
  );

  sftp.on('FSETSTAT', (reqId: number, raw: Buffer, attrs: Partial<Attributes>) =>
    onHandle(reqId, raw, async (h) => {
      if (h.kind !== 'write') {
        await setAttributes(h.path, attrs);
        return ok(reqId);
      }
      // Applied when the file goes into the container, on CLOSE.
      if (typeof attrs.mode === 'number') h.mode = attrs.mode & 0o7777;
      if (typeof attrs.mtime === 'number') h.mtime = new Date(attrs.mtime * 1000);
      if (typeof attrs.size === 'number') {
        await h.file.truncate(attrs.size);
        h.size = attrs.size;
      }
      ok(reqId);
    }),
  );

  sftp.on('CLOSE', (reqId: number, raw: Buffer) =>
    onHandle(reqId, raw, async (h) => {
      handles.delete(raw.toString('hex'));
      if (h.kind === 'read') h.reader.close();
      if (h.kind === 'write') {
        try {
          const { uid, gid } = await ctx.ids();
          const content = h.size > 0 ? h.file.createReadStream({ start: 0, end: h.size - 1, autoClose: false }) : undefined;
          await putEntry(ctx.docker, ctx.containerId, path.posix.dirname(h.path), {
            name: path.posix.basename(h.path),
            type: 'file',
            mode: h.mode,
            uid,
            gid,
            size: h.size,
            ...(h.mtime ? { mtime: h.mtime } : {}),
            ...(content ? { content } : {}),
          });
        } finally {
          await discard(h);
        }
      }
      ok(reqId);
    }),
  );

  sftp.on('OPENDIR', (reqId: number, p: string) =>
    serve(reqId, async () => {
      const abs = resolve(p);
      const st = await statOrFail(abs, true);
      if ((st.mode & S_IFMT) !== S_IFDIR) throw new FileError('failure', `${abs}: not a directory`);
      sftp.handle(reqId, newHandle({ kind: 'dir', path: abs, entries: undefined }));
    }),
  );

  sftp.on('READDIR', (reqId: number, raw: Buffer) =>
    onHandle(reqId, raw, async (h) => {
      if (h.kind !== 'dir') throw new FileError('failure', 'not a directory handle');
      if (!h.entries) h.entries = parseListing(await shell('listing a directory', "busybox's find and stat", LIST_SCRIPT, [h.path]));
      if (closed) return;
      const batch = h.entries.splice(0, DIR_BATCH);
      if (batch.length) sftp.name(reqId, batch);
      else sftp.status(reqId, STATUS_CODE.EOF);
    }),
  );

  sftp.on('MKDIR', (reqId: number, p: string, attrs: Partial<Attributes>) =>
    serve(reqId, async () => {
      const abs = resolve(p);
      if (await statPath(ctx.docker, ctx.containerId, abs)) throw new FileError('exists', `${abs}: already exists`);
      const dir = path.posix.dirname(abs);
      const parent = await statFollow(ctx.docker, ctx.containerId, dir);
      if (!parent || (parent.mode & S_IFMT) !== S_IFDIR) throw new FileError('not-found', `${dir}: no such directory`);
      await mayAccess(dir, 'w');
      const { uid, gid } = await ctx.ids();
      const mode = typeof attrs.mode === 'number' ? attrs.mode & 0o7777 : 0o755;
      await putEntry(ctx.docker, ctx.containerId, await followLinks(dir), { name: path.posix.basename(abs), type: 'directory', mode, uid, gid });
      ok(reqId);
    }),
  );

  sftp.on('REMOVE', (reqId: number, p: string) =>
    serve(reqId, async () => {
      await shell('removing a file', "busybox's rm", 'exec rm -- "$1"', [resolve(p)]);
      ok(reqId);
    }),
  );
  sftp.on('RMDIR', (reqId: number, p: string) =>
    serve(reqId, async () => {
      await shell('removing a directory', "busybox's rmdir", 'exec rmdir -- "$1"', [resolve(p)]);
      ok(reqId);
    }),
  );
  sftp.on('RENAME', (reqId: number, from: string, to: string) =>
    serve(reqId, async () => {
      // SFTP v3 rename does not replace an existing target (OpenSSH's server agrees).
      const script = 'if [ -e "$2" ] || [ -L "$2" ]; then echo "$2: File exists" >&2; exit 1; fi; exec mv -- "$1" "$2"';
      await shell('renaming', "busybox's mv", script, [resolve(from), resolve(to)]);
      ok(reqId);
    }),
  );
  sftp.on('READLINK', (reqId: number, p: string) =>
    serve(reqId, async () => {
      const target = (await shell('reading a link', "busybox's readlink", 'exec readlink -- "$1"', [resolve(p)])).replace(/\n$/, '');
      sftp.name(reqId, [{ filename: target, longname: target, attrs: {} as Attributes }]);
    }),
  );
  sftp.on('SYMLINK', (reqId: number, linkPath: string, targetPath: string) =>
    serve(reqId, async () => {
      await shell('making a symbolic link', "busybox's ln", 'exec ln -s -- "$1" "$2"', [targetPath, resolve(linkPath)]);
      ok(reqId);
    }),
  );
  sftp.on('SETSTAT', (reqId: number, p: string, attrs: Partial<Attributes>) =>
    serve(reqId, async () => {
      await setAttributes(resolve(p), attrs);
      ok(reqId);
    }),
  );

  /** chmod, chown, truncate and touch in one command, as the workspace user. */
  async function setAttributes(p: string, attrs: Partial<Attributes>): Promise<void> {
    const steps: string[] = [];
    const args: string[] = [p];
    const arg = (v: string) => {
      args.push(v);
      return `"$${args.length}"`;
    };
    if (typeof attrs.size === 'number') steps.push(`truncate -s ${arg(String(attrs.size))} -- "$1"`);
    if (typeof attrs.uid === 'number' && typeof attrs.gid === 'number') steps.push(`chown ${arg(`${attrs.uid}:${attrs.gid}`)} -- "$1"`);
    if (typeof attrs.mode === 'number') steps.push(`chmod ${arg((attrs.mode & 0o7777).toString(8))} -- "$1"`);
    if (typeof attrs.mtime === 'number') steps.push(`touch -c -d ${arg(`@${Math.floor(attrs.mtime)}`)} -- "$1"`);
    if (!steps.length) return;
    await shell('changing attributes', "busybox's chmod, chown, touch and truncate", `set -e; ${steps.join('; ')}`, args);
  }

  async function discard(h: WriteHandle): Promise<void> {
    await h.file.close().catch(() => undefined);
    await unlink(h.tmpPath).catch(() => undefined);
  }

  const done = new Promise<void>((resolveDone) => {
    const end = () => {
      if (closed) return;
      closed = true;
      for (const h of handles.values()) {
        if (h.kind === 'read') h.reader.close();
        // An upload that did not reach CLOSE is dropped: the file in the container stays as it was.
        if (h.kind === 'write') void h.queue.then(() => discard(h));
      }
      handles.clear();
      resolveDone();
    };
    sftp.on('close', end);
    // The client's EOF ends the subsystem; the channel is ours to close (OpenSSH waits for it).
    sftp.on('end', () => {
      end();
      sendExitStatus(sftp, 0);
      sftp.end();
    });
  });
  return { done, stats };
}

/**
 * OpenSSH's scp and sftp exit with the session's exit status, which sshd sends when
 * its sftp-server ends; ssh2's SFTP object has no exit(), so this uses the protocol
 * object it holds (ssh2 v1.x internals; test/ssh.test.ts checks scp exits 0).
 */
function sendExitStatus(sftp: SFTPWrapper, code: number): void {
  const inner = sftp as unknown as { _protocol?: { exitStatus?: (id: number, code: number) => void }; outgoing?: { id: number; state: string } };
  if (inner.outgoing?.state === 'open' && typeof inner._protocol?.exitStatus === 'function') inner._protocol.exitStatus(inner.outgoing.id, code);
}

function attrsOf(st: PathStat): Attributes {
  // The archive endpoint does not say who owns a path: no uid/gid rather than a guess.
  return { mode: st.mode, size: st.size, atime: st.mtime, mtime: st.mtime } as Attributes;
}

function commandError(stderr: string): FileError {
  if (/no such file|not found|can't stat|can't cd/i.test(stderr) && !/permission denied/i.test(stderr)) return new FileError('not-found', stderr);
  if (/permission denied|operation not permitted|read-only file system/i.test(stderr)) return new FileError('denied', stderr);
  return new FileError('failure', stderr);
}
