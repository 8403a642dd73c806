#!/usr/bin/env node
// The pgfanout command line (see `pgfanout --help`): the production commands and the dev-only `local`.
import { COMMANDS, main } from '../functions/cli/main.ts';
import { LOCAL_COMMAND } from '../local/cli.ts';

process.exitCode = await main(process.argv.slice(2), { local: LOCAL_COMMAND, ...COMMANDS });
