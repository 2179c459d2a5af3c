import { ValidationError, parseDecimal } from '../../protocol/index.ts';

/** Query-string values: each parameter at most once, integers in plain decimal (docs/protocol.md). */

/** The single value of `name`, or null when absent; a repeated parameter is refused. */
export function queryValue(url: URL, name: string): string | null {
  const values = url.searchParams.getAll(name);
  if (values.length > 1) throw new ValidationError(name, 'must be given once');
  return values.length === 0 ? null : values[0];
}

/** A decimal integer in [min, max], or `fallback` when absent. */
export function queryInt(url: URL, name: string, fallback: number, min: number, max: number): number {
  const value = queryValue(url, name);
  return value === null ? fallback : parseDecimal(value, name, min, max);
}
