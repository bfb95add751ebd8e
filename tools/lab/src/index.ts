// The test lab: network namespaces joined by veth pairs, and cgroups, all
// named with an `nf` prefix and removed on close(), also when a test fails.
//
// Network safety: only the lab ranges below may be used, and createLab()
// refuses to run if any of them overlaps a route of this machine. No namespace
// gets a default route, so nothing a test sends can leave the lab.

export { createLab, LAB_RANGES, assertLabRangesSafe, cgroup2Root, ensureBpffs, hasCommand, runIn } from './lab';
export type { Lab, LabNetns, LabVeth, LabCgroup, VethOptions } from './lab';
