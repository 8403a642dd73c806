/**
 * Planning of statements over a run of UPDATEs on a DEFERRABLE key (snapshotCuts): where one
 * statement, matching against the table as it was before it, gives what the source's statements
 * did. Keys here are small numbers standing for classes of equal values; `held` are those a row
 * of the table holds before the run.
 */
import { describe, expect, it } from 'vitest';
import { snapshotCuts, type KeyClasses } from './statements.ts';

/** The run's changes `[old, new]`, with `held` the keys rows hold before the run. */
function run(held: readonly number[], changes: readonly [number, number][]): KeyClasses[] {
  return changes.map(([o, n]) => ({ o, n, oh: held.includes(o), nh: held.includes(n) }));
}

describe('snapshotCuts', () => {
  it('keeps a swap and a shift in one statement', () => {
    expect(snapshotCuts(run([1, 2], [[1, 2], [2, 1]]))).toEqual([]);
    expect(snapshotCuts(run([1, 2, 3], [[1, 2], [2, 3], [3, 4]]))).toEqual([]);
    expect(snapshotCuts(run([1, 2, 3], [[3, 4], [2, 3], [1, 2]]))).toEqual([]);
  });

  it('cuts before a change of the row an earlier change moved onto a free key', () => {
    expect(snapshotCuts(run([1], [[1, 2], [2, 3]]))).toEqual([1]);
    // One row's key changed twice.
    expect(snapshotCuts(run([5], [[5, 5], [5, 5], [5, 6]]))).toEqual([1, 2]);
  });

  it('cuts where the keys are unique again, after the row the change needs and before the next writer of its key', () => {
    // 8 → 7, then a shift that meets 6 → 7 before 7 → 8: the statement boundary is after 8 → 7.
    expect(snapshotCuts(run([1, 2, 3, 4, 5, 6, 8], [[8, 7], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6], [6, 7], [7, 8]]))).toEqual([1]);
    // A shift that writes 8 in its middle, then a change of that row: the boundary is after the shift.
    expect(snapshotCuts(run([1, 2, 7], [[1, 2], [7, 8], [2, 3], [8, 9]]))).toEqual([3]);
  });
});
