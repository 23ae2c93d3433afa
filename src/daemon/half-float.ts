/**
 * IEEE 754 half precision (binary16), for the run history's durations: 2 bytes instead of 8, with
 * 11 significant bits (relative error at most 2^-11, about 0.05%: 41.23 ms is kept as 41.22 ms)
 * and a range of 60 ns to 18 h in seconds. Node 20 has no Float16Array, hence these few lines.
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The largest finite half (65504): longer durations are kept as this rather than as Infinity. */
const MAX_FINITE = 0x7bff;

/** The binary16 bits nearest to `value` (a non-negative number of seconds). */
export function toHalf(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  let mantissa = bits & 0x7fffff;
  if (Number.isNaN(value)) return 0x7e00;
  if (exponent >= 0x1f) return sign | MAX_FINITE;
  if (exponent <= 0) {
    // Subnormal: shift the implicit leading 1 in; below half the smallest subnormal is 0.
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - exponent;
    return sign | ((mantissa >> shift) + ((mantissa >> (shift - 1)) & 1));
  }
  // Rounding up may carry into the exponent, which is still the nearest half (or the largest).
  const half = ((exponent << 10) | (mantissa >> 13)) + ((mantissa >> 12) & 1);
  return sign | Math.min(half, MAX_FINITE);
}

export function fromHalf(half: number): number {
  const exponent = (half >> 10) & 0x1f;
  const mantissa = half & 0x3ff;
  const sign = half & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
