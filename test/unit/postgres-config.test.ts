import { describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/server/storage/store-errors.ts';
import { asStoreError, errorMessage, isConnectionError } from '../../src/server/storage/pg-errors.ts';
import { journalPayload, parseJournalPayload } from '../../src/server/storage/pg-journal-notifier.ts';
import { parsePostgresUrl } from '../../src/server/storage/pg-target.ts';
import type { NamespaceId } from '../../src/protocol/index.ts';

/** DATABASE_URL parsing, connection-error classification and NOTIFY payloads, without a server. */

describe('parsePostgresUrl', () => {
  it('takes ?schema= out of the URL and selects it with search_path in the startup options', () => {
    const target = parsePostgresUrl('postgres://app:secret@db.internal:6432/nearsync?sslmode=require&schema=team_a&application_name=x');
    expect(target.schema).toBe('team_a');
    expect(target.clientConfig.connectionString).toBe('postgres://app:secret@db.internal:6432/nearsync?sslmode=require&application_name=x');
    expect(target.clientConfig.options).toBe('-c search_path=team_a');
    expect(target.channel).toBe('nearsync_journal_team_a');
    expect(target.display).toBe('postgres://app:***@db.internal:6432/nearsync?sslmode=require&schema=team_a&application_name=x');
  });

  it('leaves the server default search_path without ?schema=, on a channel of its own', () => {
    const target = parsePostgresUrl('postgresql://localhost/test');
    expect(target).toMatchObject({ schema: null, channel: 'nearsync_journal' });
    expect(target.clientConfig.connectionString).toBe('postgresql://localhost/test');
    expect(target.clientConfig.options).toBeUndefined();
  });

  it('keeps options given in the URL, adding the search_path to them', () => {
    const target = parsePostgresUrl('postgres://localhost/test?options=-c%20statement_timeout%3D5000&schema=s1');
    expect(target.clientConfig.options).toBe('-c statement_timeout=5000 -c search_path=s1');
    expect(target.clientConfig.connectionString).toBe('postgres://localhost/test');
  });

  it.each([
    ['Upper', 'upper case'],
    ['9lives', 'leading digit'],
    ['pg_temp', 'reserved prefix'],
    ['a-b', 'dash'],
    ['a b', 'space'],
    ['a"b', 'quote'],
    ['a;drop', 'semicolon'],
    ['', 'empty'],
    ['x'.repeat(47), 'longer than 46'],
  ])('refuses the schema %j (%s)', (schema) => {
    expect(() => parsePostgresUrl(`postgres://localhost/test?schema=${encodeURIComponent(schema)}`)).toThrow(/schema/);
  });

  it('accepts a 46-character schema, whose channel fits PostgreSQL identifiers', () => {
    const target = parsePostgresUrl(`postgres://localhost/test?schema=${'s'.repeat(46)}`);
    expect(Buffer.byteLength(target.channel)).toBeLessThanOrEqual(63);
  });

  it('takes ?pool= out of the URL as the pool size, and refuses what is not 1 to 500 connections', () => {
    const target = parsePostgresUrl('postgres://localhost/test?pool=40&schema=s1&sslmode=require');
    expect(target.poolSize).toBe(40);
    expect(target.clientConfig.connectionString).toBe('postgres://localhost/test?sslmode=require');
    expect(parsePostgresUrl('postgres://localhost/test').poolSize).toBeNull();
    for (const bad of ['0', '-1', '501', '1.5', 'ten', '', '010']) {
      expect(() => parsePostgresUrl(`postgres://localhost/test?pool=${bad}`)).toThrow(/pool/);
    }
    expect(() => parsePostgresUrl('postgres://localhost/test?pool=2&pool=3')).toThrow(/once/);
  });

  it('refuses a repeated schema, bad percent-encoding, a fragment and other schemes', () => {
    expect(() => parsePostgresUrl('postgres://localhost/test?schema=a&schema=b')).toThrow(/once/);
    expect(() => parsePostgresUrl('postgres://localhost/test?schema=%zz')).toThrow(/percent/);
    expect(() => parsePostgresUrl('postgres://localhost/test#x')).toThrow(/fragment/);
    expect(() => parsePostgresUrl('mysql://u:pw@localhost/test')).toThrow(/postgres:\/\/.*\*\*\*/);
  });
});

describe('PostgreSQL connection errors', () => {
  const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  it.each([
    withCode('ECONNREFUSED'),
    withCode('ECONNRESET'),
    withCode('57P01', 'terminating connection due to administrator command'),
    withCode('57P03', 'the database system is starting up'),
    withCode('08006'),
    withCode('53300', 'too many connections'),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
    new Error('timeout expired'),
    new Error('Connection terminated due to connection timeout'),
    new Error('Client has encountered a connection error and is not queryable'),
    new AggregateError([withCode('ECONNREFUSED')], ''),
  ])('counts %s as unavailable', (err) => {
    expect(isConnectionError(err)).toBe(true);
    const mapped = asStoreError(err);
    expect(mapped).toBeInstanceOf(StoreUnavailableError);
    expect((mapped as StoreUnavailableError).engine).toBe('postgres');
    expect((mapped as StoreUnavailableError).cause).toBe(err);
  });

  it.each([withCode('23505', 'duplicate key'), withCode('42P01', 'relation does not exist'), new TypeError('bad'), 'text'])(
    'passes %s through unchanged',
    (err) => {
      expect(isConnectionError(err)).toBe(false);
      expect(asStoreError(err)).toBe(err);
    },
  );

  it('describes an AggregateError by its parts', () => {
    const err = new AggregateError([new Error('connect ECONNREFUSED ::1:5432'), new Error('connect ECONNREFUSED 127.0.0.1:5432')], '');
    expect(errorMessage(err)).toBe('connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432');
  });
});

describe('journal NOTIFY payloads', () => {
  const ns = 'AbCdEfGhIjKlMnOpQrStUv' as NamespaceId;

  it('round-trip', () => {
    expect(parseJournalPayload(journalPayload(ns, 42))).toEqual({ ns, sjid: 42 });
    expect(parseJournalPayload(journalPayload(ns, Number.MAX_SAFE_INTEGER))).toEqual({ ns, sjid: Number.MAX_SAFE_INTEGER });
  });

  it.each(['', ns, `${ns}:`, `${ns}:0`, `${ns}:-1`, `${ns}:007`, `${ns}:1.5`, `${ns}:9007199254740993`, 'short:1', `${ns}!:1`, `:${ns}:1`])(
    'refuses %j',
    (payload) => {
      expect(parseJournalPayload(payload)).toBeNull();
    },
  );
});
