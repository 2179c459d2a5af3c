import type { Logger } from '../log.ts';
import type { JournalNotifier } from '../notifier.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import { errorMessage } from '../storage/pg-errors.ts';
import { PgJournalNotifier } from '../storage/pg-journal-notifier.ts';
import { PgMetadataStore } from '../storage/pg-metadata-store.ts';
import { parsePostgresUrl } from '../storage/pg-target.ts';

/**
 * PostgreSQL metadata plus a LISTEN/NOTIFY journal notifier on the same database and schema
 * (`?schema=name` in the URL selects one; see pg-target.ts). Migrations run before the
 * listener starts; a failure of either closes what was opened.
 */
export async function openPostgresMetadata(
  url: string,
  logger: Logger,
): Promise<{ metadata: MetadataStore; notifier: JournalNotifier; close(): Promise<void> }> {
  const target = parsePostgresUrl(url);
  const metadata = await PgMetadataStore.open(target, logger);
  let notifier: PgJournalNotifier;
  try {
    notifier = await PgJournalNotifier.open(target, logger);
  } catch (err) {
    await metadata.close();
    throw new Error(`PostgreSQL at ${target.display}: the journal listener could not start: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  logger.info('postgres: metadata ready', { url: target.display, schema: target.schema, channel: target.channel });
  return {
    metadata,
    notifier,
    async close() {
      await notifier.close();
      await metadata.close();
    },
  };
}
