#!/usr/bin/env node
// `npm test`'s pretest: makes sure the machine has what the suite uses (Chromium, nginx,
// iproute2, PostgreSQL and Redis on loopback) before any test runs, so no test is the first to
// find a missing binary. As root with apt it installs and starts what is missing; otherwise it
// stops within seconds naming the one command to run. NEARSYNC_PREFLIGHT=check never installs.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
const DATABASE_URL = process.env.NEARSYNC_TEST_DATABASE_URL || DEFAULT_DATABASE_URL;
const REDIS = { host: '127.0.0.1', port: 6379 };

/** Binaries the tests run, each with the Debian package that provides it. */
const BINARIES = [
  { what: 'Chromium (/usr/bin/chromium)', pkg: 'chromium', present: () => executable('/usr/bin/chromium') },
  // Only the tests that run as root use these (network namespaces, nginx in front of two servers).
  { what: 'nginx (/usr/sbin/nginx)', pkg: 'nginx-light', rootOnly: true, present: () => executable('/usr/sbin/nginx') },
  { what: 'ip and tc (iproute2)', pkg: 'iproute2', rootOnly: true, present: () => onPath('ip') && onPath('tc') },
  { what: 'runuser (util-linux)', pkg: 'util-linux', rootOnly: true, present: () => onPath('runuser') },
  { what: 'redis-server', pkg: 'redis-server', present: () => onPath('redis-server') },
  // The zip tests check archives with Info-ZIP, never with the writer's own code.
  { what: 'unzip and zipinfo (Info-ZIP)', pkg: 'unzip', present: () => onPath('unzip') && onPath('zipinfo') },
  // The video seek test encodes a real seekable video (MP4 with its index first).
  { what: 'ffmpeg', pkg: 'ffmpeg', present: () => onPath('ffmpeg') },
  { what: 'PostgreSQL server binaries (initdb, pg_ctl)', pkg: 'postgresql', present: () => postgresBinDir() !== null },
];

const isRoot = process.getuid?.() === 0;
const mayInstall = process.env.NEARSYNC_PREFLIGHT !== 'check' && isRoot && onPath('apt-get');

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name) {
  const dirs = (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  return dirs.some((dir) => dir && executable(join(dir, name)));
}

function postgresBinDir() {
  if (process.env.NEARSYNC_PG_BIN) return existsSync(join(process.env.NEARSYNC_PG_BIN, 'initdb')) ? process.env.NEARSYNC_PG_BIN : null;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => /^[0-9]+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const version of versions) if (existsSync(join(root, version, 'bin', 'initdb'))) return join(root, version, 'bin');
  return null;
}

function say(line) {
  process.stdout.write(`preflight: ${line}\n`);
}

function fail(lines) {
  process.stderr.write(`\npreflight: npm test cannot run on this machine yet.\n${lines.map((l) => `  ${l}`).join('\n')}\n\n`);
  process.exit(1);
}

