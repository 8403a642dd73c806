/**
 * pgfanout's local SNS + SQS endpoint: the part of SNS (query protocol) and SQS (AWS JSON
 * 1.0) that pgfanout uses, on one HTTP port, behaving as AWS documents it, so that the
 * same publisher and applier code runs against it, LocalStack or AWS with nothing
 * changed but the endpoint URL. Development and test tooling; never deployed.
 *
 * ```ts
 * const endpoint = await startEndpoint({ port: 0 });
 * const sqs = new SQSClient({ endpoint: endpoint.url, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
 * // …
 * await endpoint.close();
 * ```
 */
export { startEndpoint, type Endpoint } from './server.ts';
export { ManualClock } from './clock.ts';
export { EndpointOptionError, PersistenceError } from './errors.ts';
