// Every BATCHNORM_* environment variable, read by one rule whether JS or the Rust core reads
// it: unset or blank means the default; anything else must parse, and a value that does not
// is an error naming the variable at import, never silently ignored.

/** The most threads the native pool may start (also setNumThreads' cap). */
export const MAX_THREADS = 1024;

interface IntegerVariable {
  min: number;
  max: number;
  /** What the value means, for the error message. */
  what: string;
}

/** The whole-number variables, with their limits. The last three are read by the Rust core
 *  itself; checking them here means a bad value stops the import instead of being ignored. */
const INTEGERS = {
  BATCHNORM_NATIVE_MIN_ELEMENTS: { min: 0, max: Number.MAX_SAFE_INTEGER, what: 'a number of elements' },
  BATCHNORM_OUTPUT_POOL_BYTES: { min: 0, max: Number.MAX_SAFE_INTEGER, what: 'a number of bytes' },
  BATCHNORM_NUM_THREADS: { min: 1, max: MAX_THREADS, what: 'a number of threads' },
  BATCHNORM_PARALLEL_MIN_ELEMENTS: { min: 0, max: Number.MAX_SAFE_INTEGER, what: 'a number of elements' },
  BATCHNORM_STREAM_MIN_BYTES: { min: 0, max: Number.MAX_SAFE_INTEGER, what: 'a number of bytes' },
} satisfies Record<string, IntegerVariable>;

export type IntegerVariableName = keyof typeof INTEGERS;

const CHOICES = {
  BATCHNORM_BACKEND: ['auto', 'js', 'native'],
} satisfies Record<string, readonly string[]>;

/** The variable's value, trimmed; null when unset or blank. */
function raw(name: string): string | null {
  const v = process.env[name];
  if (v === undefined) return null;
  const trimmed = v.trim();
  return trimmed === '' ? null : trimmed;
}

/** A whole-number variable: decimal digits only (no sign, fraction, exponent or hex), within
 *  its limits; null when unset. */
export function envInteger(name: IntegerVariableName): number | null {
  const v = raw(name);
  if (v === null) return null;
  const { min, max, what } = INTEGERS[name];
  if (!/^\d+$/.test(v)) {
    throw new TypeError(`${name} must be a whole number (${what}, ${min} to ${max}), got ${JSON.stringify(v)}`);
  }
  const n = Number(v);
  if (n < min || n > max) throw new RangeError(`${name} must be in [${min}, ${max}] (${what}), got ${v}`);
  return n;
}

/** One of a fixed set of words, in any letter case; null when unset. */
export function envChoice(name: keyof typeof CHOICES): string | null {
  const v = raw(name);
  if (v === null) return null;
  const choices: readonly string[] = CHOICES[name];
  const word = v.toLowerCase();
  if (!choices.includes(word)) {
    throw new TypeError(`${name} must be one of ${choices.join(', ')} (or unset), got ${JSON.stringify(v)}`);
  }
  return word;
}

/** A path, resolved by the caller; null when unset. */
export function envPath(name: 'BATCHNORM_NATIVE_PATH' | 'BATCHNORM_MPI_PATH'): string | null {
  return raw(name);
}

/** Checks every whole-number variable now, including those only the Rust core reads. */
export function checkIntegerVariables(): void {
  for (const name of Object.keys(INTEGERS) as IntegerVariableName[]) envInteger(name);
}
