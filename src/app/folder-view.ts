import type { FolderListing, FolderQuery, FolderSort, ListingRow } from '../../workers/sync-api.ts';
import { h, setAttribute, setText } from './dom.ts';
import { FileRow, type FileActions } from './file-row.ts';
import { FolderRow } from './folder-row.ts';
import { covers, visibleRows, type RowRange } from './virtual-rows.ts';

/** Rows rendered beyond the viewport each side, and rows asked of the worker beyond that. */
const RENDER_OVERSCAN = 8;
const FETCH_MARGIN = 60;
const FILTER_DEBOUNCE_MS = 150;

export type ListFolder = (query: FolderQuery) => Promise<FolderListing>;

const SORT_LABELS: Record<FolderSort, string> = { name: 'Name', size: 'Size', modified: 'Modified' };

/**
 * The workspace as folders: breadcrumb, folders first, sort by name / size / modified, filter
 * by name. The worker keeps the tree and answers for one window of rows at a time; this view
 * renders only the rows on screen, so the DOM and the work per view stay small however many
 * files the workspace holds.
 */
export class FolderView {
  readonly element: HTMLElement;
  private readonly breadcrumb = h('nav', { class: 'breadcrumb', 'aria-label': 'Folder', 'data-testid': 'breadcrumb' });
  private readonly filterInput: HTMLInputElement;
  private readonly body = h('div', { role: 'rowgroup', class: 'file-rows', 'data-testid': 'file-rows' });
  private readonly table: HTMLElement;
  private readonly emptyNote = h('p', { class: 'folder-empty', 'data-testid': 'folder-empty', hidden: true });
  private readonly sortButtons = new Map<FolderSort, HTMLButtonElement>();
  private readonly rows = new Map<string, { row: FileRow | FolderRow; top: number }>();

  private name = '';
  private folder = '';
  private sort: FolderSort = 'name';
  private descending = false;
  private filter = '';
  private listing: FolderListing | null = null;
  /** What the rows in `listing` answer (a newer query makes them stale). */
  private listingQueryKey = '';
  private version = -1;
  private fetching = false;
  private refetch = false;
  private frame = 0;
  private filterTimer: ReturnType<typeof setTimeout> | null = null;
  private rowHeight = 48;
  private disposed = false;
  private readonly onScroll = () => this.schedule();

  constructor(
    private readonly listFolder: ListFolder,
    private readonly actions: FileActions,
  ) {
    this.filterInput = h('input', {
      type: 'search',
      class: 'file-filter',
      placeholder: 'Filter by name',
      'aria-label': 'Filter files by name',
      'data-testid': 'file-filter',
      autocomplete: 'off',
    });
    this.filterInput.addEventListener('input', () => {
      if (this.filterTimer) clearTimeout(this.filterTimer);
      this.filterTimer = setTimeout(() => this.setFilter(this.filterInput.value), FILTER_DEBOUNCE_MS);
    });
    const header = h(
      'div',
      { role: 'row', class: 'file-row file-header' },
      this.sortHeader('name', 'cell-name'),
      this.sortHeader('size', 'cell-size'),
      this.sortHeader('modified', 'cell-time'),
      h('span', { role: 'columnheader', class: 'cell-status' }, 'Status'),
      h('span', { role: 'columnheader', class: 'cell-actions' }, h('span', { class: 'visually-hidden' }, 'Actions')),
    );
    this.table = h(
      'div',
      { role: 'table', class: 'file-table', 'aria-label': 'Files', 'data-testid': 'file-table', 'aria-rowcount': 0, 'aria-busy': 'true' },
      h('div', { role: 'rowgroup' }, header),
      this.body,
    );
    this.element = h(
      'div',
      { class: 'folder-view', 'data-testid': 'folder-view' },
      h('div', { class: 'folder-toolbar' }, this.breadcrumb, this.filterInput),
      this.table,
      this.emptyNote,
    );
    this.renderBreadcrumb();
    this.updateSortHeaders();
    window.addEventListener('scroll', this.onScroll, { passive: true });
    window.addEventListener('resize', this.onScroll, { passive: true });
  }

  /** The tree changed in the worker (a new view arrived): ask again for the rows on screen. */
  /** Lists the rows again (something they show changed outside the tree, e.g. keep settings). */
  relist(): void {
    this.schedule(true);
  }

