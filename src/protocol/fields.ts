import { ValidationError } from './errors.ts';

/** Small checkers for decoded JSON; each throws ValidationError naming the field. */

export function expectRecord(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, 'must be an object');
  }
  return value as Record<string, unknown>;
}

export function expectInteger(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new ValidationError(field, 'must be an integer');
  }
  if (value < min || value > max) throw new ValidationError(field, `must be between ${min} and ${max}`);
  return value;
}

export function expectBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new ValidationError(field, 'must be a boolean');
  return value;
}

export function expectString(value: unknown, field: string, maxLength: number): string {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string');
  if (value.length > maxLength) throw new ValidationError(field, `must be at most ${maxLength} characters`);
  return value;
}

export function expectArray(value: unknown, field: string, maxLength: number): unknown[] {
  if (!Array.isArray(value)) throw new ValidationError(field, 'must be an array');
  if (value.length > maxLength) throw new ValidationError(field, `must have at most ${maxLength} items`);
  return value;
}

/** Rejects keys a message type does not define, so typos and smuggled fields fail loudly. */
export function expectOnlyKeys(record: Record<string, unknown>, field: string, allowed: readonly string[]): void {
  for (const key of Object.keys(record)) {
    if (!allowed.includes(key)) throw new ValidationError(`${field}.${key}`, 'is not a known field');
  }
}

/** Parses a decimal query-string integer strictly ("01", "1e3", " 1" are rejected). */
export function parseDecimal(text: string | null, field: string, min: number, max: number): number {
  if (text === null || !/^(0|[1-9][0-9]{0,15})$/.test(text)) {
    throw new ValidationError(field, 'must be a decimal integer');
  }
  return expectInteger(Number(text), field, min, max);
}
