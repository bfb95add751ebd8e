// attachXdp on a veth (native and generic mode), witnessed by ping, and updateLink on an XDP link.
import { createLab, type Lab, type LabNetns, type LabVeth } from '@netfence/lab';
import { AttachType, attachXdp, loadCollection, updateLink, type BpfError, type Collection } from '../../src/index';
import { assertKernelTestable, fixture, ifindexIn, pingOk } from './helpers';

const A = '10.200.54.1';
const B = '10.200.54.2';

let lab: Lab;
let nsA: LabNetns;
let nsB: LabNetns;
let veth: LabVeth;
let xdp: Collection;

beforeAll(() => {
  assertKernelTestable();
  lab = createLab();
  nsA = lab.netns('a');
  nsB = lab.netns('b');
  veth = lab.veth(nsA, nsB, { addrA: [`${A}/24`], addrB: [`${B}/24`] });
  xdp = loadCollection(fixture('xdp'));
});

afterAll(async () => {
  xdp?.close();
  await lab?.close();
});

describe('attachXdp', () => {
  test.each(['native', 'generic', 'auto'] as const)('%s: a drop program on the receiving veth stops ping; detach restores it; the link reports XDP', (mode) => {
    expect(pingOk(nsA.path, B)).toBe(true);
    // frames from a arrive at b's end: the program on veth.b judges them
    const link = attachXdp(xdp.program('xdp_drop'), { ifname: veth.b, netnsPath: nsB.path, mode });
    try {
      expect(link.info()).toMatchObject({ type: 6 /* BPF_LINK_TYPE_XDP */, attachType: AttachType.XDP, ifindex: ifindexIn(nsB.path, veth.b) });
      expect(pingOk(nsA.path, B)).toBe(false);
    } finally {
      link.detach();
    }
    expect(pingOk(nsA.path, B)).toBe(true);
  });

  test('updateLink swaps an XDP link atomically; a second XDP link on the same device is refused', () => {
    const link = attachXdp(xdp.program('xdp_pass'), { ifname: veth.b, netnsPath: nsB.path });
    try {
      expect(pingOk(nsA.path, B)).toBe(true);
      updateLink(link, xdp.program('xdp_drop'), { expectedProgram: xdp.program('xdp_pass') });
      expect(link.programInfo().id).toBe(xdp.program('xdp_drop').info().id);
      expect(pingOk(nsA.path, B)).toBe(false);
      let code = 'no error';
      try {
        attachXdp(xdp.program('xdp_pass'), { ifname: veth.b, netnsPath: nsB.path });
      } catch (e) {
        code = (e as BpfError).code;
      }
      expect(code).not.toBe('no error');
    } finally {
      link.detach();
    }
    expect(pingOk(nsA.path, B)).toBe(true);
  });

  test('refuses a bad mode and a missing interface before any syscall', () => {
    expect(() => attachXdp(xdp.program('xdp_pass'), { ifname: veth.b, netnsPath: nsB.path, mode: 'turbo' as 'native' })).toThrow(expect.objectContaining({ code: 'BPF_ERR_INVALID_ARGUMENT' }));
    expect(() => attachXdp(xdp.program('xdp_pass'), {})).toThrow(expect.objectContaining({ code: 'BPF_ERR_INVALID_ARGUMENT' }));
    expect(AttachType.XDP).toBe(37);
  });
});
