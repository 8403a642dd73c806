#!/usr/bin/env node
// The pgfanout command line; see `pgfanout --help`.
import { main } from '../functions/cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
