import { readFileSync } from 'node:fs';
import { BpfError } from './errors';

/**
 * Kernel memory charged to a map or program, in bytes: the `memlock:` line of
 * /proc/self/fdinfo/<fd> (the kernel's own accounting, e.g. map_mem_usage for maps). What a
 * map's figure covers depends on its type: an LPM trie counts its elements, a cgroup storage
 * map only its own struct (not the per-cgroup storages), an *_OF_MAPS map not its inner maps.
 * BPF_ERR_NOT_FOUND for an fd without that line (a link).
 */
export function memlockOf(obj: { readonly fd: number; readonly closed: boolean }): number {
  if (obj.closed || obj.fd < 0) throw new BpfError('BPF_ERR_CLOSED', 'memlockOf: the object is closed');
  let text: string;
  try {
    text = readFileSync(`/proc/self/fdinfo/${obj.fd}`, 'utf8');
  } catch (e) {
    throw BpfError.from(e);
  }
  const m = /^memlock:\s+(\d+)$/m.exec(text);
  if (!m) throw new BpfError('BPF_ERR_NOT_FOUND', `memlockOf: fd ${obj.fd} has no memlock line in /proc/self/fdinfo (not a map or program)`);
  return Number(m[1]);
}
