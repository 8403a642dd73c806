/** Test support: run the `pgfanout` command line in this process and capture what it prints. */
import { vi } from 'vitest';
import { COMMANDS, main } from '../functions/cli/main.ts';
import { LOCAL_COMMAND } from '../local/cli.ts';

export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Runs `pgfanout ...args` in this process; returns the exit code and its standard output and error. */
export async function runCli(...args: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  try {
    const code = await main(args, { local: LOCAL_COMMAND, ...COMMANDS });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}
