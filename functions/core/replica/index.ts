/**
 * The applier's side of the core: applies one message to a replica exactly once and in order
 * (position, catalog, statements, planning, split values, table filter, conflicts, schema
 * changes), talking to pgfanout's replica_* tables only through the protocol's SQL functions
 * (protocol.ts, which the operator tools use too). Nothing on the publisher side imports this folder.
 */
export { applyMessage, Applier, type ApplyOptions, type ApplyResult, type Planning } from './apply.ts';
export { replicaPosition, type ReplicaPosition } from './protocol.ts';
export { replicaCatalog, ReplicaCatalog } from './catalog.ts';
export { TableFilter } from './filter.ts';
export { ORIGIN_SETTING, type ReplicaTriggers, type ReplicationRole } from './session.ts';
export { CONFLICT_MODES, type ConflictMode, type ConflictKind } from './conflicts.ts';
