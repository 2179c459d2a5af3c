import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PEER_LABEL,
  MAX_PEERS_LISTED,
  MAX_SIGNAL_BYTES,
  ValidationError,
  parseAdvertIn,
  parseAdvertOut,
  parseClientConfig,
  parseIceServers,
  parsePeerId,
  parsePeerLabel,
  parsePeerLeft,
  parsePeersIn,
  parsePeersOut,
  parseRelayAuth,
  parseRelayError,
  parseSignalData,
  parseSignalIn,
  parseSignalOut,
  parseWelcome,
  type NamespaceId,
} from '../../src/protocol/index.ts';
import { envIceServers } from '../../src/server/config.ts';
import { InMemoryAdvertTable } from '../../src/server/relay/advert-table.ts';
import { TokenBucket } from '../../src/server/relay/rate-limit.ts';

const NS = 'gLYh2GuQa-XXMRoUUKJCRg' as NamespaceId;
const NS2 = 'hMZi3HvRb-YYNSpVVLKDSh' as NamespaceId;
const PEER = 'p_ZiqhjNqqU5qtr-04';
const PEER2 = 'p_AAAAAAAAAAAAAAAA';
const TOKEN = 'qCLlVnoNdQHS0WZaJJgUAeOE8o_eRLgG89H7yUz0Afc';
const TOKEN2 = 'j8kfyMBO1ZRHbIM_R6BefmoUe2ysuVYDqLBOib8fdzg';
const OFFER = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
const CANDIDATE = { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host', sdpMLineIndex: 0, sdpMid: '0' } };
const ADVERT = { peerId: PEER, label: 'Ann', ns: NS, cursor: 7, at: 1_700_000_000_000 };

const rejects = (parse: (value: unknown) => unknown, value: unknown) => expect(() => parse(value)).toThrow(ValidationError);

describe('peer ids', () => {
  it('accepts p_ and 16 base64url characters', () => {
    expect(parsePeerId(PEER)).toBe(PEER);
    expect(parsePeerId('p_-_-_-_-_-_-_-_-_')).toBe('p_-_-_-_-_-_-_-_-_');
  });
  it.each([
    ['p_ZiqhjNqqU5qtr-0', 'too short'],
    ['p_ZiqhjNqqU5qtr-044', 'too long'],
    ['q_ZiqhjNqqU5qtr-04', 'wrong prefix'],
    ['ZiqhjNqqU5qtr-04xx', 'no prefix'],
    ['p_ZiqhjNqqU5qtr+04', 'not base64url'],
    ['p_ZiqhjNqqU5qtr-0\n', 'newline'],
    [42, 'a number'],
    [null, 'null'],
  ])('rejects %j (%s)', (value, _what) => rejects(parsePeerId, value));
});

describe('peer labels', () => {
  it('normalises to NFC and trims', () => {
    expect(parsePeerLabel("  Ann's laptop ")).toBe("Ann's laptop");
    expect(parsePeerLabel('cafe\u0301')).toBe('café');
    expect(parsePeerLabel('x'.repeat(40))).toBe('x'.repeat(40));
    expect(parsePeerLabel('😀'.repeat(40))).toBe('😀'.repeat(40));
  });
  it.each([
    ['', 'empty'],
    ['   ', 'blank'],
    ['x'.repeat(41), 'too long'],
    ['x'.repeat(10_000), 'far too long'],
    ['a\nb', 'newline'],
    ['a\u0000b', 'NUL'],
    ['a\u0085b', 'C1 control'],
    ['a\u202eb', 'bidi override'],
    ['a\u2028b', 'line separator'],
    [7, 'a number'],
  ])('rejects %j (%s)', (value, _what) => rejects(parsePeerLabel, value));
});

describe('handshake auth', () => {
  it('accepts tokens, dedupes them and defaults the label', () => {
    expect(parseRelayAuth({ tokens: [TOKEN, TOKEN2, TOKEN] })).toEqual({ tokens: [TOKEN, TOKEN2], label: DEFAULT_PEER_LABEL });
    expect(parseRelayAuth({ tokens: [TOKEN], label: '  ' })).toEqual({ tokens: [TOKEN], label: DEFAULT_PEER_LABEL });
    expect(parseRelayAuth({ tokens: [TOKEN], label: ' Ann ' })).toEqual({ tokens: [TOKEN], label: 'Ann' });
  });
  it.each([
    [undefined, 'auth'],
    [{}, 'auth.tokens'],
    [{ tokens: [] }, 'auth.tokens'],
    [{ tokens: TOKEN }, 'auth.tokens'],
    [{ tokens: ['short'] }, 'auth.tokens[0]'],
    [{ tokens: [TOKEN, 5] }, 'auth.tokens[1]'],
    [{ tokens: Array(65).fill(TOKEN) }, 'auth.tokens'],
    [{ tokens: [TOKEN], label: 'a\tb' }, 'auth.label'],
    [{ tokens: [TOKEN], label: 5 }, 'auth.label'],
    [{ tokens: [TOKEN], peerId: PEER }, 'auth.peerId'],
  ])('rejects %j at %s', (value, field) => {
    try {
      parseRelayAuth(value);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe(field);
    }
  });
});

describe('welcome', () => {
  it('accepts a peer id and its namespaces', () => {
    expect(parseWelcome({ peerId: PEER, namespaces: [NS, NS2] })).toEqual({ peerId: PEER, namespaces: [NS, NS2] });
  });
  it.each([
    [{ peerId: PEER, namespaces: [] }, 'no namespaces'],
    [{ peerId: PEER, namespaces: [NS, NS] }, 'repeated namespace'],
    [{ peerId: PEER, namespaces: ['bad ns'] }, 'bad namespace'],
    [{ peerId: 'me', namespaces: [NS] }, 'bad peer id'],
    [{ peerId: PEER, namespaces: [NS], extra: 1 }, 'unknown field'],
    [{ namespaces: [NS] }, 'missing peer id'],
    [[PEER, [NS]], 'an array'],
  ])('rejects %j (%s)', (value, _what) => rejects(parseWelcome, value));
});

describe('adverts', () => {
  it('accepts an advert from a peer', () => {
    expect(parseAdvertIn({ ns: NS, cursor: 0 })).toEqual({ ns: NS, cursor: 0 });
    expect(parseAdvertIn({ ns: NS, cursor: Number.MAX_SAFE_INTEGER })).toEqual({ ns: NS, cursor: Number.MAX_SAFE_INTEGER });
  });
  it.each([
    [{ ns: NS, cursor: -1 }, 'negative cursor'],
    [{ ns: NS, cursor: 1.5 }, 'fractional cursor'],
    [{ ns: NS, cursor: '3' }, 'string cursor'],
    [{ ns: NS, cursor: 2 ** 53 }, 'unsafe cursor'],
    [{ ns: NS }, 'missing cursor'],
    [{ ns: 'short', cursor: 1 }, 'bad namespace'],
    [{ ns: NS, cursor: 1, peerId: PEER }, 'forged peerId'],
    [null, 'null'],
    ['advert', 'a string'],
  ])('rejects an incoming %j (%s)', (value, _what) => rejects(parseAdvertIn, value));

  it('accepts an advert from the relay', () => {
    expect(parseAdvertOut(ADVERT)).toEqual(ADVERT);
  });
  it.each([
    [{ ...ADVERT, peerId: 'x' }, 'bad peer id'],
    [{ ...ADVERT, label: '' }, 'empty label'],
    [{ ...ADVERT, label: 'a\u0007' }, 'control in label'],
    [{ ...ADVERT, ns: 1 }, 'bad namespace'],
    [{ ...ADVERT, cursor: -1 }, 'bad cursor'],
    [{ ...ADVERT, at: -5 }, 'negative time'],
    [{ ...ADVERT, at: 1e20 }, 'absurd time'],
    [{ ...ADVERT, from: PEER }, 'unknown field'],
    [(({ label, ...rest }) => rest)(ADVERT), 'missing label'],
  ])('rejects an outgoing %j (%s)', (value, _what) => rejects(parseAdvertOut, value));
});

describe('peers lists', () => {
  it('accepts a request and a list', () => {
    expect(parsePeersIn({ ns: NS })).toEqual({ ns: NS });
    expect(parsePeersOut({ ns: NS, peers: [] })).toEqual({ ns: NS, peers: [] });
    const list = { ns: NS, peers: [ADVERT, { ...ADVERT, peerId: PEER2, cursor: 3 }] };
    expect(parsePeersOut(list)).toEqual(list);
  });
  it.each([
    [{}, 'missing ns'],
    [{ ns: NS, all: true }, 'unknown field'],
    [{ ns: 'x' }, 'bad ns'],
  ])('rejects a request %j (%s)', (value, _what) => rejects(parsePeersIn, value));
  it.each([
    [{ ns: NS }, 'missing peers'],
    [{ ns: NS, peers: [{ ...ADVERT, ns: NS2 }] }, 'advert of another namespace'],
    [{ ns: NS, peers: [ADVERT, ADVERT] }, 'repeated peer'],
    [{ ns: NS, peers: [{ ...ADVERT, cursor: 'x' }] }, 'bad advert'],
    [{ ns: NS, peers: Array.from({ length: MAX_PEERS_LISTED + 1 }, () => ADVERT) }, 'too many'],
    [{ ns: NS, peers: {} }, 'not an array'],
  ])('rejects a list %j (%s)', (value, _what) => rejects(parsePeersOut, value));
});

describe('signal data', () => {
  it('accepts what simple-peer emits, rebuilt from known fields', () => {
    expect(parseSignalData(OFFER)).toEqual(OFFER);
    expect(parseSignalData({ type: 'answer', sdp: 'v=0' })).toEqual({ type: 'answer', sdp: 'v=0' });
    expect(parseSignalData(CANDIDATE)).toEqual(CANDIDATE);
    const bare = { candidate: { candidate: '', sdpMLineIndex: null, sdpMid: null, usernameFragment: 'abcd' } };
    expect(parseSignalData(bare)).toEqual(bare);
    expect(parseSignalData({ type: 'renegotiate', renegotiate: true })).toEqual({ type: 'renegotiate', renegotiate: true });
    const tr = { type: 'transceiverRequest', transceiverRequest: { kind: 'video', init: { direction: 'recvonly' } } };
    expect(parseSignalData(tr)).toEqual(tr);
    expect(parseSignalData({ type: 'connect' })).toEqual({ type: 'connect' });
  });
  it('keeps an SDP up to the limit', () => {
    const sdp = 'a'.repeat(MAX_SIGNAL_BYTES - 40);
    expect(parseSignalData({ type: 'offer', sdp })).toEqual({ type: 'offer', sdp });
  });
  it.each([
    ['offer', 'a string'],
    [null, 'null'],
    [[OFFER], 'an array'],
    [{}, 'no type'],
    [{ type: 'pranswer', sdp: 'v=0' }, 'unknown type'],
    [{ type: 'offer' }, 'missing sdp'],
    [{ type: 'offer', sdp: '' }, 'empty sdp'],
    [{ type: 'offer', sdp: 5 }, 'sdp not a string'],
    [{ type: 'offer', sdp: 'a'.repeat(64 * 1024 + 1) }, 'sdp too long'],
    [{ type: 'offer', sdp: 'é'.repeat(40_000) }, 'JSON over 64 KiB in UTF-8'],
    [{ ...OFFER, extra: 1 }, 'unknown field'],
    [{ type: 'candidate' }, 'candidate missing'],
    [{ type: 'candidate', candidate: 'candidate:1' }, 'candidate not an object'],
    [{ type: 'candidate', candidate: { candidate: 'x'.repeat(4097) } }, 'candidate too long'],
    [{ type: 'candidate', candidate: { candidate: 'c', sdpMLineIndex: -1 } }, 'bad m-line index'],
    [{ type: 'candidate', candidate: { candidate: 'c', sdpMid: 3 } }, 'bad mid'],
    [{ type: 'candidate', candidate: { candidate: 'c', port: 1 } }, 'unknown candidate field'],
    [{ type: 'renegotiate', renegotiate: 'yes' }, 'renegotiate not true'],
    [{ type: 'transceiverRequest', transceiverRequest: { kind: 'data' } }, 'bad kind'],
    [{ type: 'transceiverRequest', transceiverRequest: { kind: 'audio', init: { streams: [] } } }, 'unknown init field'],
    [{ type: 'transceiverRequest', transceiverRequest: { kind: 'audio', init: { direction: 'up' } } }, 'bad direction'],
    [{ type: 'connect', please: true }, 'connect with fields'],
  ])('rejects %j (%s)', (value, _what) => rejects(parseSignalData, value));
});

describe('signals', () => {
  it('accepts a signal to a peer and one from the relay', () => {
    expect(parseSignalIn({ to: PEER, data: OFFER })).toEqual({ to: PEER, data: OFFER });
    const out = { from: PEER, namespaces: [NS], data: CANDIDATE };
    expect(parseSignalOut(out)).toEqual(out);
  });
  it.each([
    [{ to: 'someone', data: OFFER }, 'bad peer id'],
    [{ to: PEER }, 'missing data'],
    [{ to: PEER, data: { type: 'x' } }, 'bad data'],
    [{ to: PEER, data: OFFER, from: PEER2 }, 'forged from'],
  ])('rejects an incoming %j (%s)', (value, _what) => rejects(parseSignalIn, value));
  it.each([
    [{ from: PEER, namespaces: [], data: OFFER }, 'no shared namespace'],
    [{ from: PEER, namespaces: [NS, NS], data: OFFER }, 'repeated namespace'],
    [{ from: 'x', namespaces: [NS], data: OFFER }, 'bad from'],
    [{ from: PEER, namespaces: [NS], data: OFFER, to: PEER2 }, 'unknown field'],
    [{ from: PEER, namespaces: [NS], data: 'v=0' }, 'bad data'],
  ])('rejects an outgoing %j (%s)', (value, _what) => rejects(parseSignalOut, value));
});

describe('peer-left and relay-error', () => {
  it('accepts well-formed events', () => {
    expect(parsePeerLeft({ peerId: PEER, ns: NS })).toEqual({ peerId: PEER, ns: NS });
    expect(parseRelayError({ code: 'no_shared_namespace', message: 'no' })).toEqual({ code: 'no_shared_namespace', message: 'no' });
  });
  it.each([
    [{ peerId: PEER }, 'missing ns'],
    [{ peerId: 'x', ns: NS }, 'bad peer'],
    [{ peerId: PEER, ns: NS, at: 1 }, 'unknown field'],
  ])('rejects peer-left %j (%s)', (value, _what) => rejects(parsePeerLeft, value));
  it.each([
    [{ code: 'oops', message: 'x' }, 'unknown code'],
    [{ code: 'invalid' }, 'missing message'],
    [{ code: 'invalid', message: 'x'.repeat(501) }, 'message too long'],
    [{ code: 'invalid', message: 'x', field: 'a' }, 'unknown field'],
  ])('rejects relay-error %j (%s)', (value, _what) => rejects(parseRelayError, value));
});

describe('ICE servers and client config', () => {
  const STUN = { urls: 'stun:stun.example.com:3478' };
  const TURN = { urls: ['turn:turn.example.com:3478?transport=udp', 'turns:turn.example.com:5349'], username: 'u', credential: 'c' };
  it('accepts STUN and TURN servers', () => {
    expect(parseIceServers([])).toEqual([]);
    expect(parseIceServers([STUN, TURN])).toEqual([STUN, TURN]);
    expect(parseClientConfig({ iceServers: [STUN] })).toEqual({ iceServers: [STUN] });
  });
  it.each([
    [{}, 'not an array'],
    [[{ urls: 'http://example.com' }], 'not an ICE URL'],
    [[{ urls: [] }], 'no URLs'],
    [[{ urls: 'stun:a b' }], 'space in URL'],
    [[{ urls: 'stun:x', credentialType: 'oauth' }], 'unknown field'],
    [[{ urls: 'turn:x', username: 5 }], 'bad username'],
    [Array(17).fill(STUN), 'too many'],
  ])('rejects %j (%s)', (value, _what) => rejects(parseIceServers, value));
  it('rejects a config with extra fields', () => rejects(parseClientConfig, { iceServers: [], relay: '/x' }));
  it('reads ICE_SERVERS from the environment', () => {
    expect(envIceServers({})).toEqual([]);
    expect(envIceServers({ ICE_SERVERS: ' ' })).toEqual([]);
    expect(envIceServers({ ICE_SERVERS: JSON.stringify([STUN]) })).toEqual([STUN]);
    expect(() => envIceServers({ ICE_SERVERS: '[{' })).toThrow(/JSON array/);
    expect(() => envIceServers({ ICE_SERVERS: '[{"urls":"ftp://x"}]' })).toThrow(/ICE_SERVERS\[0\]\.urls/);
  });
});

describe('token bucket', () => {
  it('allows a burst, then the sustained rate', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    now += 100; // one token back
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
    now += 10_000; // refills only up to the burst
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
  });
});

