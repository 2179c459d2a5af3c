export * from './api.ts';
export * from './block-hash.ts';
export * from './errors.ts';
export * from './fields.ts';
export * from './file-path.ts';
export * from './journal.ts';
export * from './limits.ts';
export * from './relay.ts';
