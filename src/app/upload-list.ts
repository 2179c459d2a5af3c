import type { UploadState, UploadTotals, UploadView } from '../../workers/sync-api.ts';
import { h, setAttribute, setText } from './dom.ts';
import { formatBytes, formatPercent } from './format.ts';
import { ProgressBar } from './progress-bar.ts';

const STATE_LABELS: Record<UploadState, string> = {
  queued: 'Queued',
  hashing: 'Reading',
  uploading: 'Uploading',
  committing: 'Finishing',
  done: 'Uploaded',
  failed: 'Failed',
};

class UploadRow {
  readonly element: HTMLLIElement;
  private readonly stateLabel = h('span', { class: 'upload-state' });
  private readonly detail = h('span', { class: 'upload-detail' });
  private readonly error = h('span', { class: 'upload-error', role: 'alert' });
  private readonly hashed: ProgressBar;
  private readonly uploaded: ProgressBar;
  private last: UploadView | null = null;

  constructor(upload: UploadView) {
    this.hashed = new ProgressBar(`Read and hashed: ${upload.path}`, 'bar bar-small bar-hashed');
    this.uploaded = new ProgressBar(`Uploaded: ${upload.path}`, 'bar bar-small');
    this.element = h(
      'li',
      { class: 'upload-row', 'data-testid': 'upload-row', 'data-path': upload.path },
      h('span', { class: 'upload-path' }, upload.path),
      this.stateLabel,
      h('span', { class: 'upload-bars' }, this.hashed.element, this.uploaded.element),
      this.detail,
      this.error,
    );
  }

  update(upload: UploadView): void {
    const last = this.last;
    this.last = upload;
    if (last?.state !== upload.state) {
      setAttribute(this.element, 'data-state', upload.state);
      setText(this.stateLabel, STATE_LABELS[upload.state]);
    }
    this.hashed.update(upload.bytesHashed, upload.size);
    this.uploaded.update(upload.bytesUploaded, upload.size);
    const copy = upload.conflictedCopy === undefined ? '' : ` · kept as ${upload.conflictedCopy} (another device changed ${upload.path} first)`;
    if (upload.conflictedCopy !== undefined) setAttribute(this.element, 'data-conflicted-copy', upload.conflictedCopy);
    setText(
      this.detail,
      `${formatBytes(upload.size)} · read ${formatPercent(upload.bytesHashed, upload.size)} · uploaded ${formatPercent(upload.bytesUploaded, upload.size)}${copy}`,
    );
    setText(this.error, upload.error ?? '');
  }
}

/**
 * Uploads started from this device: totals for all of them, and rows for the running ones
 * and a bounded tail of the rest (the worker chooses which), keyed by id; newest first.
 */
export class UploadList {
  readonly element: HTMLElement;
  private readonly list = h('ul', { class: 'upload-list', 'data-testid': 'upload-list' });
  private readonly totalsLine = h('p', { class: 'upload-totals', 'data-testid': 'upload-totals', role: 'status' });
  private readonly totalsBar = new ProgressBar('Upload progress', 'bar');
  private readonly rows = new Map<number, UploadRow>();

  constructor() {
    this.element = h(
      'section',
      { class: 'uploads', 'aria-label': 'Uploads', hidden: true },
      h('h2', {}, 'Uploads'),
      this.totalsBar.element,
      this.totalsLine,
      this.list,
    );
  }

  update(uploads: readonly UploadView[], totals: UploadTotals): void {
    this.element.hidden = uploads.length === 0 && totals.files === 0;
    setAttribute(this.totalsLine, 'data-files', String(totals.files));
    setAttribute(this.totalsLine, 'data-done-files', String(totals.doneFiles));
    setAttribute(this.totalsLine, 'data-failed-files', String(totals.failedFiles));
    setAttribute(this.totalsLine, 'data-counting', String(totals.counting === true));
    this.totalsBar.update(totals.doneFiles + totals.failedFiles, totals.files);
    const failed = totals.failedFiles > 0 ? ` · ${totals.failedFiles.toLocaleString()} failed` : '';
    // While a folder is still being walked its totals grow: say so rather than show a false end.
    const more = totals.counting ? '+' : '';
    const counting = totals.counting ? ' · still finding files' : '';
    setText(
      this.totalsLine,
      `${totals.doneFiles.toLocaleString()} of ${totals.files.toLocaleString()}${more} ${totals.files === 1 && !more ? 'file' : 'files'} uploaded` +
        ` · ${formatBytes(totals.bytesUploaded)} of ${formatBytes(totals.bytes)}${more} sent${failed}${counting}`,
    );
    const present = new Set<number>();
    for (const upload of uploads) {
      present.add(upload.id);
      let row = this.rows.get(upload.id);
      if (!row) {
        row = new UploadRow(upload);
        this.rows.set(upload.id, row);
        this.list.prepend(row.element);
      }
      row.update(upload);
    }
    for (const [id, row] of this.rows) {
      if (present.has(id)) continue;
      row.element.remove();
      this.rows.delete(id);
    }
  }
}
