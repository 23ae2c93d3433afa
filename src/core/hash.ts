import { createHash } from 'node:crypto';

/** A stable fraction in [0, 1) from a string: same name, same place in the interval, on every replica. */
export function hashFraction(text: string): number {
  const h = createHash('sha256').update(text).digest();
  return h.readUInt32BE(0) / 2 ** 32;
}