  setVersion(version: number): void {
    if (version === this.version) return;
    this.version = version;
    this.schedule(true);
  }

  /** The workspace's name, the breadcrumb's first item. */
  setName(name: string): void {
    if (name === this.name) return;
    this.name = name;
    this.renderBreadcrumb();
  }

  /** Opens a folder ('' is the top). */
  openFolder(path: string): void {
    if (path === this.folder && !this.filter) return;
    this.folder = path;
    this.filter = '';
    this.filterInput.value = '';
    this.afterQueryChange();
    this.renderBreadcrumb();
    // For the page's folder-level actions (Download as .zip).
    this.element.dispatchEvent(new CustomEvent<string>('folder-open', { detail: path }));
  }

  /** Where focus goes when the control that had it left the screen (the filter box). */
  focusTarget(): HTMLElement {
    return this.filterInput;
  }

  dispose(): void {
    this.disposed = true;
    window.removeEventListener('scroll', this.onScroll);
    window.removeEventListener('resize', this.onScroll);
    if (this.filterTimer) clearTimeout(this.filterTimer);
    cancelAnimationFrame(this.frame);
  }

  private setFilter(value: string): void {
    if (value === this.filter) return;
    this.filter = value;
    this.afterQueryChange();
  }

  private setSort(sort: FolderSort): void {
    if (this.sort === sort) this.descending = !this.descending;
    else {
      this.sort = sort;
      this.descending = sort !== 'name';
    }
    this.updateSortHeaders();
    this.afterQueryChange();
  }

  private afterQueryChange(): void {
    setAttribute(this.table, 'aria-busy', 'true');
    // A new listing starts at its top: keep the list's head in view.
    const top = this.table.getBoundingClientRect().top;
    if (top < 0) window.scrollBy(0, top);
    this.schedule(true);
  }

  private sortHeader(sort: FolderSort, cellClass: string): HTMLElement {
    const button = h('button', { type: 'button', class: 'sort-button', 'data-testid': `sort-${sort}` }, SORT_LABELS[sort]);
    button.addEventListener('click', () => this.setSort(sort));
    this.sortButtons.set(sort, button);
    return h('span', { role: 'columnheader', class: cellClass }, button);
  }

  private updateSortHeaders(): void {
    for (const [sort, button] of this.sortButtons) {
      const active = sort === this.sort;
      const header = button.parentElement!;
      setAttribute(header, 'aria-sort', active ? (this.descending ? 'descending' : 'ascending') : 'none');
      setText(button, active ? `${SORT_LABELS[sort]} ${this.descending ? '↓' : '↑'}` : SORT_LABELS[sort]);
    }
  }

  private renderBreadcrumb(): void {
    const crumbs: HTMLElement[] = [];
    const item = (label: string, path: string, current: boolean) => {
      const button = h('button', { type: 'button', class: 'crumb', 'data-testid': 'breadcrumb-item', 'data-path': path }, label);
      if (current) button.setAttribute('aria-current', 'location');
      button.addEventListener('click', () => this.openFolder(path));
      return button;
    };
    const segments = this.folder ? this.folder.split('/') : [];
    crumbs.push(item(this.name || 'All files', '', segments.length === 0));
    segments.forEach((segment, i) => {
      crumbs.push(h('span', { class: 'crumb-separator', 'aria-hidden': 'true' }, '/'));
      crumbs.push(item(segment, segments.slice(0, i + 1).join('/'), i === segments.length - 1));
    });
    this.breadcrumb.replaceChildren(...crumbs);
  }

  /** Coalesces scroll, resize and new versions into one pass per frame. */
  private schedule(refetch = false): void {
    if (refetch) this.refetch = true;
    if (this.frame || this.disposed) return;
    const run = () => {
      this.frame = 0;
      this.pass();
    };
    // Hidden tabs get no frames; their rows must still follow (another tab may sync).
    this.frame = document.hidden ? (setTimeout(run, 250) as unknown as number) : requestAnimationFrame(run);
  }

  private queryKey(): string {
    return JSON.stringify([this.folder, this.sort, this.descending, this.filter]);
  }

  private wanted(): RowRange {
    const total = this.listing?.total ?? 0;
    return visibleRows(this.body.getBoundingClientRect().top, window.innerHeight, this.rowHeight, total, RENDER_OVERSCAN);
  }

