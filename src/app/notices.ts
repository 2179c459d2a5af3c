import { h } from './dom.ts';

/**
 * A short list of messages for the user (action failures, rejected names, conflicted copies,
 * "copied"). Errors and warnings stay until dismissed; confirmations fade on their own.
 */
export class Notices {
  readonly element = h('div', { class: 'notices', 'aria-live': 'polite', 'data-testid': 'notices' });

  info(text: string): void {
    const notice = this.add(text, 'info');
    setTimeout(() => notice.remove(), 4000);
  }

  error(title: string, lines: string[] = []): void {
    this.add(title, 'error', lines);
  }

  /** Something the user must know that is not a failure (a conflicted copy): stays until dismissed. */
  warning(text: string): void {
    this.add(text, 'warning');
  }

  clear(): void {
    this.element.replaceChildren();
  }

  private add(text: string, tone: 'info' | 'warning' | 'error', lines: string[] = []): HTMLElement {
    const notice = h(
      'div',
      { class: `notice is-${tone}`, role: tone === 'error' ? 'alert' : 'status', 'data-testid': `notice-${tone}` },
      h('p', {}, text),
      lines.length > 0 ? h('ul', {}, ...lines.map((line) => h('li', {}, line))) : null,
    );
    const dismiss = h('button', { type: 'button', class: 'link-button', 'aria-label': 'Dismiss message' }, '×');
    dismiss.addEventListener('click', () => notice.remove());
    notice.prepend(dismiss);
    this.element.append(notice);
    return notice;
  }
}
