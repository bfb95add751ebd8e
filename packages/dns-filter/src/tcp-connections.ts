/**
 * The TCP connections of one DNS server, capped per client address and in total.
 *
 * Refusing new connections over a cap (what `net.Server.maxConnections` does) lets a
 * workload that opens a few hundred idle connections lock every later TCP query out until
 * the idle timeout. Instead a new connection is always admitted, and the connection closed
 * to make room is the one that has been idle longest: first among the new connection's own
 * client when that client is at its cap, then among all connections when the server is.
 * A connection with a query in flight is chosen only when every candidate has one (then
 * the one least recently active goes; its pending answers are not sent).
 */
export interface TcpConnectionLimits {
  /** Connections at most, all clients together. */
  readonly maxTotal: number;
  /** Connections at most from one client address. */
  readonly maxPerClient: number;
}

export interface TrackedConnection<S> {
  readonly socket: S;
  readonly client: string;
  /** Queries received on it and not yet answered. */
  readonly inFlight: number;
}

export interface TcpConnectionTable<S> {
  /** Tracks a new connection, closing (`close(socket)`) whatever must go to respect the limits first. */
  admit(socket: S, client: string): TrackedConnection<S>;
  /** A query arrived on the connection (+1) or was answered (-1). */
  busy(conn: TrackedConnection<S>, delta: 1 | -1): void;
  /** The connection closed (idempotent). */
  remove(conn: TrackedConnection<S>): void;
  readonly size: number;
  /** Connections closed to make room, so far. */
  readonly evicted: number;
  sockets(): IterableIterator<S>;
}

interface Entry<S> {
  readonly socket: S;
  readonly client: string;
  inFlight: number;
  gone: boolean;
}

/**
 * `close` is called for each evicted connection (after it is forgotten here). Both maps
 * iterate in insertion order and an entry is re-inserted whenever it becomes idle, so the
 * first idle entry found is the one idle longest; a victim search is a scan of at most
 * `maxTotal` entries, done only when a cap is reached.
 */
export function createTcpConnectionTable<S>(limits: TcpConnectionLimits, close: (socket: S) => void): TcpConnectionTable<S> {
  if (!(limits.maxTotal >= 1) || !(limits.maxPerClient >= 1)) throw new RangeError('tcp connection limits must be >= 1');
  const all = new Map<Entry<S>, true>();
  const byClient = new Map<string, Map<Entry<S>, true>>();
  let evicted = 0;

  function forget(e: Entry<S>): void {
    if (e.gone) return;
    e.gone = true;
    all.delete(e);
    const mine = byClient.get(e.client);
    mine?.delete(e);
    if (mine?.size === 0) byClient.delete(e.client);
  }

  function victim(set: Map<Entry<S>, true>): Entry<S> | undefined {
    let first: Entry<S> | undefined;
    for (const e of set.keys()) {
      if (e.inFlight === 0) return e;
      first ??= e;
    }
    return first;
  }

  function evict(e: Entry<S>): void {
    forget(e);
    evicted++;
    close(e.socket);
  }

  return {
    admit(socket, client) {
      let mine = byClient.get(client);
      while (mine !== undefined && mine.size >= limits.maxPerClient) {
        evict(victim(mine)!);
        mine = byClient.get(client);
      }
      while (all.size >= limits.maxTotal) evict(victim(all)!);
      const e: Entry<S> = { socket, client, inFlight: 0, gone: false };
      all.set(e, true);
      if (mine === undefined) {
        mine = new Map();
        byClient.set(client, mine);
      }
      mine.set(e, true);
      return e;
    },
    busy(conn, delta) {
      const e = conn as Entry<S>;
      if (e.gone) return;
      e.inFlight = Math.max(0, e.inFlight + delta);
      if (e.inFlight === 0) {
        // idle from now: move to the end of both orders
        all.delete(e);
        all.set(e, true);
        const mine = byClient.get(e.client)!;
        mine.delete(e);
        mine.set(e, true);
      }
    },
    remove(conn) {
      forget(conn as Entry<S>);
    },
    get size() {
      return all.size;
    },
    get evicted() {
      return evicted;
    },
    *sockets() {
      for (const e of all.keys()) yield e.socket;
    },
  };
}
