import { createHash } from 'node:crypto';
import { canonicalize } from '../content/canonical-json.js';
import type { MetadataKind } from '@tufjs/models';
import { DepotsyncError } from '../errors.js';
import { parseEnvelope, type Envelope } from '../tuf/envelope.js';
import type { Signer } from '../tuf/keys.js';
import { decodeEncryption, headerAad, sealedLength, type BundleEncryption } from './bundle-crypto.js';
import { Fields } from './decode.js';
import { ENCODING_CODE, type ChunkEncoding } from '../store/encoding.js';

/**
 * The offline bundle file (docs/wire-formats.md). Laid out so an importer streams it front to back:
 *
 *   preamble  16 bytes: magic "DSBUNDLE", u32 BE format version, u32 BE header length H
 *   header    H bytes of JSON {signed, signatures}: `signed` is the table of contents, the generations
 *             A→B, the depot it is for and the validity window; signed by the master's TUF timestamp
 *             key(s) over its canonical JSON (the importer verifies with the keys of its trusted root)
 *   sections  contiguous, in table order: metadata (root versions, timestamp, snapshot, targets, bins),
 *             the validity window (update bundles), the revocation list, manifests (raw DEFLATE when
 *             that is smaller: `encoding`), chunk deltas against the depot's generation A
 *             (src/wire/chunk-delta.ts), then chunk sections (records: 32-byte id, u32 BE length,
 *             data; or, in a section whose entry says `"records":2`, 32-byte id, u32 BE length, one
 *             encoding byte (0 plain, 1 zstd), u32 BE plain length, data as stored by the master).
 *             Offsets in the table count from the end of the header.
 *
 * Integrity: a byte section's `sha256` is over its bytes. A chunk section's `sha256` is over its record
 * headers (in order), and each record's data is committed by its id (BLAKE3 of the plain bytes; a
 * compressed record is decoded with its plain length as a hard cap first), checked as it is read; together they cover every byte while the exporter can sign the table before reading the chunks.
 *
 * Format version 2 is the same layout with every section stored sealed (AES-256-GCM blocks, the content
 * key wrapped for the depot's certificate key: src/wire/bundle-crypto.ts, `master export --encrypt`);
 * the table keeps plaintext offsets and lengths, and each section's stored place follows from them.
 */
export const BUNDLE_MAGIC = Buffer.from('DSBUNDLE', 'latin1');
export const BUNDLE_FORMAT_VERSION = 1;
/** Sealed (encrypted) bundles: the header carries `encryption`. */
export const BUNDLE_FORMAT_VERSION_SEALED = 2;
const READABLE_VERSIONS: readonly number[] = [BUNDLE_FORMAT_VERSION, BUNDLE_FORMAT_VERSION_SEALED];
export const PREAMBLE_BYTES = 16;
export const CHUNK_RECORD_HEADER_BYTES = 36;
/** Records of a `"records":2` chunk section: encoding byte and plain length added. */
export const CHUNK_RECORD_HEADER_BYTES_V2 = 41;
export const BUNDLE_TYPE = 'depotsync-bundle';

export const BUNDLE_LIMITS = {
  /** The signed table of contents: about 200 bytes a section. */
  headerMaxBytes: 16 * 1024 * 1024,
  sectionsMax: 65_536,
  /** A byte section (metadata, manifest, certificate) is read whole into memory. */
  byteSectionMaxBytes: 16 * 1024 * 1024,
  /** Largest chunk a record may hold (the store's own limit is the same order). */
  chunkMaxBytes: 16 * 1024 * 1024,
} as const;

export type BundlePurpose = 'update' | 'enrollment';
/**
 * `validity-window`: the window as a small document signed on its own
 * (src/wire/validity-window.ts), for agents.
 */
/** `chunk-deltas`: chunks as deltas against chunks of the depot's generation A (src/wire/chunk-delta.ts). */
export type SectionKind =
  | 'metadata'
  | 'validity-window'
  | 'revocations'
  | 'manifest'
  | 'chunk-deltas'
  | 'chunks'
  | 'certificate'
  | 'ca-certificate';
