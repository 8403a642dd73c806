/**
 * The endpoint's Lambda event source mappings through the real Lambda SDK client: the
 * operations `pgfanout pause|resume` and the local runner use, their states and errors as the
 * Lambda API reference documents them
 * (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html,
 * https://docs.aws.amazon.com/lambda/latest/api/API_GetEventSourceMapping.html).
 */
import {
  CreateEventSourceMappingCommand,
  GetEventSourceMappingCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
  ResourceConflictException,
  ResourceNotFoundException,
  UpdateEventSourceMappingCommand,
} from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Endpoint, startEndpoint } from '../index.ts';

let endpoint: Endpoint;
let lambda: LambdaClient;
const QUEUE_ARN = 'arn:aws:sqs:us-east-1:000000000000:pgfanout-local-a.fifo';

beforeAll(async () => {
  endpoint = await startEndpoint({ port: 0 });
  lambda = new LambdaClient({ endpoint: endpoint.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
});

afterAll(async () => {
  lambda.destroy();
  await endpoint.close();
});

describe('Lambda event source mappings on the local endpoint', () => {
  it('creates, lists by queue ARN, disables and enables a mapping, replying with the transitional state', async () => {
    const created = await lambda.send(new CreateEventSourceMappingCommand({ FunctionName: 'applier-a', EventSourceArn: QUEUE_ARN, BatchSize: 10 }));
    expect(created).toMatchObject({ State: 'Creating', EventSourceArn: QUEUE_ARN, FunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:applier-a', BatchSize: 10 });
    const uuid = created.UUID as string;
    const listed = await lambda.send(new ListEventSourceMappingsCommand({ EventSourceArn: QUEUE_ARN }));
    expect(listed.EventSourceMappings?.map((m) => m.UUID)).toEqual([uuid]);
    expect((await lambda.send(new ListEventSourceMappingsCommand({ EventSourceArn: `${QUEUE_ARN}x` }))).EventSourceMappings).toEqual([]);

    const disabling = await lambda.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: false }));
    expect(disabling.State).toBe('Disabling');
    expect((await lambda.send(new GetEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Disabled');
    const enabling = await lambda.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: true }));
    expect(enabling.State).toBe('Enabling');
    expect((await lambda.send(new GetEventSourceMappingCommand({ UUID: uuid }))).State).toBe('Enabled');
  });

  it('refuses a second mapping of the same queue to the same function, and names an unknown UUID as not found', async () => {
    await lambda.send(new CreateEventSourceMappingCommand({ FunctionName: 'applier-b', EventSourceArn: `${QUEUE_ARN}-b` }));
    await expect(lambda.send(new CreateEventSourceMappingCommand({ FunctionName: 'applier-b', EventSourceArn: `${QUEUE_ARN}-b` }))).rejects.toBeInstanceOf(ResourceConflictException);
    await expect(lambda.send(new GetEventSourceMappingCommand({ UUID: '00000000-0000-0000-0000-000000000000' }))).rejects.toBeInstanceOf(ResourceNotFoundException);
    await expect(lambda.send(new UpdateEventSourceMappingCommand({ UUID: '00000000-0000-0000-0000-000000000000', Enabled: false }))).rejects.toBeInstanceOf(ResourceNotFoundException);
  });
});
