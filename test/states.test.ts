import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { SETTLED_STATUSES, WORKSPACE_STATUSES, type Workspace, type WorkspaceStatus } from '@a4c/common';
import type { Clock } from '@a4c/control-plane';
import { loadDesired, toSpec } from '@a4c/control-plane/desired';
import { COMING_UP_STATUSES, STATES, canMove } from '@a4c/control-plane/states';
import { RunState } from '@a4c/proto';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';

/** A clock the test moves by hand. */
class ManualClock implements Clock {
  offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
}

const GiB = 1024;

describe('workspace states: the one table against the SQL and the code paths (real PostgreSQL)', () => {
  let t: TestControlPlane;
  let db: pg.Pool;
  const clock = new ManualClock();
  const hostId = uniqueId('states-h');
  const user = uniqueId('states-u');
  /** One workspace per status on hostId, and one per status on no host. */
  const onHost = new Map<WorkspaceStatus, string>();

  before(async () => {
    t = await startTestControlPlane({ A4C_FAILED_QUOTA_GRACE_SECONDS: '3600', A4C_QUOTA_MAX_WORKSPACES: '100', A4C_QUOTA_MAX_DISK_GB: '10000' }, { clock });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
    // A host that never connects: only its rows matter here.
    await db.query(`INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes) VALUES ($1, 'linux-x64', 'test', $2, 64, $3)`, [
      hostId,
      256 * 1024 ** 3,
      4096 * 1024 ** 3,
    ]);
    for (const [i, status] of WORKSPACE_STATUSES.entries()) {
      const id = randomUUID();
      onHost.set(status, id);
      await insertWorkspace(id, status, hostId, `on-${i}`, 100 + i, 1 + i / 4, 2 + i);
    }
  });

  after(async () => {
    await db?.end();
    await t?.stop();
  });

  async function insertWorkspace(id: string, status: WorkspaceStatus, host: string | null, name: string, memoryMb: number, cpus: number, diskGb: number): Promise<void> {
    await db.query(
      `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, hostname, memory_mb, cpus, disk_gb, pids_limit, desired_revision)
       VALUES ($1, $2, $3, 'p', 'linux-x64', 'tiny', 'a4c-base:latest', $4, $5, $6, $7, $8, $9, 256, 1)`,
      [id, user, name, status, host, `${name}.ws.a4c.internal`, memoryMb, cpus, diskGb],
    );
  }

  /** What the table says the host's reserved_* columns hold, summed over its workspaces. */
  async function expectReservationsAsTheTableSays(): Promise<void> {
    const { rows } = await db.query<{ status: WorkspaceStatus; memory_mb: number; cpus: number; disk_gb: number }>(
      'SELECT status, memory_mb, cpus, disk_gb FROM workspaces WHERE host_id = $1',
      [hostId],
    );
    const want = { mem: 0, mcpu: 0, disk: 0, n: 0 };
    for (const r of rows) {
      const s = STATES[r.status];
      if (s.reservesCompute) {
        want.mem += r.memory_mb;
        want.mcpu += Math.round(r.cpus * 1000);
      }
      if (s.reservesDisk) want.disk += Math.round(r.disk_gb * GiB);
      if (s.reservesCompute || s.reservesDisk) want.n += 1;
    }
    const { rows: h } = await db.query<{ mem: string; mcpu: string; disk: string; n: number }>(
      'SELECT reserved_memory_mb AS mem, reserved_millicpus AS mcpu, reserved_disk_mb AS disk, reserved_workspaces AS n FROM hosts WHERE id = $1',
      [hostId],
    );
    const got = h[0] as { mem: string; mcpu: string; disk: string; n: number };
    expect({ mem: Number(got.mem), mcpu: Number(got.mcpu), disk: Number(got.disk), n: Number(got.n) }, JSON.stringify(rows.map((r) => r.status))).to.deep.equal(want);
  }

  it('the reservation functions of the SQL say for every status what the table says', async () => {
    for (const status of WORKSPACE_STATUSES) {
      const { rows } = await db.query<{ c: boolean; d: boolean; any: boolean; c_no_host: boolean; d_no_host: boolean }>(
        `SELECT a4c_reserves_compute($1, 'h') AS c, a4c_reserves_disk($1, 'h') AS d, a4c_reserves($1, 'h') AS any,
                a4c_reserves_compute($1, NULL) AS c_no_host, a4c_reserves_disk($1, NULL) AS d_no_host`,
        [status],
      );
      const r = rows[0];
      const s = STATES[status];
      expect(r, status).to.deep.equal({ c: s.reservesCompute, d: s.reservesDisk, any: s.reservesCompute || s.reservesDisk, c_no_host: false, d_no_host: false });
    }
    // The decisions the issue asks for, spelled out.
    expect(STATES.STOPPED).to.include({ reservesCompute: false, reservesDisk: true, desired: 'stopped' });
    expect(STATES.LOST).to.include({ reservesCompute: false, reservesDisk: false, desired: null, quota: 'free', settled: true });
    expect(STATES.FAILED.quota).to.equal('grace');
  });

  it('the reservation trigger keeps the host exactly at the sums the table gives, through every allowed transition', async () => {
    await expectReservationsAsTheTableSays();
    let moves = 0;
    for (const from of WORKSPACE_STATUSES) {
      for (const to of STATES[from].next) {
        const id = onHost.get(from) as string;
        await db.query('UPDATE workspaces SET status = $2 WHERE id = $1', [id, to]);
        await expectReservationsAsTheTableSays();
        await db.query('UPDATE workspaces SET status = $2 WHERE id = $1', [id, from]);
        await expectReservationsAsTheTableSays();
        moves++;
      }
    }
    expect(moves).to.be.greaterThan(20);
    // A resize and a move to no host keep the sums exact too.
    await db.query('UPDATE workspaces SET memory_mb = memory_mb + 1, disk_gb = disk_gb + 1 WHERE id = $1', [onHost.get('STOPPED')]);
    await expectReservationsAsTheTableSays();
  });

  it('the desired set the host is sent holds exactly the statuses the table puts there, to run or to stay stopped as it says', async () => {
    const { rows } = await loadDesired(db, hostId);
    const got = rows.map((r) => r.status).sort();
    const want = WORKSPACE_STATUSES.filter((s) => STATES[s].desired !== null).sort();
    expect(got).to.deep.equal(want);
    for (const r of rows) {
      const spec = toSpec(r);
      expect(spec.runState, r.status).to.equal(STATES[r.status].desired === 'stopped' ? RunState.RUN_STATE_STOPPED : RunState.RUN_STATE_RUNNING);
    }
  });

  it("a workspace's hostLost says its host matters exactly for the statuses the table marks as changing when the host is lost", async () => {
    // The host never connected: every workspace whose fate depends on it is on a lost host.
    for (const status of WORKSPACE_STATUSES) {
      const w = await t.api.workspace(onHost.get(status) as string);
      expect(w.hostLost, status).to.equal(STATES[status].onHostLost !== null);
    }
  });

  it('quotas count the statuses the table counts; a FAILED workspace stops counting after the grace (controlled clock)', async () => {
    const counted = (failedToo: boolean) => WORKSPACE_STATUSES.filter((s) => STATES[s].quota === 'counts' || (failedToo && STATES[s].quota === 'grace'));
    const diskOf = (statuses: WorkspaceStatus[]) => statuses.reduce((sum, s) => sum + 2 + WORKSPACE_STATUSES.indexOf(s), 0);
    const usage = async () => (await t.api.call<{ usage: { workspaces: number; diskGb: number; concurrentBuilds: number } }>('GET', `/v1/users/${user}/quota`)).body.usage;
    // The trigger test above resized the STOPPED one by 1 GB.
    expect(await usage()).to.deep.equal({ workspaces: counted(true).length, diskGb: diskOf(counted(true)) + 1, concurrentBuilds: 0 });
    clock.offsetMs = 3601 * 1000;
    expect(await usage()).to.deep.equal({ workspaces: counted(false).length, diskGb: diskOf(counted(false)) + 1, concurrentBuilds: 0 });
    clock.offsetMs = 0;
  });

  it('the table agrees with itself and with the shared lists: settled statuses, sweeps, transitions', () => {
    expect(Object.keys(STATES).sort()).to.deep.equal([...WORKSPACE_STATUSES].sort());
    expect(WORKSPACE_STATUSES.filter((s) => STATES[s].settled).sort()).to.deep.equal([...SETTLED_STATUSES].sort());
    expect(COMING_UP_STATUSES).to.deep.equal(['CREATING', 'STARTING']);
    for (const s of WORKSPACE_STATUSES) {
      const lost = STATES[s].onHostLost;
      if (lost) expect(canMove(s, lost), `${s} → ${lost} on a lost host`).to.equal(true);
      // Whatever is in the desired set holds its disk; nothing reserves without a host to be on.
      if (STATES[s].desired) expect(STATES[s].reservesDisk, s).to.equal(true);
    }
    expect(STATES.DELETED.next).to.deep.equal([]);
  });

  it('the code refuses a transition the table does not allow: a LOST workspace cannot be started or stopped, only retried or deleted', async () => {
    const lost = onHost.get('LOST') as string;
    for (const action of ['start', 'stop']) {
      const r = await t.api.call<{ error: string; suggestion: string }>('POST', `/v1/workspaces/${lost}/${action}`);
      expect(r.status, action).to.equal(409);
      expect(r.body.suggestion).to.match(/retry/);
    }
    const del = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${lost}`);
    expect(del.status).to.equal(202);
    expect(del.body.status).to.equal('DELETED');
  });
});
