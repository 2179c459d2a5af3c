import './styles.css';
import type { NamespaceId } from '../protocol/index.ts';
import { homePage } from './home-page.ts';
import { insecureContextNotice } from './insecure-context.ts';
import { joinFromLocation } from './join.ts';
import { errorMessage, loadingPage, messagePage } from './message-page.ts';
import type { Page } from './page.ts';
import { Router, workspacePath, type Route } from './router.ts';
import { isSecureEnough } from './secure-context.ts';
import { Shell } from './shell.ts';
import { startSyncWorker, type SyncApi } from './sync-client.ts';
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

  if (location.hash.includes('invite=')) shell.show(loadingPage('Joining the workspace…'));
  const joined = await joinFromLocation(api, location.href);
  switch (joined.kind) {
    case 'no-invite':
      router.start({ showCurrent: true });
      break;
    case 'joined':
      // The invite leaves the address bar and history once used.
      history.replaceState(null, '', workspacePath(joined.workspace.namespaceId));
      router.start({ showCurrent: true });
      break;
    case 'failed':
      router.start({ showCurrent: false });
      shell.show(joined.page);
      break;
  }
}
