import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ProbeError } from '../../src/core/errors.js';
import type { ProbeContext, ProbeKind, ProbeSpec } from '../../src/core/kind.js';
import { REDACTED, Secret } from '../../src/core/redact.js';
import { isReason } from '../../src/core/reasons.js';
import { boundMessage, OUTPUT_TAIL_LINE_CHARS, OUTPUT_TAIL_LINES, runProbe } from '../../src/core/run.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = () => new Promise<never>(() => {});

function spec(over: Partial<ProbeSpec> = {}): ProbeSpec {
  return {
    name: 'unit-probe',
    kind: 'fake',
    intervalMs: 60_000,
    timeoutMs: 5_000,
    labels: { team: 'core' },
    source: { file: 'test.yaml', line: 3 },
    config: {},
    digest: 'd',
    ...over,
  };
}

function kind(run: (ctx: ProbeContext) => Promise<void>, phases: readonly string[] = ['a', 'b', 'c']): ProbeKind {
  return { kind: 'fake', description: 'a fake kind for unit tests', phases, reasons: [], schema: z.object({}), run: (ctx) => run(ctx) };
}

/** A kind that throws `err` inside phase 'b'. */
function throwingIn(err: unknown): ProbeKind {
  return kind(async (ctx) => {
    await ctx.phase('a', () => {});
    await ctx.phase('b', async () => {
      throw err;
    });
  });
}

