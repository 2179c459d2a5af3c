import type { HistoryResponse, VersionEntry } from '../protocol/index.ts';
import { h, setText } from './dom.ts';
import { formatBytes, formatTime } from './format.ts';
import { errorMessage } from './message-page.ts';
import { ModalDialog } from './modal-dialog.ts';

/** A device's modification time this far from the commit is worth showing (a copy of an old file, a wrong clock). */
const DEVICE_TIME_SHOWN_MS = 60 * 60_000;

/** What the Versions panel asks of the page (which asks the worker). */
export interface VersionActions {
  history(path: string, before?: number): Promise<HistoryResponse>;
  /** Shows the bytes of one version (a new tab, like Open on a file). */
  openVersion(path: string, sjid: number): Promise<void>;
  restoreVersion(path: string, sjid: number): Promise<{ path: string; conflicted: boolean }>;
}

/**
 * The Versions panel of one file: its versions newest first (when, which device, size;
 * deletions marked), each with Open and Restore, older pages on request. A modal dialog:
 * Escape or Close ends it and focus returns to the row's Versions button.
 */
export class VersionsPanel {
  private readonly dialog: ModalDialog;
  private readonly list = h('ol', { class: 'version-list', 'data-testid': 'version-list', 'aria-label': 'Versions, newest first' });
  private readonly status = h('p', { class: 'dialog-status', role: 'status', 'data-testid': 'versions-status' });
  private readonly problem = h('p', { class: 'dialog-error', role: 'alert', 'data-testid': 'versions-error', hidden: true });
  private readonly moreButton = h('button', { type: 'button', class: 'small', 'data-testid': 'versions-more', hidden: true }, 'Show older versions');
  private versions: VersionEntry[] = [];
  private busy = false;

  constructor(
    private readonly path: string,
    private readonly actions: VersionActions,
    fallbackFocus: () => HTMLElement | null,
  ) {
    this.dialog = new ModalDialog(`Versions of ${path}`, 'versions-panel', fallbackFocus);
    this.dialog.body.append(this.status, this.problem, this.list, this.moreButton);
    this.moreButton.addEventListener('click', () => void this.load(this.versions.at(-1)?.sjid));
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

  /** Reads a page of history: the first (replacing the list) or the one older than `before`. */
  private async load(before?: number): Promise<void> {
    setText(this.status, 'Loading versions…');
    this.moreButton.disabled = true;
    try {
      const page = await this.actions.history(this.path, before);
      this.versions = before === undefined ? page.versions : [...this.versions, ...page.versions];
      this.render();
      this.moreButton.hidden = !page.more;
      setText(this.status, `${this.versions.length} ${this.versions.length === 1 ? 'version' : 'versions'}${page.more ? ' shown; older ones exist' : ''}.`);
    } catch (error) {
      setText(this.status, '');
      this.showProblem(`Could not load the versions of ${this.path}: ${errorMessage(error)}`);
    } finally {
      this.moreButton.disabled = false;
    }
  }

  private render(): void {
    // The newest entry is the file as it is now, unless it is a deletion.
    const current = this.versions[0] && !this.versions[0].deleted ? this.versions[0].sjid : null;
    this.list.replaceChildren(...this.versions.map((version) => this.row(version, version.sjid === current)));
  }

  private row(version: VersionEntry, isCurrent: boolean): HTMLElement {
    // The server's commit time orders a team's versions; a device's clock (mtime) can be off by
    // years. An older server sends no commit time: then the device's is all there is.
    const when = formatTime(version.committedAt ?? version.mtime);
    const deviceTime = version.committedAt !== null && !version.deleted && Math.abs(version.mtime - version.committedAt) > DEVICE_TIME_SHOWN_MS
      ? h('small', { class: 'version-mtime', 'data-testid': 'version-mtime' }, `modified ${formatTime(version.mtime)} on the device`)
      : null;
    const device = version.device ?? 'an unnamed device';
    const item = h(
      'li',
      {
        class: 'version-row',
        'data-testid': 'version-row',
        'data-sjid': version.sjid,
        'data-deleted': String(version.deleted),
        'data-current': String(isCurrent),
      },
      h('span', { class: 'version-when' }, when, deviceTime),
      h('span', { class: 'version-device', 'data-testid': 'version-device' }, version.device ?? 'Unnamed device'),
      h('span', { class: 'version-size' }, version.deleted ? h('strong', { class: 'version-deleted' }, 'Deleted') : formatBytes(version.size)),
      isCurrent ? h('span', { class: 'version-badge' }, 'Current') : null,
    );
    if (version.deleted) return item;
    const open = h('button', { type: 'button', class: 'small', 'data-testid': 'version-open', 'aria-label': `Open the version of ${when} from ${device}` }, 'Open');
    open.addEventListener('click', () => void this.run(`Could not open the version of ${when}`, () => this.actions.openVersion(this.path, version.sjid)));
    const restore = h(
      'button',
      { type: 'button', class: 'small', 'data-testid': 'version-restore', 'aria-label': `Restore the version of ${when} from ${device}`, disabled: isCurrent },
      'Restore',
    );
    restore.addEventListener('click', () => void this.run(`Could not restore the version of ${when}`, () => this.restore(version, when)));
    item.append(h('span', { class: 'version-actions' }, open, restore));
    return item;
  }

  private async restore(version: VersionEntry, when: string): Promise<void> {
    const kept = await this.actions.restoreVersion(this.path, version.sjid);
    await this.load();
    setText(
      this.status,
      kept.conflicted
        ? `${this.path} was changed on another device meanwhile, so the version of ${when} was restored as a separate file: ${kept.path}.`
        : `Restored the version of ${when}: it is now the current version of ${this.path}.`,
    );
  }

  /** One action at a time; its failure is shown in the panel with what failed and why. */
  private async run(what: string, action: () => Promise<void>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.problem.hidden = true;
    for (const button of this.list.querySelectorAll('button')) button.setAttribute('aria-disabled', 'true');
    try {
      await action();
    } catch (error) {
      this.showProblem(`${what}: ${errorMessage(error)}`);
    } finally {
      this.busy = false;
      for (const button of this.list.querySelectorAll('button')) button.removeAttribute('aria-disabled');
    }
  }

  private showProblem(text: string): void {
    this.problem.hidden = false;
    setText(this.problem, text);
  }
}
