/**
 * A fleet of simulated agents until SIGINT/SIGTERM, with a status line every 5 s:
 *
 *   node bench/dist/sim-agents-cli.js --control-plane 127.0.0.1:9090 --count 100 --prefix sim
 */
import { parseArgs } from 'node:util';
import { DEFAULT_SIM_CAPACITY, SimFleet } from './sim-agents.js';

const USAGE = `usage: sim-agents-cli --control-plane HOST:PORT [--count N] [--prefix P] [--arch A]
       [--memory-gib G] [--cpus C] [--disk-gib G] [--image REF]... [--channels N]`;

const GiB = 1024 ** 3;

function num(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'control-plane': { type: 'string' },
      count: { type: 'string', default: '100' },
      prefix: { type: 'string', default: 'sim' },
      arch: { type: 'string', default: 'linux-x64' },
      'memory-gib': { type: 'string' },
      cpus: { type: 'string' },
      'disk-gib': { type: 'string' },
      image: { type: 'string', multiple: true },
      channels: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const controlPlane = values['control-plane'];
  if (!controlPlane) throw new Error(`--control-plane is required\n${USAGE}`);
  const count = num('count', values.count, 100);
  if (!Number.isInteger(count)) throw new Error('--count must be a whole number');
  const channels = values.channels === undefined ? undefined : num('channels', values.channels, 1);

  const t0 = performance.now();
  const fleet = await SimFleet.start({
    controlPlane,
    count,
    hostPrefix: values.prefix,
    arch: values.arch,
    capacity: {
      memoryBytes: Math.round(num('memory-gib', values['memory-gib'], DEFAULT_SIM_CAPACITY.memoryBytes / GiB) * GiB),
      cpus: num('cpus', values.cpus, DEFAULT_SIM_CAPACITY.cpus),
      diskBytes: Math.round(num('disk-gib', values['disk-gib'], DEFAULT_SIM_CAPACITY.diskBytes / GiB) * GiB),
    },
    ...(values.image?.length ? { images: values.image } : {}),
    ...(channels !== undefined ? { channels } : {}),
  });
  const line = () => {
    const c = fleet.counters();
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(
      `[${s}s] connected ${c.connected}/${c.hosts}  desired states ${c.desiredStates}  reports ${c.reports}  acks ${c.acks}` +
        `  heartbeats ${c.heartbeats}  running ${c.running}  stopped ${c.stopped}  reconnects ${c.reconnects}`,
    );
    if (c.connected < c.hosts) {
      for (const [e, n] of [...fleet.lastErrors()].slice(0, 3)) console.log(`  ${n} disconnected: ${e}`);
    }
  };
  fleet.waitConnected(10 * 60_000).then(
    () => console.log(`all ${count} sim agents connected in ${Math.round(performance.now() - t0)} ms`),
    (e: unknown) => console.error((e as Error).message),
  );
  const timer = setInterval(line, 5000);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    console.log(`${signal}: stopping the sim fleet`);
    line();
    fleet.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error((e as Error).message);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  console.error((e as Error).message);
  process.exit(2);
});
