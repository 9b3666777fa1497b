// The benchmark scripts' argument walk: each flag of argv with a reader of the value after it.

/**
 * `for (const [k, v] of flags(argv))`: k is each argument in turn; v() takes the one after it as
 * k's value (so the walk skips it), throwing "<k> needs a value" when none follows.
 */
export function* flags(argv: string[]): Generator<[string, () => string]> {
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    yield [k, v];
  }
}
