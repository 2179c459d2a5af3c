/** An IPv4 peer accepted on a dual-stack socket shows as ::ffff:a.b.c.d. */
export const plainIp = (address: string): string => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');

/**
 * What a LAN ban names: the peer id a remote claims AND the IP address the kernel saw. The id
 * alone is only a claim (any member can send a hello with another member's id); keyed with
 * the address, a member misbehaving under another's id is banned at its own address only.
 */
export const banKey = (peerId: string, address: string): string => `${peerId}@${plainIp(address)}`;
