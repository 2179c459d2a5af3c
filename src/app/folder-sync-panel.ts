import type { FolderSyncView } from '../../workers/sync-api.ts';
import type { NamespaceId } from '../protocol/index.ts';
import { h, setText } from './dom.ts';
import { errorMessage } from './message-page.ts';
import type { SyncApi } from './sync-client.ts';

/** How often the panel asks the worker for folder sync's state while a folder is linked. */
const STATUS_EVERY_MS = 1000;

/**
 * "Sync to a folder…": links the workspace to a folder on this computer (File System Access
 * API: one read-write prompt), restores access on a later visit with one click (browsers ask
 * again for permission after a restart, and only on a click), shows what folder sync did and
 * the names it refused, and asks for a scan when the page gains focus. Browsers without the
 * API get one line saying why the option is missing.
 */
export class FolderSyncPanel {
  readonly element: HTMLElement;
  // Not a live region: its counts change every second while files move, too often to be read out.
  private readonly status = h('p', { class: 'hint', 'data-testid': 'folder-sync-status' });
  private readonly refused = h('details', { class: 'folder-sync-refused', 'data-testid': 'folder-sync-refused', hidden: true });
  private readonly problem = h('p', { class: 'field-error', 'data-testid': 'folder-sync-error', role: 'alert', hidden: true });
  private readonly pick = h('button', { type: 'button', class: 'button', 'data-testid': 'folder-sync-pick' }, 'Sync to a folder…');
  private readonly restore = h('button', { type: 'button', class: 'button primary', 'data-testid': 'folder-sync-restore', hidden: true });
  private readonly stop = h('button', { type: 'button', class: 'button', 'data-testid': 'folder-sync-stop', hidden: true }, 'Stop syncing to this folder');
  private timer: ReturnType<typeof setInterval> | null = null;
  private refusedKey = '';
  private disposed = false;
  private readonly onFocus = () => void this.api.scanFolder(this.namespaceId).catch(() => undefined);

