/** The daemon's version, reported in DaemonStatus. */
export const VERSION: string = (require('../package.json') as { version: string }).version;
