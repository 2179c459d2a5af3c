/**
 * Messages between the bench (orchestrator) and its load-generator children over the
 * child_process IPC channel. Each command carries an id; the generator answers every command
 * once, with the same id.
 */

export interface Credentials {
  /** Base URL of the server instance to talk to, e.g. http://127.0.0.1:40123. */
  url: string;
  ns: string;
  token: string;
}

export interface PollTarget extends Credentials {
  /** Start polling after this sjid (the namespace's head: the poll waits). */
  cursor: number;
}

export interface SocketTarget extends Credentials {
  /** Which server instance (0, 1) the socket is on, to tell same- from cross-instance deliveries. */
  instance: number;
}

export type GeneratorCommand =
  /** Opens a long poll per target (re-polling whenever one answers) at about `openPerSecond`. */
  | { id: number; cmd: 'polls.start'; targets: PollTarget[]; waitSeconds: number; openPerSecond: number }
  /** Waits until every poll has received an entry past the cursor it started at. */
  | { id: number; cmd: 'polls.woken'; timeoutMs: number }
  /** Stops re-polling and aborts the polls still open. */
  | { id: number; cmd: 'polls.stop' }
  /** Connects one relay socket per target (at most `concurrency` handshakes at once); each sends an advert with cursor 0. */
  | { id: number; cmd: 'sockets.open'; targets: SocketTarget[]; concurrency: number; timeoutMs: number }
  | { id: number; cmd: 'adverts.run'; plan: AdvertPlan }
  | { id: number; cmd: 'sockets.close' }
  | { id: number; cmd: 'commits.run'; committers: Credentials[]; block: { hash: string; size: number }; durationMs: number; label: string }
  | { id: number; cmd: 'reads.run'; readers: Credentials[]; limit: number; durationMs: number }
  /** This process's CPU and event-loop delay since the last reset. */
  | { id: number; cmd: 'stats'; reset: boolean };

export interface AdvertPlan {
  /** burst: every sender sends one advert at once; steady: `ratePerSecond` adverts for `durationMs`. */
  mode: 'burst' | 'steady';
  ratePerSecond: number;
  durationMs: number;
  /** How long to wait for deliveries after the last send. */
  drainMs: number;
  /** Only sockets on this instance send (null: any socket). */
  senderInstance: number | null;
}

export type GeneratorReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface PollsStarted {
  issued: number;
}

export interface PollsWoken {
  woken: number;
  polls: number;
  /** Date.now() when each woken poll got its entry (the host clock, comparable across processes). */
  wokenAt: number[];
}

export interface PollsStopped {
  answers: number;
  errors: number;
  /** A few error descriptions, for the log. */
  errorSamples: string[];
}

export interface SocketsOpened {
  connected: number;
  failed: number;
  errorSamples: string[];
}

export interface AdvertsResult {
  sent: number;
  /** Deliveries that should happen: for each advert, the other connected members of its namespace. */
  expected: number;
  delivered: number;
  /** Deliveries to a socket on another instance than the sender's. */
  crossDelivered: number;
  /** Milliseconds from send to receive, every delivery (same process, same clock). */
  latenciesMs: number[];
  crossLatenciesMs: number[];
  /** performance.now() spans in this process: first send to last delivery. */
  spanMs: number;
  /** Events that failed the protocol's validation. */
  malformed: number;
}

export interface RequestLoadResult {
  ok: number;
  failed: number;
  latenciesMs: number[];
  elapsedMs: number;
  /** Journal entries read (reads only). */
  entries: number;
  errorSamples: string[];
}

export interface GeneratorStats {
  /** CPU of this process since the last reset, percent of one core. */
  cpuPercent: number;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
}
