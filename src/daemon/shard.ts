import { createHash } from 'node:crypto';
import { UsageError } from '../core/errors.js';

/** This replica's share of the probes: shard `index` of `count` (0-based, like StatefulSet ordinals). */
export interface Shard {
  index: number;
  count: number;
}

export const NO_SHARD: Shard = { index: 0, count: 1 };

function weight(name: string, shard: number): bigint {
  return createHash('sha256').update(`${shard}\0${name}`).digest().readBigUInt64BE(0);
}

/**
 * Rendezvous (highest-random-weight) hashing: a probe belongs to the shard that gives its name the
 * highest weight. Every replica computes the same answer without talking to the others, and going
 * from n to n+1 shards moves only the probes the new shard wins (about 1/(n+1) of them), where
 * `hash % n` would move almost all of them and restart their series on another replica.
 */
export function shardOf(name: string, count: number): number {
  let best = 0;
  let bestWeight = -1n;
  for (let i = 0; i < count; i++) {
    const w = weight(name, i);
    if (w > bestWeight) {
      best = i;
      bestWeight = w;
    }
  }
  return best;
}

export function ownedBy<T extends { name: string }>(items: T[], shard: Shard): T[] {
  return shard.count === 1 ? items : items.filter((p) => shardOf(p.name, shard.count) === shard.index);
}

/**
 * Parses `i/n` (0 <= i < n), or `auto/n`, which takes i from the pod name's ordinal (`fleetprobe-2`
 * in a StatefulSet: HOSTNAME is the pod name there) so one manifest serves every replica.
 */
export function parseShard(text: string, source: string, hostname = process.env.HOSTNAME ?? ''): Shard {
  const m = /^(\d+|auto)\/(\d+)$/.exec(text.trim());
  if (!m) throw new UsageError(`${source} must be i/n (e.g. 0/3) or auto/n, got "${text}"`);
  const count = Number(m[2]);
  if (count < 1) throw new UsageError(`${source}: the shard count must be at least 1, got "${text}"`);
  let index: number;
  if (m[1] === 'auto') {
    const ord = /-(\d+)$/.exec(hostname);
    if (!ord) throw new UsageError(`${source} is "${text}" but the host name "${hostname}" does not end in -<ordinal> (as StatefulSet pod names do)`);
    index = Number(ord[1]);
  } else index = Number(m[1]);
  if (index >= count)
    throw new UsageError(`${source}: shard ${index} does not exist among ${count} shards (they are numbered 0 to ${count - 1}), got "${text}"`);
  return { index, count };
}

/** The shard from `--shard`, else the environment's FLEETPROBE_SHARD, else all probes. */
export function shardFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Shard {
  if (flag !== undefined) return parseShard(flag, '--shard', env.HOSTNAME);
  if (env.FLEETPROBE_SHARD) return parseShard(env.FLEETPROBE_SHARD, 'FLEETPROBE_SHARD', env.HOSTNAME);
  return NO_SHARD;
}
