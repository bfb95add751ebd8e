import { makeCidr, parseCidr } from './cidr';
import type { Cidr } from './types';

/** A longest-prefix-match table keyed by IP prefix. */
export interface CidrTable<T> {
  /** Insert or replace the value at that exact prefix. */
  set(cidr: string | Cidr, value: T): void;
  /** Remove that exact prefix; true if it was present. */
  delete(cidr: string | Cidr): boolean;
  /** The value at that exact prefix. */
  get(cidr: string | Cidr): T | undefined;
  /**
   * Longest-prefix match: the longest stored prefix that contains `address`
   * (an address, or a prefix: then only stored prefixes at most as long are considered).
   */
  lookup(address: string | Cidr): { cidr: Cidr; value: T } | undefined;
  readonly size: number;
  entries(): IterableIterator<[Cidr, T]>;
}

interface Entry<T> {
  readonly cidr: Cidr;
  value: T;
}

// A trie with 16-bit strides. A prefix of length L lives at level
// floor((L-1)/16) (L = 0: level 0), under the path of its full 16-bit chunks,
// in a hash map for its length relative to that level (1..16; 0 for /0) keyed
// by its top bits in the chunk. All keys are small integers. A look-up walks
// down the chunks of the address (one map probe per level) and then back up,
// probing only the lengths present at each node, longest first. Cost does not
// depend on the number of prefixes: at most 3 levels x 17 probes for IPv4 and
// 9 x 17 for IPv6, far fewer in practice.
interface TrieNode<T> {
  readonly byLen: (Map<number, Entry<T>> | undefined)[];
  /** relative lengths present here, longest first */
  lens: number[];
  readonly children: Map<number, TrieNode<T>>;
}

const newNode = <T>(): TrieNode<T> => ({ byLen: [], lens: [], children: new Map() });

function chunksOf(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < b.length; i += 2) out.push((b[i]! << 8) | b[i + 1]!);
  return out;
}

function place(len: number): { level: number; rel: number } {
  if (len === 0) return { level: 0, rel: 0 };
  const level = (len - 1) >> 4;
  return { level, rel: len - level * 16 };
}

const keyOf = (chunk: number, rel: number): number => (rel === 0 ? 0 : chunk >> (16 - rel));

class CidrTableImpl<T> implements CidrTable<T> {
  private readonly roots: Record<4 | 6, TrieNode<T>> = { 4: newNode<T>(), 6: newNode<T>() };
  private count = 0;
  /** reused by lookup(): the nodes on the path of the address (at most 9) */
  private readonly scratch: TrieNode<T>[] = [];

  get size(): number {
    return this.count;
  }

  /** The node for a prefix; creates the path when `create`. Also returns the path for pruning. */
  private nodeFor(c: Cidr, create: boolean): { node: TrieNode<T>; rel: number; key: number; path: [TrieNode<T>, number][] } | undefined {
    const chunks = chunksOf(c.bytes);
    const { level, rel } = place(c.prefixLen);
    let node = this.roots[c.family];
    const path: [TrieNode<T>, number][] = [];
    for (let i = 0; i < level; i++) {
      let child = node.children.get(chunks[i]!);
      if (!child) {
        if (!create) return undefined;
        child = newNode<T>();
        node.children.set(chunks[i]!, child);
      }
      path.push([node, chunks[i]!]);
      node = child;
    }
    return { node, rel, key: keyOf(chunks[level]!, rel), path };
  }

  set(cidr: string | Cidr, value: T): void {
    const c = toCidr(cidr);
    const { node, rel, key } = this.nodeFor(c, true)!;
    let m = node.byLen[rel];
    if (!m) {
      m = new Map();
      node.byLen[rel] = m;
      node.lens = [...node.lens, rel].sort((a, b) => b - a);
    }
    const e = m.get(key);
    if (e) e.value = value;
    else {
      m.set(key, { cidr: c, value });
      this.count++;
    }
  }

  delete(cidr: string | Cidr): boolean {
    const c = toCidr(cidr);
    const at = this.nodeFor(c, false);
    if (!at) return false;
    const { node, rel, key, path } = at;
    const m = node.byLen[rel];
    if (!m || !m.delete(key)) return false;
    this.count--;
    if (m.size === 0) {
      node.byLen[rel] = undefined;
      node.lens = node.lens.filter((r) => r !== rel);
    }
    // prune empty nodes
    let n = node;
    for (let i = path.length - 1; i >= 0; i--) {
      if (n.lens.length > 0 || n.children.size > 0) break;
      const [parent, chunk] = path[i]!;
      parent.children.delete(chunk);
      n = parent;
    }
    return true;
  }

  get(cidr: string | Cidr): T | undefined {
    const c = toCidr(cidr);
    const at = this.nodeFor(c, false);
    return at?.node.byLen[at.rel]?.get(at.key)?.value;
  }

  lookup(address: string | Cidr): { cidr: Cidr; value: T } | undefined {
    const c = toCidr(address);
    const b = c.bytes;
    const max = c.prefixLen;
    // walk down: nodes[i] is at level i
    const nodes = this.scratch;
    let depth = 0;
    let node: TrieNode<T> | undefined = this.roots[c.family];
    let level = 0;
    while (node !== undefined) {
      nodes[depth++] = node;
      if (max <= (level + 1) * 16) break; // deeper prefixes would be longer than the query
      node = node.children.get((b[level * 2]! << 8) | b[level * 2 + 1]!);
      level++;
    }
    for (let i = depth - 1; i >= 0; i--) {
      const n = nodes[i]!;
      const lens = n.lens;
      if (lens.length === 0) continue;
      const chunk = (b[i * 2]! << 8) | b[i * 2 + 1]!;
      for (let j = 0; j < lens.length; j++) {
        const rel = lens[j]!;
        if (i * 16 + rel > max) continue;
        const e = n.byLen[rel]!.get(rel === 0 ? 0 : chunk >> (16 - rel));
        if (e !== undefined) return { cidr: e.cidr, value: e.value };
      }
    }
    return undefined;
  }

  *entries(): IterableIterator<[Cidr, T]> {
    const stack: TrieNode<T>[] = [this.roots[4], this.roots[6]];
    while (stack.length > 0) {
      const n = stack.shift()!;
      for (const rel of [...n.lens].reverse()) {
        for (const e of n.byLen[rel]?.values() ?? []) yield [e.cidr, e.value];
      }
      stack.push(...n.children.values());
    }
  }
}

function toCidr(c: string | Cidr): Cidr {
  if (typeof c === 'string') return parseCidr(c);
  // trust a Cidr object's shape but make sure host bits are masked
  return c.text ? c : makeCidr(c.family, c.bytes, c.prefixLen);
}

/** Create an empty longest-prefix-match table. */
export function createCidrTable<T>(): CidrTable<T> {
  return new CidrTableImpl<T>();
}
