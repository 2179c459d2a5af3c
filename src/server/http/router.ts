import { HttpError } from './errors.ts';

/**
 * A tiny method + path router. Patterns are literal segments and `:name` parameters
 * (one whole segment each), e.g. `/api/v1/ns/:ns/journal`.
 */
export interface RouteMatch<H> {
  pattern: string;
  handler: H;
  params: Record<string, string>;
}

interface Route<H> {
  pattern: string;
  segments: string[];
  handlers: Map<string, H>;
}

export class Router<H> {
  private readonly routes: Route<H>[] = [];

  add(method: string, pattern: string, handler: H): this {
    let route = this.routes.find((r) => r.pattern === pattern);
    if (!route) {
      route = { pattern, segments: pattern.split('/').slice(1), handlers: new Map() };
      this.routes.push(route);
    }
    route.handlers.set(method.toUpperCase(), handler);
    return this;
  }

  /**
   * The route for a method and path, or null when no pattern fits the path; throws 405
   * (with Allow) when patterns fit but none takes this method.
   */
  match(method: string, pathname: string): RouteMatch<H> | null {
    const parts = pathname.split('/').slice(1);
    const allowed = new Set<string>();
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (!params) continue;
      const handler = route.handlers.get(method.toUpperCase());
      if (handler) return { pattern: route.pattern, handler, params };
      for (const name of route.handlers.keys()) allowed.add(name);
    }
    if (allowed.size === 0) return null;
    const allow = [...allowed].join(', ');
    throw new HttpError(405, 'method_not_allowed', `${method} is not allowed here; use ${allow}`, {
      headers: { Allow: allow },
    });
  }
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const expected = pattern[i];
    if (expected.startsWith(':')) {
      if (parts[i] === '') return null;
      params[expected.slice(1)] = parts[i];
    } else if (expected !== parts[i]) {
      return null;
    }
  }
  return params;
}
