import { appendFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { E2eHarness } from '../e2e/harness.ts';
import { NetnsHarness } from '../netns/harness.ts';
import { netnsSupport } from '../netns/netns.ts';
import { benchAppTransfer } from './app-transfer.ts';
import { benchBigFile, benchBigFileFromPeer } from './big-file.ts';
import { benchBlockBatch } from './block-batch.ts';
import { benchRangeReadFromPeer, benchRangeReadFromServer } from './range-read.ts';
import { benchFolderSync } from './folder-sync.ts';
import { parseBenchFlags, type Scenario } from './flags.ts';
import { benchOfficeCold, benchOfficeWarm, type OfficeContext } from './office.ts';
import { benchManyFiles } from './many-files.ts';
import { benchManyFilesUpload } from './many-files-upload.ts';
import { benchOfficeLan } from './office-lan.ts';
import { benchNativePair } from './native-pair.ts';
import { describeConnections } from './connection-stats.ts';
import { describeMachine, describeThreads } from './process-cpu.ts';
import { measureRawChannel, type RawChannelResult } from './raw-channel.ts';
import { printTable, type BenchRow } from './report.ts';
import { measureWebTorrent } from './webtorrent.ts';
import { benchZip, benchZipManyFiles } from './zip.ts';
import { benchOnlineOpen } from './online-open.ts';

/**
 * `npm run bench [-- --scenario office-warm,office-cold,office-lan,app-transfer,big-file,block-batch --size-mib 128
 * --joiners 3 --egress-mbps 100 --browsers processes|contexts --repeats 3]` (see flags.ts;
 * `--size-mib 32` for a quick run).
 *
 * Real server, real Chromium. The office scenarios run in a network namespace (real WebRTC
 * between browsers) with the server's block egress capped (office-lan adds a LAN daemon in the
 * namespace and the server's LAN bridge, on a server of its own); app-transfer runs on loopback.
 * Figures are reported, never asserted: these machines are shared and noisy, so every row
 * carries a baseline measured in the same run. Progress and diagnostics go to stderr; stdout
 * gets one JSON object per row, then a table per scenario group.
 */

const MiB = 1024 * 1024;
const OFFICE_DEFAULT_MIB = 128;
const APP_TRANSFER_DEFAULT_MIB = 64;
const BIG_FILE_DEFAULT_MIB = 4096;
const WEBTORRENT_DEFAULT_MIB = 256;

const flags = parseBenchFlags(process.argv.slice(2));
const began = performance.now();
const log = (message: string) => process.stderr.write(`[bench ${((performance.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
const groups: BenchRow[][] = [];
const failures: string[] = [];
const wants = (scenario: Scenario) => flags.scenarios.includes(scenario);
const round3 = (value: number) => Math.round(value * 1000) / 1000;

async function attempt(name: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    failures.push(name);
    log(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
}

if (wants('office-warm') || wants('office-cold') || wants('office-lan')) {
  const support = netnsSupport();
  if (!support.ok) {
    failures.push('office');
    log(`office scenarios need network namespaces: ${support.reason}`);
  } else {
    await attempt('office', async () => {
      const harness = await NetnsHarness.start();
      try {
        const egressBytesPerSecond = (flags.egressMbps * 1e6) / 8;
        log(`server block egress capped at ${flags.egressMbps} Mbit/s (${(egressBytesPerSecond / 1e6).toFixed(2)} MB/s); browsers: ${flags.browsers}`);
        // A stalled or failed measurement gets one more try with fresh browsers.
        const measureRawChannelOnce = async (): Promise<RawChannelResult | null> => {
          for (let attempt = 1; attempt <= 2; attempt++) {
            try {
              const raw = await measureRawChannel(harness, flags.browsers, Math.round(flags.channelMiB * MiB));
              log(
                `bare data channel (${flags.browsers}, ${raw.messageBytes / 1024} KiB messages, worker to worker` +
                  `${raw.transferred ? '' : ', MessagePort relay'}): ${raw.samples.map((mbps) => mbps.toFixed(1)).join(', ')} MB/s, ` +
                  `median ${raw.mbps.toFixed(1)}` +
                  `; machine CPU ${describeMachine(raw.machine)}` +
                  (raw.receiverCpu
                    ? `; receiver CPU ${raw.receiverCpuSecondsPerGiB!.toFixed(2)} s/GiB (${describeThreads(raw.receiverCpu)})`
                    : '') +
                  (raw.senderCpu ? `; sender CPU ${raw.senderCpuSecondsPerGiB!.toFixed(2)} s/GiB (${describeThreads(raw.senderCpu)})` : '') +
                  `; receiver WebRTC ${describeConnections(raw.receiverConnection, raw.samples.length * raw.bytesPerTransfer)}`,
              );
              return raw;
            } catch (error) {
              log(`bare data channel, attempt ${attempt} failed: ${error instanceof Error ? error.message : String(error)}`);
            }
          }
          return null;
        };
        const common: Omit<OfficeContext, 'server'> = {
          harness,
          egressBytesPerSecond,
          sizeMiB: flags.sizeMiB ?? OFFICE_DEFAULT_MIB,
          joiners: flags.joiners,
          browsers: flags.browsers,
          pairRuns: flags.pairRuns,
          measureRawChannel: measureRawChannelOnce,
          profile: flags.profile,
          log,
          trace: flags.trace ? (record) => appendFileSync(flags.trace!, `${JSON.stringify(record)}\n`) : undefined,
        };
        if (wants('office-warm') || wants('office-cold')) {
          const ctx: OfficeContext = { ...common, server: await harness.startServer({ egressBytesPerSecond }) };
          const rows: BenchRow[] = [];
          groups.push(rows);
          if (wants('office-warm')) await attempt('office-warm', async () => void rows.push(await benchOfficeWarm(ctx)));
          if (wants('office-cold')) await attempt('office-cold', async () => void rows.push(await benchOfficeCold(ctx)));
        }
        // Its own table: the bridge columns mean nothing for the browser-only scenarios.
        if (wants('office-lan')) await attempt('office-lan', async () => void groups.push([await benchOfficeLan(common)]));
      } finally {
        await harness.close();
      }
    });
  }
}

if (wants('app-transfer')) {
  await attempt('app-transfer', async () => {
    log('app-transfer: app upload/download vs plain fetch on loopback');
    const harness = await E2eHarness.start();
    try {
      groups.push(await benchAppTransfer(harness, flags.sizeMiB ?? APP_TRANSFER_DEFAULT_MIB, flags.repeats, flags.profile, log));
    } finally {
      await harness.close();
    }
  });
}

if (wants('big-file')) {
  const sizeMiB = flags.sizeMiB ?? BIG_FILE_DEFAULT_MIB;
  const rows: BenchRow[] = [];
  const which = flags.bigFileRows;
  if (which.includes('download') || which.includes('upload')) {
    await attempt('big-file', async () => {
      log('big-file: one multi-GiB file through the app, with Chromium RSS per process type');
      const harness = await E2eHarness.start();
      try {
        rows.push(...(await benchBigFile(harness, sizeMiB, which, log)));
      } finally {
        await harness.close();
      }
    });
  }
  const support = netnsSupport();
  if (!which.includes('peer')) log('big-file: peer row not asked for');
  else if (!support.ok) log(`big-file from a peer needs network namespaces: ${support.reason}`);
  else {
    await attempt('big-file peer', async () => {
      const harness = await NetnsHarness.start();
      try {
        rows.push(await benchBigFileFromPeer(harness, sizeMiB, log));
      } finally {
        await harness.close();
      }
    });
  }
  if (rows.length > 0) groups.push(rows);
}

if (wants('many-files')) {
  await attempt('many-files', async () => {
    log(`many-files: a fresh browser joins workspaces of ${flags.files.join(', ')} small files on loopback`);
    const harness = await E2eHarness.start();
    try {
      if (flags.manyFilesRows.includes('join')) groups.push(await benchManyFiles(harness, flags.files, log, flags.profile));
      if (flags.manyFilesRows.includes('upload')) groups.push(await benchManyFilesUpload(harness, flags.files, log, flags.profile, flags.uploadSources));
    } finally {
      await harness.close();
    }
  });
}

if (wants('block-batch')) {
  await attempt('block-batch', async () => {
    const roots = (flags.serverRoots ?? [fileURLToPath(new URL('../..', import.meta.url))]).map((root) => resolve(root));
    log(`block-batch: ${flags.blocks} small blocks through POST /api/v1/ns/:ns/blocks, server(s) from ${roots.join(', ')}`);
    groups.push(await benchBlockBatch(roots, flags.blocks, flags.repeats, log));
  });
}

/**
 * 1 GiB: at 256 MiB the network phase is under a second, and a run's ratio to Syncthing swung
 * from 0.79 to 1.34 in one quiet sitting (ramp-up, the first read of each block, scheduling on
 * two shared cores); at 1 GiB the steady transfer is most of it.
 */
const NATIVE_PAIR_DEFAULT_MIB = 1024;

if (wants('native-pair')) {
  const support = netnsSupport();
  if (!support.ok) {
    failures.push('native-pair');
    log(`native-pair needs network namespaces: ${support.reason}`);
  } else {
    await attempt('native-pair', async () => void groups.push(await benchNativePair(flags.sizeMiB ?? NATIVE_PAIR_DEFAULT_MIB, flags.repeats, log, flags.profile, flags.nativeSender)));
  }
}

if (wants('folder-sync')) {
  await attempt('folder-sync', async () => {
    const harness = await E2eHarness.start();
    try {
      groups.push(await benchFolderSync(harness, flags.files[0], log, flags.bareFiles));
    } finally {
      await harness.close();
    }
  });
}

if (wants('range-read')) {
  const sizeMiB = flags.sizeMiB ?? BIG_FILE_DEFAULT_MIB;
  const rows: BenchRow[] = [];
  if (flags.rangeReadRows.includes('server')) await attempt('range-read', async () => {
    log(`range-read: 1 MiB Range reads of a ${sizeMiB} MiB file not synced yet, server capped at ${flags.egressMbps} Mbit/s`);
    const harness = await E2eHarness.start();
    try {
      rows.push(await benchRangeReadFromServer(harness, sizeMiB, (flags.egressMbps * 1e6) / 8, log));
    } finally {
      await harness.close();
    }
  });
  const support = netnsSupport();
  if (!flags.rangeReadRows.includes('peer')) log('range-read: peer row not asked for');
  else if (!support.ok) log(`range-read from a peer needs network namespaces: ${support.reason}`);
  else {
    await attempt('range-read peer', async () => {
      const harness = await NetnsHarness.start();
      try {
        rows.push(await benchRangeReadFromPeer(harness, sizeMiB, log));
      } finally {
        await harness.close();
      }
    });
  }
  if (rows.length > 0) groups.push(rows);
}

if (wants('zip')) {
  await attempt('zip', async () => {
    const sizeMiB = flags.sizeMiB ?? 2048;
    log(`zip: Download as .zip of a ${sizeMiB} MiB workspace synced into the browser, vs reading its blocks`);
    const harness = await E2eHarness.start();
    try {
      // --size-mib 0: only the small-files row.
      if (sizeMiB > 0) groups.push([await benchZip(harness, sizeMiB, log, flags.sinkFilesPerWrite)]);
      if (flags.zipFiles !== undefined) groups.push([await benchZipManyFiles(harness, flags.zipFiles, log)]);
    } finally {
      await harness.close();
    }
  });
}

if (wants('online-open')) {
  await attempt('online-open', async () => {
    const sizeMiB = flags.sizeMiB ?? 256;
    log(`online-open: opening a ${sizeMiB} MiB online-only file vs the same file kept`);
    const harness = await E2eHarness.start();
    try {
      groups.push([await benchOnlineOpen(harness, sizeMiB, log)]);
    } finally {
      await harness.close();
    }
  });
}

if (wants('webtorrent')) {
  const support = netnsSupport();
  if (!support.ok) {
    failures.push('webtorrent');
    log(`webtorrent needs network namespaces: ${support.reason}`);
  } else {
    await attempt('webtorrent', async () => {
      const sizeMiB = flags.sizeMiB ?? WEBTORRENT_DEFAULT_MIB;
      log(`webtorrent: WebTorrent 2.x browser → browser (${flags.browsers}), ${sizeMiB} MiB, local websocket tracker, vs the bare data channel`);
      const harness = await NetnsHarness.start({ buildApp: false });
      try {
        const torrent = await measureWebTorrent(harness, flags.browsers, Math.round(sizeMiB * MiB), log);
        log(`webtorrent ${torrent.version}: ${torrent.mbps.toFixed(1)} MB/s from first byte, ${torrent.mbpsFromAdd.toFixed(1)} MB/s from adding the torrent`);
        const raw = await measureRawChannel(harness, flags.browsers, Math.round(flags.channelMiB * MiB));
        log(`bare data channel: ${raw.samples.map((mbps) => mbps.toFixed(1)).join(', ')} MB/s, median ${raw.mbps.toFixed(1)}`);
        groups.push([
          {
            scenario: 'webtorrent',
            browsers: flags.browsers,
            size_mib: sizeMiB,
            webtorrent_version: torrent.version,
            piece_kib: torrent.pieceLength / 1024,
            seed_hash_s: round3(torrent.seedHashSeconds),
            webtorrent_mbps: round3(torrent.mbps),
            webtorrent_from_add_mbps: round3(torrent.mbpsFromAdd),
            raw_channel_mbps: round3(raw.mbps),
            webtorrent_to_raw_ratio: round3(torrent.mbps / raw.mbps),
            load_1m: loadavg()[0],
          },
        ]);
      } finally {
        await harness.close();
      }
    });
  }
}

// With the anchor in the same run, the office rows carry their ratio to it.
const webtorrentRow = groups.flat().find((row) => row.scenario === 'webtorrent');
if (webtorrentRow && typeof webtorrentRow.webtorrent_mbps === 'number') {
  for (const row of groups.flat()) {
    if (row.scenario !== 'office-warm' && row.scenario !== 'office-cold') continue;
    row.webtorrent_mbps = webtorrentRow.webtorrent_mbps;
    row.peer_to_webtorrent_ratio = typeof row.peer_mbps === 'number' ? round3(row.peer_mbps / webtorrentRow.webtorrent_mbps) : null;
  }
}

for (const row of groups.flat()) console.log(JSON.stringify(row));
for (const rows of groups) printTable(rows);
log(`done in ${((performance.now() - began) / 1000).toFixed(0)} s${failures.length ? `; failed: ${failures.join(', ')}` : ''}`);
if (failures.length > 0) process.exitCode = 1;
