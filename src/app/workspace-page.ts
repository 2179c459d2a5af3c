import * as Comlink from 'comlink';
import type { WorkspaceView } from '../../workers/sync-api.ts';
import { fileUrlPath, parseFilePath, type NamespaceId } from '../protocol/index.ts';
import { openBlobInNewTab, saveBlob } from './blob-urls.ts';
import { fileUrlsReady } from './file-urls.ts';
import { h, setText } from './dom.ts';
import type { PickedFile } from './dropped-files.ts';
import { DropZone } from './drop-zone.ts';
import { createFilePickers } from './file-pickers.ts';
import { sendUploadsInParts } from './upload-sender.ts';
import type { FileActions } from './file-row.ts';
import { FolderView } from './folder-view.ts';
import { FolderSyncPanel } from './folder-sync-panel.ts';
import { formatBytes } from './format.ts';
import { errorMessage } from './message-page.ts';
import { ConflictNotices } from './conflict-notices.ts';
import { Notices } from './notices.ts';
import { RecentlyDeletedPanel } from './recently-deleted-panel.ts';
import { VersionsPanel, type VersionActions } from './versions-panel.ts';
import { PeerList } from './peer-list.ts';
import { peerLabel, peerSyncEnabled } from './peer-settings.ts';
import { PeerNetwork } from './peers/peer-network.ts';
import type { Page } from './page.ts';
import { createShareLinkBox } from './share-link-box.ts';
import { SyncSummary } from './sync-summary.ts';
import type { SyncApi } from './sync-client.ts';
import { prepareUploads } from './upload-paths.ts';
import { UploadList } from './upload-list.ts';
import { LatestValueRenderer } from './view-scheduler.ts';
import { ZipDownload } from './zip-download.ts';
import { JoinQuestionBanner } from './join-question.ts';
import { keepSelect, type KeepActions } from './keep-control.ts';

/** Why syncing waits, how much space it needs, and that it resumes by itself. */
function storageFullMessage(full: NonNullable<WorkspaceView['storageFull']>): string {
  const free = full.freeBytes === null ? '' : `, ${formatBytes(full.freeBytes)} free`;
  return (
    `Syncing is paused: this browser's storage for this site is full. ${formatBytes(full.neededBytes)} more is needed ` +
    `to finish (${formatBytes(full.remainingBytes)} still to fetch${free}). Everything already synced is kept, and syncing ` +
    'resumes by itself once space is freed (free disk space, or remove another workspace from this browser).'
  );
}

/**
 * Asks once per page that this site's data be kept under storage pressure: a half-synced
 * workspace evicted by the browser would have to be fetched again.
 */
function askForPersistentStorage(): void {
  void navigator.storage?.persisted?.().then((kept) => (kept ? true : navigator.storage.persist?.())).catch(() => undefined);
}

/** A file row's Versions button, if the row is on screen (the folder view recycles rows). */
function versionsButtonOf(path: string): HTMLElement | null {
  return document.querySelector<HTMLElement>(`[data-testid="file-row"][data-path="${CSS.escape(path)}"] [data-testid="versions-file"]`);
}

