/** A file picked or dropped by the user, with the path it should get in the workspace. */
export interface PickedFile {
  file: File;
  path: string;
}

/**
 * Files and folders dropped on the page. The entries must be taken from the DataTransfer
 * during the drop event (the list is emptied afterwards); walking folders happens later.
 */
export function entriesOfDrop(dataTransfer: DataTransfer): {
  entries: FileSystemEntry[];
  plainFiles: File[];
  folders: Promise<FileSystemHandle | null>[];
} {
  const entries: FileSystemEntry[] = [];
  const plainFiles: File[] = [];
  const folders: Promise<FileSystemHandle | null>[] = [];
  for (const item of Array.from(dataTransfer.items)) {
    if (item.kind !== 'file') continue;
    const entry = typeof item.webkitGetAsEntry === 'function' ? item.webkitGetAsEntry() : null;
    if (entry?.isDirectory && canHandOverFolders(item)) {
      // The worker walks the folder itself: no list of every file is built on this thread.
      folders.push(item.getAsFileSystemHandle());
    } else if (entry) {
      entries.push(entry);
    } else {
      const file = item.getAsFile();
      if (file) plainFiles.push(file);
    }
  }
  if (entries.length === 0 && plainFiles.length === 0 && folders.length === 0) plainFiles.push(...Array.from(dataTransfer.files));
  return { entries, plainFiles, folders };
}

/**
 * Chromium hands a dropped folder over as a `FileSystemDirectoryHandle`. Walked through the
 * older entry API on the page, a folder of 100,000 files cost a File per file on the main
 * thread, each registered with the browser process until collected.
 */
function canHandOverFolders(item: DataTransferItem): item is DataTransferItem & { getAsFileSystemHandle(): Promise<FileSystemHandle | null> } {
  return typeof (item as { getAsFileSystemHandle?: unknown }).getAsFileSystemHandle === 'function';
}

export function isFolderHandle(handle: FileSystemHandle | null): handle is FileSystemDirectoryHandle {
  return handle?.kind === 'directory';
}

export async function filesOfEntries(entries: readonly FileSystemEntry[]): Promise<PickedFile[]> {
  const picked: PickedFile[] = [];
  for (const entry of entries) await collect(entry, picked);
  return picked;
}

async function collect(entry: FileSystemEntry, into: PickedFile[]): Promise<void> {
  if (isFileEntry(entry)) {
    // fullPath is "/folder/sub/file" relative to the drop; the leading "/" is dropped later.
    into.push({ file: await fileOf(entry), path: entry.fullPath || entry.name });
  } else if (isDirectoryEntry(entry)) {
    for (const child of await readAllChildren(entry)) await collect(child, into);
  }
}

function isFileEntry(entry: FileSystemEntry): entry is FileSystemFileEntry {
  return entry.isFile;
}

function isDirectoryEntry(entry: FileSystemEntry): entry is FileSystemDirectoryEntry {
  return entry.isDirectory;
}

function fileOf(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

/** readEntries returns at most about 100 entries per call; keep reading until it returns none. */
async function readAllChildren(directory: FileSystemDirectoryEntry): Promise<FileSystemEntry[]> {
  const reader = directory.createReader();
  const children: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) return children;
    children.push(...batch);
  }
}

/** Files from <input type=file>, using the folder-relative path when a folder was picked. */
export function filesOfInput(input: HTMLInputElement): PickedFile[] {
  return Array.from(input.files ?? []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}
