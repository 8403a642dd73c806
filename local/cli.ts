/**
 * The dev-only `pgfanout local` command, registered by `bin/pgfanout.ts` beside the production
 * commands (the command line itself knows nothing of `local/`). Its work is loaded on use.
 */
import type { Command } from '../functions/cli/main.ts';

export const LOCAL_COMMAND: Command = {
  summary: 'run the whole pipeline on this machine (databases, SNS/SQS endpoint, publisher, appliers)',
  usage: `pgfanout local [options]

Starts a source and two replica PostgreSQL servers (or uses --source/--replica URLs),
an SNS/SQS endpoint (or AWS_ENDPOINT_URL, e.g. LocalStack), the topic and one FIFO
queue + dead-letter queue per replica, installs pgfanout, starts the publisher and one
Lambda-style applier per replica, runs a workload and shows a status line per replica.
Ctrl-C stops everything cleanly.

Options:
  --source URL            use an existing source database
  --replica NAME=URL      use an existing replica database (repeatable)
  --tables T1,T2          tables to replicate (default: the workload's tables)
  --workload KIND         none | demo | pgbench (default: demo)
  --duration SECONDS      stop by itself after this long (default: run until Ctrl-C)
  --verify                at the end, compare source and every replica row by row;
                          exit 1 on any difference
  --major N               PostgreSQL major of the local servers: 13, 15 or 18 (default 18)
  -h, --help              show this help`,
  run: async (args) => (await import('./command.ts')).localCommand(args),
};
