/**
 * Command-line flags of `npm run bench`:
 *
 *   --scenario office-warm,office-cold,office-lan,app-transfer,big-file,many-files,block-batch,
 *              native-pair,folder-sync,range-read,zip,online-open,webtorrent
 *                       which scenarios (default: all but big-file, many-files, block-batch,
 *                       native-pair, folder-sync, range-read, zip, online-open and webtorrent,
 *                       which run only when named)
 *   --size-mib N        workspace size S for the office scenarios (default 128) and file
 *                       size for app-transfer (default 64 there when not given), big-file and
 *                       range-read (default 4096); zip: the zipped workspace's size (default 2048;
 *                       0: no such row, only --zip-files);
 *                       online-open: the file opened (default 256); webtorrent: the seeded
 *                       file's size (default 256)
 *   --joiners K         joining browsers in the office scenarios (default 3)
 *   --egress-mbps M     server block egress cap in megabits/s (default 100)
 *   --browsers processes|disk|contexts
 *                       each joiner its own Chromium process with an off-the-record profile
 *                       (default), its own process with an on-disk profile as a user's browser
 *                       has (disk: IndexedDB and block files on disk, not in the browser
 *                       process's memory), or a context of one shared process
 *   --repeats N         app-transfer rounds (default 3)
 *   --channel-mib N     MiB per bare data-channel transfer (default 32; five, after a warm-up)
 *   --pair-runs N       office-warm: N runs of fresh joiners syncing from the one seeder, each
 *                       right after its own bare data-channel measurement (default 1); the row
 *                       gives each figure's median and, in <figure>_runs, every run's
 *   --files N,N,…       many-files: workspace sizes joined, one row each (default 10000,30000,100000)
 *   --profile PREFIX    many-files: CPU-profile the sync worker during each join into
 *                       PREFIX-<files>-worker0.cpuprofile and print its heaviest functions
 *                       office-warm, office-cold: the first joiner's page and workers during the
 *                       peer run (PREFIX-<scenario>-*.cpuprofile; the sampling costs CPU itself)
 *                       app-transfer: the page and workers during each app upload
 *                       (PREFIX-upload-<round>-*.cpuprofile)
 *   --many-files-rows join,upload
 *                       which rows of many-files (default: both; upload drops a folder of
 *                       --files small files into a fresh browser)
 *   --upload-sources drop,picker
 *                       how many-files' upload row hands the folder over (default: both; drop is
 *                       Chromium's drag and drop of the directory, picker the folder input)
 *   --big-file-rows download,upload,peer
 *                       which rows of big-file (default: all three)
 *   --range-read-rows server,peer
 *                       which rows of range-read (default: both)
 *   --blocks N          block-batch: small blocks fetched through the batch route (default 10000)
 *   --server-root DIR,DIR…
 *                       block-batch: the checkouts whose server is measured, rounds alternating
 *                       between them (default: this one; e.g. a `git worktree` of the base commit
 *                       beside it, sharing node_modules, for a before/after in one sitting)
 *   native-pair         (scenario, on request) nearsync daemon → daemon against Syncthing over a
 *                       veth between two namespaces, --size-mib (default 1024) as 4 files,
 *                       --repeats runs alternating, plus bare TCP; see native-pair.ts
 *   --native-sender pulled|scanned
 *                       native-pair: the nearsync sender pulled the files from the server
 *                       (default: it serves blocks it received, its first serve of each one
 *                       hashed), or scanned them from its folder and uploaded them (it took each
 *                       block's CRC-32 in the scan: no first serve is hashed)
 *   folder-sync         (on request) the first --files count of small files and 3 large ones
 *                       written into a folder by folder sync vs a bare write loop, same page;
 *                       then a rescan with nothing changed, one after touching 100 files, and
 *                       one file another device commits until it is written into the folder
 *                       (time and Chromium RSS growth per process)
 *   --bare-files N      folder-sync: the bare loop writes only the first N small files (and the
 *                       large ones), compared per file (default: all; a 100,000-file bare loop
 *                       takes about 20 minutes, twice)
 *   webtorrent          (on request) the outside anchor: WebTorrent 2.x's bundled browser build
 *                       seeds --size-mib of pseudo-random bytes in one browser profile and a
 *                       second downloads them (--browsers kind, same namespace, local websocket
 *                       tracker only), against the bare data channel (--channel-mib) measured
 *                       in the same run; see webtorrent.ts. With office-warm or office-cold
 *                       in the same run (`--scenario office-warm,webtorrent`), their rows
 *                       gain webtorrent_mbps and peer_to_webtorrent_ratio.
 *   --zip-files N       zip: also a row zipping a workspace of N small files (0.2–3 KiB each):
 *                       time, RSS growth and the JS heaps' peaks (default: no such row); with
 *                       NEARSYNC_BENCH_MEMORY_DUMPS=1 in the environment, Chromium's
 *                       memory-infra dumps say which allocator grew
 *   --sink-files-per-write N,N,…
 *                       zip: the bare sink (block Files into a file stream) also with N Files
 *                       composed into each write, one column each (default: 4; every File in
 *                       one write is always measured: bare_write_one_blob_mbps, the ceiling)
 *   --trace FILE        append what each office run recorded (per-joiner timelines, block
 *                       GETs with timing, server egress timeline) to FILE as JSON lines
 */

