import type { FileView } from '../../workers/sync-api.ts';
import { h } from './dom.ts';
import { FileRow, type FileActions } from './file-row.ts';

const pathOrder = new Intl.Collator(undefined, { numeric: true });

/**
 * The workspace's files, sorted by path. Divs with ARIA table roles rather than <table>:
 * a <table> re-lays out every row when one cell changes, which costs tens of milliseconds
 * per view at thousands of rows; grid rows with content-visibility skip off-screen rows. Rows are keyed by path and reused across views,
 * so a view of thousands of files touches only the cells that changed; rows are only
 * moved when paths appear or disappear.
 */
export class FileTable {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly rows = new Map<string, FileRow>();

  constructor(private readonly actions: FileActions) {
    this.body = h('div', { role: 'rowgroup', class: 'file-rows' });
    this.element = h(
      'div',
      { role: 'table', class: 'file-table', 'aria-label': 'Files', 'data-testid': 'file-table' },
      h(
        'div',
        { role: 'rowgroup' },
        h(
          'div',
          { role: 'row', class: 'file-row file-header' },
          h('span', { role: 'columnheader', class: 'cell-name' }, 'Name'),
          h('span', { role: 'columnheader', class: 'cell-size' }, 'Size'),
          h('span', { role: 'columnheader', class: 'cell-time' }, 'Modified'),
          h('span', { role: 'columnheader', class: 'cell-status' }, 'Status'),
          h('span', { role: 'columnheader', class: 'cell-actions' }, h('span', { class: 'visually-hidden' }, 'Actions')),
        ),
      ),
      this.body,
    );
  }

  update(files: readonly FileView[]): void {
    let pathsChanged = false;
    const present = new Set<string>();
    for (const file of files) {
      present.add(file.path);
      let row = this.rows.get(file.path);
      if (!row) {
        row = new FileRow(file.path, this.actions);
        this.rows.set(file.path, row);
        pathsChanged = true;
      }
      row.update(file);
    }
    for (const [path, row] of this.rows) {
      if (present.has(path)) continue;
      row.element.remove();
      this.rows.delete(path);
      pathsChanged = true;
    }
    if (pathsChanged) this.placeRowsInOrder();
  }

  private placeRowsInOrder(): void {
    const ordered = [...this.rows.keys()].sort(pathOrder.compare);
    let expected: ChildNode | null = this.body.firstChild;
    for (const path of ordered) {
      const element = this.rows.get(path)!.element;
      if (element === expected) {
        expected = expected.nextSibling;
      } else {
        this.body.insertBefore(element, expected);
      }
    }
  }
}
