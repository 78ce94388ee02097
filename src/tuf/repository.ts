/** Repository side of TUF (used by the master): create, sign, rotate. */
export { TufRepository } from './repository/repository.js';
export type { MetadataFile } from './repository/build.js';
export type { CreateRoot } from './repository/create.js';
export type { StoredMetadata } from './repository/load.js';
export { DEFAULT_EXPIRY_MS, DEFAULT_RENEW_BEFORE_MS } from './repository/options.js';
export type { ExpiryMs, OnlineSigners, RepositoryOptions } from './repository/options.js';
export type { RootChange } from './repository/rotate.js';
export type { TargetChange, TargetInfo, TargetInput } from './repository/targets.js';
export { binFor, binPrefixes, binName, targetPathHash, type BinCount } from './hashbins.js';
export { metadataDelta, type DeltaInput } from './delta.js';
