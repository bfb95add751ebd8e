export { createDnsFilter } from './dns-filter';
export type {
  ClientInfo,
  DnsFilter,
  DnsFilterAddress,
  DnsFilterLogger,
  DnsFilterOptions,
  DnsFilterSettings,
  DnsFilterStats,
  DomainInput,
  ProxyDecide,
  ProxyDecision,
  QueryEvent,
  QueryReason,
  QueryVerdict,
  ResolvedInfo,
} from './types';
export { DnsFilterError, DNS_FILTER_ERROR_CODES } from './dns-filter-error';
export type { DnsFilterErrorCode } from './dns-filter-error';
export { parseUpstream } from './upstream-server';
export type { UpstreamServer } from './upstream-server';
export type { UpstreamStatus } from './upstream-health';
export { isPrivateAddress } from './private-address';
export { loadDnsFilterConfig, parseDnsFilterConfig } from './config-file';
export type { DnsFilterConfigParseOptions, DnsFilterFileConfig } from './config-file';
export { createLogRateLimiter } from './log-rate-limiter';
export type { LogPermit, LogRateLimiter, LogRateLimiterOptions } from './log-rate-limiter';
