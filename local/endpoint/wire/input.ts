/**
 * Typed reading of a request's parameters, whichever wire format they came in (SQS: AWS
 * JSON 1.0 body; SNS: query-protocol form fields turned into the same nested shape).
 * Every problem raises the service's own error naming the parameter, the value received
 * and what is allowed.
 */
import type { AwsApiError } from '../errors.ts';

/** Builds the service's error for a missing or mistyped parameter. */
export interface InputErrors {
  missing(path: string): AwsApiError;
  invalid(path: string, value: unknown, expected: string): AwsApiError;
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** Reads the fields of one object of a request. */
export class InputReader {
  readonly #value: Readonly<Record<string, unknown>>;
  readonly #path: string;
  readonly #errors: InputErrors;

  constructor(value: unknown, errors: InputErrors, path = '') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw errors.invalid(path || 'request', value, 'an object');
    }
    this.#value = value as Record<string, unknown>;
    this.#path = path;
    this.#errors = errors;
  }

  #name(field: string): string {
    return this.#path ? `${this.#path}.${field}` : field;
  }

  #get(field: string): unknown {
    return Object.hasOwn(this.#value, field) ? this.#value[field] : undefined;
  }

  /** Whether `field` is present (and not null). */
  has(field: string): boolean {
    const value = this.#get(field);
    return value !== undefined && value !== null;
  }

  /** A required string. */
  string(field: string): string {
    const value = this.optionalString(field);
    if (value === undefined) throw this.#errors.missing(this.#name(field));
    return value;
  }

  /** A string, or undefined when absent. */
  optionalString(field: string): string | undefined {
    const value = this.#get(field);
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') throw this.#errors.invalid(this.#name(field), value, 'a string');
    return value;
  }

  /** An integer, or undefined when absent. Numeric strings are accepted (query protocol). */
  optionalInteger(field: string): number | undefined {
    const value = this.#get(field);
    if (value === undefined || value === null) return undefined;
    const number = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isSafeInteger(number)) {
      throw this.#errors.invalid(this.#name(field), value, 'an integer');
    }
    return number;
  }

  /** A boolean, or undefined when absent. `"true"`/`"false"` are accepted (query protocol). */
  optionalBoolean(field: string): boolean | undefined {
    const value = this.#get(field);
    if (value === undefined || value === null) return undefined;
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    throw this.#errors.invalid(this.#name(field), value, 'true or false');
  }

  /** A list of strings (empty when absent). */
  stringList(field: string): string[] {
    const value = this.#get(field);
    if (value === undefined || value === null || value === '') return [];
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
      throw this.#errors.invalid(this.#name(field), value, 'a list of strings');
    }
    return value as string[];
  }

  /** A map of string to string (empty when absent). */
  stringMap(field: string): Record<string, string> {
    const value = this.#get(field);
    if (value === undefined || value === null || value === '') return {};
    if (typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
      throw this.#errors.invalid(this.#name(field), value, 'a map of strings to strings');
    }
    return value as Record<string, string>;
  }

  /** A map of string to object (empty when absent). */
  objectMap(field: string): Map<string, InputReader> {
    const value = this.#get(field);
    if (value === undefined || value === null || value === '') return new Map();
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw this.#errors.invalid(this.#name(field), value, 'a map of names to objects');
    }
    return new Map(Object.entries(value).map(([k, v]) => [k, new InputReader(v, this.#errors, `${this.#name(field)}.${k}`)]));
  }

  /** A list of objects, or undefined when absent. */
  optionalObjectList(field: string): InputReader[] | undefined {
    const value = this.#get(field);
    if (value === undefined || value === null) return undefined;
    // The query protocol writes an empty list as `Name=`.
    if (value === '') return [];
    if (!Array.isArray(value)) throw this.#errors.invalid(this.#name(field), value, 'a list of objects');
    return value.map((v, i) => new InputReader(v, this.#errors, `${this.#name(field)}.${i + 1}`));
  }

  /** A required list of objects. */
  objectList(field: string): InputReader[] {
    const value = this.optionalObjectList(field);
    if (value === undefined) throw this.#errors.missing(this.#name(field));
    return value;
  }
}

/** Short rendering of a received value for error messages. */
export function show(value: unknown): string {
  return describe(value);
}
