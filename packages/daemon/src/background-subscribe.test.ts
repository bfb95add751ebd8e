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
      goneAfterAck: () => {
        throw new Error('not gone');
      },
      logger,
    });
    await new Promise((r) => setImmediate(r));
    expect(a.has('att-1')).toBe(true);
    release();
    await done;
    expect(calls).toBe(3);
    expect(a.has('att-1')).toBe(false);
  });

  it('says Unsubscribed again when the ack arrives after a detach, and stops', async () => {
    const a = new AwaitingAcks();
    let gone = 0;
    await a.start('att-2', { subscribe: async () => Promise.reject(err('NETFENCE_ERR_NOT_FOUND')), alive: () => false, goneAfterAck: () => gone++, logger });
    expect(gone).toBe(1);
    expect(a.has('att-2')).toBe(false);
    // detached, then the re-send timed out: the control plane never saw a later Subscribed
    await a.start('att-3', { subscribe: async () => Promise.reject(err('NETFENCE_ERR_ACK_TIMEOUT')), alive: () => false, goneAfterAck: () => gone++, logger });
    expect(gone).toBe(1);
  });

  it('keeps an attachment awaiting when its ack could not be applied (it stays block-all)', async () => {
    const a = new AwaitingAcks();
    let calls = 0;
    await a.start('att-4', { subscribe: async () => (calls++, Promise.reject(err('NETFENCE_ERR_INVALID_ARGUMENT'))), alive: () => true, goneAfterAck: () => undefined, logger });
    expect(calls).toBe(1);
    expect(a.has('att-4')).toBe(true);
  });
});
