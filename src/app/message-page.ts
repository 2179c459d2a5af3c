import { describeError } from '../protocol/index.ts';
import { h } from './dom.ts';
import { staticPage, type Page } from './page.ts';

/** A full-page message (not found, could not join, worker failed) with a way home. */
export function messagePage(options: {
  title: string;
  body: string;
  detail?: string;
  testId?: string;
  tone?: 'error' | 'info';
}): Page {
  return staticPage(
    h(
      'section',
      { class: `message-page ${options.tone === 'error' ? 'is-error' : ''}`, 'data-testid': options.testId, role: options.tone === 'error' ? 'alert' : null },
      h('h1', {}, options.title),
      h('p', {}, options.body),
      options.detail ? h('p', { class: 'detail' }, options.detail) : null,
      h('p', {}, h('a', { href: '/', class: 'button', 'data-testid': 'go-home' }, 'Go to your workspaces')),
    ),
  );
}

export function loadingPage(text: string): Page {
  return staticPage(h('section', { class: 'loading', 'aria-busy': 'true' }, h('p', {}, text)));
}

export function errorMessage(error: unknown): string {
  return describeError(error);
}
