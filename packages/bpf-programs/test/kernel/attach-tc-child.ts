// Child process for the pin test: loads the TC object with its host maps pinned in argv[2],
// makes slot 1 an attachment whose IPv4 rules trie is pinned as argv[2]/trie_v4 and allows
// argv[4], binds it to argv[3] in the current netns, attaches (TCX ingress), pins the link as
// argv[2]/link, then exits.
import { join } from 'node:path';
import { attachTcx, createMap, ifindexOf, loadCollection } from '@netfence/bpf-loader';
import { encodeConfig, encodeRule, encodeSlot, hostPinnedMaps, HOST_MAPS, objectPath, OBJECTS, RULE_TRIES, ruleKey } from '@netfence/bpf-programs';
import { bindDevice } from './helpers';

const [dir, ifname, allowed] = process.argv.slice(2) as [string, string, string];
const coll = loadCollection(objectPath('tc'), { pinMaps: { dir, maps: hostPinnedMaps('tc') } });
const t = RULE_TRIES.v4;
const trie = createMap({ name: t.name, type: t.type, keySize: t.keySize, valueSize: t.valueSize, maxEntries: 1024, flags: t.flags });
trie.pin(join(dir, 'trie_v4'));
const k = ruleKey(allowed);
trie.update(k.key, encodeRule({ prefixLen: k.prefix.prefixLen, allow: true, deny: false, lastSeenNs: 0n, expiresS: 0 }));
const slot = encodeSlot(1);
coll.map(HOST_MAPS.rulesV4.name).update(slot, encodeSlot(trie.fd));
coll.map(HOST_MAPS.config.name).update(slot, encodeConfig({ mode: 'ALLOWLIST', attachmentId: 7 }));
bindDevice(coll, ifindexOf(ifname), 'ingress', 1);
const link = attachTcx(coll.program(OBJECTS.tc.programs.ingress.name), { ifname, direction: 'ingress', mode: 'tcx' });
link.pin(join(dir, 'link'));
link.close();
trie.close();
coll.close();
process.stdout.write('ATTACHED\n');
