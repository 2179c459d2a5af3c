import type { PeerView } from '../../workers/sync-api.ts';
import { h, setAttribute, setText } from './dom.ts';
import { formatBytes } from './format.ts';

interface PeerRow {
  element: HTMLElement;
  label: HTMLElement;
  state: HTMLElement;
  cursor: HTMLElement;
  received: HTMLElement;
  sent: HTMLElement;
}

/** The workspace's peers (browsers, and LAN peers behind the server's bridge): label, advertised cursor, reachable or not, bytes received from it and sent to it. */
export class PeerList {
  readonly element: HTMLElement;
  private readonly list = h('ul', { class: 'peer-list', 'data-testid': 'peer-list' });
  private readonly rows = new Map<string, PeerRow>();

  constructor() {
    this.element = h('section', { class: 'peers', 'aria-label': 'Peers', hidden: true }, h('h2', {}, 'Nearby peers'), this.list);
  }

  update(peers: PeerView[]): void {
    this.element.hidden = peers.length === 0;
    const seen = new Set<string>();
    for (const peer of peers) {
      seen.add(peer.peerId);
      let row = this.rows.get(peer.peerId);
      if (!row) {
        row = {
          element: h('li', { class: 'peer-row', 'data-testid': 'peer-row', 'data-peer-id': peer.peerId }),
          label: h('span', { class: 'peer-label' }),
          state: h('span', { class: 'peer-state' }),
          cursor: h('span', { class: 'peer-cursor' }),
          received: h('span', { class: 'peer-received', 'data-testid': 'peer-bytes-received' }),
          sent: h('span', { class: 'peer-sent', 'data-testid': 'peer-bytes-sent' }),
        };
        row.element.append(row.label, row.state, row.cursor, row.received, row.sent);
        this.rows.set(peer.peerId, row);
        this.list.append(row.element);
      }
      setText(row.label, peer.label);
      setAttribute(row.element, 'data-connected', String(peer.connected));
      setAttribute(row.element, 'data-cursor', peer.cursor === null ? '' : String(peer.cursor));
      setAttribute(row.element, 'data-penalised', String(peer.penalised));
      setAttribute(row.element, 'data-lan', String(peer.lan));
      const reach = peer.lan ? 'on the office network, through the server' : 'connected';
      setText(row.state, peer.penalised ? 'sent bad data: ignored' : peer.connected ? reach : 'not connected');
      setText(row.cursor, peer.cursor === null ? 'no advert yet' : `synced to #${peer.cursor}`);
      setAttribute(row.received, 'data-bytes', String(peer.bytesReceived));
      setText(row.received, `${formatBytes(peer.bytesReceived)} received`);
      setAttribute(row.sent, 'data-bytes', String(peer.bytesSent));
      setText(row.sent, `${formatBytes(peer.bytesSent)} sent`);
      // What the server's bridge reads from this browser for the LAN is not told apart by LAN peer.
      row.sent.hidden = peer.lan;
    }
    for (const [peerId, row] of this.rows) {
      if (seen.has(peerId)) continue;
      row.element.remove();
      this.rows.delete(peerId);
    }
  }
}
