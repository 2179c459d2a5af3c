import wrtc from '@roamhq/wrtc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockServer } from '../../src/engine/block-server.ts';
import { frameChannelOf, type FrameChannel } from '../../src/engine/frame-channel.ts';
import { PeerLink, PeerNackError, type PeerLinkOptions } from '../../src/engine/peer-link.ts';
import { PeerBlockSource } from '../../src/engine/peer-source.ts';
import { BLOCK_CHUNK_SIZE, MAX_BLOCK_SIZE, MAX_DATA_BYTES, decodeFrame, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, hashOf } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * Two real WebRTC peer connections (@roamhq/wrtc) in this process, joined over loopback
 * only: just the 127.0.0.1 host candidates are handed across, so no packet leaves the
 * machine. Each test opens its own negotiated data channel on the same connection.
 */

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const OTHER = 'otherotherotherother12' as NamespaceId;
const BLOCKS = 16;

type Pc = RTCPeerConnection;
let left: Pc;
let right: Pc;
let nextChannelId = 1;
const store = new MemoryBlockStore();
const hashes: BlockHash[] = [];

function blockOf(index: number): Uint8Array {
  const bytes = new Uint8Array(MAX_BLOCK_SIZE);
  const words = new Uint32Array(bytes.buffer);
  let x = (index + 1) * 2654435761;
  for (let i = 0; i < words.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    words[i] = x;
  }
  return bytes;
}

function opened(dc: RTCDataChannel): Promise<void> {
  return new Promise((resolve) => (dc.readyState === 'open' ? resolve() : dc.addEventListener('open', () => resolve())));
}

async function connectOverLoopback(): Promise<[Pc, Pc]> {
  const a: Pc = new wrtc.RTCPeerConnection({ iceServers: [] });
  const b: Pc = new wrtc.RTCPeerConnection({ iceServers: [] });
  const loopbackOnly = (candidate: RTCIceCandidate | null) => candidate !== null && / 127\.0\.0\.1 /.test(candidate.candidate);
  a.onicecandidate = (event) => void (loopbackOnly(event.candidate) && b.addIceCandidate(event.candidate!));
  b.onicecandidate = (event) => void (loopbackOnly(event.candidate) && a.addIceCandidate(event.candidate!));
  // A channel must exist before the offer so that the SDP negotiates SCTP.
  const first = [a.createDataChannel('blocks', { negotiated: true, id: 0 }), b.createDataChannel('blocks', { negotiated: true, id: 0 })];
  const offer = await a.createOffer();
  await a.setLocalDescription(offer);
  await b.setRemoteDescription(offer);
  const answer = await b.createAnswer();
  await b.setLocalDescription(answer);
  await a.setRemoteDescription(answer);
  await Promise.all(first.map(opened));
  return [a, b];
}

/** A fresh negotiated channel pair on the shared connection. */
async function channelPair(): Promise<[RTCDataChannel, RTCDataChannel]> {
  const id = nextChannelId++;
  const a = left.createDataChannel(`blocks-${id}`, { negotiated: true, id });
  const b = right.createDataChannel(`blocks-${id}`, { negotiated: true, id });
  await Promise.all([opened(a), opened(b)]);
  return [a, b];
}

/** A client link on the left, a server link on the right serving `server`. */
async function links(server: BlockServer, serverOptions: Partial<PeerLinkOptions> = {}) {
  const [a, b] = await channelPair();
  const client = new PeerLink({ channel: frameChannelOf(a), sharedNamespaces: [NS] });
  const serving = new PeerLink({ channel: frameChannelOf(b), sharedNamespaces: [NS], server, ...serverOptions });
  return { client, serving, a, b };
}

