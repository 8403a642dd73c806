/**
 * SNS subscription filter policies (SNS Developer Guide, "Amazon SNS message filtering"),
 * compiled once when set and evaluated for every message published.
 *
 * Attribute scope (`FilterPolicyScope` = MessageAttributes, the default): the policy is a
 * flat object of attribute name → list of conditions; only String, String.Array and Number
 * attributes take part (Binary attributes count as absent). Body scope (MessageBody): the
 * policy mirrors the JSON body, nested objects included. In both, conditions in one list
 * are OR-ed, keys are AND-ed, and `"$or": [policy, …]` OR-s whole sub-policies.
 *
 * Conditions: exact string, exact number, `true`/`false`/`null` (body and String.Array),
 * `prefix`, `suffix`, `equals-ignore-case`, `anything-but` (a value, a list, or a prefix /
 * suffix / equals-ignore-case object), `numeric` (`=`, `<`, `<=`, `>`, `>=` with up to two
 * comparisons), `exists`, `cidr` (IPv4). Limits ("Filter policy constraints in Amazon
 * SNS"): at most 5 keys, at most 150 value combinations, numbers from -10^9 to 10^9.
 */

/** Where a policy looks: message attributes or the JSON message body. */
export type FilterPolicyScope = 'MessageAttributes' | 'MessageBody';

/** A filter policy that is not valid; the message says what and why. */
export class FilterPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FilterPolicyError';
  }
}

/** One value a condition can be compared with. */
type Candidate =
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'number'; readonly value: number }
  | { readonly kind: 'boolean'; readonly value: boolean }
  | { readonly kind: 'null' };

/** What a key of the policy finds in the message. */
interface Found {
  readonly present: boolean;
  readonly candidates: readonly Candidate[];
}

type KeyTest = (found: Found) => boolean;
type ValueTest = (candidate: Candidate) => boolean;

/** A message as the filter sees it. */
export interface FilterInput {
  /** Attribute name → data type and value (String.Array values are JSON text). */
  readonly attributes: ReadonlyMap<string, { readonly dataType: string; readonly stringValue?: string }>;
  readonly body: string;
}

/** A compiled policy. */
export interface CompiledFilterPolicy {
  readonly scope: FilterPolicyScope;
  matches(message: FilterInput): boolean;
}

const MAX_KEYS = 5;
const MAX_COMBINATIONS = 150;
const NUMERIC_LIMIT = 1e9;

