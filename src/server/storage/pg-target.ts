import pg from 'pg';
import { redactUrl } from '../config.ts';

/**
 * What DATABASE_URL selects: the connection settings for `pg` and, optionally, the schema
 * that holds nearsync's tables.
 *
 * `?schema=name` is nearsync's own parameter (pg does not know it): it is removed from the
 * URL and becomes `-c search_path=name` in the startup packet, so every connection of the
 * pool and the listener sees only that schema (plus pg_catalog), with no extra round trip.
 * Several deployments, or test runs, can then share one database. Without it the server's
 * default search_path applies (usually `public`). `?pool=N` (1 to 500), also nearsync's, sets
 * how many connections the instance's pool may open (default 10).
 */
export interface PostgresTarget {
  /** Settings for pg.Pool / pg.Client (the URL without `schema`, plus `options`). */
  clientConfig: pg.ClientConfig;
  /** The schema from `?schema=`, or null for the server's default search_path. */
  schema: string | null;
  /** Connections the pool may open, from `?pool=` (null: the default). */
  poolSize: number | null;
  /** LISTEN/NOTIFY channel of this schema's journal: instances on other schemas are not woken. */
  channel: string;
  /** The URL with its password hidden, for logs and messages. */
  display: string;
}

/**
 * Lower-case letters, digits and `_`, not starting with a digit, never `pg_…` (reserved), at
 * most 46 characters so that the channel name `nearsync_journal_<schema>` stays within
 * PostgreSQL's 63-byte identifier limit. Nothing needs quoting, so no escaping can go wrong.
 */
const SCHEMA_NAME = /^(?!pg_)[a-z_][a-z0-9_]{0,45}$/;
const CHANNEL_PREFIX = 'nearsync_journal';
/** Beyond this an instance would take most of a default PostgreSQL's 100 connections many times over. */
const MAX_POOL_SIZE = 500;

export function parsePostgresUrl(url: string): PostgresTarget {
  const display = redactUrl(url);
  if (!/^postgres(ql)?:\/\//.test(url)) throw new Error(`DATABASE_URL must be a postgres:// URL, not ${JSON.stringify(display)}`);
  const hashAt = url.indexOf('#');
  if (hashAt !== -1) throw new Error('DATABASE_URL must not contain a fragment (#)');
  const queryAt = url.indexOf('?');
  const base = queryAt === -1 ? url : url.slice(0, queryAt);
  const kept: string[] = [];
  let schema: string | null = null;
  let poolSize: number | null = null;
  let options: string | undefined;
  for (const pair of queryAt === -1 ? [] : url.slice(queryAt + 1).split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = decodeQueryPart(eq === -1 ? pair : pair.slice(0, eq));
    const value = decodeQueryPart(eq === -1 ? '' : pair.slice(eq + 1));
    if (key === 'schema') {
      if (schema !== null) throw new Error('DATABASE_URL: give ?schema= once');
      if (!SCHEMA_NAME.test(value)) {
        throw new Error(
          `DATABASE_URL: schema ${JSON.stringify(value)} is not allowed; use 1-46 of a-z, 0-9 and _, not starting with a digit or pg_`,
        );
      }
      schema = value;
    } else if (key === 'pool') {
      if (poolSize !== null) throw new Error('DATABASE_URL: give ?pool= once');
      if (!/^[1-9]\d{0,2}$/.test(value) || Number(value) > MAX_POOL_SIZE) {
        throw new Error(`DATABASE_URL: pool ${JSON.stringify(value)} must be a whole number of connections from 1 to ${MAX_POOL_SIZE}`);
      }
      poolSize = Number(value);
    } else if (key === 'options') {
      // Merged with our search_path below: pg would let the URL's value replace ours.
      options = value;
    } else {
      kept.push(pair);
    }
  }
  const searchPath = schema === null ? undefined : `-c search_path=${schema}`;
  const mergedOptions = [options, searchPath].filter((part) => part !== undefined && part !== '').join(' ') || undefined;
  return {
    clientConfig: {
      connectionString: kept.length > 0 ? `${base}?${kept.join('&')}` : base,
      options: mergedOptions,
      types: { getTypeParser: typeParser },
    },
    schema,
    poolSize,
    channel: schema === null ? CHANNEL_PREFIX : `${CHANNEL_PREFIX}_${schema}`,
    display,
  };
}

function decodeQueryPart(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    throw new Error('DATABASE_URL: a query parameter is not valid percent-encoding');
  }
}

const INT8_OID = 20;

/**
 * bigint columns (sjids, sizes, mtimes) as JavaScript numbers. Every value the protocol
 * admits is a safe integer; anything else would be a corrupt row, so it throws rather than
 * rounding. Per client, so other users of `pg` in the process keep their parsers.
 */
function typeParser(oid: number, format?: string): (text: string) => unknown {
  if (oid === INT8_OID && format !== 'binary') {
    return (text: string) => {
      const value = Number(text);
      if (!Number.isSafeInteger(value)) throw new RangeError(`bigint ${text} is beyond the safe integer range`);
      return value;
    };
  }
  return pg.types.getTypeParser(oid, (format ?? 'text') as 'text');
}
