/** Argument parsing shared by the `pgfanout` commands (node:util parseArgs, strict). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { REPLICA_NAME_PATTERN } from '#core/config.ts';
import { parseIntegerIn } from '#core/integer.ts';

/** A usage problem: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: [...args], options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `NAME=URL` → { name, url }, with the name checked against the replica name rules. */
export function parseReplicaArg(text: string): { name: string; url: string } {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--replica takes NAME=URL, got "${text}"`);
  const name = text.slice(0, eq);
  const url = text.slice(eq + 1);
  if (!REPLICA_NAME_PATTERN.test(name)) {
    throw new UsageError(`replica name "${name}" must be 1-40 characters of a-z, 0-9 and "-", starting with a letter`);
  }
  if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError(`--replica ${name}: URL must start with postgres://, got "${url.slice(0, 20)}…"`);
  return { name, url };
}

export function requireOption(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`${flag} is required`);
  return value;
}

/** The queue and topic prefix of `pgfanout local`, LocalStack setups and the tests. */
export const DEFAULT_LOCAL_PREFIX = 'pgfanout-local';

/**
 * The deployment's prefix: `--prefix` when given; without it, `pgfanout-local` when
 * AWS_ENDPOINT_URL points at a local endpoint or LocalStack; against AWS it must be given.
 */
export function queuePrefix(value: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (value) return value;
  if (env.AWS_ENDPOINT_URL) return DEFAULT_LOCAL_PREFIX;
  throw new UsageError(
    `--prefix P is required against AWS: the prefix the stack was deployed with (queues are named P-REPLICA.fifo); ` +
      `${DEFAULT_LOCAL_PREFIX} is the default only with AWS_ENDPOINT_URL set (the local endpoint or LocalStack)`,
  );
}

/** Parses an integer option (`fallback` when absent), or throws a UsageError naming it, the value and what is allowed. */
export function integerOption(text: string | undefined, flag: string, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = parseIntegerIn(text, min);
  if (value === undefined) throw new UsageError(`${flag} is "${text}"; allowed: an integer >= ${min}`);
  return value;
}
