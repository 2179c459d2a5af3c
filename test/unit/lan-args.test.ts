import { describe, expect, it } from 'vitest';
import { UsageError, parseCommand } from '../../src/lan/args.ts';
import { namespaceOfLink, parseInvite } from '../../src/lan/membership.ts';

const base = ['peer', '--server', 'http://127.0.0.1:8080', '--dir', 'work'];

describe('nearsync peer arguments', () => {
  it('parses a full command line, with the state dir beside the folder by default', () => {
    const parsed = parseCommand([...base, '--invite', 'http://h/w/abcdefghijklmnop#invite=AAAAAAAAAAAAAAAAAAAAAA', '--lan', '--port=17601'], '/home/u');
    expect(parsed).toEqual({
      kind: 'peer',
      options: {
        server: 'http://127.0.0.1:8080',
        invite: 'http://h/w/abcdefghijklmnop#invite=AAAAAAAAAAAAAAAAAAAAAA',
        dir: '/home/u/work',
        stateDir: '/home/u/work.nearsync',
        cacheOnly: false,
        lan: true,
        port: 17601,
        tcpPort: 17601,
        lanBroadcast: null,
      },
    });
    expect(parseCommand(['peer', '--help'])).toEqual({ kind: 'help' });
  });

  it('takes a separate TCP port (0: any free one) and an explicit broadcast address', () => {
    const parsed = parseCommand([...base, '--lan', '--tcp-port', '0', '--lan-broadcast', '10.213.4.3'], '/home/u');
    expect(parsed.kind === 'peer' && parsed.options).toMatchObject({ port: 17600, tcpPort: 0, lanBroadcast: '10.213.4.3' });
    const defaults = parseCommand([...base, '--port', '17700'], '/home/u');
    expect(defaults.kind === 'peer' && defaults.options).toMatchObject({ port: 17700, tcpPort: 17700, lanBroadcast: null });
  });

  it.each([
    [[], /missing command/],
    [['sync'], /unknown command/],
    [['peer', '--dir', 'x'], /--server URL is required/],
    [['peer', '--server', 'http://h'], /--dir PATH is required/],
    [[...base, '--port', '0'], /--port/],
    [[...base, '--port', '70000'], /--port/],
    [[...base, '--port', '1e3'], /--port/],
    [[...base, '--port', '017600'], /--port/],
    [[...base, '--tcp-port', '65536'], /--tcp-port/],
    [[...base, '--tcp-port', '-1'], /--tcp-port/],
    [[...base, '--lan-broadcast', '10.0.0.256'], /--lan-broadcast/],
    [[...base, '--lan-broadcast', 'lan.example'], /--lan-broadcast/],
    [[...base, '--lan-broadcast', '10.0.0'], /--lan-broadcast/],
    [[...base, '--dir', 'again'], /given twice/],
    [[...base, '--lan=yes'], /takes no value/],
    [[...base, '--invite'], /needs a value/],
    [[...base, '--verbose'], /unknown option/],
    [['peer', '--server', 'ftp://h', '--dir', 'x'], /http/],
    [['peer', '--server', 'http://u:p@h', '--dir', 'x'], /user name/],
    [[...base, '--state', 'work/state'], /must not be PATH or inside it/],
    [['peer', '--server', 'http://h', '--dir', '/'], /root directory/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseCommand(argv as string[], '/home/u')).toThrow(UsageError);
    expect(() => parseCommand(argv as string[], '/home/u')).toThrow(message);
  });

  it('reads invites from share links or bare, and the namespace from the link', () => {
    expect(parseInvite('https://h/w/abcdefghijklmnop#invite=AAAAAAAAAAAAAAAAAAAAAA')).toBe('AAAAAAAAAAAAAAAAAAAAAA');
    expect(parseInvite('BBBBBBBBBBBBBBBBBBBBBB')).toBe('BBBBBBBBBBBBBBBBBBBBBB');
    expect(parseInvite('https://h/w/abcdefghijklmnop')).toBeNull();
    expect(namespaceOfLink('https://h/w/abcdefghijklmnop#invite=AAAAAAAAAAAAAAAAAAAAAA')).toBe('abcdefghijklmnop');
  });
});
