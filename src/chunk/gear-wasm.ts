/**
 * The gear-hash scan of FastCDC as a tiny WebAssembly function, assembled here at module load (about
 * 300 bytes; no toolchain, no binary blob to trust).
 *
 * Why: the scan is a loop of `h = (h << 1) + GEAR[byte]; if ((h & mask) == 0) cut`. In TypeScript V8
 * keeps two bounds checks per byte (the input and the table); in WebAssembly over linear memory the same
 * loop runs about twice as fast, even with the input copied into the module's memory one window at a
 * time (figures in bench/README.md, `chunk`).
 *
 * The functions, in WebAssembly text (`$scan4` repeats the step UNROLL times per loop test, so it needs
 * a length that is a multiple of UNROLL; `$scan1` takes the last few bytes of a window):
 *
 *   (func $scan1 (param $i i32) (param $end i32) (param $h i32) (param $mask i32) (result i32)
 *     (block $out
 *       (loop $next
 *         (br_if $out (i32.ge_u (local.get $i) (local.get $end)))
 *         ;; the step:
 *         (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
 *                                (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
 *         (local.set $i (i32.add (local.get $i) (i32.const 1)))
 *         (if (i32.eqz (i32.and (local.get $h) (local.get $mask)))
 *           (then (global.set $fp (local.get $h)) (return (local.get $i))))
 *         (br $next)))
 *     (global.set $fp (local.get $h))
 *     (i32.const -1))
 *
 * Memory layout: the 256 gear values (little-endian i32) at 0, the input window from WINDOW_AT.
 */

/** Bytes of input copied into the module per call (and the most one call scans). */
export const WASM_GEAR_WINDOW_BYTES = 64 * 1024;
const FIRST_WINDOW_BYTES = 8 * 1024;
const WINDOW_AT = 1024;
const PAGE_BYTES = 65536;
const UNROLL = 4;

// ---- a minimal WebAssembly binary writer ----------------------------------------------------
const uleb = (n: number): number[] => {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  let v = n | 0;
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
};
const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];
const vector = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];

const OP = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  return: 0x0f,
  void: 0x40,
  localGet: 0x20,
  localSet: 0x21,
  globalSet: 0x24,
  i32Load: 0x28,
  i32Load8U: 0x2d,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32And: 0x71,
  i32Shl: 0x74,
  i32: 0x7f,
  func: 0x60,
} as const;
const [I, END, H, MASK] = [0, 1, 2, 3]; // parameter indices

/** Leave the loop (to the "not found" exit) when i >= end. */
const exitAtEnd = [OP.localGet, I, OP.localGet, END, OP.i32GeU, OP.brIf, 1];
/** One byte: roll the fingerprint, advance, return just past the byte if the mask bits are zero. */
const step = [
  OP.localGet,
  H,
  OP.i32Const,
  1,
  OP.i32Shl,
  OP.localGet,
  I,
  OP.i32Load8U,
  0,
  0,
  OP.i32Const,
  2,
  OP.i32Shl,
  OP.i32Load,
  2,
  0,
  OP.i32Add,
  OP.localSet,
  H,
  OP.localGet,
  I,
  OP.i32Const,
  1,
  OP.i32Add,
  OP.localSet,
  I,
  OP.localGet,
  H,
  OP.localGet,
  MASK,
  OP.i32And,
  OP.i32Eqz,
  OP.if,
  OP.void,
  OP.localGet,
  H,
  OP.globalSet,
  0,
  OP.localGet,
  I,
  OP.return,
  OP.end,
];

/** A scan function whose loop runs `steps` bytes per end test. */
function scanBody(steps: number): number[] {
  const body = [
    0x00, // no locals besides the parameters
    OP.block,
    OP.void,
    OP.loop,
    OP.void,
    ...exitAtEnd,
    ...Array.from({ length: steps }, () => step).flat(),
    OP.br,
    0,
    OP.end,
    OP.end,
    OP.localGet,
    H,
    OP.globalSet,
    0,
    OP.i32Const,
    ...sleb(-1),
    OP.end,
  ];
  return [...uleb(body.length), ...body];
}

