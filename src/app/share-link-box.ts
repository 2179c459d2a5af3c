import type { NamespaceId } from '../protocol/index.ts';
import { copyFromInput } from './clipboard.ts';
import { h } from './dom.ts';
import { errorMessage } from './message-page.ts';
import type { Notices } from './notices.ts';
import type { SyncApi } from './sync-client.ts';

/** The workspace's share link with Copy and Reset. */
export function createShareLinkBox(api: SyncApi, namespaceId: NamespaceId, notices: Notices): HTMLElement {
  const input = h('input', {
    type: 'text',
    readOnly: true,
    id: 'share-link',
    class: 'share-link',
    'data-testid': 'share-link',
    value: '',
    placeholder: 'Loading link…',
  });
  input.addEventListener('focus', () => input.select());
  const copyButton = h('button', { type: 'button', 'data-testid': 'copy-share-link', disabled: true }, 'Copy');
  const resetButton = h('button', { type: 'button', 'data-testid': 'reset-share-link', class: 'quiet' }, 'Reset link');
  const hint = h('p', { class: 'hint', id: 'share-link-hint' }, 'Anyone with this link can open and change the files.');
  input.setAttribute('aria-describedby', hint.id);

  function showLink(link: string | null): void {
    input.value = link ?? '';
    input.placeholder = link ? '' : 'No share link is known on this device';
    copyButton.disabled = !link;
  }

  copyButton.addEventListener('click', () => {
    copyFromInput(input)
      .then((copied) => (copied ? notices.info('Link copied') : notices.error('Could not copy; select the link and copy it by hand.')))
      .catch((error: unknown) => notices.error(`Could not copy: ${errorMessage(error)}`));
  });

  resetButton.addEventListener('click', () => {
    const sure = confirm('Reset the share link? The current link stops working for anyone who has not joined yet.');
    if (!sure) return;
    resetButton.disabled = true;
    api
      .resetShareLink(namespaceId)
      .then((link) => {
        showLink(link);
        notices.info('New link created; the old one no longer works');
      })
      .catch((error: unknown) => notices.error(`Could not reset the link: ${errorMessage(error)}`))
      .finally(() => (resetButton.disabled = false));
  });

  api
    .shareLink(namespaceId)
    .then(showLink)
    .catch((error: unknown) => {
      showLink(null);
      notices.error(`Could not load the share link: ${errorMessage(error)}`);
    });

  return h(
    'section',
    { class: 'share', 'aria-labelledby': 'share-link-label' },
    h('label', { for: 'share-link', id: 'share-link-label' }, 'Share link'),
    h('div', { class: 'share-row' }, input, copyButton, resetButton),
    hint,
  );
}
