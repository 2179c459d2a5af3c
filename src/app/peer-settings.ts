const STORAGE_KEY = 'nearsync:peer-label';
const PEERS_KEY = 'nearsync:peers';

/** Peer-to-peer sync is on unless this browser profile turned it off (`nearsync:peers` = `off`). */
export function peerSyncEnabled(): boolean {
  try {
    return localStorage.getItem(PEERS_KEY) !== 'off';
  } catch {
    return true;
  }
}

/** How this browser appears in other people's peer lists: kept per browser profile. */
export function peerLabel(): string {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (stored) return stored;
    const label = `${browserName()} ${crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, '0')}`;
    localStorage.setItem(STORAGE_KEY, label);
    return label;
  } catch {
    return browserName();
  }
}

function browserName(): string {
  const agent = navigator.userAgent;
  if (/Firefox\//.test(agent)) return 'Firefox';
  if (/Edg\//.test(agent)) return 'Edge';
  if (/Chrome\//.test(agent)) return 'Chrome';
  if (/Safari\//.test(agent)) return 'Safari';
  return 'Browser';
}