function fail(message: string): never {
  throw new FilterPolicyError(message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function checkNumber(value: number, where: string): number {
  if (!Number.isFinite(value) || Math.abs(value) > NUMERIC_LIMIT) {
    fail(`${where}: numbers must be from -1000000000 to 1000000000, got ${value}`);
  }
  return value;
}

function stringOperand(value: unknown, operator: string, where: string): { text: string; ignoreCase: boolean } {
  if (typeof value === 'string') return { text: value, ignoreCase: false };
  if (isObject(value) && Object.keys(value).length === 1 && typeof value['equals-ignore-case'] === 'string') {
    return { text: value['equals-ignore-case'], ignoreCase: true };
  }
  return fail(`${where}: "${operator}" takes a string (or {"equals-ignore-case": string}), got ${JSON.stringify(value)}`);
}

function literalTest(value: unknown, where: string): ValueTest {
  if (typeof value === 'string') return (c) => c.kind === 'string' && c.value === value;
  if (typeof value === 'number') {
    const n = checkNumber(value, where);
    return (c) => c.kind === 'number' && c.value === n;
  }
  if (typeof value === 'boolean') return (c) => c.kind === 'boolean' && c.value === value;
  if (value === null) return (c) => c.kind === 'null';
  return fail(`${where}: unsupported value ${JSON.stringify(value)}`);
}

function ipv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

function cidrTest(value: unknown, where: string): ValueTest {
  const match = typeof value === 'string' ? /^([\d.]+)\/(\d{1,2})$/.exec(value) : null;
  const base = match ? ipv4(match[1] as string) : undefined;
  const bits = match ? Number(match[2]) : NaN;
  if (base === undefined || !(bits >= 0 && bits <= 32)) {
    return fail(`${where}: "cidr" takes an IPv4 prefix such as "10.0.0.0/24", got ${JSON.stringify(value)}`);
  }
  const size = 2 ** (32 - bits);
  const start = Math.floor(base / size) * size;
  return (c) => {
    if (c.kind !== 'string') return false;
    const ip = ipv4(c.value);
    return ip !== undefined && ip >= start && ip < start + size;
  };
}

function numericTest(value: unknown, where: string): ValueTest {
  if (!Array.isArray(value) || value.length === 0 || value.length % 2 !== 0 || value.length > 4) {
    return fail(`${where}: "numeric" takes one or two [operator, number] pairs, got ${JSON.stringify(value)}`);
  }
  const checks: ((n: number) => boolean)[] = [];
  for (let i = 0; i < value.length; i += 2) {
    const op = value[i];
    const operand = value[i + 1];
    if (typeof operand !== 'number') return fail(`${where}: "numeric" operand must be a number, got ${JSON.stringify(operand)}`);
    const n = checkNumber(operand, where);
    switch (op) {
      case '=':
        checks.push((x) => x === n);
        break;
      case '<':
        checks.push((x) => x < n);
        break;
      case '<=':
        checks.push((x) => x <= n);
        break;
      case '>':
        checks.push((x) => x > n);
        break;
      case '>=':
        checks.push((x) => x >= n);
        break;
      default:
        return fail(`${where}: unknown numeric operator ${JSON.stringify(op)}; allowed: =, <, <=, >, >=`);
    }
  }
  if (value.length === 4 && (value[0] === '=' || value[2] === '=')) {
    return fail(`${where}: "=" cannot be combined with a second numeric comparison`);
  }
  return (c) => c.kind === 'number' && checks.every((check) => check(c.value));
}

function stringMatch(operand: { text: string; ignoreCase: boolean }, how: 'prefix' | 'suffix' | 'equals'): ValueTest {
  const wanted = operand.ignoreCase ? operand.text.toLowerCase() : operand.text;
  return (c) => {
    if (c.kind !== 'string') return false;
    const v = operand.ignoreCase ? c.value.toLowerCase() : c.value;
    return how === 'prefix' ? v.startsWith(wanted) : how === 'suffix' ? v.endsWith(wanted) : v === wanted;
  };
}

function anythingButTest(value: unknown, where: string): KeyTest {
  let excluded: ValueTest;
  if (Array.isArray(value)) {
    if (value.length === 0) return fail(`${where}: "anything-but" list must not be empty`);
    const tests = value.map((v) => {
      if (typeof v !== 'string' && typeof v !== 'number') return fail(`${where}: "anything-but" lists take strings or numbers, got ${JSON.stringify(v)}`);
      return literalTest(v, where);
    });
    excluded = (c) => tests.some((t) => t(c));
  } else if (isObject(value)) {
    const keys = Object.keys(value);
    const key = keys[0];
    if (keys.length !== 1 || (key !== 'prefix' && key !== 'suffix' && key !== 'equals-ignore-case')) {
      return fail(`${where}: "anything-but" takes a value, a list, or one of prefix / suffix / equals-ignore-case, got ${JSON.stringify(value)}`);
    }
    const operand = value[key];
    if (key === 'equals-ignore-case') {
      if (typeof operand !== 'string') return fail(`${where}: "equals-ignore-case" takes a string, got ${JSON.stringify(operand)}`);
      excluded = stringMatch({ text: operand, ignoreCase: true }, 'equals');
    } else {
      excluded = stringMatch(stringOperand(operand, key, where), key);
    }
  } else if (typeof value === 'string' || typeof value === 'number') {
    excluded = literalTest(value, where);
  } else {
    return fail(`${where}: "anything-but" takes a string, a number or a list, got ${JSON.stringify(value)}`);
  }
  return (found) => found.present && found.candidates.length > 0 && found.candidates.every((c) => !excluded(c));
}

function conditionTest(condition: unknown, where: string): KeyTest {
  if (!isObject(condition)) {
    const test = literalTest(condition, where);
    return (found) => found.candidates.some(test);
  }
  const keys = Object.keys(condition);
  if (keys.length !== 1) return fail(`${where}: a condition object has exactly one operator, got ${JSON.stringify(condition)}`);
  const operator = keys[0] as string;
  const operand = condition[operator];
  let test: ValueTest;
  switch (operator) {
    case 'exists':
      if (typeof operand !== 'boolean') return fail(`${where}: "exists" takes true or false, got ${JSON.stringify(operand)}`);
      return (found) => found.present === operand;
    case 'anything-but':
      return anythingButTest(operand, where);
    case 'prefix':
      test = stringMatch(stringOperand(operand, operator, where), 'prefix');
      break;
    case 'suffix':
      test = stringMatch(stringOperand(operand, operator, where), 'suffix');
      break;
    case 'equals-ignore-case':
      if (typeof operand !== 'string') return fail(`${where}: "equals-ignore-case" takes a string, got ${JSON.stringify(operand)}`);
      test = stringMatch({ text: operand, ignoreCase: true }, 'equals');
      break;
    case 'numeric':
      test = numericTest(operand, where);
      break;
    case 'cidr':
      test = cidrTest(operand, where);
      break;
    default:
      return fail(
        `${where}: unknown operator "${operator}"; allowed: exists, anything-but, prefix, suffix, equals-ignore-case, numeric, cidr`,
      );
  }
  return (found) => found.candidates.some(test);
}

type Lookup = (path: readonly string[]) => Found;
type PolicyTest = (lookup: Lookup) => boolean;

interface Compiled {
  readonly test: PolicyTest;
  readonly combinations: number;
  readonly keys: ReadonlySet<string>;
}

function compileObject(policy: Record<string, unknown>, path: readonly string[], nested: boolean): Compiled {
  const tests: PolicyTest[] = [];
  let combinations = 1;
  const keys = new Set<string>();
  const entries = Object.entries(policy);
  if (entries.length === 0) fail(`${path.join('.') || 'policy'}: an object in a filter policy must have at least one key`);
  for (const [key, value] of entries) {
    if (key === '$or') {
      if (!Array.isArray(value) || value.length < 2 || !value.every(isObject)) {
        fail(`${[...path, key].join('.')}: "$or" takes a list of at least two policy objects`);
      }
      const branches = (value as Record<string, unknown>[]).map((b) => compileObject(b, path, nested));
      tests.push((lookup) => branches.some((b) => b.test(lookup)));
      combinations *= branches.reduce((sum, b) => sum + b.combinations, 0);
      for (const b of branches) for (const k of b.keys) keys.add(k);
      continue;
    }
    const keyPath = [...path, key];
    const where = keyPath.join('.');
    if (Array.isArray(value)) {
      if (value.length === 0) fail(`${where}: the list of conditions must not be empty`);
      const conditions = value.map((c) => conditionTest(c, where));
      tests.push((lookup) => {
        const found = lookup(keyPath);
        return conditions.some((c) => c(found));
      });
      combinations *= value.length;
      keys.add(where);
    } else if (isObject(value)) {
      if (!nested) fail(`${where}: nested filter policies are allowed only with FilterPolicyScope MessageBody`);
      const inner = compileObject(value, keyPath, nested);
      tests.push(inner.test);
      combinations *= inner.combinations;
      for (const k of inner.keys) keys.add(k);
    } else {
      fail(`${where}: the value of a filter policy key must be a list of conditions, got ${JSON.stringify(value)}`);
    }
  }
  return { test: (lookup) => tests.every((t) => t(lookup)), combinations, keys };
}

function candidateOf(value: unknown): Candidate | undefined {
  if (typeof value === 'string') return { kind: 'string', value };
  if (typeof value === 'number') return { kind: 'number', value };
  if (typeof value === 'boolean') return { kind: 'boolean', value };
  if (value === null) return { kind: 'null' };
  return undefined;
}

function attributeLookup(attributes: FilterInput['attributes']): Lookup {
  return (path) => {
    const attribute = attributes.get(path[0] as string);
    if (!attribute || attribute.stringValue === undefined) return { present: false, candidates: [] };
    const base = attribute.dataType.split('.')[0];
    if (attribute.dataType === 'String.Array') {
      try {
        const parsed: unknown = JSON.parse(attribute.stringValue);
        const list = Array.isArray(parsed) ? parsed : [parsed];
        return { present: true, candidates: list.map(candidateOf).filter((c): c is Candidate => c !== undefined) };
      } catch {
        return { present: true, candidates: [] };
      }
    }
    if (base === 'Number') {
      const n = Number(attribute.stringValue);
      return { present: true, candidates: Number.isFinite(n) ? [{ kind: 'number', value: n }] : [] };
    }
    if (base === 'String') return { present: true, candidates: [{ kind: 'string', value: attribute.stringValue }] };
    return { present: false, candidates: [] };
  };
}

function bodyLookup(body: unknown): Lookup {
  return (path) => {
    let node: unknown = body;
    for (const key of path) {
      if (!isObject(node) || !Object.hasOwn(node, key)) return { present: false, candidates: [] };
      node = node[key];
    }
    const list = Array.isArray(node) ? node : [node];
    return { present: true, candidates: list.map(candidateOf).filter((c): c is Candidate => c !== undefined) };
  };
}

/**
 * Compiles a filter policy. Raises {@link FilterPolicyError} naming the problem when the
 * policy is not valid JSON, uses an unknown operator or exceeds the documented limits.
 */
export function compileFilterPolicy(text: string, scope: FilterPolicyScope): CompiledFilterPolicy {
  let policy: unknown;
  try {
    policy = JSON.parse(text);
  } catch (err) {
    return fail(`not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(policy)) return fail(`the policy must be a JSON object, got ${JSON.stringify(policy)}`);
  if (Buffer.byteLength(text, 'utf8') > 256 * 1024) return fail('the policy is larger than 256 KB');
  const compiled = compileObject(policy, [], scope === 'MessageBody');
  if (compiled.keys.size > MAX_KEYS) {
    fail(`the policy has ${compiled.keys.size} keys (${[...compiled.keys].join(', ')}); at most ${MAX_KEYS} are allowed`);
  }
  if (compiled.combinations > MAX_COMBINATIONS) {
    fail(`the policy has ${compiled.combinations} value combinations; at most ${MAX_COMBINATIONS} are allowed`);
  }
  return {
    scope,
    matches(message) {
      if (scope === 'MessageAttributes') return compiled.test(attributeLookup(message.attributes));
      let body: unknown;
      try {
        body = JSON.parse(message.body);
      } catch {
        return false;
      }
      return isObject(body) && compiled.test(bodyLookup(body));
    },
  };
}
