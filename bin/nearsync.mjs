#!/usr/bin/env node
// `npx nearsync …`: the native LAN peer. tsx runs the TypeScript sources directly, as `npm start` does.
import { register } from 'tsx/esm/api';

register();
await import('../src/lan/cli.ts');
