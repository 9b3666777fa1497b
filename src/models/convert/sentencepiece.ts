// A minimal reader and writer for SentencePiece `tokenizer.model` files (a serialized
// `sentencepiece.ModelProto`), without a protobuf dependency.
//
// Field numbers, from sentencepiece's src/sentencepiece_model.proto (proto2):
//
//   message ModelProto {
//     repeated SentencePiece pieces = 1;      // { piece = 1 (string), score = 2 (float), type = 3 (enum, default NORMAL) }
//     optional TrainerSpec trainer_spec = 2;
//     optional NormalizerSpec normalizer_spec = 3;
//     optional SelfTestData self_test_data = 4;
//     optional NormalizerSpec denormalizer_spec = 5;
//   }
//   TrainerSpec:    model_type = 3 (UNIGRAM 1, BPE 2, WORD 3, CHAR 4; default UNIGRAM), vocab_size = 4,
//                   treat_whitespace_as_suffix = 24, byte_fallback = 35, unk_id = 40 (default 0),
//                   bos_id = 41 (1), eos_id = 42 (2), pad_id = 43 (-1), unk_piece = 45, bos_piece = 46,
//                   eos_piece = 47, pad_piece = 48
//   NormalizerSpec: name = 1, precompiled_charsmap = 2 (bytes), add_dummy_prefix = 3 (default true),
//                   remove_extra_whitespaces = 4 (default true), escape_whitespaces = 5 (default true)
//
// Wire format: each field is a varint key (field << 3 | wire type) then the value: wire type 0 a
// varint, 1 eight bytes, 2 a varint length then that many bytes (strings, bytes, sub-messages),
// 5 four bytes (float). Fields this reader does not know are skipped by their wire type. An
// int32 field holding a negative number (pad_id = -1) is a 10-byte varint of its 64-bit two's
// complement; its low 32 bits are the value.

/** `ModelProto.SentencePiece.Type`; GGUF's `tokenizer.ggml.token_type` uses the same numbers. */
export const SentencePieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** `TrainerSpec.ModelType`. Llama's tokenizer.model is BPE. */
export const SentencePieceModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;

export function sentencePieceModelTypeName(t: number): string {
  for (const [name, id] of Object.entries(SentencePieceModelType)) if (id === t) return name;
  return `model_type ${t}`;
}

export interface SentencePiece {
  piece: string;
  score: number;
  /** A {@link SentencePieceType} value. */
  type: number;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  /** trainer_spec.model_type, a {@link SentencePieceModelType} value (UNIGRAM when absent). */
  modelType: number;
  /** trainer_spec.vocab_size, when present. */
  vocabSize?: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  /** Special ids from trainer_spec; -1 means none. */
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  /** normalizer_spec.name ("identity" for Llama, "nmt_nfkc" by default). */
  normalizerName?: string;
  /** Whether normalizer_spec has a non-empty precompiled_charsmap (a normalization rule table). */
  hasPrecompiledCharsmap: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

// ignoreBOM: keep a leading U+FEFF (Llama's vocabulary has it as a piece of its own; the default strips it)
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Cursor over protobuf bytes; every read is bounds-checked and errors name the source. */
class ProtoReader {
  pos: number;
  private readonly view: DataView;

  constructor(
    private readonly buf: Uint8Array,
    private readonly source: string,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  fail(what: string): never {
    throw new Error(`${this.source}: not a valid SentencePiece model: ${what} (at byte ${this.pos})`);
  }

  /** A varint as [low 32 bits, high 32 bits], both unsigned. */
  varint64(): [number, number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi = bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if ((b & 0x80) === 0) return [lo >>> 0, hi >>> 0];
    }
    return this.fail("varint longer than 10 bytes");
  }

  /** An unsigned varint that must fit a JS number exactly (lengths, keys, enums). */
  uint(): number {
    const [lo, hi] = this.varint64();
    if (hi >= 1 << 21) this.fail("varint too large");
    return hi * 2 ** 32 + lo;
  }

  /** An int32 field (negative values are 10-byte varints; their low 32 bits are the value). */
  int32(): number {
    return this.varint64()[0] | 0;
  }

  bool(): boolean {
    const [lo, hi] = this.varint64();
    return lo !== 0 || hi !== 0;
  }

