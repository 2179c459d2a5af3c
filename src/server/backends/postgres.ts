import type { Logger } from '../log.ts';
import type { JournalNotifier } from '../notifier.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';

/** PostgreSQL metadata plus a LISTEN/NOTIFY journal notifier (to be built: issue 6). */
export async function openPostgresMetadata(
  _url: string,
  _logger: Logger,
): Promise<{ metadata: MetadataStore; notifier: JournalNotifier; close(): Promise<void> }> {
  throw new Error('DATABASE_URL: PostgreSQL support is not built yet');
}