function coded(code: string, message = `failed with ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

describe('runProbe', () => {
  it("keeps the tail of the target's output with the result: its last lines, cleaned, redacted and cut; no transient lines", async () => {
    const secret = new Secret('tail-secret-4f1c', 'env:T');
    const k = kind(async (ctx) => {
      await ctx.phase('a', () => {
        for (let i = 1; i <= 30; i++) ctx.progress(`line ${i}`);
        ctx.progress('50% \u001b[32m=====\u001b[0m', { transient: true });
        ctx.progress(`\u001b[31mtoken ${secret.reveal()}\u001b[0m\nlong ${'x'.repeat(1000)}`);
      });
      throw new ProbeError('build_failed', 'the build failed');
    });
    const r = await runProbe(spec(), k, { log });
    expect(r.output).toHaveLength(OUTPUT_TAIL_LINES);
    expect(r.output!.slice(0, 2)).toEqual(['line 13', 'line 14']);
    expect(r.output!.at(-2)).toBe(`token ${REDACTED}`);
    expect(r.output!.at(-1)).toHaveLength(OUTPUT_TAIL_LINE_CHARS);
    expect(r.output!.at(-1)!.endsWith('…')).toBe(true);
    expect(
      (
        await runProbe(
          spec(),
          kind(async () => {}),
          { log },
        )
      ).output,
    ).toBeUndefined();
  });

  it('a phase the kind did not declare fails the run under test (it would have no series), naming the kind and its phases', async () => {
    const r = await runProbe(
      spec(),
      kind(async (ctx) => {
        await ctx.phase('a', () => {});
        await ctx.phase('typo', () => {});
      }),
      { log },
    );
    expect(r).toMatchObject({ success: false, reason: 'internal', phase: 'a' });
    expect(r.message).toContain('phase "typo" is not declared by kind fake (phases: a, b, c): a bug in fleetprobe');
  });

  it('a pass is a success, with phases recorded in order with their durations', async () => {
    const k = kind(async (ctx) => {
      await ctx.phase('a', () => sleep(30));
      await ctx.phase('b', () => sleep(10));
      ctx.observe('release_id', 'r42');
      ctx.observe('ssl_earliest_cert_expiry', 1_900_000_000);
    });
    const before = Date.now();
    const r = await runProbe(spec(), k, { log });
    expect(r).toMatchObject({
      name: 'unit-probe',
      kind: 'fake',
      success: true,
      aborted: false,
      reason: null,
      phase: null,
      message: null,
      labels: { team: 'core' },
      observations: { release_id: 'r42', ssl_earliest_cert_expiry: 1_900_000_000 },
    });
    expect(Object.keys(r.phases)).toEqual(['a', 'b']);
    expect(r.phases.a).toBeGreaterThanOrEqual(0.025);
    expect(r.phases.b).toBeGreaterThanOrEqual(0.005);
    expect(r.phases.a).toBeLessThan(2);
    expect(r.durationSeconds).toBeGreaterThanOrEqual(r.phases.a + r.phases.b - 0.001);
    expect(r.startedAt).toBeGreaterThanOrEqual(before);
    expect(r.startedAt).toBeLessThanOrEqual(Date.now());
  });

  it('adds the durations of a phase entered twice', async () => {
    const k = kind(async (ctx) => {
      await ctx.phase('a', () => sleep(15));
      await ctx.phase('b', () => {});
      await ctx.phase('a', () => sleep(15));
    });
    const r = await runProbe(spec(), k, { log });
    expect(r.success).toBe(true);
    expect(Object.keys(r.phases)).toEqual(['a', 'b']);
    expect(r.phases.a).toBeGreaterThanOrEqual(0.025);
  });

  it('gives the kind a deadline, the remaining time and a live signal', async () => {
    let seen: { deadline: number; remaining: number; aborted: boolean } | undefined;
    let signal: AbortSignal | undefined;
    const before = Date.now();
    const r = await runProbe(
      spec({ timeoutMs: 3000 }),
      kind(async (ctx) => {
        seen = { deadline: ctx.deadline, remaining: ctx.remainingMs(), aborted: ctx.signal.aborted };
        signal = ctx.signal;
      }),
      { log },
    );
    expect(r.success).toBe(true);
    expect(seen!.deadline).toBeGreaterThanOrEqual(before + 3000);
    expect(seen!.deadline).toBeLessThanOrEqual(Date.now() + 3000);
    expect(seen!.remaining).toBeGreaterThan(2000);
    expect(seen!.remaining).toBeLessThanOrEqual(3000);
    expect(seen!.aborted).toBe(false);
    // Once the run is over its signal is aborted, so anything the kind left behind is torn down.
    expect(signal!.aborted).toBe(true);
  });

  it('a ProbeError thrown in phase b fails with its reason, in phase b', async () => {
    const r = await runProbe(spec(), throwingIn(new ProbeError('assertion', 'expected status 200, got 503')), { log });
    expect(r).toMatchObject({ success: false, aborted: false, reason: 'assertion', phase: 'b' });
    expect(r.message).toContain('expected status 200, got 503');
    expect(Object.keys(r.phases)).toEqual(['a', 'b']);
    expect(r.phases.b).toBeGreaterThanOrEqual(0);
  });

  it('a ProbeError anywhere in the chain wins over error codes', async () => {
    const inner = new ProbeError('device_offline', 'device is offline', { cause: coded('ECONNREFUSED') });
    const r = await runProbe(spec(), throwingIn(new Error('request failed', { cause: inner })), { log });
    expect(r.reason).toBe('device_offline');
  });

  it('a kind that never resolves and ignores its signal ends at the timeout, in the phase in progress', async () => {
    let aborted = false;
    const k = kind(async (ctx) => {
      ctx.signal.addEventListener('abort', () => (aborted = true));
      await ctx.phase('a', () => sleep(5));
      await ctx.phase('b', never); // ignores the signal entirely
    });
    const t0 = performance.now();
    const r = await runProbe(spec({ timeoutMs: 100 }), k, { log });
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(95);
    expect(elapsed).toBeLessThan(1000);
    expect(r).toMatchObject({ success: false, aborted: false, reason: 'timeout', phase: 'b' });
    expect(r.message).toContain('b');
    expect(r.message).toContain('100ms');
    expect(r.message).toMatch(/\bb\b.*100ms/);
    expect(aborted).toBe(true);
    expect(Object.keys(r.phases)).toEqual(['a', 'b']);
    // The time until the deadline is charged to the phase that was running.
    expect(r.phases.b).toBeGreaterThanOrEqual(0.05);
    expect(r.phases.b).toBeLessThan(1);
    expect(r.durationSeconds).toBeGreaterThanOrEqual(0.095);
  });

  it('a kind that honours its signal at the timeout also ends as timeout, not as whatever it threw', async () => {
    const k = kind(async (ctx) => {
      await ctx.phase('a', () => {});
      await ctx.phase(
        'c',
        () =>
          new Promise<void>((_, reject) => {
            ctx.signal.addEventListener('abort', () => reject(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })));
          }),
      );
    });
    const r = await runProbe(spec({ timeoutMs: 100 }), k, { log });
    expect(r).toMatchObject({ reason: 'timeout', phase: 'c' });
  });

  it('a kind that never resolves outside any phase times out with the first declared phase', async () => {
    const r = await runProbe(spec({ timeoutMs: 100 }), kind(never, ['connect', 'request']), { log });
    expect(r).toMatchObject({ success: false, reason: 'timeout', phase: 'connect' });
  });

  it('the shutdown signal aborts the run: aborted, no reason', async () => {
    const shutdown = new AbortController();
    const k = kind(async (ctx) => {
      await ctx.phase('a', () => {});
      await ctx.phase('b', never);
    });
    setTimeout(() => shutdown.abort(), 20);
    const t0 = performance.now();
    const r = await runProbe(spec({ timeoutMs: 10_000 }), k, { log, shutdown: shutdown.signal });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(r).toMatchObject({ success: false, aborted: true, reason: null, phase: 'b' });
  });

  it('a shutdown signal aborted before the run starts aborts it at once', async () => {
    const shutdown = new AbortController();
    shutdown.abort();
    let entered = false;
    const k = kind(async (ctx) => {
      await ctx.phase('a', async () => {
        entered = true;
      });
    });
    const r = await runProbe(spec(), k, { log, shutdown: shutdown.signal });
    expect(r).toMatchObject({ success: false, aborted: true, reason: null });
    expect(entered).toBe(false);
  });

  it('does not keep a listener on the shutdown signal after the run', async () => {
    const shutdown = new AbortController();
    for (let i = 0; i < 20; i++)
      await runProbe(
        spec(),
        kind(async () => {}),
        { log, shutdown: shutdown.signal },
      );
    // Aborting now must not affect anything (and Node would warn about leaked listeners past 10).
    shutdown.abort();
    const r = await runProbe(
      spec(),
      kind(async () => {}),
      { log },
    );
    expect(r.success).toBe(true);
  });

  it('an unknown Error is internal', async () => {
    const r = await runProbe(spec(), throwingIn(new TypeError("Cannot read properties of undefined (reading 'x')")), { log });
    expect(r).toMatchObject({ success: false, reason: 'internal', phase: 'b' });
    expect(r.message).toContain('Cannot read properties of undefined');
  });

  it('a non-Error thrown value is internal too, and still has a message', async () => {
    const r = await runProbe(spec(), throwingIn('a string'), { log });
    expect(r.reason).toBe('internal');
    expect(r.message).toBe('a string');
    const r2 = await runProbe(spec(), throwingIn(undefined), { log });
    expect(r2.reason).toBe('internal');
    expect(r2.message).toBeTruthy();
  });

  it('a kind that throws synchronously fails like one that rejects', async () => {
    const k: ProbeKind = {
      ...kind(async () => {}),
      run: () => {
        throw coded('ENOTFOUND', 'getaddrinfo ENOTFOUND example.invalid');
      },
    };
    const r = await runProbe(spec(), k, { log });
    expect(r).toMatchObject({ success: false, reason: 'dns', phase: 'a' });
  });

  const codes: Array<[string, string]> = [
    ['ENOTFOUND', 'dns'],
    ['ECONNREFUSED', 'connect'],
    ['CERT_HAS_EXPIRED', 'tls'],
    ['ETIMEDOUT', 'timeout'],
    ['UND_ERR_HEADERS_TIMEOUT', 'timeout'],
  ];
  for (const [code, reason] of codes) {
    it(`${code} is ${reason}: bare, wrapped in cause, and inside an AggregateError`, async () => {
      const bare = coded(code);
      const wrapped = new TypeError('fetch failed', { cause: coded(code) });
      const deep = new Error('outer', { cause: new Error('middle', { cause: coded(code) }) });
      const aggregate = new AggregateError([new Error('first attempt failed'), coded(code)], 'all attempts failed');
      const wrappedAggregate = new TypeError('fetch failed', { cause: new AggregateError([coded(code)]) });
      for (const err of [bare, wrapped, deep, aggregate, wrappedAggregate]) {
        const r = await runProbe(spec(), throwingIn(err), { log });
        expect(r.reason, `${code} in ${(err as Error).message}`).toBe(reason);
        expect(r.phase).toBe('b');
        expect(r.message).toContain(code);
      }
    });
  }

  it('messages are one line', async () => {
    const err = new Error('line one\nline two\r\nline three\rline four\n\n   indented');
    const r = await runProbe(spec(), throwingIn(new ProbeError('assertion', err.message)), { log });
    expect(r.message).not.toMatch(/[\r\n\u2028\u2029]/);
    expect(r.message).toContain('line one');
    expect(r.message).toContain('line four');
    expect(r.message).toContain('indented');
  });

  it('messages are bounded to 512 characters', async () => {
    const r = await runProbe(spec(), throwingIn(new ProbeError('assertion', 'x'.repeat(5000))), { log });
    expect(r.message!.length).toBeLessThanOrEqual(512);
    expect(r.message!.length).toBeGreaterThan(400);
    expect(boundMessage('y'.repeat(512))).toBe('y'.repeat(512));
    expect(boundMessage('y'.repeat(513)).length).toBe(512);
  });

  it('bounding never splits a surrogate pair into a lone half', () => {
    const text = 'a'.repeat(510) + '😀😀😀';
    const out = boundMessage(text);
    expect(out.length).toBeLessThanOrEqual(512);
    expect(out).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });

  it('secrets in error messages are redacted, also in base64, and across a cause chain', async () => {
    new Secret('canary-s3cr3t-value', 'test');
    const b64 = Buffer.from('canary-s3cr3t-value').toString('base64');
    const err = new Error(`request to https://api.example/?token=canary-s3cr3t-value failed`, {
      cause: new Error(`server echoed Authorization: Basic ${b64}`),
    });
    const r = await runProbe(spec(), throwingIn(err), { log });
    expect(r.reason).toBe('internal');
    expect(r.message).not.toContain('canary-s3cr3t-value');
    expect(r.message).not.toContain(b64);
    expect(r.message).toContain(REDACTED);
    expect(r.message!.split(REDACTED).length - 1).toBeGreaterThanOrEqual(2);
  });

  it('a secret near the 512-character bound is redacted, not cut into a leaking prefix', async () => {
    new Secret('canary-s3cr3t-value', 'test');
    const r = await runProbe(spec(), throwingIn(new ProbeError('assertion', 'z'.repeat(500) + 'canary-s3cr3t-value')), { log });
    expect(r.message).not.toContain('canary-s3');
    expect(r.message!.length).toBeLessThanOrEqual(512);
  });

  it('every failure carries a known reason and a message', async () => {
    const errs: unknown[] = [new Error('x'), coded('EPROTO'), coded('HPE_INVALID_CONSTANT'), new ProbeError('auth', 'denied'), null];
    for (const e of errs) {
      const r = await runProbe(spec(), throwingIn(e), { log });
      expect(r.success).toBe(false);
      expect(isReason(r.reason)).toBe(true);
      expect(typeof r.message).toBe('string');
    }
  });
});
