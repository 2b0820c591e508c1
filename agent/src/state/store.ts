import { mkdir, open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { DesiredState } from '@a4c/proto';

/** What the agent keeps across restarts, in <stateDir>/state.json. */
export interface PersistedState {
  /** The last desired state received from the control plane. */
  desired: DesiredState | undefined;
  /** workspace id → the spec revision it was last started for (see WorkspaceSpec.spec_revision). */
  started: Record<string, number>;
}

const EMPTY: PersistedState = { desired: undefined, started: {} };

/**
 * Writes are atomic (temporary file, fsync, rename) and serialised, so a crash leaves
 * either the old state or the new one, never half of either.
 */
export class StateStore {
  private readonly file: string;
  private queue: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.file = path.join(dir, 'state.json');
  }

  async load(): Promise<PersistedState> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...EMPTY, started: {} };
      throw e;
    }
    const raw = JSON.parse(text) as { desired?: unknown; started?: Record<string, number> };
    return {
      desired: raw.desired === undefined ? undefined : DesiredState.fromJSON(raw.desired),
      started: raw.started ?? {},
    };
  }

  save(state: PersistedState): Promise<void> {
    const text = JSON.stringify({ desired: state.desired && DesiredState.toJSON(state.desired), started: state.started });
    const next = this.queue.then(() => this.write(text));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private write(text: string): Promise<void> {
    return writeFileAtomic(this.file, text);
  }
}

/** Temporary file, fsync, rename: a crash leaves the old content or the new, never half. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}
