/**
 * Typed reading of environment variables: read once at start-up, fail fast with a
 * message that names the variable, the value received and what is allowed.
 */
import { parseIntegerIn } from './integer.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/** A configuration problem found at start-up; lists every problem at once. */
class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Collects problems while reading variables, then throws them all at once from `done`. */
export class EnvReader {
  readonly #env: Env;
  readonly #problems: string[] = [];

  constructor(env: Env) {
    this.#env = env;
  }

  /** A non-empty string, or undefined when unset or empty. */
  optional(name: string): string | undefined {
    const value = this.#env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  /** A non-empty string; records a problem when missing. */
  required(name: string, hint = ''): string {
    const value = this.optional(name);
    if (value === undefined) this.#problems.push(`environment variable ${name} is required${hint ? ` (${hint})` : ''}`);
    return value ?? '';
  }

  /** An integer in [min, max], or `fallback` when unset. */
  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.optional(name);
    if (raw === undefined) return fallback;
    const value = parseIntegerIn(raw, min, max);
    if (value === undefined) {
      this.#problems.push(`environment variable ${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  }

  /** One of `allowed`, or `fallback` when unset. */
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.optional(name);
    if (raw === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(raw)) {
      this.#problems.push(`environment variable ${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
      return fallback;
    }
    return raw as T;
  }

  /** A comma-separated list of non-empty items (empty when unset). */
  list(name: string): string[] {
    const raw = this.optional(name);
    return raw === undefined ? [] : raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  }

  /** Records a problem found by the caller. */
  problem(message: string): void {
    this.#problems.push(message);
  }

  /** Throws a ConfigError listing every problem, if there were any. */
  done(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }
}
