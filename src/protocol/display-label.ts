import { ValidationError } from './errors.ts';

/** How long a name shown to other people may be (a relay peer label, a commit's device label). */
export const MAX_DISPLAY_LABEL_LENGTH = 40;

// C0/C1 controls, line/paragraph separators and bidi embeddings, overrides and isolates:
// a label is shown to other people, so it must not break lines or reorder the text around it.
const LABEL_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** A display name: NFC, trimmed, 1 to 40 characters, no control or bidi-control characters. */
export function parseDisplayLabel(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string');
  // Bound the work before normalising: NFC never grows a string past 3x (and trimming shrinks it).
  if (value.length > MAX_DISPLAY_LABEL_LENGTH * 8) throw new ValidationError(field, `must be at most ${MAX_DISPLAY_LABEL_LENGTH} characters`);
  const label = value.normalize('NFC').trim();
  if (label.length === 0) throw new ValidationError(field, 'must not be empty');
  if ([...label].length > MAX_DISPLAY_LABEL_LENGTH) throw new ValidationError(field, `must be at most ${MAX_DISPLAY_LABEL_LENGTH} characters`);
  if (LABEL_FORBIDDEN.test(label)) throw new ValidationError(field, 'must not contain control characters');
  return label;
}
