// Bearer tokens for both APIs: compared as sha256 digests in constant time.

import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Interceptor } from '@connectrpc/connect';

export interface TokenCheck {
  /** False when no tokens are configured: every request passes. */
  readonly enabled: boolean;
  /** Whether an `authorization` header carries an accepted token. */
  ok(header: string | null | undefined): boolean;
}

function tokenHash(t: string): Buffer {
  return createHash('sha256').update(t).digest();
}

export function createTokenCheck(tokens: readonly string[]): TokenCheck {
  const hashes = tokens.filter((t) => t.length > 0).map(tokenHash);
  return {
    enabled: hashes.length > 0,
    ok(header) {
      if (hashes.length === 0) return true;
      const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
      if (!m || !m[1]) return false;
      const h = tokenHash(m[1].trim());
      let ok = false;
      for (const t of hashes) if (timingSafeEqual(t, h)) ok = true;
      return ok;
    },
  };
}

/** Refuses gRPC calls without an accepted token (UNAUTHENTICATED); `onFailure` counts them. */
export function authInterceptor(check: TokenCheck, onFailure: () => void): Interceptor {
  return (next) => async (req) => {
    if (!check.ok(req.header.get('authorization'))) {
      onFailure();
      throw new ConnectError('NETFENCE_ERR_UNAUTHENTICATED: missing or invalid bearer token', Code.Unauthenticated);
    }
    return next(req);
  };
}
