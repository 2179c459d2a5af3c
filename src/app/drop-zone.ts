import { h } from './dom.ts';
import { entriesOfDrop, filesOfEntries, isFolderHandle, type PickedFile } from './dropped-files.ts';

/**
 * Makes the whole window a drop target for files and folders while a workspace is open,
 * with an overlay that says what will happen.
 */
export class DropZone {
  readonly overlay = h(
    'div',
    { class: 'drop-overlay', hidden: true, 'aria-hidden': 'true' },
    h('p', {}, 'Drop to share with everyone who has the link'),
  );
  // dragenter/dragleave fire for every child element crossed; count them to know when the drag left the window.
  private depth = 0;
  private readonly listeners: [keyof WindowEventMap, (event: DragEvent) => void][] = [
    ['dragenter', (event) => this.onEnter(event)],
    ['dragover', (event) => this.onOver(event)],
    ['dragleave', () => this.onLeave()],
    ['drop', (event) => this.onDrop(event)],
  ];

  constructor(
    private readonly onFiles: (files: PickedFile[]) => void,
    private readonly onFolders: (folders: FileSystemDirectoryHandle[]) => void,
    private readonly onError: (error: unknown) => void,
  ) {
    for (const [type, listener] of this.listeners) window.addEventListener(type, listener as EventListener);
  }

  dispose(): void {
    for (const [type, listener] of this.listeners) window.removeEventListener(type, listener as EventListener);
    this.overlay.remove();
  }

  private onEnter(event: DragEvent): void {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    this.depth++;
    this.overlay.hidden = false;
  }

  private onOver(event: DragEvent): void {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
  }

  private onLeave(): void {
    this.depth = Math.max(0, this.depth - 1);
    if (this.depth === 0) this.overlay.hidden = true;
  }

  private onDrop(event: DragEvent): void {
    if (!carriesFiles(event) || !event.dataTransfer) return;
    event.preventDefault();
    this.depth = 0;
    this.overlay.hidden = true;
    const { entries, plainFiles, folders } = entriesOfDrop(event.dataTransfer);
    if (folders.length > 0) {
      Promise.all(folders)
        .then((handles) => {
          const found = handles.filter(isFolderHandle);
          if (found.length > 0) this.onFolders(found);
        })
        .catch(this.onError);
    }
    filesOfEntries(entries)
      .then((fromEntries) => {
        const picked = [...fromEntries, ...plainFiles.map((file) => ({ file, path: file.name }))];
        if (picked.length > 0) this.onFiles(picked);
      })
      .catch(this.onError);
  }
}

function carriesFiles(event: DragEvent): boolean {
  return event.dataTransfer?.types.includes('Files') ?? false;
}
