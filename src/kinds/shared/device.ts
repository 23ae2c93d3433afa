import { z } from 'zod';

/**
 * A device uuid: 7 to 64 hexadecimal digits (a full uuid, or the short form of at least 7 that
 * people copy from a dashboard). Config fields and the uuids in the API's answers are checked by
 * this one rule.
 */
const DEVICE_UUID = /^[0-9a-fA-F]{7,64}$/;

export function isDeviceUuid(v: unknown): v is string {
  return typeof v === 'string' && DEVICE_UUID.test(v);
}

export const deviceUuid = z.string().regex(DEVICE_UUID, 'a device uuid is 7 to 64 hexadecimal digits');

/** A fleet's slug, `<org>/<fleet>`. */
export const fleetSlug = z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'a fleet slug is <org>/<fleet>');
