/**
 * PostgreSQL helpers shared by every part of pgfanout: connection settings and errors,
 * identifier quoting, stable text output, and the one table-name parser.
 */
export { clientConfigFromSecret, clientConfigFromUrl, redactUrl, connect, describeConnectError, type TlsMode } from './db.ts';
export { quoteIdent, qualified, setStableOutput } from './sql.ts';
export { parseTableName, type TableName } from './table-name.ts';
