/**
 * Test support: the `pgfanout` command line run as users run it, `node bin/pgfanout.ts …` in
 * a process of its own, with what it prints and its exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/pgfanout.ts', import.meta.url));

export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export interface CliOptions {
  /** Variables added to (or, when undefined, removed from) this process's environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
}

function environment(options: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** A running `pgfanout` process: its output so far, a way to wait for text in it, and its end. */
export interface CliProcess {
  readonly child: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves when standard output or error contains `text` (rejects if the process ends first). */
  waitFor(text: string | RegExp): Promise<void>;
  /** Resolves with the exit code and everything printed. */
  readonly done: Promise<CliRun>;
}

/** Starts `pgfanout ...args` as its own process. */
export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], { env: environment(options), cwd: options.cwd ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { test: (s: string) => boolean; resolve: () => void; reject: (e: Error) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (w.test(out + err)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    check();
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    check();
  });
  const done = new Promise<CliRun>((resolve) => {
    child.on('close', (code, signal) => {
      for (const w of waiters.splice(0)) w.reject(new Error(`pgfanout ${args.join(' ')} ended (${signal ?? code}) before printing the awaited text:\n${out}\n${err}`));
      // As printed, without the newline that ends the last line.
      resolve({ code: code ?? (signal ? 128 : 1), out: out.replace(/\n$/, ''), err: err.replace(/\n$/, '') });
    });
  });
  return {
    child,
    out: () => out,
    err: () => err,
    done,
    waitFor(text) {
      const test = (s: string) => (typeof text === 'string' ? s.includes(text) : text.test(s));
      if (test(out + err)) return Promise.resolve();
      if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`pgfanout ${args.join(' ')} has ended:\n${out}\n${err}`));
      return new Promise((resolve, reject) => waiters.push({ test, resolve, reject }));
    },
  };
}

/** Runs `pgfanout ...args` to its end; returns the exit code and its standard output and error. */
export async function runCli(...args: string[]): Promise<CliRun> {
  return startCli(args).done;
}

/** `runCli` with environment changes or another working folder. */
export async function runCliWith(options: CliOptions, ...args: string[]): Promise<CliRun> {
  return startCli(args, options).done;
}

/**
 * `startCli` for one test file: a run still going when its test ends (the test failed or timed
 * out) is stopped with Ctrl-C, as a user would, and awaited before the next test.
 */
export function startCliStoppedAfterEach(): typeof startCli {
  const started: CliProcess[] = [];
  afterEach(async () => {
    for (const run of started.splice(0)) {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGINT');
      await run.done;
    }
  });
  return (args, options) => {
    const run = startCli(args, options);
    started.push(run);
    return run;
  };
}
