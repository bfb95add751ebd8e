// @netfence/netlink: the links of this network namespace and their events from the kernel
// (rtnetlink), for the daemon's auto-attach and target watching.

export { NetlinkError, NETLINK_ERROR_CODES } from './netlink-error';
export type { NetlinkErrorCode } from './netlink-error';
export { getLink, listLinks, watchLinks } from './links';
export type { LinkWatcher, LinkWatchOptions } from './links';
export { ARPHRD, parseMessages, linkDumpRequest, linkByNameRequest, encodeLinkMessage } from './rtnetlink';
export type { LinkRecord, ParsedBatch } from './rtnetlink';
