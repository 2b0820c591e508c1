import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { PassThrough, Readable, Writable } from 'node:stream';
import type Docker from 'dockerode';

/** A process to run in a workspace container, as `docker exec` would. */
export interface ExecOptions {
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  /** Docker's --user; absent: the container's own user (the workspace's). */
  user?: string;
  workingDir?: string;
  env?: string[];
  cols?: number;
  rows?: number;
}

/** A running exec. Every stream honours back-pressure: a slow reader pauses the process's output at the engine. */
export interface ExecProcess {
  /** Into the process's stdin; end() closes it (EOF). */
  stdin: Writable;
  /** stdout; with a TTY, everything the terminal shows. */
  stdout: Readable;
  /** stderr; empty with a TTY. */
  stderr: Readable;
  resize(cols: number, rows: number): Promise<void>;
  /** The exit code, once the process ended and all its output was handed to stdout and stderr. */
  exit: Promise<number>;
  /**
   * Tears the exec stream down and ends the process if it still runs: the session is
   * over, so what it started must not go on eating the workspace's CPU. (The Engine API
   * has no way to kill an exec; see endExecProcess.)
   */
  close(): void;
}

/** The user's login shell: bash if the image has it (what developers expect), else busybox's sh. */
export const LOGIN_SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l'];

/** How much output is read ahead of a slow consumer before the engine is paused. */
const HIGH_WATER = 256 * 1024;

/**
 * Runs a process in a container through the Engine API (the agent's only way into a
 * container: its systemd unit forbids entering namespaces itself). The hijacked
 * connection carries stdin up and, without a TTY, Docker's multiplexed stdout/stderr
 * frames down; they are split here rather than with dockerode's demuxStream, which
 * ignores back-pressure and would buffer a fast process's output without bound.
 */
export async function startExec(docker: Docker, containerId: string, opts: ExecOptions): Promise<ExecProcess> {
  const container = docker.getContainer(containerId);
  const size: { ConsoleSize?: [number, number] } = opts.tty && opts.cols && opts.rows ? { ConsoleSize: [opts.rows, opts.cols] } : {};
  const exec: Docker.Exec = await container.exec({
    Cmd: opts.cmd,
    AttachStdin: opts.stdin,
    AttachStdout: true,
    AttachStderr: true,
    Tty: opts.tty,
    ...(opts.user ? { User: opts.user } : {}),
    ...(opts.workingDir ? { WorkingDir: opts.workingDir } : {}),
    ...(opts.env?.length ? { Env: opts.env } : {}),
    ...size,
  });
  const socket = (await exec.start({ hijack: true, stdin: opts.stdin, Tty: opts.tty, ...size })) as Duplex;
  const stdout = new PassThrough({ highWaterMark: HIGH_WATER });
  const stderr = new PassThrough({ highWaterMark: HIGH_WATER });
  if (opts.tty) {
    stderr.end();
    forward(socket, (chunk) => stdout.write(chunk), (resume) => stdout.once('drain', resume), () => stdout.end());
  } else {
    const demux = new Demultiplexer(stdout, stderr);
    forward(socket, (chunk) => demux.push(chunk), (resume) => demux.onDrain(resume), () => demux.end());
  }
  socket.on('error', (e) => {
    stdout.destroy(e);
    stderr.destroy(e);
  });

  const stdin = new Writable({
    highWaterMark: HIGH_WATER,
    write(chunk: Buffer, _enc, cb) {
      if (socket.destroyed) return cb();
      // The socket's own buffer absorbs a chunk; wait only when it is full.
      if (socket.write(chunk)) return cb();
      const go = () => {
        socket.off('drain', go);
        socket.off('close', go);
        cb();
      };
      socket.on('drain', go);
      socket.on('close', go);
    },
    final(cb) {
      // Half-close: the engine closes the process's stdin and keeps its output flowing.
      if (!socket.destroyed) socket.end();
      cb();
    },
  });

  const outputDone = Promise.all([finished(stdout), finished(stderr)]);
  const exit = outputDone.then(async () => {
    // The engine may report the exec as running for a moment after its streams close.
    for (let i = 0; i < 50; i++) {
      const info = await exec.inspect();
      if (!info.Running) return info.ExitCode ?? -1;
      await new Promise((r) => setTimeout(r, 20));
    }
    return -1;
  });
  // Engines before API 1.42 (Debian's 20.10) ignore ConsoleSize: the terminal has no
  // size until this resize, and a program reading it first sees 0x0 (`stty size` fails).
  // So the size is set before any stdin is passed on, retried while the engine is not
  // ready for it.
  if (opts.tty && opts.cols && opts.rows) await resizeWhenReady(exec, opts.cols, opts.rows);
  return {
    stdin,
    stdout,
    stderr,
    resize: async (cols, rows) => {
      if (opts.tty) await exec.resize({ h: rows, w: cols });
    },
    exit,
    close: () => {
      socket.destroy();
      void endExecProcess(exec, containerId);
    },
  };
}

