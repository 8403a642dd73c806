/**
 * The one integer range check of pgfanout: message fields, settings read from the environment,
 * command-line options, operator arguments and CDK props accept an integer the same way.
 */

/** True when `value` is a number, a safe integer, from `min` to `max`. */
export function isIntegerIn(value: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

/** `text` (decimal digits, a minus sign allowed) as an integer from `min` to `max`, or undefined. */
export function parseIntegerIn(text: string, min: number, max: number = Number.MAX_SAFE_INTEGER): number | undefined {
  if (!/^-?\d+$/.test(text)) return undefined;
  const value = Number(text);
  return isIntegerIn(value, min, max) ? value : undefined;
}