export const SCENARIOS = ['office-warm', 'office-cold', 'office-lan', 'app-transfer', 'big-file', 'many-files', 'block-batch', 'native-pair', 'folder-sync', 'range-read', 'zip', 'online-open', 'webtorrent'] as const;
/** Scenarios run only when named: they take long or need a lot of disk. */
const ON_REQUEST: readonly Scenario[] = ['big-file', 'many-files', 'block-batch', 'native-pair', 'folder-sync', 'range-read', 'zip', 'online-open', 'webtorrent'];
export type Scenario = (typeof SCENARIOS)[number];
export type BrowserKind = 'processes' | 'disk' | 'contexts';
export const BIG_FILE_ROWS = ['download', 'upload', 'peer'] as const;
export type BigFileRow = (typeof BIG_FILE_ROWS)[number];
export const RANGE_READ_ROWS = ['server', 'peer'] as const;
export type RangeReadRow = (typeof RANGE_READ_ROWS)[number];
export const MANY_FILES_ROWS = ['join', 'upload'] as const;
export const UPLOAD_SOURCE_FLAGS = ['drop', 'picker'] as const;
export type UploadSourceFlag = (typeof UPLOAD_SOURCE_FLAGS)[number];
export type ManyFilesRow = (typeof MANY_FILES_ROWS)[number];

export interface BenchFlags {
  scenarios: Scenario[];
  /** Undefined when not given: each scenario has its own default. */
  sizeMiB: number | undefined;
  joiners: number;
  egressMbps: number;
  browsers: BrowserKind;
  repeats: number;
  channelMiB: number;
  pairRuns: number;
  trace: string | undefined;
  files: number[];
  profile: string | undefined;
  bigFileRows: BigFileRow[];
  rangeReadRows: RangeReadRow[];
  manyFilesRows: ManyFilesRow[];
  uploadSources: UploadSourceFlag[];
  blocks: number;
  /** folder-sync: small files in the bare loop; undefined: all of them. */
  bareFiles: number | undefined;
  /** Undefined: this checkout. */
  serverRoots: string[] | undefined;
  /** zip: small files of the extra row; undefined: no such row. */
  zipFiles: number | undefined;
  /** zip: Files per write of the bare sink's variants. */
  sinkFilesPerWrite: number[];
  /** native-pair: how the nearsync sender came by the files. */
  nativeSender: 'pulled' | 'scanned';
}

const NUMERIC = new Set(['size-mib', 'joiners', 'egress-mbps', 'repeats', 'channel-mib', 'blocks', 'bare-files', 'zip-files', 'pair-runs']);