  float(): number {
    if (this.pos + 4 > this.end) this.fail("truncated float");
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field: returns [start, end) and moves past it. */
  lengthDelimited(): [number, number] {
    const n = this.uint();
    if (this.pos + n > this.end) this.fail(`length ${n} runs past the end of its message`);
    const start = this.pos;
    this.pos += n;
    return [start, this.pos];
  }

  string(what: string): string {
    const [s, e] = this.lengthDelimited();
    try {
      return utf8.decode(this.buf.subarray(s, e));
    } catch {
      return this.fail(`${what} is not valid UTF-8`);
    }
  }

  sub(range: [number, number]): ProtoReader {
    return new ProtoReader(this.buf, this.source, range[0], range[1]);
  }

  key(): [field: number, wire: number] {
    const k = this.uint();
    const field = Math.floor(k / 8);
    if (field === 0) this.fail("field number 0");
    return [field, k & 7];
  }

  /** Skip a field's value by its wire type. */
  skip(wire: number, field: number): void {
    switch (wire) {
      case 0:
        this.varint64();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.lengthDelimited();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        this.fail(`field ${field} has unsupported wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) this.fail("truncated fixed-size field");
    this.pos += n;
  }

  /** Check that a known field has the expected wire type. */
  expect(field: number, wire: number, want: number, name: string): void {
    if (wire !== want) this.fail(`${name} (field ${field}) has wire type ${wire}, expected ${want}`);
  }
}

/** Parse the bytes of a `tokenizer.model`. `source` names the file in error messages. */
export function parseSentencePieceModel(bytes: Uint8Array, source = "tokenizer.model"): SentencePieceModel {
  const m: SentencePieceModel = {
    pieces: [],
    modelType: SentencePieceModelType.UNIGRAM,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkPiece: "<unk>",
    bosPiece: "<s>",
    eosPiece: "</s>",
    padPiece: "<pad>",
    hasPrecompiledCharsmap: false,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  const r = new ProtoReader(bytes, source);
  while (!r.done) {
    const [field, wire] = r.key();
    if (field === 1) {
      r.expect(field, wire, 2, "pieces");
      m.pieces.push(parsePiece(r.sub(r.lengthDelimited()), m.pieces.length));
    } else if (field === 2) {
      r.expect(field, wire, 2, "trainer_spec");
      parseTrainerSpec(r.sub(r.lengthDelimited()), m);
    } else if (field === 3) {
      r.expect(field, wire, 2, "normalizer_spec");
      parseNormalizerSpec(r.sub(r.lengthDelimited()), m);
    } else r.skip(wire, field);
  }
  if (m.pieces.length === 0) r.fail("it has no pieces");
  return m;
}

function parsePiece(r: ProtoReader, index: number): SentencePiece {
  let piece: string | undefined;
  let score = 0;
  let type: number = SentencePieceType.NORMAL;
  while (!r.done) {
    const [field, wire] = r.key();
    if (field === 1) {
      r.expect(field, wire, 2, `piece #${index}`);
      piece = r.string(`piece #${index}`);
    } else if (field === 2) {
      r.expect(field, wire, 5, `score of piece #${index}`);
      score = r.float();
    } else if (field === 3) {
      r.expect(field, wire, 0, `type of piece #${index}`);
      type = r.uint();
      if (type < 1 || type > 6) r.fail(`piece #${index} has unknown type ${type}`);
    } else r.skip(wire, field);
  }
  if (piece === undefined) r.fail(`piece #${index} has no text`);
  return { piece, score, type };
}

/** How a scalar field is read: a varint (unsigned, int32 or bool) or a string. */
type Scalar = "uint" | "int32" | "bool" | "string";
/** The scalar fields of a message read into the model: field number -> [proto name, SentencePieceModel key, how it is read]. */
type FieldTable = Readonly<Record<number, readonly [string, keyof SentencePieceModel, Scalar]>>;

const TRAINER_SPEC_FIELDS: FieldTable = {
  3: ["model_type", "modelType", "uint"],
  4: ["vocab_size", "vocabSize", "int32"],
  24: ["treat_whitespace_as_suffix", "treatWhitespaceAsSuffix", "bool"],
  35: ["byte_fallback", "byteFallback", "bool"],
  // the special tokens' ids (40-43) and pieces (45-48), in the order unk, bos, eos, pad
  ...Object.fromEntries(
    (["unk", "bos", "eos", "pad"] as const).flatMap((t, i) => [
      [40 + i, [`${t}_id`, `${t}Id`, "int32"] as const],
      [45 + i, [`${t}_piece`, `${t}Piece`, "string"] as const],
    ]),
  ),
};

const NORMALIZER_SPEC_FIELDS: FieldTable = {
  1: ["name", "normalizerName", "string"],
  3: ["add_dummy_prefix", "addDummyPrefix", "bool"],
  4: ["remove_extra_whitespaces", "removeExtraWhitespaces", "bool"],
  5: ["escape_whitespaces", "escapeWhitespaces", "bool"],
};

/**
 * Reads a message's fields into `m` by its table, each checked for its wire type (errors name
 * `<message>.<field>`); `other` reads a field the table lacks and says so, else it is skipped.
 */
function parseFields(r: ProtoReader, m: SentencePieceModel, message: string, table: FieldTable, other?: (field: number, wire: number) => boolean): void {
  while (!r.done) {
    const [field, wire] = r.key();
    const f = table[field];
    if (!f) {
      if (!other?.(field, wire)) r.skip(wire, field);
      continue;
    }
    const [name, key, kind] = f;
    const what = `${message}.${name}`;
    r.expect(field, wire, kind === "string" ? 2 : 0, what);
    (m as unknown as Record<string, unknown>)[key] = kind === "string" ? r.string(what) : kind === "bool" ? r.bool() : kind === "int32" ? r.int32() : r.uint();
  }
}

function parseTrainerSpec(r: ProtoReader, m: SentencePieceModel): void {
  parseFields(r, m, "trainer_spec", TRAINER_SPEC_FIELDS);
}

function parseNormalizerSpec(r: ProtoReader, m: SentencePieceModel): void {
  parseFields(r, m, "normalizer_spec", NORMALIZER_SPEC_FIELDS, (field, wire) => {
    if (field !== 2) return false;
    r.expect(field, wire, 2, "normalizer_spec.precompiled_charsmap");
    const [s, e] = r.lengthDelimited();
    m.hasPrecompiledCharsmap = e > s;
    return true;
  });
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/** What {@link encodeSentencePieceModel} writes; absent fields are left out of the file (proto defaults apply). */
export interface SentencePieceModelSpec {
  pieces: SentencePiece[];
  modelType?: number;
  vocabSize?: number;
  byteFallback?: boolean;
  unkId?: number;
  bosId?: number;
  eosId?: number;
  padId?: number;
  normalizerName?: string;
  addDummyPrefix?: boolean;
  removeExtraWhitespaces?: boolean;
  escapeWhitespaces?: boolean;
}

/** Growable protobuf byte builder. */
class ProtoWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    bigger.set(this.buf.subarray(0, this.length));
    this.buf = bigger;
    this.view = new DataView(bigger.buffer);
  }

  /** A varint of a non-negative integer below 2^53, or of a negative int32 (as 10 bytes, like protobuf). */
  varint(v: number): void {
    if (!Number.isInteger(v)) throw new TypeError(`protobuf varint: ${v} is not an integer`);
    if (v < 0) {
      if (v < -0x80000000) throw new RangeError(`protobuf varint: ${v} is below int32`);
      // 64-bit two's complement: low word v >>> 0, high word 0xffffffff
      let lo = v >>> 0;
      let hi = 0xffffffff;
      this.room(10);
      for (let i = 0; i < 10; i++) {
        const bits = lo & 0x7f;
        lo = ((lo >>> 7) | (hi << 25)) >>> 0;
        hi >>>= 7;
        this.buf[this.length++] = i < 9 ? bits | 0x80 : bits;
      }
      return;
    }
    this.room(10);
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.length++] = v;
  }

