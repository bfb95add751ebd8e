import { createLimitedLogger } from './limited-logger';
import { createSweepTimer } from './sweep-timer';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

describe('createSweepTimer', () => {
  it('runs only from wake() until a sweep finds nothing left; close() is for good', () => {
    let left = 2;
    const sweep = jest.fn(() => --left > 0);
    const t = createSweepTimer(20, sweep);
    expect(jest.getTimerCount()).toBe(0);
    t.wake();
    t.wake(); // already running: still one timer
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(20);
    expect(sweep).toHaveBeenCalledTimes(1);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(20); // nothing left: stops
    expect(sweep).toHaveBeenCalledTimes(2);
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(200);
    expect(sweep).toHaveBeenCalledTimes(2);
    left = 1;
    t.wake(); // work again: runs again
    jest.advanceTimersByTime(20);
    expect(sweep).toHaveBeenCalledTimes(3);
    t.wake();
    t.close();
    t.wake();
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('createLimitedLogger summaries', () => {
  it('hold no timer while nothing is suppressed, report suppressed lines every interval, then stop again', () => {
    const warn = jest.fn();
    const target = { info: jest.fn(), warn, error: jest.fn(), debug: jest.fn() };
    const log = createLimitedLogger(target, { perSecond: 0.001, burst: 1, summaryIntervalMs: 1000 });
    expect(jest.getTimerCount()).toBe(0);
    log.log('warn', 'k', {}, 'line');
    expect(jest.getTimerCount()).toBe(0); // written, nothing suppressed
    log.log('warn', 'k', {}, 'line');
    log.log('warn', 'k', {}, 'line');
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(1000);
    expect(warn.mock.calls.filter((c) => c[1] === 'log lines suppressed')).toEqual([[{ kind: 'k', suppressed: 2 }, 'log lines suppressed']]);
    jest.advanceTimersByTime(1000); // nothing new to report: the timer stops
    expect(jest.getTimerCount()).toBe(0);
    log.log('warn', 'k', {}, 'line');
    expect(jest.getTimerCount()).toBe(1);
    log.close(); // the last summary at close, and no timer left
    expect(warn.mock.calls.filter((c) => c[1] === 'log lines suppressed')).toHaveLength(2);
    expect(warn.mock.calls.at(-1)).toEqual([{ kind: 'k', suppressed: 1 }, 'log lines suppressed']);
    expect(jest.getTimerCount()).toBe(0);
    expect(log.suppressed).toBe(3);
  });
});