  constructor(
    private readonly api: SyncApi,
    private readonly namespaceId: NamespaceId,
  ) {
    if (typeof window.showDirectoryPicker !== 'function') {
      this.element = h(
        'p',
        { class: 'hint folder-sync', 'data-testid': 'folder-sync-unavailable' },
        'Sync to a folder needs the File System Access API, which this browser lacks (desktop Chrome and Edge have it).',
      );
      return;
    }
    this.element = h(
      'section',
      { class: 'folder-sync', 'aria-label': 'Sync to a folder', 'data-testid': 'folder-sync' },
      h('div', { class: 'share-row' }, this.pick, this.restore, this.stop),
      this.status,
      this.problem,
      this.refused,
    );
    this.pick.addEventListener('click', () => void this.pickFolder());
    this.restore.addEventListener('click', () => void this.restoreAccess());
    this.stop.addEventListener('click', () => void this.unlink());
    window.addEventListener('focus', this.onFocus);
    void this.resumeLinked();
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) clearInterval(this.timer);
    window.removeEventListener('focus', this.onFocus);
  }

  /** A folder linked on an earlier visit: resumes at once if permission holds, else offers one click to restore it. */
  private async resumeLinked(): Promise<void> {
    try {
      const folder = await this.api.linkedFolder(this.namespaceId);
      if (!folder || this.disposed) return;
      if ((await folder.queryPermission({ mode: 'readwrite' })) === 'granted') {
        await this.api.resumeFolder(this.namespaceId);
        this.showLinked();
      } else {
        setText(this.restore, `Restore access to ${folder.name}`);
        this.restore.hidden = false;
        this.pick.hidden = true;
        setText(this.status, `This workspace syncs with the folder ${folder.name}; the browser needs your permission again to change it.`);
      }
    } catch (error) {
      this.fail('Could not resume syncing with the folder', error);
    }
  }

  private async pickFolder(): Promise<void> {
    let folder: FileSystemDirectoryHandle;
    try {
      folder = await window.showDirectoryPicker!({ id: 'nearsync-folder', mode: 'readwrite' });
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') return; // The user closed the picker.
      this.fail('Could not open the folder', error);
      return;
    }
    try {
      await this.api.linkFolder(this.namespaceId, folder);
      this.showLinked();
    } catch (error) {
      this.fail(`Could not sync with the folder ${folder.name}`, error);
    }
  }

  private async restoreAccess(): Promise<void> {
    try {
      const folder = await this.api.linkedFolder(this.namespaceId);
      if (!folder) return;
      // Needs this click: browsers grant permission only in response to a user gesture.
      if ((await folder.requestPermission({ mode: 'readwrite' })) !== 'granted') {
        this.fail(`Could not restore access to ${folder.name}`, new Error('the browser did not grant permission to change it'));
        return;
      }
      await this.api.resumeFolder(this.namespaceId);
      this.showLinked();
    } catch (error) {
      this.fail('Could not restore access to the folder', error);
    }
  }

  private async unlink(): Promise<void> {
    try {
      await this.api.unlinkFolder(this.namespaceId);
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      this.pick.hidden = false;
      this.stop.hidden = true;
      this.restore.hidden = true;
      this.refused.hidden = true;
      this.problem.hidden = true;
      setText(this.status, 'Not syncing to a folder. The files already in the folder stay there.');
    } catch (error) {
      this.fail('Could not stop syncing with the folder', error);
    }
  }

  private showLinked(): void {
    this.pick.hidden = true;
    this.restore.hidden = true;
    this.stop.hidden = false;
    this.problem.hidden = true;
    if (!this.timer) this.timer = setInterval(() => void this.refresh(), STATUS_EVERY_MS);
    void this.refresh();
  }

  private async refresh(): Promise<void> {
    const view = await this.api.folderSyncStatus(this.namespaceId).catch(() => null);
    if (this.disposed || !view) return;
    this.render(view);
  }

  private render(view: FolderSyncView): void {
    // The counts as attributes too: tests and assistive tools read them without parsing the sentence.
    Object.assign(this.element.dataset, {
      state: view.state,
      written: String(view.written),
      uploaded: String(view.uploaded),
      deleted: String(view.deleted),
      conflicts: String(view.conflicts),
      lastScan: String(view.lastScanAt ?? 0),
      pathsChecked: String(view.pathsChecked),
      journalLooked: String(view.journalLooked),
    });
    const parts = [
      view.state === 'other-tab' ? `Syncing with the folder ${view.folderName} waits: another tab of this browser syncs this workspace.` : `Syncing with the folder ${view.folderName}: ${view.trackedFiles} files.`,
      view.waiting > 0 ? `${view.waiting} waiting for their data.` : '',
      `Written ${view.written}, uploaded ${view.uploaded}, deleted ${view.deleted}${view.conflicts > 0 ? `, ${view.conflicts} conflicted copies kept` : ''}.`,
      view.watching === 'observer' ? 'Changes in the folder are noticed as they happen.' : 'The folder is checked every few seconds and when you return to this page.',
    ];
    setText(this.status, parts.filter(Boolean).join(' '));
    this.problem.hidden = view.error === null;
    setText(this.problem, view.error ?? '');
    this.refused.hidden = view.refusedCount === 0;
    const refusedKey = JSON.stringify([view.refusedCount, view.refused]);
    if (view.refusedCount > 0 && refusedKey !== this.refusedKey) {
      this.refusedKey = refusedKey;
      const more = view.refusedCount - view.refused.length;
      this.refused.replaceChildren(
        h('summary', {}, `${view.refusedCount} ${view.refusedCount === 1 ? 'name is' : 'names are'} not synced with the folder`),
        h(
          'ul',
          {},
          ...view.refused.map(({ path, reason }) => h('li', { 'data-testid': 'folder-sync-refused-path', 'data-path': path }, `${path} — ${reason}`)),
          more > 0 ? h('li', {}, `and ${more} more`) : null,
        ),
      );
    }
  }

  private fail(what: string, error: unknown): void {
    this.problem.hidden = false;
    setText(this.problem, `${what}: ${errorMessage(error)}`);
  }
}
