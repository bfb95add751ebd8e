import pino, { type Logger } from 'pino';

/** The one root logger of a netfenced process: pino JSON on stderr. */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { service: 'netfenced' }, timestamp: pino.stdTimeFunctions.isoTime }, destination as pino.DestinationStream);
}
