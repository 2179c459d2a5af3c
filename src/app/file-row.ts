import type { FileSyncStatus, FileView } from '../../workers/sync-api.ts';
import { normaliseUserPath } from '../protocol/index.ts';
import { h, setAttribute, setText } from './dom.ts';
import { formatBytes, formatPercent, formatRate, formatTime } from './format.ts';
import { errorMessage } from './message-page.ts';
import { ProgressBar } from './progress-bar.ts';
import type { KeepActions } from './keep-control.ts';

export interface FileActions {
  open(path: string): Promise<void>;
  save(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** Opens the file's Versions panel. */
  versions(path: string): void;
  /** Whether Open works before the file is synced (its file URL fetches what it needs first). */
  opensUnsynced?(): boolean;
  /** Keep a folder on this device or make it online only (folder rows show the choice). */
  keep?: KeepActions;
}

const STATUS_LABELS: Record<FileSyncStatus, string> = {
  synced: 'Synced',
  syncing: 'Syncing',
  waiting: 'Waiting',
  online: 'Online only',
};

/** One row of the file table (ARIA table roles on divs), keyed by path; `update` writes only what changed. */
export class FileRow {
  readonly element: HTMLElement;
  private readonly nameCell: HTMLElement;
  private readonly nameLabel: HTMLElement;
  private readonly sizeCell: HTMLElement;
  private readonly timeCell: HTMLElement;
  private readonly statusLabel: HTMLElement;
  private readonly progress: ProgressBar;
  private readonly openButton: HTMLButtonElement;
  private readonly saveButton: HTMLButtonElement;
  private readonly renameButton: HTMLButtonElement;
  private renameForm: HTMLFormElement | null = null;
  private last: FileView | null = null;

  /** `shownName`: the path as the listing shows it (relative to the open folder). */
  constructor(
    readonly path: string,
    private readonly actions: FileActions,
    shownName: string = path,
  ) {
    const slash = shownName.lastIndexOf('/');
    this.nameLabel = h(
      'span',
      { class: 'file-name', title: path },
      slash === -1 ? null : h('span', { class: 'folder-prefix' }, shownName.slice(0, slash + 1)),
      h('span', { class: 'base-name' }, shownName.slice(slash + 1)),
    );
    this.nameCell = h('div', { role: 'rowheader', class: 'cell-name' }, this.nameLabel);
    this.sizeCell = h('div', { role: 'cell', class: 'cell-size' });
    this.timeCell = h('div', { role: 'cell', class: 'cell-time' });
    this.progress = new ProgressBar(`Sync progress of ${path}`, 'bar bar-small');
    this.statusLabel = h('span', { class: 'status-label', 'data-testid': 'file-status' });
    this.openButton = this.actionButton('Open', 'open-file', () => this.actions.open(this.path));
    this.saveButton = this.actionButton('Save', 'save-file', () => this.actions.save(this.path));
    // Versions works whatever the sync state: history is read from the server.
    const versionsButton = this.actionButton('Versions', 'versions-file', async () => this.actions.versions(this.path));
    versionsButton.setAttribute('aria-haspopup', 'dialog');
    this.renameButton = this.actionButton('Rename', 'rename-file', async () => this.startRename());
    const deleteButton = this.actionButton('Delete', 'delete-file', () => this.confirmDelete());
    deleteButton.classList.add('is-danger');
    this.element = h(
      'div',
      { role: 'row', class: 'file-row', 'data-testid': 'file-row', 'data-path': path },
      this.nameCell,
      this.sizeCell,
      this.timeCell,
      h('div', { role: 'cell', class: 'cell-status' }, this.progress.element, this.statusLabel),
      h('div', { role: 'cell', class: 'cell-actions' }, this.openButton, this.saveButton, versionsButton, this.renameButton, deleteButton),
    );
  }

  /** True while the user edits the name: the list keeps this row even when it scrolls away. */
  get busy(): boolean {
    return this.renameForm !== null;
  }