export function workspacePage(api: SyncApi, namespaceId: NamespaceId): Page {
  askForPersistentStorage();
  const notices = new Notices();
  const title = h('h1', { class: 'workspace-name', 'data-testid': 'workspace-name' }, 'Opening workspace…');
  const summary = new SyncSummary();
  const viewError = h('div', { class: 'banner is-error', role: 'alert', 'data-testid': 'view-error', hidden: true });
  const storageFull = h('div', { class: 'banner is-error', role: 'alert', 'data-testid': 'storage-full', hidden: true });
  const uploads = new UploadList();
  const peers = new PeerList();

  const conflictNotices = new ConflictNotices(notices);
  const versionActions: VersionActions = {
    history: (path, before) => api.history(namespaceId, path, before),
    openVersion: (path, sjid) => openBlobInNewTab(path, () => api.versionBlob(namespaceId, path, sjid)),
    restoreVersion: (path, sjid) => api.restoreVersion(namespaceId, path, sjid),
  };
  const keepActions: KeepActions = { set: (folder, mode) => api.setKeep(namespaceId, folder, mode) };
  const workspaceKeep = keepSelect('', keepActions, 'Where this workspace’s files live on this device');
  const joinQuestion = new JoinQuestionBanner((answer) => api.answerJoinQuestion(namespaceId, answer), notices);
  const actions: FileActions = {
    keep: keepActions,
    // The file URL streams from the service worker (Range, unsynced blocks fetched first); the blob: URL is the fallback.
    open: async (path) => {
      if (fileUrlsReady()) window.open(fileUrlPath(namespaceId, parseFilePath(path)), '_blank', 'noopener');
      else await openBlobInNewTab(path, () => api.fileBlob(namespaceId, path));
    },
    opensUnsynced: fileUrlsReady,
    save: async (path) => saveBlob(path, await api.fileBlob(namespaceId, path)),
    rename: (from, to) => api.rename(namespaceId, from, to),
    remove: (path) => api.remove(namespaceId, path),
    versions: (path) => showPanel(new VersionsPanel(path, versionActions, () => versionsButtonOf(path) ?? files.focusTarget())),
  };
  const files = new FolderView((query) => api.listFolder(namespaceId, query), actions);
  const zipDownload = new ZipDownload(api, namespaceId, notices);
  files.element.addEventListener('folder-open', (event) => zipDownload.setFolder((event as CustomEvent<string>).detail));
  const recentlyDeleted = h(
    'button',
    { type: 'button', class: 'button', 'data-testid': 'open-recently-deleted', 'aria-haspopup': 'dialog' },
    'Recently deleted',
  );
  recentlyDeleted.addEventListener('click', () =>
    showPanel(
      new RecentlyDeletedPanel({
        deletedFiles: (before) => api.deletedFiles(namespaceId, before),
        restoreDeleted: (path, lastSjid) => api.restoreDeleted(namespaceId, path, lastSjid),
      }),
    ),
  );
  // The open panel (modal: one at a time); leaving the page (Back, another route) closes it.
  let openPanel: VersionsPanel | RecentlyDeletedPanel | null = null;
  function showPanel(panel: VersionsPanel | RecentlyDeletedPanel): void {
    openPanel?.close();
    openPanel = panel;
    panel.open(() => {
      if (openPanel === panel) openPanel = null;
    });
  }
  const emptyState = h(
    'div',
    { class: 'empty-state', 'data-testid': 'empty-state', hidden: true },
    h('p', {}, 'Drop files here to share them with everyone who has the link.'),
  );
  const filesSection = h('section', { class: 'files', 'aria-label': 'Files', 'aria-busy': 'true' }, files.element, emptyState);
  files.element.hidden = true;

  function uploadPicked(picked: PickedFile[]): void {
    const { accepted, rejected } = prepareUploads(picked);
    if (rejected.length > 0) {
      notices.error(
        `${rejected.length === 1 ? 'One file was' : `${rejected.length} files were`} not uploaded because of its name:`,
        rejected.map(({ name, reason }) => `${name} — ${reason}`),
      );
    }
    if (accepted.length === 0) return;
    sendUploadsInParts(accepted, (part, about) => api.upload(namespaceId, part, about)).catch((error: unknown) =>
      notices.error(`Upload failed: ${errorMessage(error)}`),
    );
  }

  function uploadFolders(folders: FileSystemDirectoryHandle[]): void {
    api.uploadFolders(namespaceId, folders).catch((error: unknown) => notices.error(`Upload failed: ${errorMessage(error)}`));
  }

  const folderSync = new FolderSyncPanel(api, namespaceId);
  const dropZone = new DropZone(uploadPicked, uploadFolders, (error) => notices.error(`Could not read the dropped files: ${errorMessage(error)}`));

  const element = h(
    'section',
    { class: 'workspace' },
    h('header', { class: 'workspace-header' }, title, summary.element),
    viewError,
    storageFull,
    joinQuestion.element,
    createShareLinkBox(api, namespaceId, notices),
    h(
      'div',
      { class: 'workspace-tools' },
      createFilePickers(uploadPicked, uploadFolders, (error) => notices.error(`Could not open the folder: ${errorMessage(error)}`)),
      h('div', { class: 'workspace-tools-end' }, h('label', { class: 'keep-label' }, 'Files: ', workspaceKeep.element), zipDownload.element, recentlyDeleted),
    ),
    folderSync.element,
    notices.element,
    uploads.element,
    filesSection,
    peers.element,
    dropZone.overlay,
  );
  element.addEventListener('file-action-error', (event) => notices.error((event as CustomEvent<string>).detail));

  let lastName = '';
  let lastKeep = '';
  function render(view: WorkspaceView): void {
    const keepKey = JSON.stringify(view.keep);
    if (keepKey !== lastKeep) {
      lastKeep = keepKey;
      workspaceKeep.show(view.keep.find((setting) => setting.folder === '')?.mode ?? 'keep');
      files.relist();
    }
    joinQuestion.update(view.joinQuestion);
    if (view.name !== lastName) {
      lastName = view.name;
      setText(title, view.name);
      document.title = `${view.name} — nearsync`;
    }
    summary.update(view);
    viewError.hidden = !view.error;
    setText(viewError, view.error ?? '');
    storageFull.hidden = view.storageFull === null;
    setText(storageFull, view.storageFull ? storageFullMessage(view.storageFull) : '');
    uploads.update(view.uploads, view.uploadTotals);
    conflictNotices.update(view.uploads);
    files.setName(view.name);
    zipDownload.setWorkspaceName(view.name);
    files.setVersion(view.listingVersion);
    files.element.hidden = view.fileCount === 0;
    emptyState.hidden = view.fileCount > 0;
    filesSection.removeAttribute('aria-busy');
    peers.update(view.peers);
    followRole(view.role);
  }

  // Only the tab that syncs talks to peers; other tabs of this browser mirror it.
  let network: PeerNetwork | null = null;
  let networkStarting = false;
  function followRole(role: WorkspaceView['role']): void {
    if (role === 'leader' && peersEnabled && !network && !networkStarting && !closed) {
      networkStarting = true;
      PeerNetwork.start(api, namespaceId, peerLabel())
        .then((started) => {
          if (closed) started.stop();
          else network = started;
        })
        .catch((error: unknown) => {
          notices.error(`Peers are unavailable; syncing from the server only: ${errorMessage(error)}`);
          // Tell the worker that no peer list is coming, so the server serves at once.
          void api.setAdverts(namespaceId, []);
        })
        .finally(() => (networkStarting = false));
    } else if (role !== 'leader' && network) {
      network.stop();
      network = null;
    }
  }

  const renderer = new LatestValueRenderer(render);
  let closed = false;
  const peersEnabled = peerSyncEnabled();
  api.open(namespaceId, Comlink.proxy((view: WorkspaceView) => renderer.push(view)), { peers: peersEnabled }).catch((error: unknown) => {
    if (closed) return;
    renderer.stop();
    setText(title, 'Workspace unavailable');
    element.replaceChildren(
      title,
      h(
        'div',
        { class: 'banner is-error', role: 'alert', 'data-testid': 'open-error' },
        h('p', {}, 'This workspace is not available on this device. Open its share link to join it.'),
        h('p', { class: 'detail' }, errorMessage(error)),
        h('p', {}, h('a', { href: '/', class: 'button', 'data-testid': 'go-home' }, 'Go to your workspaces')),
      ),
    );
    dropZone.dispose();
  });

  return {
    element,
    dispose() {
      closed = true;
      openPanel?.close();
      network?.stop();
      renderer.stop();
      files.dispose();
      zipDownload.dispose();
      folderSync.dispose();
      dropZone.dispose();
      api.close(namespaceId).catch(() => {
        // The worker may already be gone (page unloading); nothing is left to close then.
      });
    },
  };
}
