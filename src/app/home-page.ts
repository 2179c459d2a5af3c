import type { NamespaceId } from '../protocol/index.ts';
import { h } from './dom.ts';
import { errorMessage } from './message-page.ts';
import type { Page } from './page.ts';
import { workspacePath } from './router.ts';
import type { SyncApi } from './sync-client.ts';

export function homePage(api: SyncApi, openWorkspace: (namespaceId: NamespaceId) => void): Page {
  const nameInput = h('input', {
    type: 'text',
    id: 'new-workspace-name',
    required: true,
    maxLength: 200,
    placeholder: 'e.g. Design team',
    autocomplete: 'off',
    'data-testid': 'new-workspace-name',
  });
  const createButton = h('button', { type: 'submit', class: 'primary', 'data-testid': 'create-workspace' }, 'New workspace');
  const formError = h('p', { class: 'field-error', role: 'alert' });
  const form = h(
    'form',
    { class: 'create-form' },
    h('label', { for: 'new-workspace-name' }, 'Workspace name'),
    h('div', { class: 'field-row' }, nameInput, createButton),
    formError,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) {
      formError.textContent = 'Give the workspace a name.';
      nameInput.focus();
      return;
    }
    createButton.disabled = true;
    formError.textContent = '';
    api
      .createWorkspace(name)
      .then(({ namespaceId }) => openWorkspace(namespaceId))
      .catch((error: unknown) => {
        formError.textContent = `Could not create the workspace: ${errorMessage(error)}`;
        createButton.disabled = false;
      });
  });

  const list = h('ul', { class: 'workspace-list', 'data-testid': 'workspace-list', 'aria-busy': 'true' });
  const listSection = h('section', { 'aria-labelledby': 'known-workspaces' }, h('h2', { id: 'known-workspaces' }, 'On this device'), list);
  api
    .listWorkspaces()
    .then((workspaces) => {
      list.removeAttribute('aria-busy');
      if (workspaces.length === 0) {
        list.replaceWith(h('p', { class: 'hint', 'data-testid': 'no-workspaces' }, 'No workspaces here yet. Create one, or open a link someone shared with you.'));
        return;
      }
      const sorted = [...workspaces].sort((a, b) => a.name.localeCompare(b.name));
      list.replaceChildren(
        ...sorted.map((workspace) =>
          h('li', {}, h('a', { href: workspacePath(workspace.namespaceId), 'data-testid': 'workspace-link' }, workspace.name)),
        ),
      );
    })
    .catch((error: unknown) => {
      list.replaceWith(h('p', { class: 'field-error', role: 'alert' }, `Could not list workspaces: ${errorMessage(error)}`));
    });

  document.title = 'nearsync';
  const element = h(
    'section',
    { class: 'home' },
    h('h1', {}, 'Share files with your team'),
    h('p', { class: 'lede' }, 'Create a workspace, share its link, and everyone who opens it gets the files in their browser.'),
    form,
    listSection,
  );
  return { element, dispose() {} };
}