  private pass(): void {
    this.rowHeight = readRowHeight(this.body) ?? this.rowHeight;
    const range = this.wanted();
    const listing = this.listing;
    const fresh = listing !== null && this.listingQueryKey === this.queryKey();
    const fetched: RowRange = listing ? { start: listing.offset, end: listing.offset + listing.rows.length } : { start: 0, end: 0 };
    const missingRows = !fresh || (!covers(fetched, range) && (listing?.total ?? 0) > 0);
    if (this.refetch || missingRows || listing === null) void this.fetch(range);
    this.render(range);
  }

  private async fetch(range: RowRange): Promise<void> {
    if (this.fetching) {
      this.refetch = true;
      return;
    }
    this.fetching = true;
    this.refetch = false;
    const key = this.queryKey();
    const query: FolderQuery = {
      folder: this.folder,
      sort: this.sort,
      descending: this.descending,
      filter: this.filter,
      offset: Math.max(0, range.start - FETCH_MARGIN),
      limit: range.end - range.start + 2 * FETCH_MARGIN,
    };
    try {
      const listing = await this.listFolder(query);
      if (this.disposed) return;
      if (!listing.exists && this.folder !== '') {
        // The folder went away (its last file was deleted or moved): show the nearest parent.
        const parent = this.folder.includes('/') ? this.folder.slice(0, this.folder.lastIndexOf('/')) : '';
        this.openFolder(parent);
        return;
      }
      if (key === this.queryKey()) {
        this.listing = listing;
        this.listingQueryKey = key;
      } else {
        this.refetch = true;
      }
    } catch {
      // The workspace is closing or the worker restarted; the next view asks again.
    } finally {
      this.fetching = false;
    }
    if (this.disposed) return;
    const range2 = this.wanted();
    if (this.refetch) this.schedule(true);
    else this.render(range2);
  }

  private render(range: RowRange): void {
    const listing = this.listing;
    // Until the listing of the new folder, sort or filter arrives, the last one stays on screen
    // (no flash of an empty table); data-folder and data-total always describe the same listing.
    if (!listing || this.listingQueryKey !== this.queryKey()) return;
    const total = listing.total;
    this.body.style.height = `${total * this.rowHeight}px`;
    setAttribute(this.table, 'aria-rowcount', String(total));
    setAttribute(this.table, 'data-total', String(total));
    setAttribute(this.table, 'data-folder', this.folder);
    setAttribute(this.table, 'aria-busy', 'false');
    this.emptyNote.hidden = total > 0;
    setText(this.emptyNote, this.filter ? `Nothing here matches “${this.filter}”.` : 'This folder is empty.');

    const keep = new Set<string>();
    const start = Math.max(range.start, listing.offset);
    const end = Math.min(range.end, listing.offset + listing.rows.length);
    for (let index = start; index < end; index++) {
      const row = listing.rows[index - listing.offset];
      const key = `${row.kind}:${row.path}:${row.name}`;
      keep.add(key);
      this.place(key, row, index);
    }
    for (const [key, placed] of this.rows) {
      if (keep.has(key)) continue;
      if (placed.row instanceof FileRow && placed.row.busy) continue;
      placed.row.element.remove();
      this.rows.delete(key);
    }
  }

  private place(key: string, row: ListingRow, index: number): void {
    let placed = this.rows.get(key);
    if (!placed) {
      const element = row.kind === 'folder' ? new FolderRow(row.path, row.name, (path) => this.openFolder(path), this.actions.keep) : new FileRow(row.path, this.actions, row.name);
      placed = { row: element, top: -1 };
      this.rows.set(key, placed);
      this.body.append(element.element);
    }
    if (row.kind === 'folder' && placed.row instanceof FolderRow) placed.row.update(row);
    else if (row.kind === 'file' && placed.row instanceof FileRow) placed.row.update(row);
    const top = index * this.rowHeight;
    if (placed.top !== top) {
      placed.top = top;
      placed.row.element.style.transform = `translateY(${top}px)`;
      setAttribute(placed.row.element, 'aria-rowindex', String(index + 1));
    }
  }
}

/** The row height the stylesheet sets for this width (narrow screens stack a row's cells). */
function readRowHeight(body: HTMLElement): number | null {
  const value = parseFloat(getComputedStyle(body).getPropertyValue('--row-height'));
  return Number.isFinite(value) && value > 0 ? value : null;
}
