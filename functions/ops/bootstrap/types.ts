/** What a bootstrap is asked to do, what it reports while it runs, and what it returns. */
import type { TableRef } from '../verify.ts';

/** Something that happened during a bootstrap, for callers that watch it (tests, UIs). */
export type BootstrapEvent =
  | { readonly kind: 'snapshot'; readonly batchId: string; readonly resumed: boolean }
  | { readonly kind: 'table-start'; readonly table: string; readonly attempt: number }
  | { readonly kind: 'table-progress'; readonly table: string; readonly rows: number; readonly bytes: number }
  | { readonly kind: 'table-done'; readonly table: string; readonly rows: number }
  | { readonly kind: 'table-retry'; readonly table: string; readonly attempt: number; readonly error: string };

export interface BootstrapOptions {
  readonly sourceUrl: string;
  /** The replica's name, for messages. */
  readonly replicaName: string;
  readonly replicaUrl: string;
  /** Tables to copy (each must be captured on the source). @default every table of pgfanout.show_tables() */
  readonly tables?: readonly TableRef[];
  /** Tables copied at once, each with its own source and replica session. @default 1 */
  readonly jobs?: number;
  /** Empty replica tables that hold rows, and re-bootstrap a replica that already follows the source. @default false */
  readonly force?: boolean;
  /**
   * Where the role may not set session_replication_role (the origin guard), existing replica
   * tables' own triggers fire on the copied rows: `refuse` stops before anything changes, naming
   * them; `fire` lets them. @default 'refuse'
   */
  readonly replicaTriggers?: 'refuse' | 'fire';
  /** Receives progress lines. @default discarded */
  readonly log?: (line: string) => void;
  /** Receives structured events. */
  readonly onEvent?: (event: BootstrapEvent) => void;
  /** How often a progress line is written per table being copied (ms). @default 2000 */
  readonly progressEveryMs?: number;
  /** Attempts per table when copies fail for transient reasons. @default 5 */
  readonly attemptsPerTable?: number;
  /** Delay before the first retry of a table, doubled each time (ms). @default 1000 */
  readonly retryDelayMs?: number;
  /**
   * Called once the snapshot is taken, before the replica's tables are prepared (emptied) and
   * copied, e.g. to pause the replica's applier; {@link resume} is then called once when the
   * bootstrap ends, whether it recorded the position or failed. Give both or neither.
   */
  readonly pause?: () => Promise<void> | void;
  /** Called once after {@link pause}, when the bootstrap ends (recorded or failed). */
  readonly resume?: () => Promise<void> | void;
  /** Stops the bootstrap; what was copied stays recorded for the next run. */
  readonly signal?: AbortSignal;
}

/** One copied table. */
export interface CopiedTable {
  readonly table: string;
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
  /** Created on the replica from the source's definition. */
  readonly created: boolean;
  /** Copies started (more than 1 after transient failures). */
  readonly attempts: number;
}

export interface BootstrapResult {
  readonly sourceId: string;
  /** The replica holds batches 1..batchId; the applier starts after it. */
  readonly batchId: string;
  /** True when an interrupted bootstrap's snapshot was still there and its copied tables were kept. */
  readonly resumed: boolean;
  /** True when an interrupted bootstrap was found whose snapshot was gone, so everything was copied again. */
  readonly restarted: boolean;
  readonly tables: readonly CopiedTable[];
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
}
