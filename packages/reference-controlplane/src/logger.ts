// The logger shape the control plane accepts (pino's), the silent default, and the CLI's root
// logger: the daemon's format (pino JSON on stderr, ISO time, base {service}), so the lines of
// netfenced, netfence-dns and the control plane read alike.

import pino from 'pino';

/** pino-compatible logger. */
export interface Logger {
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
  debug(obj: unknown, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
  /** pino's: the keys this logger already writes on every line. */
  bindings?(): Record<string, unknown>;
}

/** Used when no logger is given: a library never writes to the console on its own. */
export const noopLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
  child: () => noopLogger,
};

/** The root logger of a netfence-controlplane process: pino JSON on stderr, ISO time. */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { service: 'netfence-controlplane' }, timestamp: pino.stdTimeFunctions.isoTime }, destination as pino.DestinationStream) as unknown as Logger;
}

/**
 * child(bindings) minus the keys the logger already binds: pino writes a key bound twice twice
 * (`"component":"embedded-controlplane","component":"reference-controlplane"`), so the
 * embedder's binding wins.
 */
export function childLogger(log: Logger, bindings: Record<string, unknown>): Logger {
  const bound = typeof log.bindings === 'function' ? log.bindings() : {};
  const fresh = Object.fromEntries(Object.entries(bindings).filter(([k]) => !(k in bound)));
  return Object.keys(fresh).length === 0 ? log : log.child(fresh);
}
