import type { SyncRole, WorkspaceView } from '../../workers/sync-api.ts';
import { h, setAttribute, setText } from './dom.ts';
import { formatBytes, formatPercent, formatRate } from './format.ts';
import { ProgressBar } from './progress-bar.ts';

const ROLE_TEXT: Record<SyncRole, string> = {
  leader: 'Syncing in this tab',
  follower: 'Synced by another tab of this browser',
  connecting: 'Connecting…',
};

/** The sync role line, the overall progress bar and the byte counters. */
export class SyncSummary {
  readonly element: HTMLElement;
  private readonly role = h('p', { class: 'sync-role', 'data-testid': 'sync-role', role: 'status' });
  private readonly overall = h('div', { class: 'overall', 'data-testid': 'overall-progress' });
  private readonly bar = new ProgressBar('Workspace sync progress', 'bar bar-large');
  private readonly overallText = h('span', { class: 'overall-text' });
  private readonly fromServer = h('span', { 'data-testid': 'bytes-from-server' });
  private readonly fromPeers = h('span', { 'data-testid': 'bytes-from-peers' });
  private readonly storage = h('p', { class: 'storage-usage', 'data-testid': 'storage-usage', hidden: true });

  constructor() {
    this.overall.append(this.bar.element, this.overallText);
    this.element = h(
      'section',
      { class: 'sync-summary', 'aria-label': 'Sync status' },
      this.role,
      this.overall,
      h('p', { class: 'counters' }, 'From the server: ', this.fromServer, ' · from peers: ', this.fromPeers),
      this.storage,
    );
  }

  update(view: WorkspaceView): void {
    setAttribute(this.role, 'data-role', view.role);
    setText(this.role, ROLE_TEXT[view.role]);

    const { doneBytes, totalBytes } = view;
    // Exposed as attributes so that scripts and tests read exact numbers rather than rounded text.
    setAttribute(this.overall, 'data-done-bytes', String(doneBytes));
    setAttribute(this.overall, 'data-total-bytes', String(totalBytes));
    const complete = doneBytes >= totalBytes;
    setAttribute(this.overall, 'data-complete', String(complete));
    this.bar.update(doneBytes, totalBytes);
    const parts = [`${formatBytes(doneBytes)} of ${formatBytes(totalBytes)}`, formatPercent(doneBytes, totalBytes)];
    if (!complete && view.bytesPerSecond > 0) parts.push(formatRate(view.bytesPerSecond));
    setText(this.overallText, complete ? `All ${formatBytes(totalBytes)} on this device` : parts.join(' · '));

    setText(this.fromServer, formatBytes(view.bytesFromServer));
    setText(this.fromPeers, formatBytes(view.bytesFromPeers));

    this.storage.hidden = view.storage === null;
    if (view.storage) {
      const { usage, quota, persisted } = view.storage;
      setAttribute(this.storage, 'data-usage', String(usage));
      setAttribute(this.storage, 'data-quota', String(quota));
      setText(
        this.storage,
        `Storage: ${formatBytes(usage)} used of ${formatBytes(quota)} this browser allows this site · ` +
          (persisted ? 'kept even when the disk runs low' : 'the browser may clear it if the disk runs low'),
      );
    }
  }
}
