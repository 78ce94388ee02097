/** Client side of TUF (depots, agents, offline importer): verification only, no network. */
export {
  TufClient,
  type OpenOptions,
  type RefreshResult,
  type TrustedFile,
  type TufClientOptions,
} from './client/updater.js';
export { TrustedMetadata } from './client/trusted.js';
export { DEFAULT_CLIENT_LIMITS, type ClientLimits } from './client/options.js';
export {
  DirectorySource,
  MemorySource,
  METADATA_FILE_NAME,
  checkMetadataFileName,
  type MetadataSource,
} from './client/source.js';
export { DirectoryTrustedStore, MemoryTrustedStore, type TrustedStore } from './client/store.js';
export { checkRootFingerprint, rootFingerprint } from './client/root.js';
export type { Verified } from './client/checks.js';
export type { TargetInfo } from './target-info.js';
