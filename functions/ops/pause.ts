/**
 * Pausing and resuming a replica: its applier's event source mapping is disabled or enabled
 * (Lambda UpdateEventSourceMapping). A disabled mapping stops polling; the replica's changes
 * wait in its queue (retention 14 days) and nothing is received, so nothing counts towards
 * maxReceiveCount; enabled again, it resumes where it stopped
 * (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html).
 * Invocations already running finish first. The mapping is found by the replica queue's ARN,
 * so the same code works on AWS, LocalStack and the local endpoint.
 */
import { ListEventSourceMappingsCommand, UpdateEventSourceMappingCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { GetQueueAttributesCommand, GetQueueUrlCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { resourceNames } from '#core/config.ts';
import { OPS_ERROR_CODES, OpsError } from './errors.ts';

export interface MappingState {
  readonly uuid: string;
  readonly functionArn: string;
  /** The state Lambda reported after the update (e.g. Disabling, Enabling). */
  readonly state: string;
}

/** The ARN of replica `replica`'s queue under `prefix`. */
async function replicaQueueArn(sqs: SQSClient, prefix: string, replica: string): Promise<string> {
  const name = resourceNames(prefix, replica).queue;
  let url: string | undefined;
  try {
    url = (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch (err) {
    throw new OpsError(OPS_ERROR_CODES.notFound, `replica ${replica}: queue ${name} not found (${(err as Error).message}); check --prefix and the replica's name`, err);
  }
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new OpsError(OPS_ERROR_CODES.notFound, `replica ${replica}: queue ${name} has no QueueArn attribute`);
  return arn;
}

/**
 * Enables or disables every event source mapping that reads replica `replica`'s queue.
 * Throws when there is none (the replica's applier is not deployed, or the prefix is wrong).
 */
export async function setReplicaEnabled(
  clients: { readonly sqs: SQSClient; readonly lambda: LambdaClient },
  prefix: string,
  replica: string,
  enabled: boolean,
): Promise<MappingState[]> {
  const queueArn = await replicaQueueArn(clients.sqs, prefix, replica);
  const uuids: string[] = [];
  let marker: string | undefined;
  do {
    const page = await clients.lambda.send(new ListEventSourceMappingsCommand({ EventSourceArn: queueArn, ...(marker ? { Marker: marker } : {}) }));
    for (const m of page.EventSourceMappings ?? []) if (m.UUID) uuids.push(m.UUID);
    marker = page.NextMarker;
  } while (marker);
  if (uuids.length === 0) throw new OpsError(OPS_ERROR_CODES.notFound, `replica ${replica}: no event source mapping reads ${queueArn}; is the replica's applier deployed (or pgfanout local running)?`);
  const states: MappingState[] = [];
  for (const uuid of uuids) {
    const out = await clients.lambda.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: enabled }));
    states.push({ uuid, functionArn: out.FunctionArn ?? '', state: out.State ?? '' });
  }
  return states;
}
