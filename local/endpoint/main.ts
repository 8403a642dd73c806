/**
 * Runs the local SNS + SQS endpoint as a process of its own, for tools that reach it
 * through `AWS_ENDPOINT_URL`:
 *
 *   node_modules/.bin/node local/endpoint/main.ts [--port 4566] [--host 127.0.0.1] [--persist FILE] [--region us-east-1]
 *
 * Prints the URL once it listens; SIGINT or SIGTERM closes it (saving the state with
 * --persist).
 */
import { parseArgs } from 'node:util';
import { startEndpoint } from './index.ts';

const usage = 'usage: local/endpoint/main.ts [--port N] [--host ADDRESS] [--persist FILE] [--region REGION] [--account-id 12-DIGITS]';

let values: { port?: string; host?: string; persist?: string; region?: string; 'account-id'?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      persist: { type: 'string' },
      region: { type: 'string' },
      'account-id': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  console.error(`${(error as Error).message}\n${usage}`);
  process.exit(2);
}
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const port = values.port === undefined ? 4566 : Number(values.port);
if (!/^\d+$/.test(values.port ?? '4566')) {
  console.error(`--port must be a number from 0 to 65535, got "${values.port}"\n${usage}`);
  process.exit(2);
}

try {
  const endpoint = await startEndpoint({
    port,
    ...(values.host ? { host: values.host } : {}),
    ...(values.persist ? { persistFile: values.persist } : {}),
    ...(values.region ? { region: values.region } : {}),
    ...(values['account-id'] ? { accountId: values['account-id'] } : {}),
  });
  console.log(`pgfanout local SNS/SQS endpoint listening at ${endpoint.url} (region ${endpoint.region}, account ${endpoint.accountId})`);
  const stop = (): void => {
    endpoint.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`closing the endpoint failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}