  key(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  float(field: number, v: number): void {
    this.key(field, 5);
    this.room(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }

  bytes(field: number, b: Uint8Array): void {
    this.key(field, 2);
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  int(field: number, v: number): void {
    this.key(field, 0);
    this.varint(v);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Serialize a ModelProto (pieces, trainer_spec, normalizer_spec). NORMAL piece types are left implicit, as sentencepiece does. */
export function encodeSentencePieceModel(spec: SentencePieceModelSpec): Uint8Array {
  const out = new ProtoWriter();
  for (const p of spec.pieces) {
    const w = new ProtoWriter();
    w.string(1, p.piece);
    w.float(2, p.score);
    if (p.type !== SentencePieceType.NORMAL) w.int(3, p.type);
    out.bytes(1, w.finish());
  }
  const t = new ProtoWriter();
  if (spec.modelType !== undefined) t.int(3, spec.modelType);
  if (spec.vocabSize !== undefined) t.int(4, spec.vocabSize);
  if (spec.byteFallback !== undefined) t.int(35, spec.byteFallback ? 1 : 0);
  if (spec.unkId !== undefined) t.int(40, spec.unkId);
  if (spec.bosId !== undefined) t.int(41, spec.bosId);
  if (spec.eosId !== undefined) t.int(42, spec.eosId);
  if (spec.padId !== undefined) t.int(43, spec.padId);
  out.bytes(2, t.finish());
  const n = new ProtoWriter();
  if (spec.normalizerName !== undefined) n.string(1, spec.normalizerName);
  if (spec.addDummyPrefix !== undefined) n.int(3, spec.addDummyPrefix ? 1 : 0);
  if (spec.removeExtraWhitespaces !== undefined) n.int(4, spec.removeExtraWhitespaces ? 1 : 0);
  if (spec.escapeWhitespaces !== undefined) n.int(5, spec.escapeWhitespaces ? 1 : 0);
  out.bytes(3, n.finish());
  return out.finish();
}
