import { h } from './dom.ts';
import type { Page } from './page.ts';

/** The frame around every page: a header with the product mark, and the current page. */
export class Shell {
  private readonly main = h('main', { id: 'main', tabIndex: -1 });
  private current: Page | null = null;
  private shownOnce = false;

  constructor(root: HTMLElement) {
    root.replaceChildren(
      h('a', { href: '#main', class: 'skip-link' }, 'Skip to content'),
      h(
        'header',
        { class: 'app-header' },
        h('a', { href: '/', class: 'brand', 'aria-label': 'nearsync home' }, h('img', { src: '/favicon.svg', alt: '', width: 24, height: 24 }), 'nearsync'),
      ),
      this.main,
    );
  }

  show(page: Page): void {
    this.current?.dispose();
    this.current = page;
    this.main.replaceChildren(page.element);
    // After a navigation, screen readers and keyboards start at the new content, not the old link.
    if (this.shownOnce) this.main.focus({ preventScroll: true });
    this.shownOnce = true;
    window.scrollTo(0, 0);
  }
}
