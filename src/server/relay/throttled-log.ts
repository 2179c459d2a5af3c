import type { LogFields } from '../log.ts';

/**
 * A log for failures that come in streams while a back end is away (every event, every
 * sweep): the first line of each message goes out at once, then at most one per interval,
 * counting the ones left out in `suppressed`.
 */
export function throttledLog(write: (msg: string, fields: LogFields) => void, intervalMs = 10_000): (msg: string, fields?: LogFields) => void {
  const streams = new Map<string, { last: number; suppressed: number }>();
  return (msg, fields = {}) => {
    const now = Date.now();
    const stream = streams.get(msg);
    if (stream && now - stream.last < intervalMs) {
      stream.suppressed++;
      return;
    }
    write(msg, { ...fields, suppressed: stream?.suppressed ?? 0 });
    streams.set(msg, { last: now, suppressed: 0 });
  };
}
