import { DepotsyncError, type ErrorCode } from '../errors.js';

/**
 * Collects every bad field of a document before failing (docs/contributing.md: validation collects every bad
 * field), so that one error tells the whole story: `manifest: files[2].path "../x": ".." segment not
 * allowed; files[3].size: expected integer 0..2^53, got -1`.
 */
export class Problems {
  readonly list: string[] = [];
  constructor(
    private readonly what: string,
    /** Stop collecting after this many: a hostile document could otherwise produce a huge error. */
    private readonly max = 50,
  ) {}

  add(field: string, message: string): void {
    this.list.push(field ? `${field}: ${message}` : message);
  }

  get count(): number {
    return this.list.length;
  }

  throwIfAny(code: ErrorCode = 'bad-input', hint?: string): void {
    if (this.list.length === 0) return;
    const shown = this.list.slice(0, this.max).join('; ');
    const more = this.list.length > this.max ? `; and ${this.list.length - this.max} more problems` : '';
    throw new DepotsyncError(code, `${this.what}: ${shown}${more}`, hint === undefined ? {} : { hint });
  }
}
