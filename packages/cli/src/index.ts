// @netfence/cli: the netfenced / netfence commands, usable as a library too.
export { runCli, EXIT } from './cli';
export type { CliIo, StartDaemon } from './cli';
export { createDaemonClient } from './daemon-client';
