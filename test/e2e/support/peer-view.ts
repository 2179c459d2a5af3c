import type { Page } from 'playwright-core';

/** What a page's peer list and byte counters show, read from their data-* attributes. */

export interface PeerRowView {
  peerId: string;
  label: string;
  connected: boolean;
  /** The advertised cursor, or null before an advert. */
  cursor: number | null;
  /** Verified block bytes stored from that peer (the row's data-bytes). */
  bytesReceived: number;
  /** Block bytes sent to that peer, and whether the row shows them (never for a LAN peer). */
  bytesSent: number;
  sentShown: boolean;
  /** Caught sending bad data: not asked again. */
  penalised: boolean;
}

export async function peerRows(page: Page): Promise<PeerRowView[]> {
  return page.locator('[data-testid="peer-row"]').evaluateAll((rows) =>
    rows.map((row) => {
      const cursor = row.getAttribute('data-cursor');
      return {
        peerId: row.getAttribute('data-peer-id') ?? '',
        label: row.querySelector('.peer-label')?.textContent ?? '',
        connected: row.getAttribute('data-connected') === 'true',
        cursor: cursor === null || cursor === '' ? null : Number(cursor),
        bytesReceived: Number(row.querySelector('[data-testid="peer-bytes-received"]')?.getAttribute('data-bytes') ?? 'NaN'),
        bytesSent: Number(row.querySelector('[data-testid="peer-bytes-sent"]')?.getAttribute('data-bytes') ?? 'NaN'),
        sentShown: (row.querySelector('[data-testid="peer-bytes-sent"]') as HTMLElement | null)?.hidden === false,
        penalised: row.getAttribute('data-penalised') === 'true',
      };
    }),
  );
}

/** The "from the server" and "from peers" counters as displayed (formatted text, e.g. "0 B"). */
export async function byteCounters(page: Page): Promise<{ fromServer: string; fromPeers: string }> {
  return {
    fromServer: (await page.getByTestId('bytes-from-server').textContent()) ?? '',
    fromPeers: (await page.getByTestId('bytes-from-peers').textContent()) ?? '',
  };
}

/** Waits until `predicate` holds for the page's peer rows (polled in the test process). */
export async function waitForPeerRows(
  page: Page,
  predicate: (rows: PeerRowView[]) => boolean,
  timeoutMs = 30_000,
): Promise<PeerRowView[]> {
  const deadline = Date.now() + timeoutMs;
  let rows = await peerRows(page);
  while (!predicate(rows)) {
    if (Date.now() > deadline) throw new Error(`peer rows did not reach the expected state in ${timeoutMs} ms: ${JSON.stringify(rows)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    rows = await peerRows(page);
  }
  return rows;
}

/**
 * Chromium drops a page's downloads beyond about ten a second (the download event never
 * comes), so a test that saves many files in a row spaces the saves out.
 */
export const SAVE_SPACING_MS = 150;
