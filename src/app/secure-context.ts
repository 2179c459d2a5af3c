/** WebCrypto (block hashes) and Web Locks (one syncing tab) exist only in secure contexts. */
export function isSecureEnough(): boolean {
  return window.isSecureContext && typeof crypto !== 'undefined' && crypto.subtle !== undefined;
}
