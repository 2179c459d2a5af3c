import { inlineTypeFor } from '../protocol/served-types.ts';
import { baseName } from './format.ts';

// Long enough for a download or a new tab to read the blob, short enough not to pin memory.
const REVOKE_AFTER_MS = 120_000;

function revokeLater(url: string): void {
  setTimeout(() => URL.revokeObjectURL(url), REVOKE_AFTER_MS);
}

/**
 * A blob: URL runs with this page's origin, so a teammate's HTML or SVG opened inline could
 * script this origin. Only types that cannot run script are shown inline; the rest download
 * (src/protocol/served-types.ts).
 */
export { inlineTypeFor };

/**
 * Opens the tab synchronously, while the click still counts as a user gesture, and points
 * it at the blob once the worker has assembled it.
 */
export async function openBlobInNewTab(path: string, loadBlob: () => Promise<Blob>): Promise<void> {
  const tab = window.open('about:blank', '_blank');
  try {
    const blob = await loadBlob();
    const typed = new Blob([blob], { type: inlineTypeFor(path) });
    const url = URL.createObjectURL(typed);
    if (tab) {
      tab.opener = null;
      tab.location.href = url;
    } else {
      window.open(url, '_blank', 'noopener');
    }
    revokeLater(url);
  } catch (error) {
    tab?.close();
    throw error;
  }
}

export function saveBlob(path: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = baseName(path);
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  revokeLater(url);
}