/** Fetches every block with `depth` requests in flight; returns the blocks in order and MB/s. */
async function fetchAll(source: PeerBlockSource, depth: number): Promise<{ blocks: Uint8Array[]; mbps: number }> {
  const blocks: Uint8Array[] = new Array(hashes.length);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: depth }, async () => {
      while (next < hashes.length) {
        const index = next++;
        blocks[index] = await source.fetchBlock({ ns: NS, hash: hashes[index], sjid: 1, sizeHint: MAX_BLOCK_SIZE }, new AbortController().signal);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { blocks, mbps: blocks.reduce((n, b) => n + b.length, 0) / seconds / 1e6 };
}

/** A bare channel moving the same bytes in messages of `size`, paced by polling bufferedAmount. */
async function rawChannelMbps(size: number, total = BLOCKS * MAX_BLOCK_SIZE): Promise<number> {
  const [a, b] = await channelPair();
  let received = 0;
  const done = new Promise<void>((resolve) => {
    b.onmessage = (event) => {
      received += (event.data as ArrayBuffer).byteLength;
      if (received >= total) resolve();
    };
  });
  const message = new Uint8Array(size);
  const started = performance.now();
  for (let sent = 0; sent < total; ) {
    if (a.bufferedAmount > 1024 * 1024) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    a.send(message);
    sent += size;
  }
  await done;
  const seconds = (performance.now() - started) / 1000;
  a.close();
  return received / seconds / 1e6;
}

/** Passes everything through, but reports a full buffer once one message was sent. */
function stuckAfterFirstSend(inner: FrameChannel): FrameChannel {
  let sent = 0;
  const outer: FrameChannel = {
    get isOpen() {
      return inner.isOpen;
    },
    send: (bytes) => {
      // Block data counts; the link's own announcement when it opens (a HAVE) does not.
      if (decodeFrame(bytes).type === 'data') sent += 1;
      inner.send(bytes);
    },
    get bufferedAmount() {
      return sent > 0 ? Number.MAX_SAFE_INTEGER : inner.bufferedAmount;
    },
    bufferedAmountLowThreshold: 0,
    onopen: null,
    onmessage: null,
    onbufferedamountlow: null,
    onclose: null,
    close: () => inner.close(),
  };
  inner.onmessage = (bytes) => outer.onmessage?.(bytes);
  inner.onclose = () => outer.onclose?.();
  return outer;
}


beforeAll(async () => {
  [left, right] = await connectOverLoopback();
  for (let i = 0; i < BLOCKS; i++) {
    const bytes = blockOf(i);
    const hash = hashOf(bytes);
    hashes.push(hash);
    await store.putBlock(hash, bytes);
  }
});

afterAll(() => {
  left?.close();
  right?.close();
});

const honest = new BlockServer(store, async (ns, hash) => ns === NS && hashes.includes(hash));

describe('peer link over @roamhq/wrtc data channels', () => {
  it(`fetches ${BLOCKS} × 4 MiB blocks, each matching its hash`, async () => {
    const { client, serving } = await links(honest);
    const source = new PeerBlockSource('right', client, { maxInFlight: 6 });
    const { blocks, mbps } = await fetchAll(source, source.maxInFlight);
    for (let i = 0; i < BLOCKS; i++) expect(hashOf(blocks[i])).toBe(hashes[i]);
    expect(source.bytesReceived).toBe(BLOCKS * MAX_BLOCK_SIZE);
    expect(serving.bytesSent).toBe(BLOCKS * MAX_BLOCK_SIZE);
    console.log(
      `peer link, ${BLOCKS} × 4 MiB, chunk ${BLOCK_CHUNK_SIZE / 1024} KiB, depth ${source.maxInFlight}: ` +
        `${mbps.toFixed(1)} MB/s (source EWMA ${(source.bytesPerSecond() / 1e6).toFixed(1)} MB/s)`,
    );
    client.close();
    serving.close();
  });

  it("delivers a lying peer's bytes as sent, and the caller's hash check catches them", async () => {
    const flipped = new MemoryBlockStore();
    for (const hash of hashes.slice(0, 2)) await flipped.putBlock(hash, (await store.getBlock(hash))!.map((x) => x ^ 0x55));
    const liar = new BlockServer(flipped, async () => true);
    const { client, serving } = await links(liar);
    for (const hash of hashes.slice(0, 2)) {
      const bytes = await client.request(NS, hash);
      expect(bytes.length).toBe(MAX_BLOCK_SIZE);
      expect(hashOf(bytes)).not.toBe(hash);
      expect(hashOf(bytes)).toBe(hashOf((await flipped.getBlock(hash))!));
    }
    client.close();
    serving.close();
  });

  it('refuses a namespace the two do not share', async () => {
    const { client, serving } = await links(honest);
    client.setSharedNamespaces([NS, OTHER]);
    await expect(client.request(OTHER, hashes[0])).rejects.toMatchObject({ reason: 'forbidden' });
    expect(hashOf(await client.request(NS, hashes[0]))).toBe(hashes[0]);
    client.close();
    serving.close();
  });

  it.each([
    ['the serving link closes', 'link'],
    ['its data channel is closed under it', 'channel'],
  ] as const)('rejects a request cut off mid-block when %s', async (_label, what) => {
    const [a, b] = await channelPair();
    const client = new PeerLink({ channel: frameChannelOf(a), sharedNamespaces: [NS] });
    // The serving side sees its buffer full after the first chunk, so the block stays unfinished.
    const serving = new PeerLink({ channel: stuckAfterFirstSend(frameChannelOf(b)), sharedNamespaces: [NS], server: honest });
    const pending = client.request(NS, hashes[3]);
    await until(() => client.bytesReceived > 0, 10_000);
    if (what === 'link') serving.close();
    else b.close();
    const error = await pending.then(
      () => null,
      (reason: unknown) => reason,
    );
    // A closing link NACKs what it owed, but a channel may drop that frame as it closes.
    if (what === 'link' && error instanceof PeerNackError) expect(error.reason).toBe('shutting_down');
    else expect(error).toMatchObject({ code: 'closed' });
    expect(client.bytesReceived).toBe(BLOCK_CHUNK_SIZE);
    await until(() => client.isClosed && serving.isClosed, 10_000);
  });

  it('measures chunk sizes against a bare channel (reported, not asserted)', async () => {
    const rows: string[] = [];
    for (const chunk of [16 * 1024, 64 * 1024, 128 * 1024, MAX_DATA_BYTES]) {
      const { client, serving } = await links(honest, { chunkSize: chunk });
      const { blocks, mbps } = await fetchAll(new PeerBlockSource('right', client, { maxInFlight: 6 }), 6);
      expect(blocks.every((bytes, i) => bytes.length === MAX_BLOCK_SIZE && (i > 0 || hashOf(bytes) === hashes[0]))).toBe(true);
      client.close();
      serving.close();
      const raw = await rawChannelMbps(chunk);
      rows.push(`chunk ${String(Math.round(chunk / 1024)).padStart(3)} KiB: link ${mbps.toFixed(1)} MB/s, bare channel ${raw.toFixed(1)} MB/s, ratio ${(mbps / raw).toFixed(2)}`);
    }
    console.log(`peer link throughput, ${BLOCKS} × 4 MiB per row, @roamhq/wrtc over loopback:\n  ${rows.join('\n  ')}`);
  });
});
