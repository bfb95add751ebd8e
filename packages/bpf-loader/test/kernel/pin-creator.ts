// Child process for attach.test.ts: loads maps.bpf.o, denies one address, attaches TCX egress
// inside a netns, pins the deny map and the link under a directory, and exits without detaching.
import { join } from 'node:path';
import { attachTcx, codecs, createLpmTrieMap, loadCollection } from '../../src/index';

const [obj, pinDir, netnsPath, ifname, deny] = process.argv.slice(2) as [string, string, string, string, string];
const coll = loadCollection(obj, { pinMaps: { dir: pinDir, maps: ['deny_v4'] } });
createLpmTrieMap(coll.map('deny_v4'), { dataSize: 4, value: codecs.u32 }).set({ prefixLen: 32, data: Uint8Array.from(deny.split('.').map(Number)) }, 1);
const link = attachTcx(coll.program('tc_filter'), { ifname, direction: 'egress', netnsPath });
link.pin(join(pinDir, 'link'));
process.stdout.write(JSON.stringify({ linkId: link.info().id }) + '\n');
link.close(); // pinned: stays attached
coll.close();
