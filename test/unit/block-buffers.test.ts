import { describe, expect, it } from 'vitest';
import { BlockBufferPool, readBodyInto } from '../../src/engine/block-buffers.ts';
import { PeerLink } from '../../src/engine/peer-link.ts';
import { PeerBlockSource } from '../../src/engine/peer-source.ts';
import { BlockScheduler } from '../../src/engine/scheduler.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { ServerBlockSource } from '../../src/engine/server-source.ts';
import type { WantedBlock } from '../../src/engine/types.ts';
import { BlockServer } from '../../src/engine/block-server.ts';
import { ValidationError, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';
import { MemoryChannel } from '../support/memory-channel.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { blockOf } from '../support/seeded-block.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const MiB = 1024 * 1024;


/** A byte stream that hands out `bytes` in chunks of `chunk` (BYOB reads fill the caller's buffer). */
function byteStream(bytes: Uint8Array, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    type: 'bytes',
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      const request = controller.byobRequest;
      if (request?.view) {
        const view = new Uint8Array(request.view.buffer, request.view.byteOffset, request.view.byteLength);
        const n = Math.min(chunk, view.length, bytes.length - offset);
        view.set(bytes.subarray(offset, offset + n));
        offset += n;
        request.respond(n);
      } else {
        const n = Math.min(chunk, bytes.length - offset);
        controller.enqueue(bytes.slice(offset, offset + n));
        offset += n;
      }
    },
  });
}

/** A plain (not byte) stream: no BYOB reader. */
function chunkStream(bytes: Uint8Array, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunk));
      offset += chunk;
    },
  });
}

describe('BlockBufferPool', () => {
  it('hands a returned buffer out again, ignores buffers it did not lend, and keeps a bounded number', () => {
    const pool = new BlockBufferPool(1024, 2);
    const a = pool.take();
    pool.give(new Uint8Array(a, 0, 10));
    expect(pool.take()).toBe(a);
    pool.give(new Uint8Array(1024));
    expect(pool.freeCount).toBe(0);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const buffer of taken) pool.give(new Uint8Array(buffer));
    expect(pool.freeCount).toBe(2);
    // Given twice: only once back.
    pool.give(new Uint8Array(taken[0]));
    expect(pool.freeCount).toBe(2);
    pool.trim();
    expect(pool.freeCount).toBe(0);
  });
});

describe('readBodyInto', () => {
  it('reads a byte stream into a pooled buffer with a BYOB reader', async () => {
    const pool = new BlockBufferPool(4 * MiB);
    const bytes = blockOf(3 * MiB + 5, 1);
    const read = await readBodyInto(byteStream(bytes), bytes.length, pool);
    expect(hashOf(read)).toBe(hashOf(bytes));
    expect(pool.owns(read)).toBe(true);
    pool.give(read);
    expect(pool.freeCount).toBe(1);
    // The same memory serves the next body.
    const again = await readBodyInto(byteStream(blockOf(2 * MiB, 2)), 2 * MiB, pool);
    expect(pool.created).toBe(1);
    expect(hashOf(again)).toBe(hashOf(blockOf(2 * MiB, 2)));
  });

  it('reads a stream without BYOB by copying its chunks', async () => {
    const pool = new BlockBufferPool(4 * MiB);
    const bytes = blockOf(MiB + 3, 3);
    const read = await readBodyInto(chunkStream(bytes), bytes.length, pool);
    expect(hashOf(read)).toBe(hashOf(bytes));
    expect(pool.owns(read)).toBe(true);
  });

  it('refuses a body shorter or longer than declared', async () => {
    const pool = new BlockBufferPool(4 * MiB);
    const bytes = blockOf(MiB, 4);
    await expect(readBodyInto(byteStream(bytes), MiB + 1, pool)).rejects.toThrow(/ended after/);
    await expect(readBodyInto(byteStream(bytes), MiB - 1, pool)).rejects.toThrow(ValidationError);
    await expect(readBodyInto(chunkStream(bytes), MiB - 1, pool)).rejects.toThrow(ValidationError);
    await expect(readBodyInto(byteStream(bytes), 5 * MiB, pool)).rejects.toThrow(RangeError);
  });
});

/** Wanted blocks of the given bytes. */
function wants(blocks: Uint8Array[]): WantedBlock[] {
  return blocks.map((bytes, i) => ({ ns: NS, hash: hashOf(bytes), sjid: i + 1, sizeHint: bytes.length }));
}

