/** The part of bittorrent-tracker's server (plain JavaScript, no types shipped) the WebTorrent bench uses. */
declare module 'bittorrent-tracker/server' {
  import type { EventEmitter } from 'node:events';
  import type { Server as HttpServer } from 'node:http';

  export interface TrackerServerOptions {
    http?: boolean;
    udp?: boolean;
    ws?: boolean;
    stats?: boolean;
  }

  export default class TrackerServer extends EventEmitter {
    constructor(options?: TrackerServerOptions);
    /** The HTTP server the websocket tracker is attached to. */
    http: HttpServer | null;
    listen(port: number, hostname: string, onListening?: () => void): void;
    close(callback?: () => void): void;
  }
}
