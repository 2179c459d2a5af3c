import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { BLOCK_CHUNK_SIZE } from '../../src/protocol/index.ts';
import type { NetnsHarness } from '../netns/harness.ts';
import type { BrowserKind } from './flags.ts';
import { readConnectionStats, RECORD_CONNECTIONS_SCRIPT, statsBetween, type ConnectionStats } from './connection-stats.ts';
import { cpuBetween, cpuTimes, machineShares, secondsPerGiB, type MachineCpu, type TreeCpu } from './process-cpu.ts';
import { closeProfiles, collectPageErrors, openProfiles } from './profiles.ts';
import { median } from './report.ts';

/**
 * The ceiling for peer throughput: a bare RTCDataChannel between two browser profiles of the
 * same kind as the benchmark's joiners (separate processes, or contexts of one), each end in
 * a dedicated worker as the app's block channel is, sending messages of the app's chunk size
 * with bufferedAmount backpressure. Uses the data-channel test page of test/netns/pages/channel
 * (simple-peer on the page; signals relayed by this process).
 */

const PAGE_DIR = fileURLToPath(new URL('../netns/pages/channel/', import.meta.url));
const SIMPLE_PEER_BUNDLE = fileURLToPath(new URL('../../node_modules/simple-peer/simplepeer.min.js', import.meta.url));
/** Negotiated stream ids for the measurement channels: clear of simple-peer's in-band id. */
const FIRST_CHANNEL_ID = 2000;
/** Measured transfers (median reported), after one unmeasured warm-up (SCTP's window opens up). */
const TRANSFERS = 5;
const WARM_UP_BYTES = 8 * 1024 * 1024;
/** A transfer of tens of MiB takes seconds; one that has not finished after this is stuck. */
const STALL_MS = 30_000;

/** The part of the channel page's `window.channelTest` this benchmark drives. */
interface ChannelPage {
  startPeer(options: { initiator: boolean }): boolean;
  waitConnected(): Promise<{ local: string | null; remote: string | null }>;
  signal(json: string): void;
  openWorkerChannel(id: number, options?: { mode?: 'transfer' | 'relay' }): Promise<{ transferred: boolean }>;
  sendOnChannel(id: number, options: { totalBytes: number; messageBytes: number; hash?: boolean }): Promise<{ startedAt: number }>;
  receiveOnChannel(id: number, options: { totalBytes: number; hash?: boolean }): Promise<{ bytes: number; lastAt: number }>;
  closeChannel(id: number): Promise<void>;
  channelProgress(id: number): Promise<Record<string, unknown>>;
}
type WithChannelPage = { channelTest: ChannelPage; channelTestReady?: boolean };

export interface RawChannelResult {
  /** Median of the transfers, MB/s (1e6 bytes). */
  mbps: number;
  samples: number[];
  messageBytes: number;
  bytesPerTransfer: number;
  /** Whether the channel was transferred into the worker (else relayed through a MessagePort). */
  transferred: boolean;
  /**
   * The receiving browser's CPU (all its processes) over the measured transfers, per GiB
   * received, and where it went by thread; null when it cannot be read (contexts, not Linux).
   */
  receiverCpuSecondsPerGiB: number | null;
  receiverCpu: TreeCpu | null;
  /** The same for the sending browser, per GiB sent: what an office seeder's CPU compares with. */
  senderCpuSecondsPerGiB: number | null;
  senderCpu: TreeCpu | null;
  /** The receiving browser's connection over the measured transfers (packets, the pair in use). */
  receiverConnection: ConnectionStats[];
  /** Shares of the machine's CPU busy and stolen by the host (all cores) over the measured transfers; null off Linux. */
  machine: { busy: number; steal: number } | null;
}

