import type { Root } from '@tufjs/models';
import { DepotsyncError } from '../../src/errors.js';
import { DEFAULT_CLIENT_LIMITS, TrustedMetadata } from '../../src/tuf/client.js';
import { topRoleKeys } from '../../src/tuf/client/checks.js';
import { metadataFileName } from '../../src/tuf/context.js';
import { verifyThreshold } from '../../src/tuf/verify.js';
import type { BundleFile } from './bundle-file.js';

/**
 * Check the bundle header's signatures with the keys this depot trusts: starting from its trusted root,
 * walk the root versions the bundle carries (each signed by the previous root's keys and its own:
 * the TUF root update rule, same code as the client), then require a threshold of that root's
 * TIMESTAMP keys over the header. Nothing is saved here; the TUF client walks the roots again, for
 * real, during the import. Returns the root whose keys signed the header (the validity window is checked
 * with the same keys). Threats: a forged or altered table of contents, validity window or target
 * depot (arbitrary installation, freeze), and metadata signed by a key the root does not list.
 */
export async function verifyBundleSignature(file: BundleFile, trustedRoot: Uint8Array): Promise<Root> {
  const limits = { ...DEFAULT_CLIENT_LIMITS };
  const trusted = new TrustedMetadata(trustedRoot, limits, 'trusted root.json');
  const want = file.header.signed.rootVersion;
  for (let v = trusted.root.md.signed.version + 1; v <= want; v++) {
    const name = metadataFileName('root', v);
    const s = file.section('metadata', name);
    if (!s)
      throw new DepotsyncError(
        'bad-metadata',
        `${file.what}: signed under root v${want} but does not carry ${name}`,
      );
    if (s.length > limits.rootMaxBytes)
      throw new DepotsyncError(
        'too-large',
        `${file.what}: ${name} is ${s.length} bytes, above ${limits.rootMaxBytes}`,
      );
    trusted.updateRoot(await file.readSection(s), name);
  }
  try {
    verifyThreshold(file.header.envelope, topRoleKeys(trusted.root.md.signed, 'timestamp'));
  } catch (e) {
    const err = e as DepotsyncError;
    throw new DepotsyncError(
      err.code,
      `${file.what}: the header is not signed by the master's timestamp key this depot trusts (${err.message})`,
      {
        hint: 'the bundle was altered, or it comes from another master; export it again from the master this depot was enrolled with',
        cause: e,
      },
    );
  }
  return trusted.root.md.signed;
}
