import * as Comlink from 'comlink';
import type { ZipProgressView } from '../../workers/sync-api.ts';
import { zipDownloadPath, type NamespaceId } from '../protocol/index.ts';
import { h, setText } from './dom.ts';
import { formatBytes } from './format.ts';
import { errorMessage } from './message-page.ts';
import type { Notices } from './notices.ts';
import { ProgressBar } from './progress-bar.ts';
import type { SyncApi } from './sync-client.ts';

/** Chromium's save dialog (File System Access API); not in TypeScript's DOM types yet. */
type SaveFilePicker = (options: {
  suggestedName: string;
  types?: { description: string; accept: Record<string, string[]> }[];
}) => Promise<FileSystemFileHandle>;

function savePicker(): SaveFilePicker | null {
  const picker = (window as unknown as { showSaveFilePicker?: SaveFilePicker }).showSaveFilePicker;
  return typeof picker === 'function' ? picker.bind(window) : null;
}

/**
 * The service worker that would answer a streamed download, where there is no save dialog: the
 * page's controller (null on the very first visit until it claims the page, and in browsers
 * or contexts without service workers).
 */
function downloadWorker(): ServiceWorker | null {
  return 'serviceWorker' in navigator ? navigator.serviceWorker.controller : null;
}

/** How long the service worker may take to confirm it holds a zip job. */
const ANNOUNCE_WITHIN_MS = 15_000;

/**
 * The service worker's answer to a job's announcement (workers/zip-downloads.ts). The download
 * starts only after it: a navigation's fetch event is not ordered after a message to the
 * worker, so without the wait a loaded browser could ask for a job the worker has not heard of.
 */
function announcementAnswer(port: MessagePort, jobId: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`the app's service worker did not answer within ${ANNOUNCE_WITHIN_MS / 1000} s; reload the page and try again`)), ANNOUNCE_WITHIN_MS);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      port.close();
      if (error) reject(error);
      else resolve();
    };
    port.onmessage = (event: MessageEvent) => {
      const message = event.data as { type?: unknown; jobId?: unknown; message?: unknown } | null;
      if (message?.jobId !== jobId) return finish(new Error('the service worker answered for another download'));
      if (message.type === 'nearsync:zip-announced') return finish();
      finish(new Error(`the app's service worker refused the download: ${typeof message.message === 'string' ? message.message : 'no reason given'}`));
    };
  });
}

/** Why there is no button where the browser has neither a save dialog nor service workers. */
const NO_WAY_OUT = 'Download as .zip needs a browser that can save into a chosen file or stream a download (Chrome, Edge, Firefox or Safari over https).';

/**
 * "Download as .zip" for the open folder (or the whole workspace at the top): asks where to
 * save, then the sync worker streams the archive straight into that file, so a folder of any
 * size never sits in memory. Without a save dialog (Firefox, Safari) the same stream becomes
 * an ordinary download that the app's service worker answers. Shows files and bytes done,
 * what it waits for, and a Cancel button; one zip at a time per page.
 */
export class ZipDownload {
  readonly element: HTMLElement;
  private readonly button: HTMLButtonElement;
  private readonly status = h('div', { class: 'zip-status', 'data-testid': 'zip-status', hidden: true });
  private readonly statusText = h('span', { class: 'zip-status-text', role: 'status', 'data-testid': 'zip-status-text' });
  private readonly bar = new ProgressBar('Zip progress');
  private readonly cancelButton = h('button', { type: 'button', class: 'small', 'data-testid': 'zip-cancel' }, 'Cancel');
  private folder = '';
  private workspaceName = '';
  private jobId: string | null = null;

  constructor(
    private readonly api: SyncApi,
    private readonly namespaceId: NamespaceId,
    private readonly notices: Notices,
  ) {
    this.button = h('button', { type: 'button', class: 'button', 'data-testid': 'download-zip' }, '');
    this.button.addEventListener('click', () => void this.start());
    this.cancelButton.addEventListener('click', () => {
      if (this.jobId) void this.api.cancelZip(this.jobId);
    });
    this.status.append(this.statusText, this.bar.element, this.cancelButton);
    // With neither way out the option is not offered; one line says why.
    this.element = savePicker() || 'serviceWorker' in navigator
      ? h('div', { class: 'zip-download' }, this.button, this.status)
      : h('p', { class: 'zip-unavailable', 'data-testid': 'zip-unavailable' }, NO_WAY_OUT);
    this.renderLabel();
  }

  /** The folder the view shows ('' at the top): the button zips it. */
  setFolder(folder: string): void {
    this.folder = folder;
    this.renderLabel();
  }

  setWorkspaceName(name: string): void {
    if (name === this.workspaceName) return;
    this.workspaceName = name;
    this.renderLabel();
  }

  /** The page is going away: a zip it started stops (the file stays as it was). */
  dispose(): void {
    if (this.jobId) void this.api.cancelZip(this.jobId).catch(() => undefined);
  }

