/**
 * Usage errors of `pgfanout redrive` and `pgfanout verify`: each names the option, the value and
 * what is allowed, and exits 2 before connecting anywhere (the URLs point at a closed port).
 */
import { describe, expect, it, vi } from 'vitest';
import { main } from './main.ts';

const NOWHERE = 'postgres://u@127.0.0.1:1/db';

async function cli(...args: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  try {
    return { code: await main(args), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe('pgfanout redrive usage', () => {
  it.each([
    [['--replica', `a=${NOWHERE}`, '--replica', `b=${NOWHERE}`], 'name exactly one --replica NAME=URL (got 2)'],
    [['--replica', `a=${NOWHERE}`, '--force'], '--force goes with --move'],
    [['--replica', `a=${NOWHERE}`, '--yes'], '--yes confirms --skip BATCH'],
    [['--replica', `a=${NOWHERE}`, '--skip', '4', '--yes'], '--source URL (the tables the skipped batch touched are compared with it) is required'],
    [['--replica', `a=${NOWHERE}`, '--timeout=-1'], '--timeout is "-1"; allowed: an integer >= 0'],
    [['--replica', `a=${NOWHERE}`, '--limit', 'ten'], '--limit is "ten"; allowed: an integer >= 1'],
  ])('%j is refused: %s', async (args, message) => {
    const { code, err } = await cli('redrive', ...args);
    expect(code).toBe(2);
    expect(err).toContain(message);
  });
});

describe('pgfanout verify usage', () => {
  it.each([
    [['--chunk-rows', '0'], '--chunk-rows is "0"; allowed: an integer >= 1'],
    [['--examples', '1.5'], '--examples is "1.5"; allowed: an integer >= 0'],
    [['--timeout', 'soon'], '--timeout is "soon"; allowed: an integer >= 0'],
  ])('%j is refused: %s', async (args, message) => {
    const { code, err } = await cli('verify', '--source', NOWHERE, '--replica', `a=${NOWHERE}`, ...args);
    expect(code).toBe(2);
    expect(err).toContain(message);
  });
});
