// @netfence/bpf-loader: a koffi binding to the system libbpf (libbpf.so.1).
// Generic: nothing in here knows about netfence.

export { BpfError, NotSupportedError, BPF_ERROR_CODES, errnoName } from './errors';
export type { BpfErrorCode, BpfErrorOptions } from './errors';

export { MapType, MapFlags, ProgType, AttachType, UpdateFlags, mapTypeName, progTypeName, attachTypeName } from './constants';
export type { MapTypeValue, AttachTypeValue, UpdateFlag } from './constants';

export type {
  ObjectSpec,
  ProgramSpec,
  MapSpec,
  MapInfo,
  ProgramInfo,
  LinkInfo,
  MapExpectation,
  CreateMapSpec,
  BpfMap,
  BpfProgram,
  BpfLink,
  TestRunOptions,
  TestRunResult,
  TcxAttachOptions,
  XdpAttachOptions,
  CgroupAttachOptions,
  UpdateLinkOptions,
  LoadOptions,
  Collection,
  Codec,
  LpmKey,
  HashMapView,
  ArrayMapView,
  PerCpuArrayMapView,
  LpmTrieMapView,
  MapOfMapsView,
  RingBufferOptions,
  RingBufferConsumer,
  LibbpfLogger,
} from './types';

export { readObjectSpec } from './object-spec';
export { loadCollection, loadCollectionAsync } from './collection';
export { openPinnedMap, openMapById, mapFromFd } from './bpf-map';
export { createMap } from './create-map';
export { openPinnedProgram, openProgramById, programFromFd } from './bpf-program';
export { attachTcx, attachXdp, attachCgroup, attachIter, readIterator, readIteratorAsync, openPinnedLink, linkFromFd } from './bpf-link';
export { updateLink } from './update-link';
export { createHashMap, createArrayMap, createPerCpuArrayMap, createLpmTrieMap } from './typed-maps';
export { createMapOfMaps } from './map-of-maps';
export { memlockOf } from './memlock';
export { codecs } from './codecs';
export { createRingBufferConsumer } from './ring-buffer';
export { withNetns, ifindexOf } from './netns';
export { setLibbpfLogger, numPossibleCpus, limitMallocArenas } from './libbpf';
