/**
 * Which tables a replica applies: built once from the replica's include and exclude lists
 * (table names in the one format every part of pgfanout accepts, see `#core/pg/table-name.ts`).
 */
import { describeValue, InvalidArgumentError } from '../wire/errors.ts';

/** Decides which tables a replica applies; built once from include/exclude lists. */
export class TableFilter {
  readonly #include: readonly ((schema: string, table: string) => boolean)[];
  readonly #exclude: readonly ((schema: string, table: string) => boolean)[];

  constructor(include: readonly string[] = [], exclude: readonly string[] = []) {
    this.#include = include.map((e) => TableFilter.#pattern(e, 'include'));
    this.#exclude = exclude.map((e) => TableFilter.#pattern(e, 'exclude'));
  }

  static #pattern(entry: unknown, list: string): (schema: string, table: string) => boolean {
    if (typeof entry !== 'string' || entry.trim() === '') {
      throw new InvalidArgumentError(`${list} entry ${describeValue(entry)} is not allowed; expected schema.table, "schema"."table" or schema.*`);
    }
    const quoted = /^"((?:[^"]|"")+)"\."((?:[^"]|"")+)"$/.exec(entry);
    if (quoted) {
      const [schema, table] = [(quoted[1] as string).replaceAll('""', '"'), (quoted[2] as string).replaceAll('""', '"')];
      return (s, t) => s === schema && t === table;
    }
    if (entry.endsWith('.*') && entry.length > 2) {
      const schema = entry.slice(0, -2);
      return (s) => s === schema;
    }
    if (!entry.includes('.')) {
      throw new InvalidArgumentError(`${list} entry ${describeValue(entry)} is not allowed; expected schema.table, "schema"."table" or schema.*`);
    }
    return (s, t) => `${s}.${t}` === entry;
  }

  /** True when changes to `schema.table` are applied. */
  applies(schema: string, table: string): boolean {
    if (this.#include.length > 0 && !this.#include.some((m) => m(schema, table))) return false;
    return !this.#exclude.some((m) => m(schema, table));
  }
}
