/**
 * A `Content-Disposition` header naming the file in RFC 5987 form (`filename*=UTF-8''…`):
 * encodeURIComponent leaves ' ( ) * as they are, which that syntax does not allow.
 */
export function contentDisposition(kind: 'inline' | 'attachment', name: string): string {
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${kind}; filename*=UTF-8''${encoded}`;
}
