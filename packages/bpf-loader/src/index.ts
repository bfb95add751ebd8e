// @netfence/bpf-loader: a koffi binding to the system libbpf (libbpf.so.1).
// Generic: nothing in here knows about netfence.

export { BpfError, NotSupportedError, BPF_ERROR_CODES, errnoName } from './errors';
export type { BpfErrorCode, BpfErrorOptions } from './errors';

export { MapType, ProgType, AttachType, UpdateFlags, mapTypeName, progTypeName, attachTypeName } from './constants';
export type { MapTypeValue, AttachTypeValue, UpdateFlag } from './constants';

export type {
  ObjectSpec,
  ProgramSpec,
  MapSpec,
  MapInfo,
  ProgramInfo,
  LinkInfo,
  MapExpectation,
  BpfMap,
  BpfProgram,
  BpfLink,
  TestRunOptions,
  TestRunResult,
  TcxAttachOptions,
  CgroupAttachOptions,
  LoadOptions,
  Collection,
  Codec,
  LpmKey,
  HashMapView,
  ArrayMapView,
  PerCpuArrayMapView,
  LpmTrieMapView,
  RingBufferOptions,
  RingBufferConsumer,
  LibbpfLogger,
} from './types';

export { readObjectSpec } from './object-spec';
export { loadCollection, loadCollectionAsync } from './collection';
export { openPinnedMap, mapFromFd } from './bpf-map';
export { openPinnedProgram, programFromFd } from './bpf-program';
export { attachTcx, attachCgroup, attachIter, readIterator, readIteratorAsync, openPinnedLink, linkFromFd } from './bpf-link';
export { createHashMap, createArrayMap, createPerCpuArrayMap, createLpmTrieMap } from './typed-maps';
export { codecs } from './codecs';
export { createRingBufferConsumer } from './ring-buffer';
export { withNetns, ifindexOf } from './netns';
export { setLibbpfLogger, numPossibleCpus, limitMallocArenas } from './libbpf';
