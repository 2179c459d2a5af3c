import { h } from './dom.ts';
import { filesOfInput, type PickedFile } from './dropped-files.ts';

interface DirectoryPickerWindow {
  showDirectoryPicker?: (options?: { id?: string; mode?: 'read' | 'readwrite' }) => Promise<FileSystemDirectoryHandle>;
}

/**
 * "Add files" and "Add a folder". Files come from a native input inside a label, so keyboards
 * and screen readers get a real control. A folder comes from `showDirectoryPicker` where the
 * browser has it: the sync worker then walks the folder itself, while the folder input hands
 * the page a File per file (for 100,000 files Chromium spent 33 s of main-thread time
 * building that list, and each File stays registered with the browser process until
 * collected). The folder input remains for browsers without the picker.
 */
export function createFilePickers(
  onFiles: (files: PickedFile[]) => void,
  onFolders: (folders: FileSystemDirectoryHandle[]) => void,
  onError: (error: unknown) => void,
): HTMLElement {
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
  const pickDirectory = (window as DirectoryPickerWindow).showDirectoryPicker;
  const folderControl = pickDirectory
    ? h('button', { type: 'button', class: 'button', 'data-testid': 'folder-picker' }, 'Add a folder')
    : h('label', { class: 'button' }, folderInput, 'Add a folder');
  if (pickDirectory) {
    folderControl.addEventListener('click', () => {
      pickDirectory.call(window, { id: 'nearsync-upload', mode: 'read' }).then(
        (folder) => onFolders([folder]),
        (error: unknown) => {
          // Closing the picker is not a failure.
          if (!(error instanceof DOMException && error.name === 'AbortError')) onError(error);
        },
      );
    });
  }
  return h(
    'div',
    { class: 'pickers' },
    h('label', { class: 'button primary' }, fileInput, 'Add files'),
    folderControl,
    // Kept in the page either way: browsers without the picker use it.
    pickDirectory ? folderInput : null,
    h('span', { class: 'hint' }, 'or drop files and folders anywhere on this page'),
  );
}