describe('pooled block buffers in the scheduler', () => {
  it('fetches from the server into a few reused buffers, byte-exact', async () => {
    const blocks = Array.from({ length: 24 }, (_, i) => blockOf(i === 23 ? 100_000 : 2 * MiB + i, 10 + i));
    const byHash = new Map(blocks.map((bytes) => [hashOf(bytes), bytes]));
    const api = new ServerApi('http://server.test', 'token', async (url) => {
      const hash = new URL(url).pathname.split('/').pop() as BlockHash;
      const bytes = byHash.get(hash)!;
      return new Response(byteStream(bytes), { headers: { 'content-length': String(bytes.length) } });
    });
    const pool = new BlockBufferPool(4 * MiB);
    const server = new ServerBlockSource(api, 4, pool);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [server], maxInFlight: 4, events: {} });
    scheduler.setWanted(wants(blocks));
    await scheduler.whenIdle();
    for (const [hash, bytes] of byHash) expect(hashOf((await store.getBlock(hash))!)).toBe(hashOf(bytes));
    // At most the requests in flight plus what may wait to be hashed and stored (32 MiB).
    expect(pool.created).toBeLessThanOrEqual(4 + 16 + 1);
    expect(pool.created).toBeLessThan(23);
    expect(pool.freeCount).toBe(Math.min(16, pool.created));
  });

  it('receives peer blocks into reused buffers and takes back the buffers of failed requests', async () => {
    const blocks = Array.from({ length: 12 }, (_, i) => blockOf(MiB + 1000 * i, 40 + i));
    const device = new MemoryBlockStore();
    const live = new Set<BlockHash>();
    for (const bytes of blocks) {
      await device.putBlock(hashOf(bytes), bytes);
      live.add(hashOf(bytes));
    }
    const [ours, theirs] = MemoryChannel.pair();
    const pool = new BlockBufferPool(4 * MiB);
    const link = new PeerLink({ channel: ours, sharedNamespaces: [NS], buffers: pool });
    const remote = new PeerLink({ channel: theirs, sharedNamespaces: [NS], server: new BlockServer(device, async (_ns, hash) => live.has(hash)) });
    try {
      const peer = new PeerBlockSource('peer', link);
      peer.setAdvert(NS, 1000);
      const store = new MemoryBlockStore();
      const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [peer], maxInFlight: 12, events: {} });
      scheduler.setWanted(wants(blocks));
      await scheduler.whenIdle();
      for (const bytes of blocks) expect(hashOf((await store.getBlock(hashOf(bytes)))!)).toBe(hashOf(bytes));
      expect(pool.created).toBeLessThanOrEqual(7);
      const created = pool.created;
      const free = pool.freeCount;
      expect(free).toBe(created);

      // A request given up part way (after some of its data arrived) gives its buffer back.
      const abort = new AbortController();
      let frames = 0;
      ours.tap = () => {
        if (++frames === 3) abort.abort(new Error('given up'));
      };
      await expect(link.request(NS, hashOf(blocks[5]), abort.signal, blocks[5].length)).rejects.toThrow('given up');
      expect(frames).toBeGreaterThanOrEqual(3);
      expect(pool.created).toBe(created);
      expect(pool.freeCount).toBe(free);
    } finally {
      link.close();
      remote.close();
    }
  });
});

describe('a store that hashes and stores in one step (putVerified)', () => {
  /** Stores only bytes whose hash matches, as the browser's block writer does; counts its calls. */
  class VerifyingStore extends MemoryBlockStore {
    verified = 0;
    async putVerified(hash: BlockHash, bytes: Uint8Array): Promise<BlockHash> {
      this.verified += 1;
      const actual = await nodeSha256(bytes);
      if (actual === hash) await this.putBlock(hash, bytes);
      // The buffer is handed over: the caller must not use the bytes again.
      bytes.fill(0);
      return actual;
    }
  }

  it('is used instead of the scheduler hashing and storing, and a peer whose bytes do not match is penalised', async () => {
    const good = blockOf(2 * MiB, 70);
    const bad = blockOf(2 * MiB, 71);
    const badWant: WantedBlock = { ns: NS, hash: hashOf(blockOf(2 * MiB, 72)), sjid: 1, sizeHint: 2 * MiB };
    const peer = {
      id: 'liar',
      kind: 'peer' as const,
      maxInFlight: 2,
      canServe: (want: WantedBlock) => want.hash === badWant.hash,
      fetchBlock: async () => bad.slice(),
    };
    const server = {
      id: 'server',
      kind: 'server' as const,
      maxInFlight: 2,
      canServe: () => true,
      fetchBlock: async (want: WantedBlock) => (want.hash === hashOf(good) ? good.slice() : blockOf(2 * MiB, 72)),
    };
    const store = new VerifyingStore();
    const penalised: string[] = [];
    const stored: number[] = [];
    const scheduler = new BlockScheduler({
      store,
      sha256: () => Promise.reject(new Error('the store hashes')),
      sources: () => [peer, server],
      maxInFlight: 4,
      events: { penalised: (source) => penalised.push(source.id), stored: (_want, bytes) => stored.push(bytes) },
    });
    scheduler.setWanted([{ ns: NS, hash: hashOf(good), sjid: 1, sizeHint: 2 * MiB }, badWant]);
    await scheduler.whenIdle();
    expect(penalised).toEqual(['liar']);
    expect(await store.hasBlocks([hashOf(good), badWant.hash])).toEqual(new Set([hashOf(good), badWant.hash]));
    expect(stored).toEqual([2 * MiB, 2 * MiB]);
    expect(store.verified).toBe(3);
  });
});
