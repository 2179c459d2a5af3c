export { AdvertKeyring, advertTag, deriveAdvertKey } from './advert-keys.ts';
export { DROP_REASONS, LAN_PEER_TTL_MS, LanAdvertListener, type DropReason, type LanAdvertListenerOptions, type ListenerCounters } from './lan-advert-listener.ts';
export { LAN_ADVERT_INTERVAL_MS, LanAdvertiser, type LanAdvertiserOptions } from './lan-advertiser.ts';
export type { LanPeerAdvert } from './lan-peer-table.ts';
export { NEWCOMER_ANSWER_INTERVAL_MS, NewcomerAnswer } from './newcomer-answer.ts';
