import pg from 'pg';
import { parseNamespaceId, type NamespaceId } from '../../protocol/index.ts';
import type { Logger } from '../log.ts';
import { InProcessJournalNotifier, type JournalNotifier } from '../notifier.ts';
import type { PostgresTarget } from './pg-target.ts';

/** Reconnect delays of the listener: doubling from the first to the last, with jitter. */
const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 5_000;

export interface ListenerOptions {
  /**
   * How often the idle listening connection is checked with a `SELECT 1`, and how long the
   * answer may take. A LISTEN connection carries nothing for long stretches; a peer or a
   * middlebox that vanished without closing it would otherwise go unnoticed for hours (TCP
   * keepalive defaults), and the check's traffic also keeps idle-timeout proxies from
   * dropping it. Defaults 30 s and 10 s.
   */
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
}
const SJID_TEXT = /^[1-9][0-9]{0,15}$/;

/** The NOTIFY payload a commit sends: `<namespace id>:<sjid>`. */
export function journalPayload(ns: NamespaceId, sjid: number): string {
  return `${ns}:${sjid}`;
}

/** A payload from the channel, or null when it is not one of ours (anyone may NOTIFY). */
export function parseJournalPayload(text: string): { ns: NamespaceId; sjid: number } | null {
  const colon = text.lastIndexOf(':');
  if (colon === -1) return null;
  const sjidText = text.slice(colon + 1);
  if (!SJID_TEXT.test(sjidText) || !Number.isSafeInteger(Number(sjidText))) return null;
  try {
    return { ns: parseNamespaceId(text.slice(0, colon)), sjid: Number(sjidText) };
  } catch {
    return null;
  }
}

/**
 * Wakes long polls on every server instance that shares a PostgreSQL schema. A commit sends
 * `pg_notify(channel, ns:sjid)` inside its transaction (PgMetadataStore), so it is heard only
 * once committed, whichever instance committed it; each instance holds one dedicated
 * connection that LISTENs on the schema's channel and wakes its local waiters.
 *
 * When that connection drops (PostgreSQL restarted, network cut) it reconnects with backoff,
 * and once listening again wakes every local waiter: a commit made while it was deaf would
 * otherwise go unnoticed until the poll times out. Waiters re-read the journal, so a wake
 * without news costs one empty page.
 */
export class PgJournalNotifier implements JournalNotifier {
  private readonly local = new InProcessJournalNotifier();
  private client: pg.Client | null = null;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay = RECONNECT_FIRST_MS;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private readonly heartbeatMs: number;
  private readonly heartbeatTimeoutMs: number;

  private constructor(
    private readonly target: PostgresTarget,
    private readonly logger: Logger,
    options: ListenerOptions,
  ) {
    this.heartbeatMs = options.heartbeatMs ?? 30_000;
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
  }

  /** Starts listening; fails when PostgreSQL cannot be reached now (later losses are retried). */
  static async open(target: PostgresTarget, logger: Logger, options: ListenerOptions = {}): Promise<PgJournalNotifier> {
    const notifier = new PgJournalNotifier(target, logger, options);
    await notifier.listen();
    return notifier;
  }

  wait(ns: string, afterSjid: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    return this.local.wait(ns, afterSjid, ms, signal);
  }

  /**
   * The commit route's own wake-up: local waiters hear their instance's commits at once.
   * The other instances hear the commit's NOTIFY; a second wake here changes nothing.
   */
  notify(ns: string, sjid: number): void {
    this.local.notify(ns, sjid);
  }

  /** True while the listening connection is up. */
  get listening(): boolean {
    return this.client !== null;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stopHeartbeat();
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({
      ...this.target.clientConfig,
      application_name: 'nearsync-listener',
      keepAlive: true,
      connectionTimeoutMillis: 5_000,
      // Bounds LISTEN and the heartbeat alike.
      query_timeout: this.heartbeatTimeoutMs,
    });
    client.on('error', (err) => this.logger.debug('postgres: journal listener error', { err: err.message }));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => {
      if (message.channel !== this.target.channel || message.payload === undefined) return;
      const parsed = parseJournalPayload(message.payload);
      if (parsed) this.local.notify(parsed.ns, parsed.sjid);
      else this.logger.warn('postgres: ignored a malformed journal notification', { channel: message.channel });
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${this.target.channel}"`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.startHeartbeat(client);
  }

  /**
   * One heartbeat at a time: the next is scheduled when the last has answered, because a
   * heartbeat may take up to heartbeatTimeoutMs and pg (from 9) refuses overlapping queries on
   * one client.
   */
  private startHeartbeat(client: pg.Client): void {
    this.stopHeartbeat();
    const beat = () => {
      this.heartbeatTimer = null;
      client.query('SELECT 1').then(
        () => {
          if (client === this.client && !this.closed) schedule();
        },
        (err: unknown) => {
          if (client !== this.client) return;
          this.logger.warn('postgres: journal listener stopped answering', { err: err instanceof Error ? err.message : String(err) });
          this.lost(client);
          // Ending may never complete on a dead link; the client is already forgotten.
          void client.end().catch(() => {});
        },
      );
    };
    const schedule = () => {
      this.heartbeatTimer = setTimeout(beat, this.heartbeatMs);
      this.heartbeatTimer.unref();
    };
    schedule();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private lost(client: pg.Client): void {
    if (client !== this.client || this.closed) return;
    this.client = null;
    this.stopHeartbeat();
    this.logger.warn('postgres: journal listener lost its connection; reconnecting', { channel: this.target.channel });
    this.reconnectDelay = RECONNECT_FIRST_MS;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const delay = this.reconnectDelay * (0.5 + Math.random() / 2);
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.listen().then(
        () => {
          if (this.closed) return;
          this.logger.info('postgres: journal listener reconnected', { channel: this.target.channel });
          this.local.wakeAll();
        },
        (err: unknown) => {
          this.logger.debug('postgres: journal listener reconnect failed', { err: err instanceof Error ? err.message : String(err) });
          this.scheduleReconnect();
        },
      );
    }, delay);
    // A pending reconnect alone does not keep the process alive.
    this.reconnectTimer.unref();
  }
}
