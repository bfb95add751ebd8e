// The shapes one query passes through the pipeline in: its state (QueryCtx), an answer
// ready to release (Answer), how it ended (QueryOutcome), and the ways it can end
// (QueryEnds, implemented by query-end.ts). Types only.

import type { DomainRule } from '@netfence/policy-engine';

import type { FilterSettings } from './settings';
import type { ClientInfo, QueryReason, QueryVerdict } from './types';
import type { ParsedQuery } from './wire';

/** Sends one DNS message back to the client (UDP datagram or TCP frame). */
export type Send = (buf: Buffer) => void;

/** A message as received, before it is parsed. */
export interface QueryInput {
  /** The client's message; owned by the query (forwarded in place). */
  readonly msg: Buffer;
  readonly client: ClientInfo;
  readonly send: Send;
  /** performance.now() at receipt. */
  readonly t0: number;
}

/** One parsed query in flight. */
export interface QueryCtx extends QueryInput {
  readonly q: ParsedQuery;
  /** Largest answer the client takes (65535 over TCP, else its EDNS size or 512). */
  readonly maxSize: number;
  /** The settings at receipt: an update() during the query does not change its handling. */
  readonly cfg: FilterSettings;
  /** The domain rule that decided, if one did. */
  rule: DomainRule | undefined;
  /** Feed the answer's addresses to onResolved (proxy decisions may say no). */
  learn: boolean;
  done: boolean;
  /** The proxy decision's deadline. */
  timer: NodeJS.Timeout | undefined;
  /** When waiting for onResolved: its deadline (performance.now() ms) and the upstream named on failure. */
  hookDeadline: number;
  hookUpstream: string | undefined;
}

/** An answer ready to release: the rebinding check and onResolved come next. */
export interface Answer {
  /** Owned by this query; the client's ID and question are written into it. */
  readonly buf: Buffer;
  /** A/AAAA addresses of the name's CNAME chain, text form. */
  readonly addresses: readonly string[];
  readonly ttlSec: number;
  /** CNAME targets followed from the question name. */
  readonly cnames: readonly string[];
  readonly cached: boolean;
  readonly reason: QueryReason;
  readonly upstream: string | undefined;
}

/** How a query ended, as its QueryEvent reports it. */
export interface QueryOutcome {
  readonly verdict: QueryVerdict;
  readonly reason: QueryReason;
  readonly cached: boolean;
  readonly upstream?: string | undefined;
  readonly addresses?: readonly string[] | undefined;
}

/** The ways a query ends. Each is a no-op on a query already done. */
export interface QueryEnds {
  /** Sends `buf`, frees the in-flight slot, records latency and emits the QueryEvent. */
  finish(ctx: QueryCtx, buf: Buffer, outcome: QueryOutcome): void;
  /** SERVFAIL. */
  fail(ctx: QueryCtx, reason: QueryReason, upstream?: string): void;
  /** The settings' block answer (REFUSED or NXDOMAIN). */
  block(ctx: QueryCtx, reason: QueryReason): void;
}
