import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Attributes, FileEntry } from 'ssh2';
import { FileError, S_IFMT, type FileStream } from './container-files.js';

// How SFTP's file operations map onto a container's files: directory listings from
// busybox `stat` lines, `ls -l` lines, downloads read in order, uploads staged on disk.

/**
 * Lists a directory as `stat` lines: raw mode (hex), links, size, uid, gid, atime,
 * mtime, user, group, name. A name with a newline in it is skipped by the parser.
 */
export const LIST_SCRIPT = 'cd -- "$1" || exit 2; exec find . -mindepth 1 -maxdepth 1 -exec stat -c "%f %h %s %u %g %X %Y %U %G %n" -- {} +';

export function parseListing(out: string): FileEntry[] {
  const entries: FileEntry[] = [];
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\S+) (\S+) \.\/(.+)$/.exec(line);
    if (!m) continue;
    const [, rawMode, nlink, size, uid, gid, atime, mtime, owner, group, name] = m as unknown as string[];
    const attrs: Attributes = { mode: parseInt(rawMode as string, 16), size: Number(size), uid: Number(uid), gid: Number(gid), atime: Number(atime), mtime: Number(mtime) };
    entries.push({ filename: name as string, longname: longName(attrs, Number(nlink), owner as string, group as string, name as string), attrs });
  }
  return entries;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The `ls -l` line OpenSSH's `sftp` prints for `ls -l`. */
export function longName(a: Attributes, nlink: number, owner: string, group: string, name: string): string {
  const type = { 0o040000: 'd', 0o120000: 'l', 0o020000: 'c', 0o060000: 'b', 0o010000: 'p', 0o140000: 's' }[a.mode & S_IFMT] ?? '-';
  const rwx = (bits: number, special: boolean, ch: string) => `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-'}`;
  const perms = rwx((a.mode >> 6) & 7, (a.mode & 0o4000) !== 0, 's') + rwx((a.mode >> 3) & 7, (a.mode & 0o2000) !== 0, 's') + rwx(a.mode & 7, (a.mode & 0o1000) !== 0, 't');
  const d = new Date(a.mtime * 1000);
  const recent = Math.abs(Date.now() - d.getTime()) < 182 * 86400 * 1000;
  const when = `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ${recent ? `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}` : ` ${d.getUTCFullYear()}`}`;
  return `${type}${perms} ${String(nlink).padStart(4)} ${owner.padEnd(8)} ${group.padEnd(8)} ${String(a.size).padStart(8)} ${when} ${name}`;
}

/** Copies an existing file's content into the staging file (an upload that does not truncate). */
export async function stage(source: Promise<FileStream>, file: FileHandle, max: number): Promise<number> {
  const f = await source;
  try {
    if (f.size > max) throw new FileError('failure', `the file is larger than the ${max} bytes one upload may stage on the agent`);
    let at = 0;
    for await (const chunk of f.content as AsyncIterable<Buffer>) {
      await file.write(chunk, 0, chunk.length, at);
      at += chunk.length;
    }
    return at;
  } finally {
    f.close();
  }
}

/**
 * Reads a container file at the offsets SFTP asks for. OpenSSH asks in order (many
 * requests in flight, each after the previous), which one download serves; a jump
 * forward skips, a jump back starts the download again.
 */
export class SequentialReader {
  private file: FileStream | undefined;
  private chunks: AsyncIterator<Buffer> | undefined;
  private spare: Buffer | undefined;
  private pos = 0;

  constructor(private readonly openFile: () => Promise<FileStream>) {}

  async read(offset: number, length: number): Promise<Buffer | null> {
    if (!this.file || offset < this.pos) {
      this.close();
      this.file = await this.openFile();
      this.chunks = (this.file.content as Readable & AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      this.pos = 0;
    }
    if (offset >= this.file.size) return null;
    while (this.pos < offset) {
      const c = await this.next(offset - this.pos);
      if (!c) return null;
      this.pos += c.length;
    }
    const want = Math.min(length, this.file.size - offset);
    const parts: Buffer[] = [];
    let got = 0;
    while (got < want) {
      const c = await this.next(want - got);
      if (!c) break;
      parts.push(c);
      got += c.length;
    }
    this.pos += got;
    return got ? Buffer.concat(parts, got) : null;
  }

  /** At most `max` bytes of the next chunk; the rest is kept for the next call. */
  private async next(max: number): Promise<Buffer | undefined> {
    let c = this.spare;
    this.spare = undefined;
    if (!c) {
      const r = await this.chunks?.next();
      if (!r || r.done) return undefined;
      c = r.value;
    }
    if (c.length > max) {
      this.spare = c.subarray(max);
      c = c.subarray(0, max);
    }
    return c;
  }

  close(): void {
    this.file?.close();
    this.file = undefined;
    this.chunks = undefined;
    this.spare = undefined;
  }
}
