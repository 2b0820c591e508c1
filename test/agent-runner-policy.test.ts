import { expect } from 'chai';
import { isTransientDockerError, LatestWinsQueue, RestartTracker, retryTransient, type Clock, type RestartPolicy } from '@a4c/agent';
import { FakeClock, flush } from './support/fake-clock.js';

/** An error shaped like dockerode's for an engine answer with this HTTP status. */
function engineError(statusCode: number, message: string): Error {
  return Object.assign(new Error(`(HTTP code ${statusCode}) unexpected - ${message} `), { statusCode, json: { message } });
}

describe('agent restart tracker and transient-error retries, on a fake clock (pure logic)', () => {
  const policy: RestartPolicy = { maxRestarts: 2, backoffMs: 1000, windowMs: 600_000 };

  describe('restart tracker', () => {
    it('restarts with doubling delays, counts one exit once, then fails when the restarts are used up', async () => {
      const clock = new FakeClock();
      const t = new RestartTracker(policy, clock);
      expect(t.exited('exit-1')).to.deep.equal({ kind: 'wait', newExit: true, restart: 1, delayMs: 1000, waitMs: 1000 });
      await clock.advance(400);
      expect(t.exited('exit-1'), 'the same exit seen again').to.deep.equal({ kind: 'wait', newExit: false, restart: 1, delayMs: 1000, waitMs: 600 });
      await clock.advance(600);
      expect(t.exited('exit-1')).to.deep.equal({ kind: 'restart', newExit: false, restart: 1, delayMs: 1000 });
      t.restarting();
      expect(t.used).to.equal(1);
      await clock.advance(5000);
      expect(t.exited('exit-2'), 'the second exit waits twice as long').to.deep.equal({ kind: 'wait', newExit: true, restart: 2, delayMs: 2000, waitMs: 2000 });
      await clock.advance(2000);
      expect(t.exited('exit-2').kind).to.equal('restart');
      t.restarting();
      await clock.advance(100);
      expect(t.exited('exit-3')).to.deep.equal({ kind: 'fail', newExit: true, used: 2 });
      expect(t.exited('exit-3'), 'reported once as new').to.deep.equal({ kind: 'fail', newExit: false, used: 2 });
    });

    it('a restart that fails to start counts, and the next try waits the next delay', async () => {
      const clock = new FakeClock();
      const t = new RestartTracker(policy, clock);
      t.exited('exit-1');
      await clock.advance(1000);
      expect(t.exited('exit-1').kind).to.equal('restart');
      t.restarting(); // ...and the engine refused to start it: FinishedAt stays the same
      expect(t.exited('exit-1')).to.deep.equal({ kind: 'wait', newExit: false, restart: 2, delayMs: 2000, waitMs: 2000 });
      await clock.advance(2000);
      expect(t.exited('exit-1').kind).to.equal('restart');
      t.restarting();
      expect(t.exited('exit-1')).to.deep.equal({ kind: 'fail', newExit: false, used: 2 });
    });

    it('exits further apart than the window start the count again', async () => {
      const clock = new FakeClock();
      const t = new RestartTracker(policy, clock);
      t.exited('exit-1');
      await clock.advance(1000);
      t.exited('exit-1');
      t.restarting();
      await clock.advance(600_001);
      expect(t.exited('exit-2')).to.deep.equal({ kind: 'wait', newExit: true, restart: 1, delayMs: 1000, waitMs: 1000 });
      expect(t.used).to.equal(0);
    });

    it('a fresh container forgets past exits', async () => {
      const clock = new FakeClock();
      const t = new RestartTracker({ ...policy, maxRestarts: 1 }, clock);
      t.exited('exit-1');
      await clock.advance(1000);
      t.exited('exit-1');
      t.restarting();
      expect(t.exited('exit-2').kind).to.equal('fail');
      t.reset();
      expect(t.exited('exit-3')).to.deep.equal({ kind: 'wait', newExit: true, restart: 1, delayMs: 1000, waitMs: 1000 });
    });
  });

  describe('transient Docker errors', () => {
    it('tells an engine that is busy or slow from a request that fails the same way every time', () => {
      const transient = [
        engineError(503, 'engine busy'),
        engineError(500, 'context deadline exceeded'),
        engineError(502, 'Bad Gateway'),
        Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
        Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }),
        Object.assign(new Error('connect ECONNREFUSED /run/docker.sock'), { code: 'ECONNREFUSED' }),
      ];
      const permanent = [
        engineError(404, 'No such image: a4c-missing:latest'),
        engineError(409, 'Conflict. The container name "/ws-1" is already in use'),
        engineError(400, 'invalid reference format'),
        engineError(500, 'No such image: a4c-missing:latest'),
        engineError(500, 'failed to create shim task: OCI runtime create failed: exec: "/no/such/program": no such file or directory'),
        engineError(500, 'unable to find user nosuchuser: no matching entries in passwd file'),
        new Error('refusing to create a workspace container without a memory limit (memoryBytes=0)'),
      ];
      for (const e of transient) expect(isTransientDockerError(e), e.message).to.equal(true);
      for (const e of permanent) expect(isTransientDockerError(e), e.message).to.equal(false);
    });

    it('retries a transient error after doubling delays on the clock, and returns the result', async () => {
      const clock = new FakeClock();
      let calls = 0;
      const notices: { attempt: number; delayMs: number }[] = [];
      let result: string | undefined;
      const p = retryTransient(
        async () => {
          calls++;
          if (calls <= 2) throw engineError(503, 'engine busy');
          return 'container-id';
        },
        { attempts: 4, backoffMs: 100 },
        clock,
        (n) => notices.push({ attempt: n.attempt, delayMs: n.delayMs }),
      ).then((r) => (result = r));
      await flush();
      expect(calls).to.equal(1);
      expect(clock.pending()).to.deep.equal([100]);
      await clock.advance(99);
      expect(calls, 'not before the delay').to.equal(1);
      await clock.advance(1);
      expect(calls).to.equal(2);
      expect(clock.pending()).to.deep.equal([200]);
      await clock.advance(200);
      await p;
      expect(calls).to.equal(3);
      expect(result).to.equal('container-id');
      expect(notices).to.deep.equal([
        { attempt: 1, delayMs: 100 },
        { attempt: 2, delayMs: 200 },
      ]);
    });

    it('gives up after the bounded number of tries with the last error', async () => {
      const clock = new FakeClock();
      let calls = 0;
      let retries = 0;
      let failure: Error | undefined;
      const p = retryTransient(
        async () => {
          calls++;
          throw engineError(503, `engine busy ${calls}`);
        },
        { attempts: 3, backoffMs: 50 },
        clock,
        () => retries++,
      ).catch((e: Error) => (failure = e));
      await clock.advance(50 + 100);
      await p;
      expect(calls).to.equal(3);
      expect(retries).to.equal(2);
      expect(failure?.message).to.contain('engine busy 3');
      expect(clock.pending()).to.deep.equal([]);
    });

    it('does not retry a real failure', async () => {
      const clock = new FakeClock();
      let calls = 0;
      const err = await retryTransient(
        async () => {
          calls++;
          throw engineError(404, 'No such image: a4c-missing:latest');
        },
        { attempts: 5, backoffMs: 50 },
        clock,
        () => expect.fail('no retry'),
      ).catch((e: Error) => e);
      expect(calls).to.equal(1);
      expect((err as Error).message).to.contain('No such image');
    });

    it('a wait for a retry ends at once when the work is no longer wanted', async () => {
      const clock = new FakeClock();
      let calls = 0;
      const abort = new AbortController();
      const p = retryTransient(
        async () => {
          calls++;
          throw engineError(503, 'engine busy');
        },
        { attempts: 5, backoffMs: 1000 },
        clock,
        () => undefined,
        abort.signal,
      ).catch((e: Error) => e);
      await flush();
      abort.abort(new Error('stopped meanwhile'));
      expect(((await p) as Error).message).to.equal('stopped meanwhile');
      expect(clock.pending(), 'its timer cancelled').to.deep.equal([]);
      expect(calls).to.equal(1);
    });
  });

  describe('a runner queue', () => {
    /** Records its work; work on "create" blocks until released. */
    class Recorder extends LatestWinsQueue<string> {
      readonly done: string[] = [];
      readonly aborted: string[] = [];
      release: (() => void) | undefined;
      constructor(clock: Clock) {
        super(clock);
      }
      protected keyOf(input: string | undefined): string {
        return input ?? '';
      }
      protected async work(input: string, signal: AbortSignal): Promise<void> {
        if (input === 'create') {
          await new Promise<void>((r) => (this.release = r));
          if (signal.aborted) this.aborted.push(input);
        }
        this.done.push(input);
      }
      protected failed(): void {}
      protected settled(): void {}
      isSettledOn(key: string): boolean {
        return this.settledOn(key);
      }
    }

    it('works on the latest input only: a runner busy creating gets the last order next, not a backlog', async () => {
      const q = new Recorder(new FakeClock());
      q.update('create');
      await flush();
      q.update('stop');
      q.update('start');
      q.update('remove');
      expect(q.busy).to.equal(true);
      q.release?.();
      await q.idle();
      expect(q.done).to.deep.equal(['create', 'remove']);
      expect(q.aborted, 'the work in hand was told it is superseded').to.deep.equal(['create']);
      expect(q.isSettledOn('remove')).to.equal(true);
    });

    it('runs an exclusive task between inputs, then works on the latest input again', async () => {
      const q = new Recorder(new FakeClock());
      q.update('start');
      await q.idle();
      const out = await q.exclusive(async () => {
        q.done.push('exclusive');
        return 42;
      });
      await q.idle();
      expect(out).to.equal(42);
      expect(q.done).to.deep.equal(['start', 'exclusive', 'start']);
    });
  });
});
