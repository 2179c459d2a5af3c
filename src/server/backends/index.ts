import type { ServerOptions as SocketIoOptions } from 'socket.io';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import { InProcessJournalNotifier, type JournalNotifier } from '../notifier.ts';
import { InMemoryAdvertTable, type AdvertTable } from '../relay/advert-table.ts';
import { InMemoryPeerDirectory, type PeerDirectory } from '../relay/peer-directory.ts';
import type { BlockStore } from '../storage/block-store.ts';
import { FsBlockStore } from '../storage/fs-block-store.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import { SqliteMetadataStore } from '../storage/sqlite-metadata-store.ts';

/**
 * Which engines hold the server's state. Every field is independent and optional: with none
 * set the server is one process over SQLite and block files in its data directory.
 */
export interface BackendConfig {
  /** postgres://… : metadata and journal in PostgreSQL (several instances may share it). Unset: SQLite. */
  databaseUrl?: string;
  /** redis://… : the relay shared by several instances (socket.io Redis adapter; adverts and peers in Redis). */
  redisUrl?: string;
  /** s3://bucket or s3://bucket/prefix : blocks in S3-compatible storage. Unset: files under DATA_DIR/blocks. */
  blockStore?: string;
  /** Connection settings for an s3:// block store (AWS S3, MinIO, R2…). */
  s3?: S3Settings;
}

export interface S3Settings {
  /** e.g. http://127.0.0.1:9000 for MinIO; unset for AWS S3. */
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style URLs (bucket in the path), which MinIO and most local servers need. Default: true when an endpoint is set. */
  forcePathStyle?: boolean;
}

/** What the relay shares with other instances, or keeps in process. */
export interface RelayBackend {
  advertTable: AdvertTable;
  peerDirectory: PeerDirectory;
  /** A socket.io adapter that carries room broadcasts to the other instances; unset: in process. */
  adapter?: SocketIoOptions['adapter'];
}

export interface Backends {
  metadata: MetadataStore;
  blocks: BlockStore;
  notifier: JournalNotifier;
  relay: RelayBackend;
  /** Names of the engines in use, for the start-up log. */
  engines: { metadata: 'sqlite' | 'postgres'; blocks: 'files' | 's3'; relay: 'in-process' | 'redis' };
  /** Closes the stores and every connection the back ends opened, in reverse order of opening. */
  close(): Promise<void>;
}

/**
 * Opens the configured engines. Optional engines are imported only when configured, so the
 * embedded default starts without loading database or cloud clients.
 */
export async function openBackends(config: BackendConfig, dataDir: string, logger: Logger): Promise<Backends> {
  const opened: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of opened.reverse()) await close().catch((err: unknown) => logger.warn('closing a back end failed', { err }));
  };
  try {
    let metadata: MetadataStore;
    let notifier: JournalNotifier;
    if (config.databaseUrl) {
      const { openPostgresMetadata } = await import('./postgres.ts');
      const pg = await openPostgresMetadata(config.databaseUrl, logger);
      opened.push(() => pg.close());
      metadata = pg.metadata;
      notifier = pg.notifier;
    } else {
      metadata = SqliteMetadataStore.open(dataDir);
      opened.push(() => metadata.close());
      notifier = new InProcessJournalNotifier();
    }

    let blocks: BlockStore;
    if (config.blockStore) {
      const { openS3BlockStore } = await import('./s3.ts');
      blocks = await openS3BlockStore(config.blockStore, config.s3 ?? {}, logger);
    } else {
      blocks = await FsBlockStore.open(join(dataDir, 'blocks'));
    }
    opened.push(() => blocks.close());

    let relay: RelayBackend;
    if (config.redisUrl) {
      const { openRedisRelay } = await import('./redis.ts');
      const redis = await openRedisRelay(config.redisUrl, logger);
      opened.push(() => redis.close());
      relay = redis.relay;
    } else {
      relay = { advertTable: new InMemoryAdvertTable(), peerDirectory: new InMemoryPeerDirectory() };
    }

    return {
      metadata,
      blocks,
      notifier,
      relay,
      engines: {
        metadata: config.databaseUrl ? 'postgres' : 'sqlite',
        blocks: config.blockStore ? 's3' : 'files',
        relay: config.redisUrl ? 'redis' : 'in-process',
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
