import { io, type Socket } from 'socket.io-client';
import { parseAdvertOut, parseWelcome } from '../../../src/protocol/index.ts';
import type { AdvertPlan, AdvertsResult, SocketsOpened, SocketTarget } from './generator-protocol.ts';

const MAX_ERROR_SAMPLES = 5;
/** How often a steady stream sends what is due. */
const STEADY_TICK_MS = 20;

interface Member {
  target: SocketTarget;
  socket: Socket;
}

interface SentAdvert {
  at: number;
  senderInstance: number;
}

/**
 * Relay sockets (socket.io-client over WebSocket), each in one namespace. A generator holds
 * every socket of the namespaces it was given, so an advert's send time and its deliveries
 * are read on one clock (performance.now() of this process).
 */
export class RelayLoad {
  private readonly members: Member[] = [];
  private readonly membersOf = new Map<string, Member[]>();
  /** Next cursor per namespace: every advert of a namespace carries a new one, so each is broadcast and can be told apart. */
  private readonly nextCursor = new Map<string, number>();
  /** Adverts of the running measurement, by `${ns}:${cursor}`. */
  private sent = new Map<string, SentAdvert>();
  private latencies: number[] = [];
  private crossLatencies: number[] = [];
  private delivered = 0;
  private crossDelivered = 0;
  private lastDeliveryAt = 0;
  private malformed = 0;

  async open(targets: SocketTarget[], concurrency: number, timeoutMs: number): Promise<SocketsOpened> {
    const errorSamples: string[] = [];
    let failed = 0;
    let next = 0;
    const deadline = Date.now() + timeoutMs;
    const worker = async () => {
      while (next < targets.length) {
        const target = targets[next++];
        try {
          this.add(await connect(target, Math.max(1, deadline - Date.now())), target);
        } catch (err) {
          failed++;
          if (errorSamples.length < MAX_ERROR_SAMPLES) errorSamples.push(err instanceof Error ? err.message : String(err));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, targets.length) }, worker));
    return { connected: this.members.length, failed, errorSamples };
  }

  private add(socket: Socket, target: SocketTarget): void {
    const member: Member = { target, socket };
    this.members.push(member);
    const list = this.membersOf.get(target.ns) ?? [];
    list.push(member);
    this.membersOf.set(target.ns, list);
    socket.on('advert', (payload: unknown) => this.onAdvert(member, payload));
    // "Each in a namespace and having sent an advert": the relay now holds one advert per socket.
    socket.emit('advert', { ns: target.ns, cursor: 0 });
    if (!this.nextCursor.has(target.ns)) this.nextCursor.set(target.ns, 1);
  }

  private onAdvert(member: Member, payload: unknown): void {
    const now = performance.now();
    let advert;
    try {
      advert = parseAdvertOut(payload);
    } catch {
      this.malformed++;
      return;
    }
    const sent = this.sent.get(`${advert.ns}:${advert.cursor}`);
    if (!sent) return; // an advert from before this measurement
    const latency = now - sent.at;
    this.delivered++;
    this.latencies.push(latency);
    if (sent.senderInstance !== member.target.instance) {
      this.crossDelivered++;
      this.crossLatencies.push(latency);
    }
    this.lastDeliveryAt = now;
  }

  async adverts(plan: AdvertPlan): Promise<AdvertsResult> {
    this.sent = new Map();
    this.latencies = [];
    this.crossLatencies = [];
    this.delivered = 0;
    this.crossDelivered = 0;
    this.malformed = 0;
    const senders = this.members.filter((m) => m.socket.connected && (plan.senderInstance === null || m.target.instance === plan.senderInstance));
    if (senders.length === 0) throw new Error('no connected sockets to send adverts from');
    let expected = 0;
    let turn = 0;
    const sendOne = () => {
      const sender = senders[turn++ % senders.length];
      const ns = sender.target.ns;
      const cursor = this.nextCursor.get(ns)!;
      this.nextCursor.set(ns, cursor + 1);
      this.sent.set(`${ns}:${cursor}`, { at: performance.now(), senderInstance: sender.target.instance });
      expected += this.membersOf.get(ns)!.filter((m) => m !== sender && m.socket.connected).length;
      sender.socket.emit('advert', { ns, cursor });
    };
    const firstSendAt = performance.now();
    if (plan.mode === 'burst') {
      for (let i = 0; i < senders.length; i++) sendOne();
    } else {
      let sentCount = 0;
      while (performance.now() - firstSendAt < plan.durationMs) {
        const due = Math.floor(((performance.now() - firstSendAt) / 1000) * plan.ratePerSecond) - sentCount;
        for (let i = 0; i < due; i++) sendOne();
        sentCount += Math.max(0, due);
        await sleep(STEADY_TICK_MS);
      }
    }
    const drainUntil = performance.now() + plan.drainMs;
    while (this.delivered < expected && performance.now() < drainUntil) await sleep(10);
    return {
      sent: this.sent.size,
      expected,
      delivered: this.delivered,
      crossDelivered: this.crossDelivered,
      latenciesMs: this.latencies.map(round2),
      crossLatenciesMs: this.crossLatencies.map(round2),
      spanMs: Math.max(0, (this.delivered > 0 ? this.lastDeliveryAt : performance.now()) - firstSendAt),
      malformed: this.malformed,
    };
  }

  close(): void {
    for (const member of this.members) member.socket.close();
    this.members.length = 0;
    this.membersOf.clear();
  }
}

/** Connects one socket and resolves on its validated `welcome`. */
function connect(target: SocketTarget, timeoutMs: number): Promise<Socket> {
  const socket = io(target.url, {
    auth: { tokens: [target.token] },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: timeoutMs,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no welcome in ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    };
    socket.once('connect_error', (err) => fail(new Error(`connect_error: ${err.message}`)));
    socket.once('welcome', (payload: unknown) => {
      clearTimeout(timer);
      try {
        parseWelcome(payload);
      } catch (err) {
        return fail(err instanceof Error ? err : new Error(String(err)));
      }
      resolve(socket);
    });
  });
}

const round2 = (ms: number) => Math.round(ms * 100) / 100;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
