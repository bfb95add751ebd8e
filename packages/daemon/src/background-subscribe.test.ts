import pino from 'pino';
import { AwaitingAcks } from './background-subscribe';

const logger = pino({ level: 'silent' });
const err = (code: string) => Object.assign(new Error(code), { code });

describe('AwaitingAcks (attach without waiting for the SubscribedAck)', () => {
  it('counts an attachment as awaiting until its ack is applied, re-sending Subscribed after each ack timeout', async () => {
    const a = new AwaitingAcks();
    const outcomes = [err('NETFENCE_ERR_ACK_TIMEOUT'), err('NETFENCE_ERR_ACK_TIMEOUT'), undefined];
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done = a.start('att-1', {
      subscribe: async () => {
        const o = outcomes[calls++];
        if (o) throw o;
        await gate;
      },
      alive: () => true,
      logger,
    });
    await new Promise((r) => setImmediate(r));
    expect(a.has('att-1')).toBe(true);
    release();
    await done;
    expect(calls).toBe(3);
    expect(a.has('att-1')).toBe(false);
  });

  it('stops when the attachment went meanwhile (its Unsubscribed withdrew the subscribe, or the ack came too late)', async () => {
    const a = new AwaitingAcks();
    for (const [id, code] of [['att-2', 'NETFENCE_ERR_UNSUBSCRIBED'], ['att-3', 'NETFENCE_ERR_NOT_FOUND'], ['att-5', 'NETFENCE_ERR_ACK_TIMEOUT']] as const) {
      let calls = 0;
      await a.start(id, { subscribe: async () => (calls++, Promise.reject(err(code))), alive: () => false, logger });
      expect(calls).toBe(1); // not sent again
      expect(a.has(id)).toBe(false);
    }
  });

  it('keeps an attachment awaiting when its ack could not be applied (it stays block-all)', async () => {
    const a = new AwaitingAcks();
    let calls = 0;
    await a.start('att-4', { subscribe: async () => (calls++, Promise.reject(err('NETFENCE_ERR_INVALID_ARGUMENT'))), alive: () => true, logger });
    expect(calls).toBe(1);
    expect(a.has('att-4')).toBe(true);
  });
});
