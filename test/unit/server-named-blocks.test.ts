import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sendForServerToName } from '../../src/engine/server-named-blocks.ts';
import type { BlockHash } from '../../src/protocol/index.ts';

/**
 * The order and bookkeeping of an unread upload (the server side and the browser's use of it
 * are tested against the real server in engine-upload-keep-later, api-blocks and
 * uploads-at-once): names come back in file order however the sends finish, a server that
 * cannot name blocks costs at most one wave of sends, a failed send stops the others, and a
 * source that can no longer be read says so instead of the network error it causes.
 */

const name = async (body: Blob): Promise<BlockHash> => createHash('sha256').update(new Uint8Array(await body.arrayBuffer())).digest('hex') as BlockHash;
const hashOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('sendForServerToName', () => {
  it('names every block in file order, the last one short, however the sends finish', async () => {
    const bytes = new Uint8Array(10 * 1000 + 7).map((_, i) => (i * 7) % 251);
    const source = new Blob([bytes]);
    let delay = 20;
    const sent: number[] = [];
    const hashes = await sendForServerToName(
      source.size,
      (offset, length) => source.slice(offset, offset + length),
      async (body) => {
        // Earlier blocks finish later.
        await new Promise((resolve) => setTimeout(resolve, (delay = Math.max(0, delay - 2))));
        return name(body);
      },
      4,
      (length) => sent.push(length),
      1000,
    );
    expect(hashes).toEqual(Array.from({ length: 11 }, (_, i) => ({ hash: hashOf(bytes.subarray(i * 1000, (i + 1) * 1000)), offset: i * 1000, length: i < 10 ? 1000 : 7 })));
    expect(sent.reduce((a, b) => a + b, 0)).toBe(bytes.length);
  });

  it('sends the first wave together, and stops at a server that cannot name blocks: one wave at most, then null', async () => {
    const source = new Blob([new Uint8Array(10_000)]);
    let calls = 0;
    let inFlight = 0;
    let mostInFlight = 0;
    const result = await sendForServerToName(source.size, (offset, length) => source.slice(offset, offset + length), async () => {
      calls += 1;
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight -= 1;
      return null;
    }, 4, () => {}, 1000);
    expect(result).toBeNull();
    expect(mostInFlight).toBe(4);
    expect(calls).toBe(4);
  });

  it('answers null when the server stops naming blocks part-way (a mixed fleet), so the caller sends by name', async () => {
    const source = new Blob([new Uint8Array(10_000).map((_, i) => i % 251)]);
    let calls = 0;
    const sent: number[] = [];
    const result = await sendForServerToName(
      source.size,
      (offset, length) => source.slice(offset, offset + length),
      async (body) => {
        calls += 1;
        // The sixth request reaches an instance without the route.
        if (calls === 6) return null;
        return name(body);
      },
      2,
      (length) => sent.push(length),
      1000,
    );
    expect(result).toBeNull();
    expect(sent.length).toBeGreaterThanOrEqual(5);
    // Both senders stop: at most the one already out finishes after the refusal.
    expect(calls).toBeLessThanOrEqual(7);
  });

  it('stops the other senders after a failure, and reports a source that no longer reads rather than the network error', async () => {
    const source = new Blob([new Uint8Array(20_000)]);
    let calls = 0;
    const unreadable = new DOMException('The requested file could not be read', 'NotReadableError');
    const failing = sendForServerToName(
      source.size,
      (offset, length) => {
        const slice = source.slice(offset, offset + length);
        // Block 3 comes from a file changed since it was picked: reading it fails.
        return offset === 3000 ? ({ size: length, slice: () => ({ arrayBuffer: () => Promise.reject(unreadable) }) } as unknown as Blob) : slice;
      },
      async (body) => {
        calls += 1;
        if (body.size === 1000 && !(body instanceof Blob)) throw new TypeError('Failed to fetch');
        await new Promise((resolve) => setTimeout(resolve, 5));
        return name(body);
      },
      2,
      () => {},
      1000,
    );
    await expect(failing).rejects.toBe(unreadable);
    // Two senders: each stops at its next block, far short of all 20.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls).toBeLessThanOrEqual(6);
  });
});
