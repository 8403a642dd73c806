/**
 * SNS filter policies (SNS Developer Guide, "Amazon SNS message filtering" and "Filter
 * policy constraints in Amazon SNS").
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileFilterPolicy, FilterPolicyError } from './filter-policy.ts';

type Attributes = Record<string, { dataType: string; stringValue: string }>;

function matches(policy: unknown, attributes: Attributes): boolean {
  return compileFilterPolicy(JSON.stringify(policy), 'MessageAttributes').matches({ attributes: new Map(Object.entries(attributes)), body: '' });
}

const s = (stringValue: string) => ({ dataType: 'String', stringValue });
const n = (value: number) => ({ dataType: 'Number', stringValue: String(value) });

describe('attribute filter policies', () => {
  it('exact string values are OR-ed within a key and keys are AND-ed', () => {
    const policy = { table: ['orders', 'items'], op: ['I'] };
    expect(matches(policy, { table: s('items'), op: s('I') })).toBe(true);
    expect(matches(policy, { table: s('items'), op: s('D') })).toBe(false);
    expect(matches(policy, { table: s('other'), op: s('I') })).toBe(false);
    expect(matches(policy, { op: s('I') })).toBe(false);
  });

  it('string matching is case-sensitive; equals-ignore-case is not', () => {
    expect(matches({ t: ['Orders'] }, { t: s('orders') })).toBe(false);
    expect(matches({ t: [{ 'equals-ignore-case': 'Orders' }] }, { t: s('oRDERS') })).toBe(true);
  });

  it('prefix and suffix', () => {
    expect(matches({ t: [{ prefix: 'public.' }] }, { t: s('public.orders') })).toBe(true);
    expect(matches({ t: [{ suffix: '.orders' }] }, { t: s('public.orders') })).toBe(true);
    expect(matches({ t: [{ prefix: 'sales.' }] }, { t: s('public.orders') })).toBe(false);
  });

  it('anything-but needs the attribute present and not matching', () => {
    const policy = { t: [{ 'anything-but': ['a', 'b'] }] };
    expect(matches(policy, { t: s('c') })).toBe(true);
    expect(matches(policy, { t: s('a') })).toBe(false);
    expect(matches(policy, {})).toBe(false);
    expect(matches({ t: [{ 'anything-but': { prefix: 'audit.' } }] }, { t: s('audit.log') })).toBe(false);
  });

  it('numeric comparisons apply to Number attributes only', () => {
    const policy = { rows: [{ numeric: ['>', 0, '<=', 100] }] };
    expect(matches(policy, { rows: n(100) })).toBe(true);
    expect(matches(policy, { rows: n(0) })).toBe(false);
    expect(matches(policy, { rows: s('50') })).toBe(false);
    expect(matches({ rows: [5] }, { rows: n(5) })).toBe(true);
  });

  it('exists: true needs the attribute, exists: false its absence', () => {
    expect(matches({ t: [{ exists: true }] }, { t: s('x') })).toBe(true);
    expect(matches({ t: [{ exists: false }] }, {})).toBe(true);
    expect(matches({ t: [{ exists: false }] }, { t: s('x') })).toBe(false);
  });

  it('String.Array attributes match when any element matches', () => {
    expect(matches({ tags: ['b'] }, { tags: { dataType: 'String.Array', stringValue: '["a","b"]' } })).toBe(true);
    expect(matches({ tags: ['c'] }, { tags: { dataType: 'String.Array', stringValue: '["a","b"]' } })).toBe(false);
  });

  it('Binary attributes do not take part in filtering', () => {
    expect(matches({ b: [{ exists: true }] }, { b: { dataType: 'Binary', stringValue: undefined as unknown as string } })).toBe(false);
  });

  it('$or matches when any branch matches', () => {
    const policy = { $or: [{ t: ['a'] }, { op: ['D'] }] };
    expect(matches(policy, { t: s('x'), op: s('D') })).toBe(true);
    expect(matches(policy, { t: s('x'), op: s('I') })).toBe(false);
  });

  it('cidr matches IPv4 addresses in the prefix', () => {
    expect(matches({ ip: [{ cidr: '10.0.0.0/24' }] }, { ip: s('10.0.0.200') })).toBe(true);
    expect(matches({ ip: [{ cidr: '10.0.0.0/24' }] }, { ip: s('10.0.1.1') })).toBe(false);
  });

  it('a key with a single exact value matches exactly that string (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (wanted, actual) => {
        expect(matches({ k: [wanted] }, { k: s(actual) })).toBe(wanted === actual);
        expect(matches({ k: [{ 'anything-but': wanted }] }, { k: s(actual) })).toBe(wanted !== actual);
      }),
    );
  });
});

describe('body filter policies', () => {
  it('nested keys follow the JSON body; arrays match when any element matches', () => {
    const policy = compileFilterPolicy(JSON.stringify({ change: { op: ['U'], tables: ['orders'] } }), 'MessageBody');
    const body = (value: unknown) => ({ attributes: new Map(), body: JSON.stringify(value) });
    expect(policy.matches(body({ change: { op: 'U', tables: ['items', 'orders'] } }))).toBe(true);
    expect(policy.matches(body({ change: { op: 'I', tables: ['orders'] } }))).toBe(false);
    expect(policy.matches({ attributes: new Map(), body: 'not json' })).toBe(false);
  });
});

describe('policy constraints', () => {
  const invalid = (policy: unknown, scope: 'MessageAttributes' | 'MessageBody' = 'MessageAttributes') => {
    try {
      compileFilterPolicy(typeof policy === 'string' ? policy : JSON.stringify(policy), scope);
    } catch (error) {
      expect(error).toBeInstanceOf(FilterPolicyError);
      return (error as Error).message;
    }
    throw new Error('expected the policy to be refused');
  };

  it('"A filter policy can have a maximum of five keys"', () => {
    expect(invalid({ a: ['1'], b: ['1'], c: ['1'], d: ['1'], e: ['1'], f: ['1'] })).toContain('6 keys');
  });

  it('"The total combination of values in a filter policy must not exceed 150"', () => {
    const values = (count: number) => Array.from({ length: count }, (_, i) => String(i));
    expect(invalid({ a: values(10), b: values(16) })).toContain('160 value combinations');
    expect(() => compileFilterPolicy(JSON.stringify({ a: values(10), b: values(15) }), 'MessageAttributes')).not.toThrow();
  });

  it('numbers are limited to -10^9 to 10^9', () => {
    expect(invalid({ a: [{ numeric: ['>', 1e10] }] })).toContain('-1000000000 to 1000000000');
  });

  it('nested policies are refused for attribute scope', () => {
    expect(invalid({ a: { b: ['x'] } })).toContain('nested filter policies are allowed only with FilterPolicyScope MessageBody');
  });

  it('invalid JSON and unknown operators are named', () => {
    expect(invalid('{not json')).toContain('not valid JSON');
    expect(invalid({ a: [{ wildcard: 'x*' }] })).toContain('unknown operator "wildcard"');
  });
});
