import { createHash, randomBytes } from 'node:crypto';

/** Random identifiers and secrets (base64url) and the hashes secrets are stored under. */
export const newNamespaceId = (): string => randomBytes(16).toString('base64url');
/** 256-bit member token (43 characters). */
export const newToken = (): string => randomBytes(32).toString('base64url');
/** 128-bit invite capability (22 characters). */
export const newInvite = (): string => randomBytes(16).toString('base64url');

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
