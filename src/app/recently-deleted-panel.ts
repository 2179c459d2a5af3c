import type { DeletedFile, DeletedFilesResponse } from '../protocol/index.ts';
import { h, setText } from './dom.ts';
import { formatBytes, formatTime } from './format.ts';
import { errorMessage } from './message-page.ts';
import { ModalDialog } from './modal-dialog.ts';

/** What the Recently deleted panel asks of the page (which asks the worker). */
export interface DeletedActions {
  deletedFiles(before?: number): Promise<DeletedFilesResponse>;
  /** Commits the file's last live version `lastSjid` again (parent 0). */
  restoreDeleted(path: string, lastSjid: number): Promise<{ path: string; conflicted: boolean }>;
}

/**
 * Files deleted in this workspace and not written since (as long as the server keeps them,
 * HISTORY_DAYS), newest deletion first, each with Restore. A modal dialog like the Versions panel.
 */
export class RecentlyDeletedPanel {
  private readonly dialog: ModalDialog;
  private readonly list = h('ol', { class: 'version-list', 'data-testid': 'deleted-list', 'aria-label': 'Deleted files, newest deletion first' });
  private readonly status = h('p', { class: 'dialog-status', role: 'status', 'data-testid': 'deleted-status' });
  private readonly problem = h('p', { class: 'dialog-error', role: 'alert', 'data-testid': 'deleted-error', hidden: true });
  private readonly moreButton = h('button', { type: 'button', class: 'small', 'data-testid': 'deleted-more', hidden: true }, 'Show older deletions');
  private files: DeletedFile[] = [];
  private more = false;
  private busy = false;

  constructor(private readonly actions: DeletedActions) {
    this.dialog = new ModalDialog('Recently deleted', 'deleted-panel');
    this.dialog.body.append(
      h('p', { class: 'hint' }, 'Files deleted from this workspace that the server still keeps. Restore brings back the last version before the deletion.'),
      this.status,
      this.problem,
      this.list,
      this.moreButton,
    );
    this.moreButton.addEventListener('click', () => void this.load(this.files.at(-1)?.sjid));
  }

  /** `onClose` runs however it closes (Escape, Close, or close() when the page goes away). */
  open(onClose?: () => void): void {
    if (onClose) this.dialog.onClose(onClose);
    this.dialog.open();
    void this.load();
  }

  close(): void {
    this.dialog.close();
  }

  private async load(before?: number): Promise<void> {
    setText(this.status, 'Loading deleted files…');
    this.moreButton.disabled = true;
    try {
      const page = await this.actions.deletedFiles(before);
      this.files = before === undefined ? page.files : [...this.files, ...page.files];
      this.more = page.more;
      this.render();
    } catch (error) {
      setText(this.status, '');
      this.showProblem(`Could not list the deleted files: ${errorMessage(error)}`);
    } finally {
      this.moreButton.disabled = false;
    }
  }

  private render(): void {
    this.list.replaceChildren(...this.files.map((file) => this.row(file)));
    this.moreButton.hidden = !this.more;
    const count = this.files.length;
    setText(this.status, count === 0 && !this.more ? 'No deleted files.' : `${count} deleted ${count === 1 ? 'file' : 'files'}${this.more ? ' shown; older ones exist' : ''}.`);
  }

  private row(file: DeletedFile): HTMLElement {
    const restore = h('button', { type: 'button', class: 'small', 'data-testid': 'deleted-restore', 'aria-label': `Restore ${file.path}` }, 'Restore');
    restore.addEventListener('click', () => void this.restore(file));
    return h(
      'li',
      { class: 'version-row deleted-row', 'data-testid': 'deleted-row', 'data-path': file.path, 'data-sjid': file.sjid },
      h('span', { class: 'deleted-path' }, file.path),
      h('span', { class: 'version-when' }, `Deleted ${formatTime(file.deletedAt)}`),
      h('span', { class: 'version-device' }, `by ${file.device ?? 'an unnamed device'}`),
      h('span', { class: 'version-size' }, formatBytes(file.size)),
      h('span', { class: 'version-actions' }, restore),
    );
  }

  private async restore(file: DeletedFile): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.problem.hidden = true;
    try {
      const kept = await this.actions.restoreDeleted(file.path, file.lastSjid);
      this.files = this.files.filter((other) => other !== file);
      this.render();
      setText(
        this.status,
        kept.conflicted
          ? `${file.path} was written again meanwhile, so its last version was restored as ${kept.path}.`
          : `Restored ${file.path}.`,
      );
    } catch (error) {
      this.showProblem(`Could not restore ${file.path}: ${errorMessage(error)}`);
    } finally {
      this.busy = false;
    }
  }

  private showProblem(text: string): void {
    this.problem.hidden = false;
    setText(this.problem, text);
  }
}
