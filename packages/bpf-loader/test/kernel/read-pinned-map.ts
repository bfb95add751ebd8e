// Child process for maps.test.ts: prints the u64 value of a u32 key in a pinned hash map.
import { codecs, createHashMap, openPinnedMap } from '../../src/index';

const [path, key] = process.argv.slice(2);
const m = openPinnedMap(path as string);
try {
  process.stdout.write(`${createHashMap(m, { key: codecs.u32, value: codecs.u64 }).get(Number(key)) ?? 'none'}\n`);
} finally {
  m.close();
}