const KINDS: readonly SectionKind[] = [
  'metadata',
  'validity-window',
  'revocations',
  'manifest',
  'chunk-deltas',
  'chunks',
  'certificate',
  'ca-certificate',
];

export interface BundleSection {
  kind: SectionKind;
  /** Plain file name: no `/`, no `\`, no `..` (a metadata name, a served target name, `chunks-0001`). */
  name: string;
  /** From the end of the header. */
  offset: number;
  length: number;
  sha256: string;
  /** Chunk sections: records in it. */
  chunks?: number;
  /** Chunk sections of records with encoding and plain length (compressed chunks): 2. */
  records?: 2;
  /**
   * Manifest sections: 'deflate' when stored compressed (raw DEFLATE, RFC 1951). `sha256` and `length`
   * are of the stored bytes; the importer inflates with the signed catalog's length as the cap (no
   * decompression bomb), then checks that length and SHA-256 as for any target.
   */
  encoding?: 'deflate';
}

export interface BundleSigned {
  _type: typeof BUNDLE_TYPE;
  formatVersion: number;
  purpose: BundlePurpose;
  /** The machine name of the depot this bundle is for (bound by the signature). */
  depot: string;
  fromGeneration: number;
  toGeneration: number;
  timestampVersion: number;
  rootVersion: number;
  issuedAt: string;
  validUntil: string;
  /** Bytes of all sections together (the file is PREAMBLE + H + this). */
  sectionBytes: number;
  sections: BundleSection[];
  /** Format version 2 only: how the sections are sealed and for which certificate (bundle-crypto.ts). */
  encryption?: BundleEncryption;
}

/** Where a section's bytes are in the file, from the end of the header (sealed sections are longer). */
export interface StoredPlace {
  offset: number;
  length: number;
}

export interface DecodedHeader {
  signed: BundleSigned;
  /** For `verifyThreshold` with the trusted root's timestamp keys. */
  envelope: Envelope;
  headerBytes: number;
  /** Where the sections start in the file. */
  dataStart: number;
  totalBytes: number;
  /** Each section's stored place, in table order (equal to offset/length unless sealed). */
  stored: StoredPlace[];
  /** Sealed bundles: the additional data of every block (SHA-256 of the header bytes). */
  aad?: Buffer;
}

const SECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9._+@-]{0,319}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const HEX64 = /^[0-9a-f]{64}$/;
const MACHINE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function bad(
  what: string,
  reason: string,
  code: 'corrupt' | 'truncated' | 'bad-path' | 'too-large' = 'corrupt',
): DepotsyncError {
  return new DepotsyncError(code, `${what}: ${reason}`, {
    hint:
      code === 'truncated'
        ? 'the copy of the file is incomplete; copy it again'
        : 'the file is damaged or not a depotsync bundle; export and copy it again',
  });
}

/** Threat: a section name used as a path (`../x`, `a/b`) or otherwise unexpected. */
export function checkSectionName(name: string, what: string): string {
  if (typeof name !== 'string' || !SECTION_NAME.test(name) || name.includes('..')) {
    throw bad(
      what,
      `section name ${JSON.stringify(String(name).slice(0, 80))} is not a plain name (no "/", no "..")`,
      'bad-path',
    );
  }
  return name;
}

export function encodePreamble(headerLength: number, version: number = BUNDLE_FORMAT_VERSION): Buffer {
  const b = Buffer.alloc(PREAMBLE_BYTES);
  BUNDLE_MAGIC.copy(b, 0);
  b.writeUInt32BE(version, 8);
  b.writeUInt32BE(headerLength, 12);
  return b;
}

