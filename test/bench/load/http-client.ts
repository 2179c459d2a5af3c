import { Agent, request } from 'node:http';

/** Largest response body a generator reads; a journal page of 1000 small entries fits easily. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface JsonResponse {
  status: number;
  /** The parsed body, or undefined when it was not JSON. */
  body: unknown;
}

/**
 * One HTTP request over node:http (lighter than fetch for thousands of open requests): a
 * bearer token, an optional JSON body, a bounded JSON response. `signal` aborts it; a request
 * with no response within `timeoutMs` fails.
 */
export function requestJson(
  agent: Agent,
  base: string,
  method: string,
  path: string,
  options: { token?: string; json?: unknown; timeoutMs: number; signal?: AbortSignal },
): Promise<JsonResponse> {
  const url = new URL(path, base);
  const payload = options.json === undefined ? undefined : Buffer.from(JSON.stringify(options.json));
  const headers: Record<string, string | number> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.length;
  }
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: url.hostname, port: url.port, method, path: url.pathname + url.search, headers, signal: options.signal },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > MAX_BODY_BYTES) {
            req.destroy(new Error(`response over ${MAX_BODY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown;
          if ((res.headers['content-type'] ?? '').startsWith('application/json')) {
            try {
              body = JSON.parse(text);
            } catch {
              body = undefined;
            }
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(options.timeoutMs, () => req.destroy(new Error(`no response in ${options.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * A keep-alive agent without a socket cap: every concurrent request gets its own connection,
 * and every connection is kept for the next request. (With the default cap on idle sockets,
 * thousands of polls answered at once would drop their connections and reconnect together,
 * overflowing the server's accept queue: SYN retransmits then add whole seconds.)
 */
export function unboundedAgent(): Agent {
  return new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: Infinity });
}