export function parseBenchFlags(argv: string[]): BenchFlags {
  const flags: BenchFlags = {
    scenarios: SCENARIOS.filter((scenario) => !ON_REQUEST.includes(scenario)),
    sizeMiB: undefined,
    joiners: 3,
    egressMbps: 100,
    browsers: 'processes',
    repeats: 3,
    channelMiB: 32,
    pairRuns: 1,
    trace: undefined,
    files: [10_000, 30_000, 100_000],
    profile: undefined,
    bigFileRows: [...BIG_FILE_ROWS],
    rangeReadRows: [...RANGE_READ_ROWS],
    manyFilesRows: [...MANY_FILES_ROWS],
    uploadSources: [...UPLOAD_SOURCE_FLAGS],
    blocks: 10_000,
    bareFiles: undefined,
    serverRoots: undefined,
    zipFiles: undefined,
    sinkFilesPerWrite: [4],
    nativeSender: 'pulled',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const inline = /^--([a-z-]+)=(.*)$/.exec(arg);
    const name = inline ? inline[1] : /^--([a-z-]+)$/.exec(arg)?.[1];
    if (!name) throw new Error(`unexpected argument ${JSON.stringify(arg)} (flags look like --joiners 3)`);
    const value = inline ? inline[2] : argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (NUMERIC.has(name)) {
      const number = Number(value);
      // --size-mib 0: the zip scenario's small-files row alone.
      if (!Number.isFinite(number) || number < 0 || (number === 0 && name !== 'size-mib')) throw new Error(`--${name} needs a positive number, not ${JSON.stringify(value)}`);
      if (name === 'size-mib') flags.sizeMiB = number;
      else if (name === 'egress-mbps') flags.egressMbps = number;
      else if (name === 'channel-mib') flags.channelMiB = number;
      else {
        if (!Number.isInteger(number)) throw new Error(`--${name} needs a whole number`);
        if (name === 'joiners') flags.joiners = number;
        else if (name === 'blocks') flags.blocks = number;
        else if (name === 'bare-files') flags.bareFiles = number;
        else if (name === 'zip-files') flags.zipFiles = number;
        else if (name === 'pair-runs') flags.pairRuns = number;
        else flags.repeats = number;
      }
    } else if (name === 'scenario' || name === 'scenarios') {
      const names = value.split(',').map((part) => part.trim()).filter(Boolean);
      const unknown = names.filter((part) => !(SCENARIOS as readonly string[]).includes(part));
      if (names.length === 0 || unknown.length > 0) {
        throw new Error(`--scenario takes a comma-separated list of ${SCENARIOS.join(', ')}; unknown: ${unknown.join(', ') || '(empty)'}`);
      }
      // Run in the canonical order whatever order they were given in.
      flags.scenarios = SCENARIOS.filter((scenario) => names.includes(scenario));
    } else if (name === 'browsers') {
      if (value !== 'processes' && value !== 'disk' && value !== 'contexts') throw new Error('--browsers is processes, disk or contexts');
      flags.browsers = value;
    } else if (name === 'files') {
      const counts = value.split(',').map((part) => Number(part.trim()));
      if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('--files takes a comma-separated list of whole numbers, e.g. 10000,30000');
      flags.files = counts;
    } else if (name === 'sink-files-per-write') {
      const counts = value.split(',').map((part) => Number(part.trim()));
      if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('--sink-files-per-write takes a comma-separated list of whole numbers, e.g. 1,4,16');
      flags.sinkFilesPerWrite = counts;
    } else if (name === 'profile') {
      flags.profile = value;
      process.env.NEARSYNC_BUILD_UNMINIFIED = '1';
    } else if (name === 'big-file-rows') {
      const rows = value.split(',').map((part) => part.trim()).filter(Boolean);
      const unknown = rows.filter((row) => !(BIG_FILE_ROWS as readonly string[]).includes(row));
      if (rows.length === 0 || unknown.length > 0) throw new Error(`--big-file-rows takes a list of ${BIG_FILE_ROWS.join(', ')}`);
      flags.bigFileRows = BIG_FILE_ROWS.filter((row) => rows.includes(row));
    } else if (name === 'range-read-rows') {
      const rows = value.split(',').map((part) => part.trim()).filter(Boolean);
      const unknown = rows.filter((row) => !(RANGE_READ_ROWS as readonly string[]).includes(row));
      if (rows.length === 0 || unknown.length > 0) throw new Error(`--range-read-rows takes a list of ${RANGE_READ_ROWS.join(', ')}`);
      flags.rangeReadRows = RANGE_READ_ROWS.filter((row) => rows.includes(row));
    } else if (name === 'many-files-rows') {
      const rows = value.split(',').map((part) => part.trim()).filter(Boolean);
      const unknown = rows.filter((row) => !(MANY_FILES_ROWS as readonly string[]).includes(row));
      if (rows.length === 0 || unknown.length > 0) throw new Error(`--many-files-rows takes a list of ${MANY_FILES_ROWS.join(', ')}`);
      flags.manyFilesRows = MANY_FILES_ROWS.filter((row) => rows.includes(row));
    } else if (name === 'upload-sources') {
      const sources = value.split(',').map((part) => part.trim()).filter(Boolean);
      const unknown = sources.filter((source) => !(UPLOAD_SOURCE_FLAGS as readonly string[]).includes(source));
      if (sources.length === 0 || unknown.length > 0) throw new Error(`--upload-sources takes a list of ${UPLOAD_SOURCE_FLAGS.join(', ')}`);
      flags.uploadSources = UPLOAD_SOURCE_FLAGS.filter((source) => sources.includes(source));
    } else if (name === 'server-root') {
      const roots = value.split(',').map((part) => part.trim()).filter(Boolean);
      if (roots.length === 0) throw new Error('--server-root takes a comma-separated list of checkouts');
      flags.serverRoots = roots;
    } else if (name === 'native-sender') {
      if (value !== 'pulled' && value !== 'scanned') throw new Error('--native-sender takes pulled or scanned');
      flags.nativeSender = value;
    } else if (name === 'trace') {
      flags.trace = value;
    } else {
      throw new Error(`unknown flag --${name}`);
    }
  }
  return flags;
}
