import type { ListingRow } from '../../workers/sync-api.ts';
import { h, setAttribute, setText } from './dom.ts';
import { formatBytes, formatPercent, formatTime } from './format.ts';
import { ProgressBar } from './progress-bar.ts';
import { keepSelect, type KeepActions } from './keep-control.ts';

type FolderListingRow = Extract<ListingRow, { kind: 'folder' }>;

/** A small folder glyph drawn inline: emoji fonts are not on every machine. */
function folderIcon(): SVGSVGElement {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'folder-icon');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', 'M1.5 3.5h4.2l1.5 1.6h7.3v7.9H1.5z');
  svg.append(path);
  return svg;
}

/** A folder in the folder view: opens on click, shows what is below it and how far it has synced. */
export class FolderRow {
  readonly element: HTMLElement;
  private readonly sizeCell = h('div', { role: 'cell', class: 'cell-size' });
  private readonly timeCell = h('div', { role: 'cell', class: 'cell-time' });
  private readonly statusLabel = h('span', { class: 'status-label', 'data-testid': 'folder-status' });
  private readonly progress: ProgressBar;
  private last: FolderListingRow | null = null;
  private readonly keep: ReturnType<typeof keepSelect> | null;

  constructor(
    readonly path: string,
    shownName: string,
    open: (path: string) => void,
    keepActions?: KeepActions,
  ) {
    this.keep = keepActions ? keepSelect(path, keepActions, `Where the files of ${path} live`) : null;
    this.progress = new ProgressBar(`Sync progress of folder ${path}`, 'bar bar-small');
    const openButton = h(
      'button',
      { type: 'button', class: 'folder-link', 'data-testid': 'open-folder', title: path, 'aria-label': `Open folder ${path}` },
      folderIcon(),
      shownName,
    );
    openButton.addEventListener('click', () => open(this.path));
    this.element = h(
      'div',
      { role: 'row', class: 'file-row folder-row', 'data-testid': 'folder-row', 'data-path': path },
      h('div', { role: 'rowheader', class: 'cell-name' }, openButton),
      this.sizeCell,
      this.timeCell,
      h('div', { role: 'cell', class: 'cell-status' }, this.progress.element, this.statusLabel),
      h('div', { role: 'cell', class: 'cell-actions' }, this.keep?.element ?? null),
    );
  }

  update(row: FolderListingRow): void {
    const last = this.last;
    this.last = row;
    if (row.keep && last?.keep !== row.keep) {
      this.keep?.show(row.keep);
      setAttribute(this.element, 'data-keep', row.keep);
    }
    if (last?.size !== row.size || last.fileCount !== row.fileCount) {
      setText(this.sizeCell, formatBytes(row.size));
      this.sizeCell.title = `${row.fileCount} ${row.fileCount === 1 ? 'file' : 'files'}`;
    }
    if (last?.mtime !== row.mtime) setText(this.timeCell, formatTime(row.mtime));
    if (
      last?.status !== row.status ||
      last.bytesDone !== row.bytesDone ||
      last.size !== row.size ||
      last.fileCount !== row.fileCount ||
      last.keep !== row.keep
    ) {
      setAttribute(this.element, 'data-status', row.status);
      const synced = row.status === 'synced';
      this.progress.element.hidden = synced;
      this.progress.update(synced ? row.size : row.bytesDone, row.size);
      setText(this.statusLabel, folderStatusText(row));
    }
  }
}

function folderStatusText(row: FolderListingRow): string {
  const count = `${row.fileCount.toLocaleString()} ${row.fileCount === 1 ? 'file' : 'files'}`;
  if (row.status !== 'synced') return `${row.status === 'syncing' ? 'Syncing' : 'Waiting'} · ${formatPercent(row.bytesDone, row.size)} · ${count}`;
  // Synced means every kept file is here; an online-only folder's files are fetched when opened.
  return `${row.keep === 'online' ? 'Online only' : 'Synced'} · ${count}`;
}
