/**
 * Signed messages end to end: the publisher process signs with the signing secret's current key
 * (read from the local endpoint's Secrets Manager), SNS hands the signature on to the replica
 * queue as message attributes, and the applier verifies it; a rotation in the middle of a
 * backlog loses nothing; a message sent straight into a replica queue without the key is refused
 * and applies nothing, and nothing behind it is applied past it.
 */
import { PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { waitForCatchUp } from '#local/command.ts';
import { newSigningKeyValue } from '#local/signing-key.ts';
import { statusReport } from '#ops/status.ts';
import { messageGroupId, SIGNATURE_ATTRIBUTES, signatureMatches } from '#core/wire';
import { waitFor } from '#testing/wait.ts';

let pipeline: Pipeline | undefined;

afterEach(async () => {
  await pipeline?.stop();
  pipeline = undefined;
});

async function start(): Promise<Pipeline> {
  const p = await Pipeline.start({ replicas: [{ name: 'a' }], startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 2 });
  for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query('CREATE TABLE public.t (id int PRIMARY KEY, note text)'));
  await withClient(p.sourceUrl, (c) => c.query(`SELECT pgfanout.add_table('public.t')`));
  return p;
}

const insert = (p: Pipeline, id: number) => withClient(p.sourceUrl, (c) => c.query('INSERT INTO public.t VALUES ($1, $2)', [id, `row ${id}`]));
const replicaIds = async (p: Pipeline) => (await withClient(p.replicas[0]!.url, (c) => c.query<{ id: number }>('SELECT id FROM public.t ORDER BY id'))).rows.map((r) => r.id);
const finishedBatch = async (p: Pipeline) => Number((await statusReport(p.sourceUrl, [], { prefix: 'pgfanout-local', endpoint: p.endpointUrl })).source.finishedBatchId ?? 0);

/** The messages waiting in replica a's queue, left where they are (received with a zero visibility timeout). */
async function peek(p: Pipeline): Promise<Message[]> {
  const out = await p.sqs.send(
    new ReceiveMessageCommand({ QueueUrl: p.replicas[0]!.queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 0, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }),
  );
  return out.Messages ?? [];
}

describe('signed messages', () => {
  it('are signed by the publisher with the current key and applied; a rotation between two batches waiting in the queue loses neither', async () => {
    pipeline = await start();
    const p = pipeline;
    p.startPublisher();
    await insert(p, 1);
    await waitForCatchUp(p, 60_000);
    expect(await replicaIds(p)).toEqual([1]);

    // Two batches wait in the queue, one signed before a rotation and one after it.
    await p.replicas[0]!.stopRunner();
    const before = await p.signingKeys().current();
    await insert(p, 2);
    const first = await waitFor('the batch of row 2 to be published', async () => (await peek(p)).length === 1 && (await peek(p)));
    const rotated = await p.secretsManager.send(new PutSecretValueCommand({ SecretId: p.signingKeySecret, SecretString: newSigningKeyValue() }));
    // A publisher started after the rotation reads the new key (a running one within its cache's five minutes).
    await p.stopPublisher();
    p.startPublisher();
    await insert(p, 3);
    const both = await waitFor('the batch of row 3 to be published', async () => {
      const messages = await peek(p);
      return messages.length === 2 && messages;
    });
    expect(both[0]!.Body).toBe(first[0]!.Body);
    const keyIds = both.map((m) => m.MessageAttributes?.[SIGNATURE_ATTRIBUTES.keyId]?.StringValue);
    expect(keyIds).toEqual([before.id, rotated.VersionId]);
    // What arrives in the queue is the body the publisher signed, with its signature beside it.
    const after = await p.signingKeys().current();
    expect(after.id).toBe(rotated.VersionId);
    for (const [m, key] of [[both[0]!, before], [both[1]!, after]] as const) {
      expect(signatureMatches(m.Body as string, key.key, m.MessageAttributes?.[SIGNATURE_ATTRIBUTES.signature]?.StringValue as string)).toBe(true);
    }

    // The applier accepts the batch signed with the now previous key, then the one with the new key.
    p.replicas[0]!.startRunner();
    await waitForCatchUp(p, 60_000);
    expect(await replicaIds(p)).toEqual([1, 2, 3]);
    expect(p.replicas[0]!.handler.applier.failureCounts).toEqual({ transient: 0, permanent: 0 });
  });

  it('refuses a message sent straight into the replica queue without the key: it applies nothing, stops the stream there, and the stream resumes once it is removed', async () => {
    pipeline = await start();
    const p = pipeline;
    p.startPublisher();
    await insert(p, 1);
    await waitForCatchUp(p, 60_000);
    const applied = await finishedBatch(p);

    // Someone allowed to send to the queue injects the next batch of the source's stream: a row the
    // source never wrote (a schema change would be refused anyway on a replica that does not allow them).
    const forged = JSON.stringify({
      pgfanout: 1,
      source: p.sourceId,
      batch: String(applied + 1),
      prev: String(applied),
      part: 0,
      changes: [{ op: 'I', schema: 'public', table: 't', txid: '1', new: { id: '999', note: 'forged' } }],
      final: true,
      count: 1,
    });
    const queueUrl = p.replicas[0]!.queueUrl;
    await p.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: forged, MessageGroupId: messageGroupId(p.sourceId), MessageDeduplicationId: 'forged-1' }));
    // The source's real next batch arrives behind it in the same group.
    await insert(p, 2);
    await waitFor('the batch of row 2 to be published', async () => (await finishedBatch(p)) > applied);

    const applier = p.replicas[0]!.handler.applier;
    await waitFor('the forged message to be refused twice', () => applier.failureCounts.permanent >= 2, 60_000);
    expect(applier.lastFailure).toMatchObject({ kind: 'permanent', code: 'UNAUTHENTICATED_MESSAGE' });
    expect(applier.lastFailure?.message).toMatch(
      new RegExp(`^replica refuses message \\S+ \\(claiming batch "${applied + 1}", part 0, source "${p.sourceId}"\\), key id \\(none\\): it is not signed`),
    );
    // Nothing of it ran, and nothing behind it was applied past it.
    expect(await replicaIds(p)).toEqual([1]);

    // An operator removes it; the stream resumes in order by itself.
    await p.replicas[0]!.stopRunner();
    const removed = await waitFor('the forged message to be received and deleted', async () => {
      const out = await p.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 30 }));
      let found = false;
      for (const m of out.Messages ?? []) {
        if (m.Body === forged) {
          await p.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
          found = true;
        } else {
          await p.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 }));
        }
      }
      return found;
    }, 60_000);
    expect(removed).toBe(true);
    p.replicas[0]!.startRunner();
    await waitForCatchUp(p, 60_000);
    expect(await replicaIds(p)).toEqual([1, 2]);
  });
});
