import { createTcpConnectionTable } from './tcp-connections';

function table(maxTotal: number, maxPerClient: number) {
  const closed: string[] = [];
  const t = createTcpConnectionTable<string>({ maxTotal, maxPerClient }, (s) => closed.push(s));
  return { t, closed };
}

describe('createTcpConnectionTable', () => {
  it('admits up to the caps without closing anything', () => {
    const { t, closed } = table(4, 2);
    t.admit('a1', 'A');
    t.admit('a2', 'A');
    t.admit('b1', 'B');
    t.admit('c1', 'C');
    expect(closed).toEqual([]);
    expect(t.size).toBe(4);
  });

  it('a client at its cap loses its own longest-idle connection, not another client’s', () => {
    const { t, closed } = table(100, 2);
    const a1 = t.admit('a1', 'A');
    t.admit('b1', 'B');
    t.admit('a2', 'A');
    // a1 was used after a2 was opened: a2 is now the one idle longest
    t.busy(a1, 1);
    t.busy(a1, -1);
    t.admit('a3', 'A');
    expect(closed).toEqual(['a2']);
    expect([...t.sockets()].sort()).toEqual(['a1', 'a3', 'b1']);
    expect(t.evicted).toBe(1);
  });

  it('a server at its cap closes the longest-idle connection; one with a query in flight is not the first victim', () => {
    const { t, closed } = table(3, 10);
    const x = t.admit('x', 'A');
    t.admit('y', 'B');
    t.admit('z', 'C');
    t.busy(x, 1); // x is the oldest but has a query in flight
    t.admit('n1', 'D');
    expect(closed).toEqual(['y']);
    t.admit('n2', 'D');
    expect(closed).toEqual(['y', 'z']);
    expect([...t.sockets()]).toEqual(['x', 'n1', 'n2']);
  });

  it('when every connection is busy the least recently active one goes', () => {
    const { t, closed } = table(2, 10);
    const a = t.admit('a', 'A');
    const b = t.admit('b', 'B');
    t.busy(a, 1);
    t.busy(b, 1);
    t.admit('c', 'C');
    expect(closed).toEqual(['a']);
  });

  it('remove is idempotent and frees the slot; busy on a removed connection is ignored', () => {
    const { t, closed } = table(1, 1);
    const a = t.admit('a', 'A');
    t.remove(a);
    t.remove(a);
    t.busy(a, 1);
    t.admit('b', 'A');
    expect(closed).toEqual([]);
    expect(t.size).toBe(1);
  });

  it('refuses limits below 1', () => {
    expect(() => createTcpConnectionTable({ maxTotal: 0, maxPerClient: 1 }, () => undefined)).toThrow(RangeError);
  });
});
