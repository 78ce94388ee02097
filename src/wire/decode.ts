import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError } from '../errors.js';

/**
 * The one way untrusted JSON bytes (request and response bodies, event data, files from another
 * machine) become a typed value: the size cap before a byte is read ('too-large'), the strict parser
 * (bad UTF-8, duplicate keys, fractions, deep nesting: 'bad-json' with the byte position), then the
 * typed decoder, whose 'bad-input' error names every bad field. `what` names the document in errors.
 */
export function decodeJson<T>(
  bytes: Uint8Array,
  o: { what: string; maxBytes: number },
  decode: (value: unknown) => T,
): T {
  return decode(parseStrictJson(bytes, { what: o.what, maxBytes: o.maxBytes }));
}

/**
 * Tiny decode-at-the-border helpers (docs/contributing.md): collect every bad field, then fail once with a
 * message naming each of them.
 */
export class Fields {
  private readonly problems: string[] = [];
  constructor(
    private readonly what: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  static of(what: string, value: unknown): Fields {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new DepotsyncError('bad-input', `${what}: expected a JSON object`);
    }
    return new Fields(what, value as Record<string, unknown>);
  }

  string(name: string, opts: { optional?: boolean; max?: number; pattern?: RegExp } = {}): string {
    const v = this.obj[name];
    if (v === undefined && opts.optional) return '';
    if (typeof v !== 'string') return this.bad(name, `expected a string, got ${typeName(v)}`, '');
    if (v.length > (opts.max ?? 65536))
      return this.bad(name, `longer than ${opts.max ?? 65536} characters`, '');
    if (opts.pattern && !opts.pattern.test(v)) return this.bad(name, `does not match ${opts.pattern}`, '');
    return v;
  }

  optionalString(name: string, opts: { max?: number; pattern?: RegExp } = {}): string | undefined {
    return this.obj[name] === undefined || this.obj[name] === null ? undefined : this.string(name, opts);
  }

  int(name: string, opts: { min?: number; max?: number; optional?: boolean } = {}): number {
    const v = this.obj[name];
    if (v === undefined && opts.optional) return 0;
    const min = opts.min ?? 0;
    const max = opts.max ?? Number.MAX_SAFE_INTEGER;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      return this.bad(
        name,
        `expected an integer from ${min} to ${max}, got ${JSON.stringify(v)?.slice(0, 40)}`,
        0,
      );
    }
    return v;
  }

  optionalInt(name: string, opts: { min?: number; max?: number } = {}): number | undefined {
    return this.obj[name] === undefined || this.obj[name] === null ? undefined : this.int(name, opts);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T {
    const v = this.obj[name];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      return this.bad(
        name,
        `expected one of ${allowed.join(', ')}, got ${JSON.stringify(v)?.slice(0, 40)}`,
        allowed[0] as T,
      );
    }
    return v as T;
  }

  /** Throw one error listing every problem found so far. */
  done(): void {
    if (this.problems.length) {
      throw new DepotsyncError('bad-input', `${this.what}: ${this.problems.join('; ')}`);
    }
  }

  private bad<T>(name: string, why: string, fallback: T): T {
    this.problems.push(`${name}: ${why}`);
    return fallback;
  }
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
