// The policy document in PostgreSQL, so several control-plane replicas serve
// one policy: a row per policy set (YAML text + version), changed by
// compare-and-swap, and LISTEN/NOTIFY telling every replica to reload.

import { Client, Pool } from 'pg';
import { ControlPlaneError } from './errors';
import { childLogger } from './logger';
import type { Logger } from './logger';
import type { PolicyStore, StoredPolicy } from './types';

export interface PostgresStoreOptions {
  /** libpq-style connection string or URL (`postgres://user@host/db`, `host=/run/postgresql dbname=x`). */
  readonly connectionString: string;
  /** The policy set's name: one row, so several deployments can share a database (default `default`). */
  readonly name?: string;
  /** Stored when the database holds no policy of this name yet (e.g. the `--policy` file). */
  readonly seedText?: string;
  readonly logger?: Logger;
  /** Reconnection delay of the change feed: starts here, doubles up to 10x (default 500 ms). */
  readonly reconnectMs?: number;
}

const TABLE = 'netfence_policy';
const CHANNEL = 'netfence_policy';

/**
 * Connects, creates the table when missing, seeds it when asked, reads the policy and starts
 * listening for changes. Rejects (naming the source) when the database cannot be reached or
 * holds no policy of this name and no seed was given.
 */
export async function createPostgresPolicyStore(opts: PostgresStoreOptions): Promise<PolicyStore> {
  const name = opts.name ?? 'default';
  const source = `postgres:${TABLE}/${name}`;
  const log = opts.logger && childLogger(opts.logger, { component: 'policy-store', source });
  const pool = new Pool({ connectionString: opts.connectionString, max: 2 });
  pool.on('error', (e) => log?.warn({ err: e.message }, 'idle database connection failed'));
  const fail = (code: 'NETFENCE_ERR_POLICY_READ' | 'NETFENCE_ERR_POLICY_WRITE', what: string, e: unknown) =>
    new ControlPlaneError(code, `${source}: ${what}: ${(e as Error).message}`, { cause: e });

  let current: StoredPolicy;
  try {
    await pool.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (name text PRIMARY KEY, text text NOT NULL, version bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    if (opts.seedText !== undefined) {
      await pool.query(`INSERT INTO ${TABLE} (name, text, version) VALUES ($1, $2, 1) ON CONFLICT (name) DO NOTHING`, [name, opts.seedText]);
    }
    const r = await pool.query<{ text: string; version: string }>(`SELECT text, version FROM ${TABLE} WHERE name = $1`, [name]);
    if (r.rowCount === 0) {
      await pool.end();
      throw new ControlPlaneError('NETFENCE_ERR_POLICY_NOT_FOUND', `${source}: no policy stored under this name, and no policy file to seed it with`);
    }
    current = { text: r.rows[0]!.text, version: Number(r.rows[0]!.version) };
  } catch (e) {
    if (e instanceof ControlPlaneError) throw e;
    await pool.end().catch(() => undefined);
    throw fail('NETFENCE_ERR_POLICY_READ', 'cannot load the policy', e);
  }

  const listeners: (() => void)[] = [];
  const changed = (): void => {
    for (const cb of listeners) cb();
  };
  let closed = false;
  let feed: Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  const baseDelay = opts.reconnectMs ?? 500;
  let delay = baseDelay;

  /** The change feed: one connection that LISTENs; on loss it reconnects with backoff and reports a change. */
  async function connectFeed(first: boolean): Promise<void> {
    const c = new Client({ connectionString: opts.connectionString });
    c.on('notification', (n) => {
      if (n.channel === CHANNEL && n.payload === name) changed();
    });
    c.on('error', (e) => log?.warn({ err: e.message }, 'change feed failed'));
    c.on('end', () => {
      if (feed === c) feed = undefined;
      if (!closed) {
        log?.warn({ retryMs: delay }, 'change feed lost; policy changes by other replicas wait for the reconnection');
        scheduleFeed();
      }
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      if (first) closed = true; // the store is not handed out: no retries behind the caller's back
      await c.end().catch(() => undefined);
      if (first) throw fail('NETFENCE_ERR_POLICY_READ', 'cannot listen for policy changes', e);
      scheduleFeed();
      return;
    }
    if (closed) {
      await c.end().catch(() => undefined);
      return;
    }
    feed = c;
    delay = baseDelay;
    if (!first) {
      log?.info({}, 'change feed reconnected; reloading in case a change was missed');
      changed();
    }
  }
  function scheduleFeed(): void {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void connectFeed(false);
    }, delay);
    retry.unref();
    delay = Math.min(delay * 2, baseDelay * 10);
  }
  try {
    await connectFeed(true);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }

  return {
    source,
    current: () => current,
    async read() {
      try {
        const r = await pool.query<{ text: string; version: string }>(`SELECT text, version FROM ${TABLE} WHERE name = $1`, [name]);
        if (r.rowCount === 0) throw new ControlPlaneError('NETFENCE_ERR_POLICY_NOT_FOUND', `${source}: the stored policy was deleted`);
        current = { text: r.rows[0]!.text, version: Number(r.rows[0]!.version) };
        return current;
      } catch (e) {
        if (e instanceof ControlPlaneError) throw e;
        throw fail('NETFENCE_ERR_POLICY_READ', 'cannot read the policy', e);
      }
    },
    async write(text, version) {
      let client;
      try {
        client = await pool.connect();
      } catch (e) {
        throw fail('NETFENCE_ERR_POLICY_WRITE', 'cannot write the policy', e);
      }
      try {
        await client.query('BEGIN');
        const r = await client.query<{ version: string }>(`UPDATE ${TABLE} SET text = $1, version = version + 1, updated_at = now() WHERE name = $2 AND version = $3 RETURNING version`, [text, name, version]);
        if (r.rowCount === 0) {
          await client.query('ROLLBACK');
          throw new ControlPlaneError('NETFENCE_ERR_POLICY_CONFLICT', `${source}: changed by another writer since version ${version}; read it again`);
        }
        // Delivered to every listener when (and only if) the transaction commits.
        await client.query('SELECT pg_notify($1, $2)', [CHANNEL, name]);
        await client.query('COMMIT');
        current = { text, version: Number(r.rows[0]!.version) };
        return current;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (e instanceof ControlPlaneError) throw e;
        throw fail('NETFENCE_ERR_POLICY_WRITE', 'cannot write the policy', e);
      } finally {
        client.release();
      }
    },
    onChange(cb) {
      listeners.push(cb);
    },
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      const f = feed;
      feed = undefined;
      await f?.end().catch(() => undefined);
      await pool.end().catch(() => undefined);
    },
  };
}
