import { describe, expect, it } from 'vitest';
import { classifyDatabaseError, DatabaseError, describeValue, GapError, isTransientSqlState, MalformedMessageError, PgfanoutError, TransientDatabaseError } from './errors.ts';

describe('classifyDatabaseError', () => {
  it.each([
    ['40001', 'serialization failure'],
    ['40P01', 'deadlock'],
    ['08006', 'connection failure'],
    ['57P01', 'admin shutdown'],
    ['53300', 'too many connections'],
    ['55P03', 'lock not available'],
    ['25006', 'read-only transaction after a failover'],
  ])('treats SQLSTATE %s (%s) as transient', (code) => {
    const error = classifyDatabaseError(Object.assign(new Error('boom'), { code }), 'applying');
    expect(error).toBeInstanceOf(TransientDatabaseError);
    expect(error).toMatchObject({ code: 'DB_TRANSIENT', permanent: false, sqlState: code });
    expect(error.message).toBe(`applying: boom [SQLSTATE ${code}]`);
  });

  it.each([
    ['23505', 'unique violation'],
    ['22001', 'string too long'],
    ['22P02', 'invalid text representation'],
    ['42703', 'undefined column'],
    ['42501', 'insufficient privilege'],
  ])('treats SQLSTATE %s (%s) as permanent', (code) => {
    const error = classifyDatabaseError(Object.assign(new Error('bad'), { code, detail: 'Key (id)=(1) already exists.' }), 'applying');
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ code: 'DB_ERROR', permanent: true, sqlState: code });
    expect(error.message).toContain('(Key (id)=(1) already exists.)');
  });

  it('treats client-side connection loss as transient and keeps the cause', () => {
    const cause = new Error('Connection terminated unexpectedly');
    const error = classifyDatabaseError(cause, 'applying');
    expect(error).toBeInstanceOf(TransientDatabaseError);
    expect(error.cause).toBe(cause);
    expect(classifyDatabaseError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'x').permanent).toBe(false);
  });

  it('passes pgfanout errors through unchanged', () => {
    const gap = new GapError('s', 'batch 2', 'batch 4');
    expect(classifyDatabaseError(gap, 'x')).toBe(gap);
    const malformed = new MalformedMessageError('part', '-1', 'an integer');
    expect(classifyDatabaseError(malformed, 'x')).toBe(malformed);
    expect(malformed).toBeInstanceOf(PgfanoutError);
  });

  it('isTransientSqlState knows nothing about undefined', () => {
    expect(isTransientSqlState(undefined)).toBe(false);
    expect(isTransientSqlState('XX000')).toBe(true);
    expect(isTransientSqlState('P0001')).toBe(false);
  });
});

describe('describeValue', () => {
  it('describes values briefly and never whole', () => {
    expect(describeValue(undefined)).toBe('missing');
    expect(describeValue('x')).toBe('"x"');
    expect(describeValue([1, 2])).toBe('an array of 2');
    expect(describeValue({})).toBe('an object');
    expect(describeValue('y'.repeat(500))).toMatch(/^"y{79}… \(502 characters\)$/);
  });
});
