import { describe, expect, it } from 'vitest';
import { NO_SHARD, ownedBy, parseShard, shardFrom, shardOf } from '../../src/daemon/shard.js';

const NAMES = Array.from({ length: 5000 }, (_, i) => `probe-${i}-${(i * 7919) % 1013}`);

describe('rendezvous sharding', () => {
  it('puts every probe on exactly one shard, evenly', () => {
    for (const n of [1, 2, 3, 5, 8]) {
      const shards = Array.from({ length: n }, (_, i) =>
        ownedBy(
          NAMES.map((name) => ({ name })),
          { index: i, count: n },
        ).map((p) => p.name),
      );
      const all = shards.flat();
      expect(all.length).toBe(NAMES.length);
      expect(new Set(all).size).toBe(NAMES.length);
      for (const s of shards) expect(Math.abs(s.length - NAMES.length / n)).toBeLessThan(0.1 * (NAMES.length / n));
    }
  });

  it('going from n to n+1 shards moves about 1/(n+1) of the probes, all of them to the new shard', () => {
    for (const n of [1, 2, 3, 4, 7]) {
      let moved = 0;
      for (const name of NAMES) {
        const before = shardOf(name, n);
        const after = shardOf(name, n + 1);
        if (before !== after) {
          moved++;
          expect(after).toBe(n);
        }
      }
      const expected = NAMES.length / (n + 1);
      expect(Math.abs(moved - expected)).toBeLessThan(0.1 * expected);
    }
  });

  it('is stable: the same name lands on the same shard every time', () => {
    expect(shardOf('canary-ssh', 5)).toBe(shardOf('canary-ssh', 5));
    expect(NAMES.slice(0, 50).map((n) => shardOf(n, 4))).toEqual(NAMES.slice(0, 50).map((n) => shardOf(n, 4)));
  });

  it('parses i/n, auto/n from a StatefulSet pod name, and explains bad input', () => {
    expect(parseShard('2/3', '--shard')).toEqual({ index: 2, count: 3 });
    expect(parseShard('auto/4', 'FLEETPROBE_SHARD', 'fleetprobe-eu-3')).toEqual({ index: 3, count: 4 });
    expect(() => parseShard('3/3', '--shard')).toThrow('--shard: shard 3 does not exist among 3 shards (they are numbered 0 to 2), got "3/3"');
    expect(() => parseShard('1/0', '--shard')).toThrow('--shard: the shard count must be at least 1, got "1/0"');
    expect(() => parseShard('one/two', '--shard')).toThrow('--shard must be i/n (e.g. 0/3) or auto/n, got "one/two"');
    expect(() => parseShard('auto/2', 'FLEETPROBE_SHARD', 'laptop')).toThrow(
      'FLEETPROBE_SHARD is "auto/2" but the host name "laptop" does not end in -<ordinal> (as StatefulSet pod names do)',
    );
  });

  it('takes the flag over the environment, and no shard when neither is set', () => {
    expect(shardFrom('1/2', { FLEETPROBE_SHARD: '0/5' })).toEqual({ index: 1, count: 2 });
    expect(shardFrom(undefined, { FLEETPROBE_SHARD: 'auto/3', HOSTNAME: 'fleetprobe-1' })).toEqual({ index: 1, count: 3 });
    expect(shardFrom(undefined, {})).toEqual(NO_SHARD);
  });
});