  update(file: FileView): void {
    const last = this.last;
    this.last = file;
    if (last?.size !== file.size) setText(this.sizeCell, formatBytes(file.size));
    if (last?.mtime !== file.mtime) setText(this.timeCell, formatTime(file.mtime));
    if (last?.status !== file.status || last.onlineOnly !== file.onlineOnly) {
      setAttribute(this.element, 'data-status', file.status);
      setAttribute(this.element, 'data-online-only', String(file.onlineOnly === true));
      const synced = file.status === 'synced';
      // An online-only file is fetched when opened or saved: both work before its blocks are here.
      this.openButton.disabled = !synced && !file.onlineOnly && !this.actions.opensUnsynced?.();
      this.saveButton.disabled = !synced && !file.onlineOnly;
      this.progress.element.hidden = synced || file.status === 'online';
    }
    if (
      last?.status !== file.status ||
      last.onlineOnly !== file.onlineOnly ||
      last.bytesDone !== file.bytesDone ||
      last.bytesPerSecond !== file.bytesPerSecond ||
      last.size !== file.size
    ) {
      this.progress.update(file.status === 'synced' ? file.size : file.bytesDone, file.size);
      setText(this.statusLabel, statusText(file));
    }
  }

  private actionButton(label: string, testId: string, run: () => Promise<void>): HTMLButtonElement {
    const button = h('button', { type: 'button', class: 'small', 'data-testid': testId, 'aria-label': `${label} ${this.path}` }, label);
    button.addEventListener('click', () => {
      run().catch((error: unknown) => this.reportError(`${label} failed`, error));
    });
    return button;
  }

  private async confirmDelete(): Promise<void> {
    if (!confirm(`Delete “${this.path}” for everyone in this workspace?`)) return;
    await this.actions.remove(this.path);
  }

  private startRename(): void {
    if (this.renameForm) return;
    const input = h('input', {
      type: 'text',
      value: this.path,
      class: 'rename-input',
      'data-testid': 'rename-input',
      'aria-label': `New name for ${this.path}`,
      autocomplete: 'off',
    });
    input.spellcheck = false;
    const problem = h('span', { class: 'field-error', 'aria-live': 'polite' });
    const cancel = h('button', { type: 'button', class: 'small' }, 'Cancel');
    const form = h(
      'form',
      { class: 'rename-form' },
      input,
      h('button', { type: 'submit', class: 'small primary', 'data-testid': 'rename-confirm' }, 'Rename'),
      cancel,
      problem,
    );
    cancel.addEventListener('click', () => this.endRename());
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') this.endRename();
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.submitRename(input, problem);
    });
    this.renameForm = form;
    this.element.classList.add('is-renaming');
    this.nameCell.replaceChildren(form);
    this.renameButton.disabled = true;
    input.focus();
    // Select the base name without its extension, as file managers do.
    const start = this.path.lastIndexOf('/') + 1;
    const dot = this.path.lastIndexOf('.');
    input.setSelectionRange(start, dot > start ? dot : this.path.length);
  }

  private async submitRename(input: HTMLInputElement, problem: HTMLElement): Promise<void> {
    let target: string;
    try {
      target = normaliseUserPath(input.value);
    } catch (error) {
      input.setAttribute('aria-invalid', 'true');
      problem.textContent = `Not a valid name: ${errorMessage(error)}`;
      return;
    }
    if (target === this.path) {
      this.endRename();
      return;
    }
    input.disabled = true;
    try {
      await this.actions.rename(this.path, target);
      this.endRename();
    } catch (error) {
      input.disabled = false;
      input.setAttribute('aria-invalid', 'true');
      problem.textContent = `Rename failed: ${errorMessage(error)}`;
    }
  }

  private endRename(): void {
    if (!this.renameForm) return;
    this.renameForm = null;
    this.element.classList.remove('is-renaming');
    this.nameCell.replaceChildren(this.nameLabel);
    this.renameButton.disabled = false;
    this.renameButton.focus();
  }

  private reportError(title: string, error: unknown): void {
    this.element.dispatchEvent(
      new CustomEvent('file-action-error', { bubbles: true, detail: `${title}: ${errorMessage(error)}` }),
    );
  }
}

function statusText(file: FileView): string {
  if (file.onlineOnly) {
    if (file.status === 'synced') return 'Online only · on this device now';
    if (file.status === 'online') return file.bytesDone > 0 ? `Online only · ${formatPercent(file.bytesDone, file.size)} on this device` : 'Online only';
  }
  if (file.status === 'synced') return STATUS_LABELS.synced;
  const parts = [STATUS_LABELS[file.status], formatPercent(file.bytesDone, file.size)];
  if (file.status === 'syncing' && file.bytesPerSecond > 0) parts.push(formatRate(file.bytesPerSecond));
  return parts.join(' · ');
}
