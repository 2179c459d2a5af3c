import { ServerApi } from '../src/engine/server-api.ts';
import type { BlockHash } from '../src/protocol/index.ts';
import { serveFileRead } from './file-reads.ts';
import { IdbStateStore, openNearsyncDb } from './idb-store.ts';
import { sha256 } from './web-crypto.ts';

/** Blocks kept while a read runs: the one being read and the one asked for ahead. */
const KEPT_BLOCKS = 3;

/**
 * A file URL read when no page of the app is open, done by the service worker itself: the
 * workspace's token and the file's entry come from this browser's IndexedDB (as the sync
 * worker stored them), and the range's blocks from the server, each checked against its hash
 * and handed out without being stored (a service worker cannot write block files, and a page
 * syncing later stores them as usual). Peers need a page, and blocks already stored here are
 * fetched again: this is the fallback, not the fast path.
 */
export function serveFileReadFromServer(port: MessagePort, origin: string): void {
  let api: ServerApi | null = null;
  const blocks = new Map<BlockHash, Promise<Blob>>();
  serveFileRead(port, {
    async lookup(ns, path) {
      const db = await openNearsyncDb();
      try {
        const record = await db.get('workspaces', ns);
        if (!record) return 'unknown-workspace';
        api = new ServerApi(origin, record.token);
        return (await new IdbStateStore(db).file(ns, path)) ?? null;
      } finally {
        db.close();
      }
    },
    async fetchNow(ns, file, indexes, signal) {
      const server = api;
      if (!server) throw new Error('the file was not looked up');
      await Promise.all(
        indexes.map((index) => {
          const hash = file.blocks[index];
          let block = blocks.get(hash);
          if (!block) {
            block = server.getBlock(ns, hash, signal).then(async (bytes) => {
              if ((await sha256(bytes)) !== hash) throw new Error(`the server sent bytes for block ${index} of ${file.path} that do not match its hash`);
              return new Blob([bytes as Uint8Array<ArrayBuffer>]);
            });
            block.catch(() => blocks.delete(hash));
            blocks.set(hash, block);
            while (blocks.size > KEPT_BLOCKS) blocks.delete(blocks.keys().next().value!);
          }
          return block;
        }),
      );
    },
    blob: (hash) => blocks.get(hash) ?? Promise.resolve(undefined),
    // Not known without the page's block index: reported as not synced.
    complete: async () => false,
  });
}
