/**
 * One step of a metadata schema. Append only: a released version is never edited, so an
 * existing database upgrades in place by running the versions it has not seen.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Schema versions before and after a migration run (equal when nothing was pending). */
export interface MigrationOutcome {
  from: number;
  to: number;
}