function moduleBytes(): Uint8Array {
  const pages = Math.ceil((WINDOW_AT + WASM_GEAR_WINDOW_BYTES) / PAGE_BYTES);
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00, // "\0asm", version 1
    ...section(1, vector([[OP.func, 4, OP.i32, OP.i32, OP.i32, OP.i32, 1, OP.i32]])), // type 0: (i32 x4) -> i32
    ...section(3, vector([[0], [0]])), // functions 0 ($scan4) and 1 ($scan1) have type 0
    ...section(5, vector([[0x00, ...uleb(pages)]])), // one memory, fixed size
    ...section(6, vector([[OP.i32, 0x01, OP.i32Const, 0, OP.end]])), // global $fp: mutable i32 = 0
    ...section(
      7,
      vector([
        [...name('scan4'), 0x00, 0],
        [...name('scan1'), 0x00, 1],
        [...name('memory'), 0x02, 0],
        [...name('fp'), 0x03, 0],
      ]),
    ),
    ...section(10, vector([scanBody(UNROLL), scanBody(1)])),
  ]);
}

/** The few WebAssembly JS-API members used here (tsconfig's lib has no WebAssembly types). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

export interface WasmGearScanner {
  /**
   * Same contract as `gearScan` (gear.ts): roll over data[from, end) from fingerprint `fp`; the index
   * just past the first byte whose fingerprint has all `mask` bits zero, or -1; the fingerprint reached
   * is returned through `fingerprint()`.
   */
  scan(data: Uint8Array, from: number, end: number, fp: number, mask: number): number;
  fingerprint(): number;
}

/** Instantiate the scanner for a gear table (synchronous: the module is a few hundred bytes). */
export function createWasmGearScanner(gear: Int32Array): WasmGearScanner {
  if (gear.length !== 256) throw new Error(`gear table must have 256 entries, got ${gear.length}`);
  const instance = new wasmApi.Instance(new wasmApi.Module(moduleBytes()));
  type Scan = (i: number, end: number, h: number, mask: number) => number;
  const {
    scan4,
    scan1,
    memory,
    fp: fpGlobal,
  } = instance.exports as {
    scan4: Scan;
    scan1: Scan;
    memory: { buffer: ArrayBuffer };
    fp: { value: number };
  };
  // Little-endian i32 values, as the module's i32.load reads them, whatever the host's byte order.
  const table = new DataView(memory.buffer, 0, 1024);
  for (let k = 0; k < 256; k++) table.setInt32(k * 4, gear[k]!, true);
  const window = new Uint8Array(memory.buffer, WINDOW_AT, WASM_GEAR_WINDOW_BYTES);
  let last = 0;
  return {
    scan(data, from, end, fp, mask) {
      let h = fp | 0;
      // Windows grow from FIRST_WINDOW_BYTES: a cut often comes a few KiB in (past avgBytes the mask
      // is narrow), and every byte copied past it is wasted (fixed 64 KiB windows copied 1.5x the input).
      let size = FIRST_WINDOW_BYTES;
      for (let pos = from; pos < end; size = Math.min(2 * size, WASM_GEAR_WINDOW_BYTES)) {
        const n = Math.min(size, end - pos);
        window.set(data.subarray(pos, pos + n));
        const whole = n - (n % UNROLL);
        let cut = scan4(WINDOW_AT, WINDOW_AT + whole, h, mask);
        h = fpGlobal.value;
        if (cut < 0 && whole < n) {
          cut = scan1(WINDOW_AT + whole, WINDOW_AT + n, h, mask);
          h = fpGlobal.value;
        }
        if (cut >= 0) {
          last = h;
          return pos + cut - WINDOW_AT;
        }
        pos += n;
      }
      last = h;
      return -1;
    },
    fingerprint: () => last,
  };
}
