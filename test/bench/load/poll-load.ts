import { setMaxListeners } from 'node:events';
import { parseJournalPage, type Cursor } from '../../../src/protocol/index.ts';
import type { PollsStarted, PollsStopped, PollsWoken, PollTarget } from './generator-protocol.ts';
import { requestJson, unboundedAgent } from './http-client.ts';

/** Slack over the server's own wait before a poll counts as stuck. */
const POLL_SLACK_MS = 15_000;
/** Pause before re-polling after an error, so a failing server is not hammered. */
const ERROR_BACKOFF_MS = 1_000;
const MAX_ERROR_SAMPLES = 5;
/** Polls of one generator whose connection the server has not yet answered on. */
const MAX_OPENING = 64;

interface Poll {
  target: PollTarget;
  cursor: number;
  /** Date.now() when a page with entries last arrived. */
  lastEntriesAt: number;
}

/**
 * Journal long polls held open the way a sync client holds them: each poll waits at its
 * cursor and, when answered, polls again from the returned cursor. Every answer is checked
 * with the protocol's page validator.
 */
export class PollLoad {
  private readonly agent = unboundedAgent();
  private readonly stopped = new AbortController();
  private readonly polls: Poll[] = [];
  private answers = 0;
  private errors = 0;
  private readonly errorSamples: string[] = [];

  constructor(private readonly waitSeconds: number) {
    // Every open poll listens on this one signal: thousands of listeners are the point here.
    setMaxListeners(0, this.stopped.signal);
  }

  /**
   * Starts every poll, `openPerSecond` at most and at most MAX_OPENING still waiting for
   * their first answer; resolves when all are started. Each poll first reads its page
   * without waiting, as a sync client does: that answer shows the server accepted the
   * connection, so the bench never piles up more connections than the server's accept queue
   * holds (an overflow costs whole seconds of SYN retransmits, or resets).
   */
  async start(targets: PollTarget[], openPerSecond: number): Promise<PollsStarted> {
    const began = performance.now();
    let opening = 0;
    for (const target of targets) {
      while (opening >= MAX_OPENING || this.polls.length >= ((performance.now() - began) / 1000) * openPerSecond + 1) {
        if (this.stopped.signal.aborted) return { issued: this.polls.length };
        await sleep(5);
      }
      const poll: Poll = { target, cursor: target.cursor, lastEntriesAt: 0 };
      this.polls.push(poll);
      opening++;
      void this.run(poll, () => opening--);
    }
    return { issued: this.polls.length };
  }

  private async run(poll: Poll, opened: () => void): Promise<void> {
    const { url, ns, token } = poll.target;
    let first = true;
    while (!this.stopped.signal.aborted) {
      const asked = poll.cursor;
      const wait = first ? 0 : this.waitSeconds;
      try {
        const res = await requestJson(this.agent, url, 'GET', `/api/v1/ns/${ns}/journal?cursor=${asked}&wait=${wait}`, {
          token,
          timeoutMs: wait * 1000 + POLL_SLACK_MS,
          signal: this.stopped.signal,
        });
        if (res.status !== 200) throw new Error(`HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
        const page = parseJournalPage(res.body, asked as Cursor);
        if (!first) this.answers++;
        if (page.entries.length > 0) poll.lastEntriesAt = Date.now();
        poll.cursor = page.cursor;
      } catch (err) {
        if (this.stopped.signal.aborted) break;
        this.errors++;
        if (this.errorSamples.length < MAX_ERROR_SAMPLES) this.errorSamples.push(err instanceof Error ? err.message : String(err));
        await sleep(ERROR_BACKOFF_MS);
      } finally {
        if (first) {
          first = false;
          opened();
        }
      }
    }
  }

  /** Resolves once every poll has moved past its starting cursor, or reports how many had when time ran out. */
  async woken(timeoutMs: number): Promise<PollsWoken> {
    const deadline = Date.now() + timeoutMs;
    const woken = () => this.polls.filter((poll) => poll.cursor > poll.target.cursor);
    while (woken().length < this.polls.length && Date.now() < deadline) await sleep(10);
    const done = woken();
    return { woken: done.length, polls: this.polls.length, wokenAt: done.map((poll) => poll.lastEntriesAt) };
  }

  stop(): PollsStopped {
    this.stopped.abort();
    this.agent.destroy();
    return { answers: this.answers, errors: this.errors, errorSamples: this.errorSamples };
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
