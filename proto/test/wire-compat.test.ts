// Wire compatibility of netfence.v1, checked independently of our generated code:
// 1. every field number, type, label and oneof of the spec's tables
//    (test/spec-tables.md, a verbatim copy of shared/spec/wire-protocol.md) against
//    the .proto files as loaded by @grpc/proto-loader / protobufjs;
// 2. every message round-tripped protobuf-es -> protobufjs -> protobuf-es.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import { create, equals, fromBinary, toBinary, type DescMessage, type DescField, type Message } from '@bufbuild/protobuf';
import { file_netfence_v1_control, file_netfence_v1_daemon, file_netfence_v1_types } from '../src/index';

const PROTO_DIR = join(__dirname, '..');
const FILES = ['netfence/v1/types.proto', 'netfence/v1/control.proto', 'netfence/v1/daemon.proto'];
const SPEC_COPY = join(__dirname, 'spec-tables.md');
const SHARED_SPEC = join(__dirname, '../../../shared/spec/wire-protocol.md');

interface SpecField {
  name: string;
  number: number;
  type: string; // scalar name, message/enum name, or map<k,v>
  repeated: boolean;
  oneof?: string;
}

function parseSpec(text: string) {
  const messages = new Map<string, SpecField[]>();
  const enums = new Map<string, Map<string, number>>();
  const rpcs: { service: string; name: string; req: string; res: string; clientStream: boolean; serverStream: boolean }[] = [];
  let service = '';
  for (const line of text.split('\n')) {
    const svc = /^`service (\w+)`/.exec(line);
    if (svc) service = svc[1]!;
    const rpc = /`rpc (\w+)\((stream )?([\w.]+)\) returns \((stream )?([\w.]+)\)`/.exec(line);
    if (rpc) rpcs.push({ service, name: rpc[1]!, clientStream: !!rpc[2], req: rpc[3]!, serverStream: !!rpc[4], res: rpc[5]! });
    const row = /^\| (\w+)( \(enum\))? \| (.+) \|$/.exec(line);
    if (!row || row[1] === 'enum' || row[1] === 'message') continue;
    const [, name, isEnum, body] = row as unknown as [string, string, string | undefined, string];
    if (isEnum || /^[A-Z_]+=\d/.test(body)) {
      const values = new Map<string, number>();
      for (const m of body.matchAll(/([A-Z0-9_]+)=(\d+)/g)) values.set(m[1]!, Number(m[2]));
      enums.set(name, values);
      continue;
    }
    const fields: SpecField[] = [];
    const oneofSpans: { name: string; start: number; end: number }[] = [];
    for (const m of body.matchAll(/oneof (\w+) \{([^}]*)\}/g)) oneofSpans.push({ name: m[1]!, start: m.index!, end: m.index! + m[0].length });
    const fieldRe = /(repeated\s+)?(map<\s*\w+\s*,\s*\w+\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)/g;
    for (const m of body.matchAll(fieldRe)) {
      const oneof = oneofSpans.find((s) => m.index! > s.start && m.index! < s.end)?.name;
      fields.push({ name: m[3]!, number: Number(m[4]), type: m[2]!.replace(/\s+/g, ''), repeated: !!m[1], oneof });
    }
    messages.set(name, fields);
  }
  return { messages, enums, rpcs };
}

/** protobufjs (the implementation under @grpc/proto-loader) loading our .proto files. */
function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/') || target.startsWith('/') ? target : join(PROTO_DIR, target));
  root.loadSync(FILES, { keepCase: true });
  root.resolveAll();
  return root;
}

const specText = readFileSync(SPEC_COPY, 'utf8');
const spec = parseSpec(specText);

describe('the spec copy', () => {
  it('is the verbatim table section of shared/spec/wire-protocol.md (when shared/ is present)', () => {
    if (!existsSync(SHARED_SPEC)) return; // a packed @netfence/proto has no shared/ beside it
    const shared = readFileSync(SHARED_SPEC, 'utf8');
    const section = shared.slice(shared.indexOf('## types.proto'), shared.indexOf('## Semantics'));
    expect(specText.trim()).toBe(section.trim());
  });

  it('parses into the full protocol', () => {
    expect(spec.enums.size).toBe(5);
    expect(spec.messages.size).toBe(25);
    expect(spec.rpcs).toHaveLength(6);
  });
});

