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
queue + dead-letter queue per replica, the publisher and one Lambda-style applier per
replica, runs a workload and shows, every second, where each replica stands. Prints the
database URLs (password hidden), the log file and a legend at start. Ctrl-C at any
moment stops everything and removes what this run started (exit code 130).

With your own databases it does only what you ask: no workload unless named, nothing
installed; it captures --tables on the source, checks every replica (pgfanout installed,
tables present, bootstrapped) and, when one is not ready, says what to run and exits 1.
The built-in endpoint then keeps its state in a file between runs (--state).

Options:
  --source URL            use your own source database (pgfanout installed on it)
  --replica NAME=URL      use your own replica database (repeatable; needs --source)
  --tables T1,T2          tables to capture (default: the workload's tables)
  --workload KIND         none | demo | pgbench (default: demo with local servers,
                          none with your own databases)
  --duration SECONDS      stop by itself after this long (default: run until Ctrl-C)
  --verify                at the end, compare source and every replica row by row;
                          exit 1 on any difference
  --major N               PostgreSQL major of the local servers: 13, 15 or 18 (default 18)
  --log FILE              publisher and applier logs (default: a new file in the temp folder)
  --state FILE            with your own --source and --replica databases: the built-in
                          endpoint's state (default ~/.pgfanout/local/endpoint-SOURCE_ID.json)
  -h, --help              show this help`,
  run: async (args) => (await import('./command.ts')).localCommand(args),
};