/** The header length the preamble declares, after checking magic, format version and the cap. */
export function decodePreamble(b: Uint8Array, what: string): number {
  if (b.length < PREAMBLE_BYTES)
    throw bad(what, `${b.length} bytes, shorter than the ${PREAMBLE_BYTES}-byte preamble`, 'truncated');
  const buf = Buffer.from(b.buffer, b.byteOffset, PREAMBLE_BYTES);
  if (!buf.subarray(0, 8).equals(BUNDLE_MAGIC)) throw bad(what, 'not a depotsync bundle (bad magic)');
  const version = buf.readUInt32BE(8);
  if (!READABLE_VERSIONS.includes(version)) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: bundle format version ${version}, this depotsync reads versions ${READABLE_VERSIONS.join(' and ')}`,
      {
        hint: 'export the bundle with the same depotsync version as the depot runs',
      },
    );
  }
  const h = buf.readUInt32BE(12);
  if (h < 2 || h > BUNDLE_LIMITS.headerMaxBytes)
    throw bad(what, `header length ${h} is outside 2..${BUNDLE_LIMITS.headerMaxBytes}`, 'too-large');
  return h;
}

/** Canonical bytes the signatures are over. */
export function signedBytes(signed: BundleSigned): Buffer {
  return canonicalize(signed);
}

export function encodeHeader(signed: BundleSigned, signers: readonly Signer[]): Buffer {
  const data = signedBytes(signed);
  const signatures = signers.map((s) => ({ keyid: s.keyid, sig: s.sign(data).toString('hex') }));
  return Buffer.from(JSON.stringify({ signed, signatures }), 'utf8');
}

/** sha256 over chunk record headers, as a chunk section's table entry carries it. */
export class RecordHeaderHash {
  private readonly h = createHash('sha256');
  update(header: Uint8Array): void {
    this.h.update(header);
  }
  digest(): string {
    return this.h.digest('hex');
  }
}

export function encodeChunkRecordHeader(id: string, length: number): Buffer {
  const b = Buffer.alloc(CHUNK_RECORD_HEADER_BYTES);
  b.write(id, 0, 32, 'hex');
  b.writeUInt32BE(length, 32);
  return b;
}

/** The header of a record in a `"records":2` section: `length` bytes follow, encoded as `encoding`. */
export function encodeChunkRecordHeaderV2(
  id: string,
  length: number,
  encoding: ChunkEncoding,
  plainLength: number,
): Buffer {
  const b = Buffer.alloc(CHUNK_RECORD_HEADER_BYTES_V2);
  b.write(id, 0, 32, 'hex');
  b.writeUInt32BE(length, 32);
  b.writeUInt8(ENCODING_CODE[encoding], 36);
  b.writeUInt32BE(plainLength, 37);
  return b;
}

/**
 * Decode the header at the border: size cap, envelope, schema of `signed`, every section name, and the
 * layout (contiguous sections in table order, exact total, chunk sections after byte sections). Nothing
 * here is trusted until the caller verified the signatures (`envelope`) with its trusted root's keys.
 * `fileBytes`: the file's size; a table declaring more than the file holds is 'truncated'.
 */
export function decodeHeader(header: Uint8Array, what: string, fileBytes?: number): DecodedHeader {
  // Wrong-type confusion: `_type` keeps a bundle header from passing as TUF metadata, and vice versa.
  const envelope = parseEnvelope(
    header,
    { role: 'bundle', file: what },
    { maxBytes: BUNDLE_LIMITS.headerMaxBytes, type: BUNDLE_TYPE as unknown as MetadataKind },
  );
  const f = Fields.of(`${what}: header`, envelope.signed);
  const signed: BundleSigned = {
    _type: BUNDLE_TYPE,
    formatVersion: f.int('formatVersion', { min: 1, max: BUNDLE_FORMAT_VERSION_SEALED }),
    purpose: f.oneOf('purpose', ['update', 'enrollment'] as const),
    depot: f.string('depot', { pattern: MACHINE }),
    fromGeneration: f.int('fromGeneration'),
    toGeneration: f.int('toGeneration'),
    timestampVersion: f.int('timestampVersion'),
    rootVersion: f.int('rootVersion', { min: 1 }),
    issuedAt: f.string('issuedAt', { pattern: ISO }),
    validUntil: f.string('validUntil', { pattern: ISO }),
    sectionBytes: f.int('sectionBytes'),
    sections: [],
  };
  const rawSections = envelope.signed.sections;
  const rawEncryption = envelope.signed.encryption;
  f.done();
  // A sealed bundle says so twice (format version and `encryption`), so neither can be dropped alone.
  if ((signed.formatVersion === BUNDLE_FORMAT_VERSION_SEALED) !== (rawEncryption !== undefined)) {
    throw bad(
      what,
      `header: format version ${signed.formatVersion} ${rawEncryption === undefined ? 'without' : 'with'} an encryption entry`,
    );
  }
  if (rawEncryption !== undefined)
    signed.encryption = decodeEncryption(rawEncryption, `${what}: header encryption`);
  if (signed.encryption && signed.purpose !== 'update')
    throw bad(what, `header: an ${signed.purpose} file is never encrypted`);
  if (!Array.isArray(rawSections)) throw bad(what, 'header: sections must be a list');
  if (rawSections.length > BUNDLE_LIMITS.sectionsMax)
    throw bad(
      what,
      `header: ${rawSections.length} sections, above ${BUNDLE_LIMITS.sectionsMax}`,
      'too-large',
    );
  let at = 0;
  let sawChunks = false;
  rawSections.forEach((raw, i) => {
    const s = Fields.of(`${what}: sections[${i}]`, raw);
    const section: BundleSection = {
      kind: s.oneOf('kind', KINDS),
      name: s.string('name', { max: 320 }),
      offset: s.int('offset'),
      length: s.int('length'),
      sha256: s.string('sha256', { pattern: HEX64 }),
    };
    const chunks = s.optionalInt('chunks');
    const records = s.optionalInt('records', { min: 2, max: 2 });
    const encoding = s.optionalString('encoding', { pattern: /^deflate$/ });
    s.done();
    if (encoding !== undefined) {
      if (section.kind !== 'manifest')
        throw bad(what, `section ${section.name}: only manifest sections may be compressed`);
      section.encoding = 'deflate';
    }
    checkSectionName(section.name, `${what}: sections[${i}]`);
    // Threat: overlapping or out-of-order sections (one byte range read as two things), gaps, and a
    // table that declares more than it should (endless data).
    if (section.offset !== at)
      throw bad(
        what,
        `section ${section.name} starts at ${section.offset}, expected ${at} (sections must be contiguous)`,
      );
    if (records !== undefined && section.kind !== 'chunks')
      throw bad(what, `section ${section.name}: only chunk sections have a record format`);
    if (section.kind === 'chunks') {
      if (chunks === undefined || chunks < 1)
        throw bad(what, `chunk section ${section.name}: no record count`);
      section.chunks = chunks;
      if (records !== undefined) section.records = 2;
      sawChunks = true;
    } else {
      if (sawChunks)
        throw bad(what, `section ${section.name} follows a chunk section (chunk sections come last)`);
      if (section.length > BUNDLE_LIMITS.byteSectionMaxBytes)
        throw bad(
          what,
          `section ${section.name}: ${section.length} bytes, above ${BUNDLE_LIMITS.byteSectionMaxBytes}`,
          'too-large',
        );
    }
    at += section.length;
    signed.sections.push(section);
  });
  if (at !== signed.sectionBytes)
    throw bad(what, `sections add up to ${at} bytes, the header says ${signed.sectionBytes}`);
  if (Date.parse(signed.validUntil) <= Date.parse(signed.issuedAt))
    throw bad(what, `validUntil ${signed.validUntil} is not after issuedAt ${signed.issuedAt}`);
  const dataStart = PREAMBLE_BYTES + header.length;
  const stored: StoredPlace[] = [];
  let storedAt = 0;
  for (const s of signed.sections) {
    const length = signed.encryption ? sealedLength(s.length, signed.encryption.blockBytes) : s.length;
    stored.push({ offset: storedAt, length });
    storedAt += length;
  }
  const totalBytes = dataStart + storedAt;
  if (fileBytes !== undefined) {
    if (fileBytes < totalBytes)
      throw bad(
        what,
        `the table of contents declares ${totalBytes} bytes, the file holds ${fileBytes}`,
        'truncated',
      );
    if (fileBytes > totalBytes) throw bad(what, `${fileBytes - totalBytes} bytes follow the last section`);
  }
  return {
    signed,
    envelope,
    headerBytes: header.length,
    dataStart,
    totalBytes,
    stored,
    ...(signed.encryption ? { aad: headerAad(header) } : {}),
  };
}