describe('in-memory advert table', () => {
  const advert = (peerId: string, ns: string, at: number, cursor = 1) => ({ peerId, label: 'L', ns, cursor, at }) as ReturnType<typeof parseAdvertOut>;
  it('keeps one advert per peer and namespace, newest first', async () => {
    const table = new InMemoryAdvertTable();
    expect(await table.put(advert(PEER, NS, 10, 1), 90_000)).toBeNull();
    expect(await table.put(advert(PEER, NS, 20, 2), 90_000)).toEqual(advert(PEER, NS, 10, 1));
    await table.put(advert(PEER2, NS, 30), 90_000);
    await table.put(advert(PEER, NS2, 15), 90_000);
    expect((await table.list(NS, 10)).map((a) => [a.peerId, a.cursor])).toEqual([
      [PEER2, 1],
      [PEER, 2],
    ]);
    expect(await table.list(NS, 1)).toHaveLength(1);
    expect(await table.list(NS2, 10)).toHaveLength(1);
  });
  it('removes a peer everywhere, and expires by time', async () => {
    const table = new InMemoryAdvertTable();
    await table.put(advert(PEER, NS, 10), 90_000);
    await table.put(advert(PEER, NS2, 50), 90_000);
    await table.put(advert(PEER2, NS, 40), 90_000);
    expect((await table.expire(45)).map((a) => [a.peerId, a.ns])).toEqual([
      [PEER, NS],
      [PEER2, NS],
    ]);
    expect(await table.list(NS, 10)).toEqual([]);
    expect((await table.removePeer(PEER as never)).map((a) => a.ns)).toEqual([NS2]);
    expect(await table.removePeer(PEER as never)).toEqual([]);
  });
});