describe('.proto files loaded by @grpc/proto-loader', () => {
  const pkg = protoLoader.loadSync(FILES, { includeDirs: [PROTO_DIR], keepCase: true });
  const root = loadRoot();

  it('serve every gRPC path of the spec with the right streaming shape', () => {
    for (const r of spec.rpcs) {
      const svc = pkg[`netfence.v1.${r.service}`] as Record<string, protoLoader.MethodDefinition<unknown, unknown>>;
      const m = svc[r.name]!;
      expect(m.path).toBe(`/netfence.v1.${r.service}/${r.name}`);
      expect(m.requestStream).toBe(r.clientStream);
      expect(m.responseStream).toBe(r.serverStream);
      expect((m.requestType.type as { name: string }).name).toBe(r.req.replace('google.protobuf.', ''));
      expect((m.responseType.type as { name: string }).name).toBe(r.res.replace('google.protobuf.', ''));
    }
  });

  it.each([...spec.enums.keys()])('enum %s has the spec values; extensions only >= 100', (name) => {
    const e = root.lookupEnum(`netfence.v1.${name}`);
    const want = spec.enums.get(name)!;
    for (const [k, v] of want) expect(e.values[k]).toBe(v);
    for (const [k, v] of Object.entries(e.values)) if (!want.has(k)) expect(v).toBeGreaterThanOrEqual(100);
  });

  it.each([...spec.messages.keys()])('message %s has the spec fields; extensions only >= 1000', (name) => {
    const t = root.lookupType(`netfence.v1.${name}`);
    const want = spec.messages.get(name)!;
    for (const f of want) {
      const field = t.fields[f.name];
      expect(field).toBeDefined();
      expect(field!.id).toBe(f.number);
      if (f.type.startsWith('map<')) {
        const [k, v] = f.type.slice(4, -1).split(',');
        expect(field!.map).toBe(true);
        expect((field as unknown as protobuf.MapField).keyType).toBe(k);
        expect(field!.type).toBe(v);
      } else {
        expect(field!.map).toBe(false);
        const resolved = field!.resolvedType ? field!.resolvedType.fullName.replace(/^\./, '') : field!.type;
        const wantType = /^[A-Z]/.test(f.type) ? `netfence.v1.${f.type}` : f.type;
        expect(resolved).toBe(wantType);
      }
      expect(field!.repeated).toBe(f.repeated);
      expect(field!.partOf?.name).toBe(f.oneof);
    }
    for (const field of Object.values(t.fields)) {
      if (!want.some((f) => f.name === field.name)) expect(field.id).toBeGreaterThanOrEqual(1000);
    }
  });
});

// ---- round trips -------------------------------------------------------------

const registry = [file_netfence_v1_types, file_netfence_v1_control, file_netfence_v1_daemon].flatMap((f) => f.messages);

function sampleValue(field: DescField, depth: number, variant: number): unknown {
  switch (field.fieldKind) {
    case 'scalar':
      return scalarSample(field.scalar, field.name, variant);
    case 'enum':
      return field.enum.values[field.enum.values.length - 1 - (variant % field.enum.values.length)]!.number;
    case 'message':
      return depth > 3 ? undefined : sample(field.message, depth + 1, variant);
    case 'list':
      if (field.listKind === 'scalar') return [scalarSample(field.scalar, field.name, 0), scalarSample(field.scalar, field.name, 1)];
      if (field.listKind === 'enum') return field.enum.values.map((v) => v.number);
      return depth > 3 ? [] : [sample(field.message, depth + 1, variant), sample(field.message, depth + 1, variant + 1)];
    case 'map': {
      const v = (i: number) =>
        field.mapKind === 'scalar' ? scalarSample(field.scalar, field.name, i) : field.mapKind === 'enum' ? field.enum.values[1]?.number : sample(field.message, depth + 1, i);
      return { k1: v(0), 'key two': v(1) };
    }
  }
}

function scalarSample(scalar: number, name: string, variant: number): unknown {
  // ScalarType numbers: 1 double, 2 float, 3 int64, 4 uint64, 5 int32, 8 bool, 9 string, 12 bytes, 13 uint32, 14 enum-like...
  switch (scalar) {
    case 9:
      return `${name}-${variant}-ü`;
    case 8:
      return true;
    case 3:
    case 4:
    case 6:
    case 16:
    case 18:
      return BigInt(9007199254740993 + variant);
    case 12:
      return new Uint8Array([0, 255, variant]);
    case 1:
    case 2:
      return 1.5 + variant;
    case 5:
    case 15:
    case 17:
      return -7 - variant;
    default:
      return 42 + variant;
  }
}

function sample(desc: DescMessage, depth: number, variant: number): Message {
  const init: Record<string, unknown> = {};
  for (const f of desc.fields) {
    if (f.oneof) continue;
    const v = sampleValue(f, depth, variant);
    if (v !== undefined) init[f.localName] = v;
  }
  for (const o of desc.oneofs) {
    const f = o.fields[variant % o.fields.length]!;
    const v = sampleValue(f, depth, variant);
    if (v !== undefined) init[o.localName] = { case: f.localName, value: v };
  }
  return create(desc, init as never);
}

describe('every message round-trips between protobuf-es and protobufjs', () => {
  const root = loadRoot();

  const cases = registry.flatMap((desc) => {
    const variants = Math.max(1, ...desc.oneofs.map((o) => o.fields.length));
    return Array.from({ length: variants }, (_, v) => [desc.typeName, v] as const);
  });

  it.each(cases)('%s (variant %i)', (typeName, variant) => {
    const desc = registry.find((d) => d.typeName === typeName)!;
    const original = sample(desc, 0, variant);
    const bytes = toBinary(desc, original);
    if (desc.fields.length > 0) expect(bytes.length).toBeGreaterThan(0);
    const pbType = root.lookupType(typeName);
    const decoded = pbType.decode(bytes);
    // protobufjs saw every set field under the spec's name.
    const obj = pbType.toObject(decoded, { longs: String, defaults: false }) as Record<string, unknown>;
    for (const f of desc.fields) {
      if (f.oneof && (original as unknown as Record<string, { case?: string }>)[f.oneof.localName]?.case !== f.localName) continue;
      if (f.fieldKind === 'message' && (original as unknown as Record<string, unknown>)[f.localName] === undefined) continue;
      expect(obj).toHaveProperty([f.name]);
    }
    const back = fromBinary(desc, pbType.encode(decoded).finish());
    expect(equals(desc, back, original)).toBe(true);
  });
});
