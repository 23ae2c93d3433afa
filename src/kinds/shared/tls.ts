import { z } from 'zod';
import { readableFile } from '../../config/fields.js';
import type { ProbeContext } from '../../core/kind.js';

/**
 * The TLS block of a probe definition: what to trust (`caFile`, default the system CAs), the name
 * to verify (`serverName`, default the host dialled) and the escape hatch (`insecureSkipVerify`,
 * which warns on every run).
 */
const tlsOptions = z.strictObject({
  caFile: readableFile.optional(),
  serverName: z.string().optional(),
  insecureSkipVerify: z.boolean().default(false),
});
export type TlsBlock = z.output<typeof tlsOptions>;

/** `tls:` of a probe that talks HTTPS. */
export const tlsField = tlsOptions.default({ insecureSkipVerify: false });

/** `tls:` where the name verified is always the URL's host (the builder). */
export const tlsFieldWithoutServerName = tlsOptions.omit({ serverName: true }).default({ insecureSkipVerify: false });

/** TLS to a proxy (SNI = serverName or the proxy host): `true` for the defaults, `false` for plain TCP. */
export const proxyTlsField = z
  .union([
    // A boolean, not a literal: the loader then reports a problem inside the object by its own path.
    z.boolean(),
    tlsOptions,
  ])
  .default(true)
  .transform((v) => (v === true ? { insecureSkipVerify: false } : v));

/** The warning a run logs while certificate verification is off (`what`: " of the API"; `field`: where it is set). */
export function warnIfInsecure(ctx: ProbeContext, tls: { insecureSkipVerify?: boolean } | false, what: string, field: string): void {
  // ctx.log only when there is something to say: a run's logger is made on first use.
  if (tls && tls.insecureSkipVerify) ctx.log.warn(`TLS certificate verification${what} is disabled for this probe (${field})`);
}
