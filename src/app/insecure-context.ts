import { h } from './dom.ts';

export function insecureContextNotice(): HTMLElement {
  const secureUrl = `https://${location.host}${location.pathname}${location.hash}`;
  return h(
    'section',
    { class: 'banner is-error', role: 'alert', 'data-testid': 'insecure-context' },
    h('h1', {}, 'This page needs a secure connection'),
    h(
      'p',
      {},
      'nearsync checks every file block with WebCrypto and lets one tab sync for the others with Web Locks. ',
      'Browsers offer both only on pages opened over https:// or at http://localhost.',
    ),
    h('p', {}, 'Try ', h('a', { href: secureUrl }, secureUrl), ', or ask whoever runs the server to set up HTTPS.'),
  );
}