/** apt-get install without letting packages start their services (nginx would take port 80). */
function aptInstall(packages) {
  say(`installing ${packages.join(' ')} with apt-get (root, apt available)…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const policy = '/usr/sbin/policy-rc.d';
  const hadPolicy = existsSync(policy);
  if (!hadPolicy) {
    writeFileSync(policy, '#!/bin/sh\nexit 101\n');
    chmodSync(policy, 0o755);
  }
  try {
    const run = (args) => {
      const result = spawnSync('apt-get', args, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
      if (result.status !== 0) fail([`apt-get ${args.join(' ')} failed:`, ...(result.stderr || '').trim().split('\n').slice(-8)]);
    };
    run(['update', '-qq']);
    run(['install', '-y', '-qq', ...packages]);
  } finally {
    if (!hadPolicy) rmSync(policy, { force: true });
  }
}

function tcpOpen({ host, port }, timeoutMs = 1500) {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Sends PING and expects +PONG: a port that answers is not enough (it could be another service). */
function redisAnswers(timeoutMs = 1500) {
  return new Promise((resolve) => {
    const socket = connect(REDIS);
    let reply = '';
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.once('error', () => done(false));
  });
}

/** null when `SELECT 1` works at DATABASE_URL, else the error's message. */
async function postgresProblem() {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function waitFor(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function postgresClusters() {
  // pg_lsclusters: "15 main 5432 down postgres /var/lib/postgresql/15/main /var/log/…"
  const result = spawnSync('pg_lsclusters', ['--no-header'], { encoding: 'utf8' });
  if (result.status !== 0) return [];
  return result.stdout.trim().split('\n').filter(Boolean).map((line) => {
    const [version, name, port, status] = line.split(/\s+/);
    return { version, name, port: Number(port), status };
  });
}

/** As the postgres OS user: psql against the local cluster over its Unix socket (peer auth). */
function psqlAsPostgres(sql) {
  return spawnSync('runuser', ['-u', 'postgres', '--', 'psql', '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { encoding: 'utf8' });
}

/**
 * The tests expect trust auth on loopback for user postgres and a database `test`. Only a
 * cluster this preflight installed is reconfigured; an existing one is the owner's to change.
 */
function makeFreshClusterTrustLoopback(cluster) {
  const hba = `/etc/postgresql/${cluster.version}/${cluster.name}/pg_hba.conf`;
  const rules = '# nearsync test preflight: trust loopback (fresh cluster)\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n';
  const current = readFileSync(hba, 'utf8');
  if (!current.includes('nearsync test preflight')) writeFileSync(hba, rules + current);
}

async function ensurePostgres(installedNow) {
  let problem = await postgresProblem();
  if (!problem) return;
  const custom = DATABASE_URL !== DEFAULT_DATABASE_URL;
  if (!isRoot || custom || process.env.NEARSYNC_PREFLIGHT === 'check') {
    fail([`PostgreSQL at ${DATABASE_URL} does not answer: ${problem}`, 'The tests need PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres and a database `test`', '(or NEARSYNC_TEST_DATABASE_URL pointing at one). As root, npm test sets up a local one itself.']);
  }
  const clusters = postgresClusters().filter((c) => c.port === 5432);
  if (clusters.length === 0) fail([`PostgreSQL at ${DATABASE_URL} does not answer (${problem}) and no local cluster listens on port 5432.`, 'Create one: pg_createcluster --start 15 main']);
  const cluster = clusters[0];
  if (installedNow) makeFreshClusterTrustLoopback(cluster);
  if (cluster.status !== 'online' || installedNow) {
    say(`starting PostgreSQL cluster ${cluster.version}/${cluster.name}…`);
    const action = cluster.status === 'online' ? 'restart' : 'start';
    const result = spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', cluster.version, cluster.name, action], { encoding: 'utf8' });
    if (result.status !== 0) fail([`pg_ctlcluster ${cluster.version} ${cluster.name} ${action} failed: ${(result.stderr || '').trim()}`]);
    await waitFor(() => tcpOpen({ host: '127.0.0.1', port: 5432 }), 15_000);
  }
  problem = await postgresProblem();
  if (problem && /database "test" does not exist/.test(problem)) {
    say('creating database test…');
    const result = psqlAsPostgres('CREATE DATABASE test');
    if (result.status !== 0) fail([`CREATE DATABASE test failed: ${(result.stderr || '').trim()}`]);
    problem = await postgresProblem();
  }
  if (problem) fail([`PostgreSQL at ${DATABASE_URL} still refuses: ${problem}`, `Allow trust auth for 127.0.0.1 in /etc/postgresql/${cluster.version}/${cluster.name}/pg_hba.conf and reload.`]);
}

async function ensureRedis() {
  if (await redisAnswers()) return;
  if (await tcpOpen(REDIS)) fail(['Something listens on 127.0.0.1:6379 but does not answer PING as Redis does.']);
  const command = 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no';
  if (!isRoot || process.env.NEARSYNC_PREFLIGHT === 'check') fail(['Redis does not answer on 127.0.0.1:6379. Start it:', command]);
  say('starting redis-server on 127.0.0.1:6379…');
  const dir = existsSync('/var/lib/redis') ? '/var/lib/redis' : '/tmp/nearsync-redis-shared';
  mkdirSync(dir, { recursive: true });
  const result = spawnSync('redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '-::1', '--port', '6379', '--save', '', '--appendonly', 'no', '--dir', dir], { encoding: 'utf8' });
  if (result.status !== 0 || !(await waitFor(redisAnswers, 10_000))) fail(['redis-server did not start:', command, (result.stderr || '').trim()]);
}

async function main() {
  const started = Date.now();
  const needed = BINARIES.filter((b) => isRoot || !b.rootOnly);
  let missing = needed.filter((b) => !b.present());
  const installed = new Set();
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((b) => b.pkg))];
    if (!mayInstall) {
      fail([
        `Missing: ${missing.map((b) => b.what).join(', ')}.`,
        `Install them: ${isRoot ? '' : 'sudo '}apt-get install -y ${packages.join(' ')}`,
        ...(process.env.NEARSYNC_PREFLIGHT === 'check' ? [] : isRoot ? ['(apt-get was not found.)'] : ['(npm test installs them itself when run as root.)']),
      ]);
    }
    aptInstall(packages);
    for (const pkg of packages) installed.add(pkg);
    missing = needed.filter((b) => !b.present());
    if (missing.length > 0) fail([`Still missing after apt-get install: ${missing.map((b) => b.what).join(', ')}`]);
  }
  await ensurePostgres(installed.has('postgresql'));
  await ensureRedis();
  const chromium = execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  say(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${chromium}${isRoot ? ', nginx, iproute2' : ''}, PostgreSQL at ${DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}, Redis at 127.0.0.1:6379${isRoot ? '' : ' (not root: the network-namespace tests will be skipped)'}`);
}

main().catch((error) => fail([error instanceof Error ? error.stack || error.message : String(error)]));
