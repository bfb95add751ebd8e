// Child process for the pin test: loads the TC object with its maps pinned in
// argv[2], attaches it (TCX ingress) to argv[3] in the current netns, pins the
// link as argv[2]/link, sets an allowlist with argv[4], then exits.
import { join } from 'node:path';
import { attachTcx, loadCollection } from '@netfence/bpf-loader';
import { encodeConfig, objectPath, OBJECTS, policyEntry, POLICY_MAPS } from '@netfence/bpf-programs';

const [dir, ifname, allowed] = process.argv.slice(2) as [string, string, string];
const coll = loadCollection(objectPath('tc'), { pinMaps: { dir } });
const e = policyEntry('allow', allowed);
coll.map(e.map).update(e.key, e.value);
coll.map(POLICY_MAPS.config.name).update(Buffer.alloc(4), encodeConfig({ mode: 'ALLOWLIST', attachmentId: 7 }));
const link = attachTcx(coll.program(OBJECTS.tc.programs.filter.name), { ifname, direction: 'ingress', mode: 'tcx' });
link.pin(join(dir, 'link'));
link.close();
coll.close();
process.stdout.write('ATTACHED\n');
