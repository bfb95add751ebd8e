// A bounded LRU response cache that honours TTLs (positive answers by their
// clamped TTL, negative answers by the SOA minimum). Keyed by
// qtype + EDNS flags + name. Map insertion order is the LRU order.

export interface CachedAnswer {
  /** The upstream response as sent to clients (TTLs already rewritten). */
  readonly buf: Buffer;
  readonly rcode: number;
  /** A/AAAA of the chain, text form. */
  readonly addresses: readonly string[];
  /** Offsets of the TTL fields to rewrite on a hit (answer chain records). */
  readonly ttlOffsets: readonly number[];
  readonly expiresAtMs: number;
}

export interface ResponseCache {
  get(key: string, nowMs: number): CachedAnswer | undefined;
  set(key: string, value: CachedAnswer): void;
  clear(): void;
  readonly size: number;
}

export function cacheKey(qtype: number, edns: boolean, ednsDo: boolean, name: string): string {
  return `${qtype}${edns ? (ednsDo ? 'd' : 'e') : 'n'}${name}`;
}

export function createResponseCache(maxEntries: number): ResponseCache {
  const map = new Map<string, CachedAnswer>();
  return {
    get(key, nowMs) {
      const v = map.get(key);
      if (v === undefined) return undefined;
      if (v.expiresAtMs <= nowMs) {
        map.delete(key);
        return undefined;
      }
      // refresh LRU position
      map.delete(key);
      map.set(key, v);
      return v;
    },
    set(key, value) {
      if (maxEntries <= 0) return;
      map.delete(key);
      map.set(key, value);
      while (map.size > maxEntries) {
        const oldest = map.keys().next();
        if (oldest.done) break;
        map.delete(oldest.value);
      }
    },
    clear() {
      map.clear();
    },
    get size() {
      return map.size;
    },
  };
}
