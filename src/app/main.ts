import './styles.css';
import { looksLikeFileUrlPath, type NamespaceId } from '../protocol/index.ts';
import { homePage } from './home-page.ts';
import { insecureContextNotice } from './insecure-context.ts';
import { joinFromLocation } from './join.ts';
import { errorMessage, loadingPage, messagePage } from './message-page.ts';
import type { Page } from './page.ts';
import { Router, workspacePath, type Route } from './router.ts';
import { isSecureEnough } from './secure-context.ts';
import { Shell } from './shell.ts';
import { startSyncWorker, type SyncApi } from './sync-client.ts';
import { fileUrlWithoutServiceWorker, startFileUrls } from './file-urls.ts';
import { workspacePage } from './workspace-page.ts';

const root = document.getElementById('app');
if (!root) throw new Error('index.html has no #app element');

if (!isSecureEnough()) {
  root.replaceChildren(insecureContextNotice());
} else {
  void start(new Shell(root));
}

async function start(shell: Shell): Promise<void> {
  shell.show(loadingPage('Starting…'));
  let api: SyncApi;
  try {
    api = await startSyncWorker();
    startFileUrls(api);
  } catch (error) {
    shell.show(
      messagePage({
        title: 'nearsync could not start',
        body: 'The part of the page that keeps your files could not start in this browser. Reload to try again.',
        detail: errorMessage(error),
        testId: 'startup-error',
        tone: 'error',
      }),
    );
    return;
  }

  const router = new Router((route) => shell.show(pageFor(route)));
  const openWorkspace = (namespaceId: NamespaceId): void => router.navigate(workspacePath(namespaceId));

  function pageFor(route: Route): Page {
    switch (route.kind) {
      case 'home':
        return homePage(api, openWorkspace);
      case 'workspace':
        return workspacePage(api, route.namespaceId);
      case 'not-found':
        return messagePage({ title: 'Page not found', body: 'There is nothing at this address.', testId: 'not-found' });
    }
  }

  async function followInvite(): Promise<void> {
    shell.show(loadingPage('Joining the workspace…'));
    const joined = await joinFromLocation(api, location.href);
    if (joined.kind === 'joined') {
      // Replacing the entry takes the used invite out of the address bar and history.
      router.navigate(workspacePath(joined.workspace.namespaceId), { replace: true });
    } else if (joined.kind === 'failed') {
      shell.show(joined.page);
    }
  }

  // Opening a share link while this app is already open at the same path only changes the fragment.
  window.addEventListener('hashchange', () => {
    if (location.hash.includes('invite=')) void followInvite();
  });

  if (looksLikeFileUrlPath(location.pathname)) {
    shell.show(await fileUrlWithoutServiceWorker());
    return;
  }

  if (location.hash.includes('invite=')) {
    router.start({ showCurrent: false });
    await followInvite();
  } else {
    router.start({ showCurrent: true });
  }
}
