export const ARCHES = ['linux-x64', 'linux-arm64', 'darwin-arm64'] as const;
export type Arch = (typeof ARCHES)[number];

export function isArch(value: string): value is Arch {
  return (ARCHES as readonly string[]).includes(value);
}

/** The arch of the machine this process runs on, in A4C's naming. */
export function localArch(platform: string = process.platform, cpu: string = process.arch): Arch | undefined {
  const name = `${platform === 'darwin' ? 'darwin' : platform === 'linux' ? 'linux' : platform}-${cpu}`;
  return isArch(name) ? name : undefined;
}
