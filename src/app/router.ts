import { parseNamespaceId, type NamespaceId } from '../protocol/index.ts';

export type Route =
  | { kind: 'home' }
  | { kind: 'workspace'; namespaceId: NamespaceId }
  | { kind: 'not-found' };

export function workspacePath(namespaceId: NamespaceId): string {
  return `/w/${namespaceId}`;
}

export function parseRoute(pathname: string): Route {
  if (pathname === '/' || pathname === '/index.html') return { kind: 'home' };
  const match = /^\/w\/([^/]+)\/?$/.exec(pathname);
  if (match) {
    try {
      return { kind: 'workspace', namespaceId: parseNamespaceId(decodeURIComponent(match[1])) };
    } catch {
      return { kind: 'not-found' };
    }
  }
  return { kind: 'not-found' };
}

/**
 * History API routing. The URL fragment is not used for routes because a share link
 * carries its invite there.
 */
export class Router {
  private shownPath = '';

  constructor(private readonly onRoute: (route: Route) => void) {}

  /** Follows back/forward and same-origin links from now on; `showCurrent` renders the current URL at once. */
  start(options: { showCurrent: boolean }): void {
    window.addEventListener('popstate', () => {
      // In-page anchors (the skip link) change only the fragment: the page stays.
      if (location.pathname !== this.shownPath) this.emit();
    });
    document.addEventListener('click', (event) => this.interceptLink(event));
    this.shownPath = location.pathname;
    if (options.showCurrent) this.emit();
  }

  navigate(path: string, options: { replace?: boolean } = {}): void {
    if (options.replace) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
    this.emit();
  }

  private emit(): void {
    this.shownPath = location.pathname;
    this.onRoute(parseRoute(location.pathname));
  }

  private interceptLink(event: MouseEvent): void {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element | null)?.closest?.('a');
    if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
    const url = new URL(anchor.href, location.href);
    if (url.origin !== location.origin || url.hash) return;
    event.preventDefault();
    // Same path too: it leaves a message page (say, a failed join at "/#invite=…") for the real page.
    this.navigate(url.pathname + url.search);
  }
}
