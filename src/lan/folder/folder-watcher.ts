import { watch, type FSWatcher } from 'node:fs';
import { isTempName } from './safe-path.ts';

/**
 * Tells `onChange` that something under `root` changed: fs.watch (recursive, which Node 20
 * supports on Linux) for promptness, and a periodic rescan because watchers miss events
 * (overflow, directories created before the watch reached them, network filesystems).
 */
export class FolderWatcher {
  private watcher: FSWatcher | null = null;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    root: string,
    onChange: () => void,
    rescanMs: number,
    log: (line: string) => void,
  ) {
    try {
      this.watcher = watch(root, { recursive: true }, (_event, name) => {
        const base = typeof name === 'string' ? name.slice(name.lastIndexOf('/') + 1) : '';
        if (!isTempName(base)) onChange();
      });
      this.watcher.on('error', (error) => {
        log(`folder watch failed (${error.message}); relying on the rescan every ${Math.round(rescanMs / 1000)} s`);
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (error) {
      log(`cannot watch the folder (${(error as Error).message}); relying on the rescan every ${Math.round(rescanMs / 1000)} s`);
    }
    this.timer = setInterval(onChange, rescanMs);
  }

  close(): void {
    clearInterval(this.timer);
    this.watcher?.close();
    this.watcher = null;
  }
}
