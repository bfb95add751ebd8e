import { SlotAllocator } from './slot-allocator';

describe('SlotAllocator', () => {
  it('hands out 1..maxSlots-1 (never 0), then RESOURCE_EXHAUSTED naming the setting; a freed slot is taken again', () => {
    const a = new SlotAllocator(4);
    expect([a.allocate(), a.allocate(), a.allocate()]).toEqual([1, 2, 3]);
    let err: unknown;
    try {
      a.allocate();
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'NETFENCE_ERR_ATTACHMENTS_EXHAUSTED', message: expect.stringContaining('maps.max_attachments') });
    expect((err as { toConnectError(): { code: number } }).toConnectError().code).toBe(8); // RESOURCE_EXHAUSTED
    a.free(2);
    expect(a.inUse).toBe(2);
    expect(a.allocate()).toBe(2);
  });

  it('skips the slots found in use at start, and reuses freed slots oldest first, after the never-used ones', () => {
    const a = new SlotAllocator(8, [1, 3]);
    expect(a.allocate()).toBe(2);
    a.free(3);
    a.free(2);
    expect([a.allocate(), a.allocate(), a.allocate(), a.allocate()]).toEqual([4, 5, 6, 7]);
    expect([a.allocate(), a.allocate()]).toEqual([3, 2]);
    expect(() => a.claim(0)).toThrow(/outside/);
    expect(() => a.claim(8)).toThrow(/outside/);
  });

  it('a slot freed twice is handed out once', () => {
    const a = new SlotAllocator(3);
    a.allocate();
    a.allocate();
    a.free(1);
    a.free(1);
    expect(a.allocate()).toBe(1);
    expect(() => a.allocate()).toThrow(/in use/);
  });
});

test('a freed slot claimed again before it is reused is not handed out twice', () => {
  const a = new SlotAllocator(3);
  a.allocate();
  a.allocate();
  a.free(1);
  a.claim(1);
  expect(() => a.allocate()).toThrow(/in use/);
});
