/** 1536 → "1.5 KiB": sizes as people read them in events, errors and the CLI. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/**
 * A certificate serial as A4C shows and stores it everywhere (API, agent status, the
 * revocation list): lowercase hex without leading zeros, as X509Certificate gives it
 * with them for about one serial in sixteen.
 */
export const normalizeSerial = (s: string): string => s.toLowerCase().replace(/^0+(?=.)/, '');