  private archiveName(): string {
    const base = this.folder ? this.folder.slice(this.folder.lastIndexOf('/') + 1) : this.workspaceName || 'workspace';
    // The name is a suggestion for the save dialog; characters no file system takes are replaced.
    return `${base.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_')}.zip`;
  }

  private renderLabel(): void {
    const name = this.folder.slice(this.folder.lastIndexOf('/') + 1);
    setText(this.button, this.folder ? `Download “${name}” as .zip` : 'Download all as .zip');
    // The visible text stays the start of the accessible name; the title says what it covers.
    this.button.title = this.folder ? `Everything in ${this.folder}, as one .zip file` : 'Every file of this workspace, as one .zip file';
  }

  private async start(): Promise<void> {
    if (this.jobId) return;
    const picker = savePicker();
    if (!picker) return this.startDownload();
    const folder = this.folder;
    const name = this.archiveName();
    let target: FileSystemFileHandle;
    try {
      target = await picker({ suggestedName: name, types: [{ description: 'Zip archive', accept: { 'application/zip': ['.zip'] } }] });
    } catch (error) {
      // Closing the dialog is a choice, not a failure.
      if (error instanceof DOMException && error.name === 'AbortError') return;
      this.notices.error(`Could not choose where to save ${name}: ${errorMessage(error)}`);
      return;
    }
    await this.run(name, (jobId, onProgress) => this.api.writeZip(this.namespaceId, folder, target, jobId, onProgress), 'the file was not saved');
  }

  /**
   * No save dialog: the sync worker hands the archive stream to the service worker, and a
   * download of the job's URL (answered by it) saves it where the browser saves downloads.
   */
  private async startDownload(): Promise<void> {
    const worker = downloadWorker();
    const name = this.archiveName();
    if (!worker) {
      this.notices.error(`${NO_WAY_OUT} Here the app's service worker is not running yet: reload the page and try again.`);
      return;
    }
    const folder = this.folder;
    await this.run(
      name,
      async (jobId, onProgress) => {
        const { port1, port2 } = new MessageChannel();
        const answer = new MessageChannel();
        const announced = announcementAnswer(answer.port1, jobId);
        worker.postMessage({ type: 'nearsync:zip-download', ns: this.namespaceId, jobId }, [port2, answer.port2]);
        const done = this.api.zipToDownload(this.namespaceId, folder, jobId, Comlink.transfer(port1, [port1]), onProgress);
        try {
          await announced;
        } catch (error) {
          done.catch(() => undefined);
          await this.api.cancelZip(jobId).catch(() => undefined);
          throw error;
        }
        // A navigation of a hidden frame, not a download link: Chromium hands `<a download>`
        // straight to its download manager, past the service worker (measured: the server's
        // page came back); a navigation is the worker's to answer, and an attachment saves.
        const frame = h('iframe', { src: zipDownloadPath(this.namespaceId, jobId, name), hidden: true, title: 'zip download' });
        document.body.append(frame);
        return done.finally(() => setTimeout(() => frame.remove(), 1_000));
      },
      'the download was cancelled',
    );
  }

  private async run(
    name: string,
    zip: (jobId: string, onProgress: (progress: ZipProgressView) => void) => Promise<ZipProgressView>,
    whenStopped: string,
  ): Promise<void> {
    const jobId = crypto.randomUUID();
    this.jobId = jobId;
    this.button.disabled = true;
    this.status.hidden = false;
    this.cancelButton.disabled = false;
    this.showProgress(name, { files: 0, bytes: 0, filesDone: 0, bytesDone: 0, waitingFor: null, done: false });
    try {
      const result = await zip(jobId, Comlink.proxy((progress: ZipProgressView) => this.showProgress(name, progress)));
      this.notices.info(`Saved ${name}: ${result.filesDone} ${result.filesDone === 1 ? 'file' : 'files'}, ${formatBytes(result.bytesDone)}.`);
    } catch (error) {
      if (error instanceof Error && error.name === 'AbortError') this.notices.info(`Stopped writing ${name}; ${whenStopped}.`);
      else this.notices.error(`Could not write ${name}: ${errorMessage(error)}`);
    } finally {
      this.jobId = null;
      this.button.disabled = false;
      this.status.hidden = true;
    }
  }

  private showProgress(name: string, progress: ZipProgressView): void {
    const waiting = progress.waitingFor ? ` — waiting for ${progress.waitingFor} to sync` : '';
    setText(
      this.statusText,
      `Writing ${name}: ${progress.filesDone} of ${progress.files} files, ${formatBytes(progress.bytesDone)} of ${formatBytes(progress.bytes)}${waiting}`,
    );
    this.status.setAttribute('data-files-done', String(progress.filesDone));
    this.bar.update(progress.bytesDone, progress.bytes);
  }
}
