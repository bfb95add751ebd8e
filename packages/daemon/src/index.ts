// @netfence/daemon: the Netfence host daemon as a library. `netfenced start`
// (@netfence/cli) is this plus signal handling.

export { createDaemon } from './daemon';
export type { AttachInput, Daemon, DaemonOptions, ListPage } from './daemon';
export { loadConfig, configSchema, configWarnings } from './config';
export type { DaemonConfig, DaemonConfigInput } from './config';
export { DaemonError, DAEMON_ERROR_CODES } from './daemon-error';
export type { DaemonErrorCode } from './daemon-error';
export { createLogger } from './logger';
export { daemonRoutes } from './api-server';
export { autoAttachRulesFromPb, autoAttachRulesToPb, readAutoAttachRules, writeAutoAttachRules } from './auto-attach-wire';
export { parseAutoAttachRules } from './auto-attach-rules';
export type { AutoAttachRule, InterfaceRule, CgroupRule } from './auto-attach-rules';
export type { DaemonApi } from './api-server';
export { VERSION } from './version';
export { prepareDaemonProcess } from './process-setup';
export type { AttachmentRecord, AttachmentKind, TcDirection } from './state-store';
export type { AttachParams, Datapath, AttachmentDatapath, DatapathEvent, DatapathCounters } from './datapath';
export type { DnsServer, StartDnsServer, DnsServerParams, ResolvedAnswer, ProxyDecision } from './dns-server-types';