async function resizeWhenReady(exec: Docker.Exec, cols: number, rows: number): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      await exec.resize({ h: rows, w: cols });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
    }
  }
}

/** How long a process has after SIGHUP/SIGTERM before SIGKILL. */
const END_GRACE_MS = 2_000;

/**
 * Ends an exec's process that outlived its session: SIGHUP and SIGTERM (what a closed
 * terminal and a polite stop send), then SIGKILL after a grace period. The Engine API
 * reports the exec's PID in the host's PID namespace; the signal is sent only when
 * /proc says that PID belongs to this container's cgroup, so a PID from another
 * namespace or one already reused is never touched. Best effort: an exec the agent
 * cannot see this way (an engine in another PID namespace) runs to its own end, as
 * with `docker exec`.
 */
async function endExecProcess(exec: Docker.Exec, containerId: string): Promise<void> {
  const owned = async (): Promise<number | undefined> => {
    try {
      const info = await exec.inspect();
      if (!info.Running || !info.Pid) return undefined;
      const cgroup = await readFile(`/proc/${info.Pid}/cgroup`, 'utf8');
      return cgroup.includes(containerId) ? info.Pid : undefined;
    } catch {
      return undefined;
    }
  };
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  const pid = await owned();
  if (pid === undefined) return;
  signal(pid, 'SIGHUP');
  signal(pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, END_GRACE_MS).unref());
  if ((await owned()) === pid) signal(pid, 'SIGKILL');
}

/** Reads src into write(); when write() says the consumer is full, pauses src until it drains. */
function forward(src: Readable, write: (chunk: Buffer) => boolean, onDrain: (resume: () => void) => void, end: () => void): void {
  let paused = false;
  src.on('data', (chunk: Buffer) => {
    if (!write(chunk) && !paused) {
      paused = true;
      src.pause();
      onDrain(() => {
        paused = false;
        src.resume();
      });
    }
  });
  let done = false;
  const once = () => {
    if (!done) {
      done = true;
      end();
    }
  };
  src.on('end', once);
  src.on('close', once);
}

/** Resolves once everything the process wrote was handed to s (read or not). */
function finished(s: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    if (s.writableFinished || s.destroyed) return resolve();
    s.once('finish', resolve);
    s.once('close', resolve);
    s.once('error', () => resolve());
  });
}

/**
 * Splits the Engine's multiplexed stream: frames of an 8-byte header (stream type,
 * 3 zero bytes, big-endian payload length) and the payload. push() returns false
 * while either target is over its high-water mark.
 */
export class Demultiplexer {
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(
    private readonly stdout: PassThrough,
    private readonly stderr: PassThrough,
  ) {}

  push(chunk: Buffer): boolean {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let ok = true;
    while (this.pending.length >= 8) {
      const len = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + len) break;
      const type = this.pending[0];
      const payload = this.pending.subarray(8, 8 + len);
      this.pending = this.pending.subarray(8 + len);
      if (!payload.length) continue;
      ok = (type === 2 ? this.stderr : this.stdout).write(payload) && ok;
    }
    return ok && !this.stdout.writableNeedDrain && !this.stderr.writableNeedDrain;
  }

  onDrain(resume: () => void): void {
    const full = [this.stdout, this.stderr].filter((s) => s.writableNeedDrain);
    if (!full.length) return resume();
    let left = full.length;
    for (const s of full) {
      s.once('drain', () => {
        if (--left === 0) resume();
      });
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stdout.end();
    this.stderr.end();
  }
}
