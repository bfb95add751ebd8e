import { parseListenAddress } from './listen-address';
import { ControlPlaneError } from './errors';

describe('parseListenAddress', () => {
  it('parses tcp and unix forms', () => {
    expect(parseListenAddress('127.0.0.1:8080')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8080 });
    expect(parseListenAddress(':9000')).toEqual({ kind: 'tcp', host: '0.0.0.0', port: 9000 });
    expect(parseListenAddress('[::1]:0')).toEqual({ kind: 'tcp', host: '::1', port: 0 });
    expect(parseListenAddress('localhost:1')).toEqual({ kind: 'tcp', host: 'localhost', port: 1 });
    expect(parseListenAddress('unix:/run/nf/cp.sock')).toEqual({ kind: 'unix', path: '/run/nf/cp.sock' });
    expect(parseListenAddress('unix:///run/cp.sock')).toEqual({ kind: 'unix', path: '/run/cp.sock' });
    expect(parseListenAddress('/run/cp.sock')).toEqual({ kind: 'unix', path: '/run/cp.sock' });
  });

  it('rejects bad addresses with NETFENCE_ERR_INVALID_ADDRESS', () => {
    for (const bad of ['8080', '1.2.3.4:70000', 'unix:', 'host:port', '::1:80']) {
      expect(() => parseListenAddress(bad)).toThrow(ControlPlaneError);
      expect(() => parseListenAddress(bad)).toThrow(/NETFENCE_ERR_INVALID_ADDRESS/);
    }
  });
});
