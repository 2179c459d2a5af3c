// WebTorrent's bundled browser build, one client per page, shut off from everything but the
// bench's local websocket tracker: no DHT, no local service discovery, no peer exchange, no
// NAT port mapping, no web seeds, no STUN servers (host candidates only, as the raw channel).
import WebTorrent from '/webtorrent.min.js';

const client = new WebTorrent({
  dht: false,
  lsd: false,
  utPex: false,
  natUpnp: false,
  natPmp: false,
  webSeeds: false,
  tracker: { rtcConfig: { iceServers: [] } },
});
client.on('error', (error) => console.error(`webtorrent client: ${error?.message ?? error}`));

/** Deterministic pseudo-random bytes (xorshift32), so both ends and reruns agree on the content. */
function pseudoRandomBytes(size, seed) {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return new Uint8Array(words.buffer, 0, size);
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

let leech = null;

window.webtorrentAnchor = {
  /** Seeds `size` bytes; resolves once the torrent is hashed and announced to the tracker. */
  async seed({ size, seed, tracker }) {
    const bytes = pseudoRandomBytes(size, seed);
    const sha256 = await sha256Hex(bytes);
    const file = new File([bytes], 'anchor.bin');
    const hashStart = performance.now();
    const torrent = await new Promise((resolve, reject) => {
      // announceList replaces create-torrent's default list of public trackers.
      const t = client.seed(file, { name: 'anchor.bin', announce: [tracker], announceList: [[tracker]] }, resolve);
      t.once('error', reject);
    });
    return {
      sha256,
      torrentFile: toBase64(torrent.torrentFile),
      pieceLength: torrent.pieceLength,
      hashSeconds: (performance.now() - hashStart) / 1000,
    };
  },

  /** Starts downloading the torrent; `leechResult` resolves when it is done and read back. */
  startLeech({ torrentFile }) {
    const addedAt = performance.timeOrigin + performance.now();
    leech = new Promise((resolve, reject) => {
      const torrent = client.add(fromBase64(torrentFile), {});
      let firstByteAt = null;
      torrent.on('download', () => {
        if (firstByteAt === null) firstByteAt = performance.timeOrigin + performance.now();
      });
      torrent.once('error', (error) => reject(new Error(`torrent: ${error?.message ?? error}`)));
      torrent.once('done', async () => {
        const doneAt = performance.timeOrigin + performance.now();
        try {
          const bytes = new Uint8Array(await torrent.files[0].arrayBuffer());
          resolve({ addedAt, firstByteAt, doneAt, bytes: bytes.length, sha256: await sha256Hex(bytes), wires: torrent.wires.length });
        } catch (error) {
          reject(error);
        }
      });
    });
    leech.catch(() => undefined);
    return true;
  },

  leechResult() {
    return leech;
  },

  progress() {
    const torrent = client.torrents[0];
    return torrent
      ? { downloaded: torrent.downloaded, uploaded: torrent.uploaded, wires: torrent.wires.length, progress: torrent.progress, ready: torrent.ready }
      : { torrents: 0 };
  },
};
window.webtorrentAnchorReady = true;