export async function measureRawChannel(harness: NetnsHarness, kind: BrowserKind, bytesPerTransfer: number): Promise<RawChannelResult> {
  const site = await harness.serveFiles({
    '/index.html': `${PAGE_DIR}index.html`,
    '/page.js': `${PAGE_DIR}page.js`,
    '/channel-worker.js': `${PAGE_DIR}channel-worker.js`,
    '/simplepeer.min.js': SIMPLE_PEER_BUNDLE,
  });
  const errors: string[] = [];
  const profiles = await openProfiles(harness, kind, 2, { initScripts: [RECORD_CONNECTIONS_SCRIPT] });
  try {
    const [sender, receiver] = profiles.map((profile) => profile.page);
    for (const [name, page, other] of [
      ['sender', sender, receiver],
      ['receiver', receiver, sender],
    ] as const) {
      collectPageErrors(page, name, errors);
      await page.exposeFunction('__sendSignal', (json: string) =>
        other.evaluate((j) => (window as unknown as WithChannelPage).channelTest.signal(j), json),
      );
      await page.goto(`${site.origin}/index.html`);
      await page.waitForFunction(() => (window as unknown as WithChannelPage).channelTestReady === true);
    }
    await receiver.evaluate(() => (window as unknown as WithChannelPage).channelTest.startPeer({ initiator: false }));
    await sender.evaluate(() => (window as unknown as WithChannelPage).channelTest.startPeer({ initiator: true }));
    await withTimeout(
      Promise.all([sender, receiver].map((page) => page.evaluate(() => (window as unknown as WithChannelPage).channelTest.waitConnected()))),
      30_000,
      async () => `bare data channel: the two pages did not connect (${errors.join('; ') || 'no page errors'})`,
    );

    const samples: number[] = [];
    let transferred = true;
    let cpuBefore: TreeCpu | null = null;
    let senderCpuBefore: TreeCpu | null = null;
    let connectionBefore: ConnectionStats[] = [];
    let machineBefore: MachineCpu | null = null;
    for (let i = -1; i < TRANSFERS; i++) {
      if (i === 0) {
        [senderCpuBefore, cpuBefore] = await Promise.all([profiles[0].cpu(), profiles[1].cpu()]);
        connectionBefore = await readConnectionStats(receiver).catch(() => []);
        machineBefore = await cpuTimes();
      }
      const id = FIRST_CHANNEL_ID + 1 + i;
      const mbps = await withTimeout(
        transferOnce(sender, receiver, id, i < 0 ? WARM_UP_BYTES : bytesPerTransfer).then((result) => {
          transferred &&= result.transferred;
          return result.mbps;
        }),
        STALL_MS,
        async () => {
          const progress = await Promise.all(
            [sender, receiver].map((page) =>
              page.evaluate((i) => (window as unknown as WithChannelPage).channelTest.channelProgress(i), id).catch(String),
            ),
          );
          return `bare data channel: transfer ${i + 1} (0: warm-up) stalled (sender ${JSON.stringify(progress[0])}, receiver ${JSON.stringify(progress[1])}; ${errors.join('; ') || 'no page errors'})`;
        },
      );
      if (i >= 0) samples.push(mbps);
    }
    const machine = machineShares(machineBefore, await cpuTimes());
    const [senderCpuAfter, cpuAfter] = await Promise.all([profiles[0].cpu(), profiles[1].cpu()]);
    const receiverConnection = statsBetween(connectionBefore, await readConnectionStats(receiver).catch(() => []));
    const receiverCpu = cpuBefore && cpuAfter ? cpuBetween(cpuBefore, cpuAfter) : null;
    const senderCpu = senderCpuBefore && senderCpuAfter ? cpuBetween(senderCpuBefore, senderCpuAfter) : null;
    return {
      mbps: median(samples),
      samples,
      messageBytes: BLOCK_CHUNK_SIZE,
      bytesPerTransfer,
      transferred,
      receiverCpuSecondsPerGiB: receiverCpu ? secondsPerGiB(receiverCpu.seconds, TRANSFERS * bytesPerTransfer) : null,
      receiverCpu,
      senderCpuSecondsPerGiB: senderCpu ? secondsPerGiB(senderCpu.seconds, TRANSFERS * bytesPerTransfer) : null,
      senderCpu,
      receiverConnection,
      machine,
    };
  } finally {
    await closeProfiles(profiles);
  }
}

/** One transfer on a fresh negotiated channel; MB/s from the sender's first send to the receiver's last byte. */
async function transferOnce(sender: Page, receiver: Page, id: number, totalBytes: number): Promise<{ mbps: number; transferred: boolean }> {
  // The receiver's end first: data sent before the remote end exists is dropped.
  const receiverEnd = await receiver.evaluate((i) => (window as unknown as WithChannelPage).channelTest.openWorkerChannel(i), id);
  const received = receiver.evaluate(
    ([i, total]) => (window as unknown as WithChannelPage).channelTest.receiveOnChannel(i, { totalBytes: total, hash: false }),
    [id, totalBytes] as const,
  );
  received.catch(() => undefined);
  const senderEnd = await sender.evaluate((i) => (window as unknown as WithChannelPage).channelTest.openWorkerChannel(i), id);
  const [sent, got] = await Promise.all([
    sender.evaluate(
      ([i, total, size]) =>
        (window as unknown as WithChannelPage).channelTest.sendOnChannel(i, { totalBytes: total, messageBytes: size, hash: false }),
      [id, totalBytes, BLOCK_CHUNK_SIZE] as const,
    ),
    received,
  ]);
  await Promise.all([sender, receiver].map((page) => page.evaluate((i) => (window as unknown as WithChannelPage).channelTest.closeChannel(i), id)));
  if (got.bytes !== totalBytes) throw new Error(`bare data channel delivered ${got.bytes} of ${totalBytes} bytes`);
  // Both clocks are this machine's wall clock (two processes, one kernel).
  const seconds = (got.lastAt - sent.startedAt) / 1000;
  return { mbps: totalBytes / 1e6 / seconds, transferred: receiverEnd.transferred && senderEnd.transferred };
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: () => Promise<string>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => void message().then((text) => reject(new Error(text)), reject), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
