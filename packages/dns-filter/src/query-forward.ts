// Answers an allowed query from the cache or an upstream: the upstream's answer is cut
// down to the question's CNAME chain, its TTLs clamped and rewritten, cached, and
// handed to release().

import type { Answer, QueryCtx, QueryEnds } from './query-context';
import type { QueryCounters } from './query-stats';
import { cacheKey, type CachedAnswer, type ResponseCache } from './response-cache';
import { clampTtl } from './settings';
import type { QueryReason } from './types';
import type { UpstreamAnswer, UpstreamPool } from './upstream-pool';
import { RCODE, followChain, parseResponse, rebuildResponse, rewriteTtls } from './wire';

export interface ForwardDeps {
  readonly ends: QueryEnds;
  readonly release: (ctx: QueryCtx, answer: Answer) => void;
  readonly counters: QueryCounters;
  /** Entries at most; 0 = no cache. */
  readonly cacheSize: number;
  readonly cache: ResponseCache;
  readonly pool: UpstreamPool;
}

/** Does the response carry an additional record (its OPT)? */
function hasOpt(buf: Buffer): boolean {
  return buf.length >= 12 && ((buf[10]! << 8) | buf[11]!) > 0;
}

/** A cached answer for this query: a copy, TTLs counted down and clamped. */
function fromCache(ctx: QueryCtx, hit: CachedAnswer, reason: QueryReason): Answer {
  const buf = Buffer.from(hit.buf);
  let ttl = 0;
  if (hit.ttlOffsets.length > 0) {
    ttl = clampTtl(Math.max(1, Math.ceil((hit.expiresAtMs - Date.now()) / 1000)), ctx.cfg);
    for (const o of hit.ttlOffsets) buf.writeUInt32BE(ttl, o);
  }
  return { buf, addresses: hit.addresses, ttlSec: ttl, cnames: [], cached: true, reason, upstream: undefined };
}

/** Returns forward(ctx, reason): answers the query from the cache or upstream. */
export function createForwarder(deps: ForwardDeps): (ctx: QueryCtx, reason: QueryReason) => void {
  const { ends, release, counters: c, cacheSize, cache, pool } = deps;

  function onUpstream(ctx: QueryCtx, ans: UpstreamAnswer | undefined, key: string, reason: QueryReason): void {
    if (ctx.done) return;
    if (ans === undefined) {
      ends.fail(ctx, 'upstream-failed');
      return;
    }
    let buf = ans.buf;
    let parsed = ans.parsed;
    let chain = followChain(buf, ctx.q.name, parsed.answers);
    if (chain.foreign) {
      // strip records that are not on the question's CNAME chain
      buf = rebuildResponse(buf, parsed.questionEnd, parsed.answers, chain.chainRecords, ctx.q.edns && hasOpt(buf));
      const p2 = parseResponse(buf, ctx.q.name, ctx.q.qtype, ctx.q.qclass);
      if (p2 === null) {
        ends.fail(ctx, 'upstream-failed', ans.server);
        return;
      }
      parsed = p2;
      chain = followChain(buf, ctx.q.name, parsed.answers);
    }
    const cfg = ctx.cfg;
    let ttl = 0;
    const ttlOffsets: number[] = [];
    if (chain.chainRecords.length > 0) {
      ttl = clampTtl(chain.minTtl ?? 0, cfg);
      rewriteTtls(buf, parsed.answers, chain.chainRecords, ttl);
      for (const i of chain.chainRecords) ttlOffsets.push(parsed.answers[i]!.ttlOffset);
    }
    if (key !== '' && (parsed.rcode === RCODE.NOERROR || parsed.rcode === RCODE.NXDOMAIN) && !parsed.truncated) {
      let life = 0;
      if (chain.chainRecords.length > 0) life = ttl;
      else if (parsed.soaTtl !== undefined) life = Math.min(parsed.soaTtl, cfg.maxTtl);
      if (life > 0) {
        cache.set(key, {
          buf: Buffer.from(buf),
          rcode: parsed.rcode,
          addresses: chain.addresses,
          ttlOffsets,
          expiresAtMs: Date.now() + life * 1000,
        });
      }
    }
    release(ctx, { buf, addresses: chain.addresses, ttlSec: ttl, cnames: chain.names.slice(1), cached: false, reason, upstream: ans.server });
  }

  return function forward(ctx, reason) {
    const q = ctx.q;
    let key = '';
    if (cacheSize > 0) {
      key = cacheKey(q.qtype, q.edns, q.ednsDo, q.name);
      const hit = cache.get(key, Date.now());
      if (hit) {
        c.cacheHits++;
        release(ctx, fromCache(ctx, hit, reason));
        return;
      }
      c.cacheMisses++;
    }
    if (pool.serverCount === 0) {
      ends.fail(ctx, 'no-upstream');
      return;
    }
    // the client's buffer is ours: forward it in place (the pool rewrites the ID; release()/fail() restore it)
    pool.query(q.end === ctx.msg.length ? ctx.msg : ctx.msg.subarray(0, q.end), q.name, q.qtype, q.qclass, (ans) => onUpstream(ctx, ans, key, reason));
  };
}
