import { h } from './dom.ts';
import { filesOfInput, type PickedFile } from './dropped-files.ts';

/** "Add files" and "Add folder" buttons: native inputs inside labels, so keyboards and screen readers get real controls. */
export function createFilePickers(onFiles: (files: PickedFile[]) => void): HTMLElement {
  const fileInput = h('input', { type: 'file', multiple: true, class: 'visually-hidden', 'data-testid': 'file-input' });
  const folderInput = h('input', { type: 'file', multiple: true, class: 'visually-hidden', 'data-testid': 'folder-input' });
  folderInput.webkitdirectory = true;
  for (const input of [fileInput, folderInput]) {
    input.addEventListener('change', () => {
      const picked = filesOfInput(input);
      // Clearing lets the same file be picked again after a change.
      input.value = '';
      if (picked.length > 0) onFiles(picked);
    });
  }
  return h(
    'div',
    { class: 'pickers' },
    h('label', { class: 'button primary' }, fileInput, 'Add files'),
    h('label', { class: 'button' }, folderInput, 'Add a folder'),
    h('span', { class: 'hint' }, 'or drop files and folders anywhere on this page'),
  );
}
