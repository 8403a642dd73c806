/**
 * Secrets Manager conformance of the local endpoint, through the real
 * `@aws-sdk/client-secrets-manager` over HTTP (AWS JSON 1.1). Each test names the documented
 * behaviour it checks (Secrets Manager API reference: CreateSecret, GetSecretValue,
 * PutSecretValue; error shapes from the model in @aws-sdk/client-secrets-manager).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  InvalidParameterException,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Endpoint, startEndpoint } from './index.ts';
import { rejection, sdkClients } from './testing.ts';

let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let sm: SecretsManagerClient;
let counter = 0;

beforeAll(async () => {
  endpoint = await startEndpoint({ port: 0, region: 'eu-west-1', accountId: '123456789012' });
  clients = sdkClients(endpoint.url, 'eu-west-1');
  sm = clients.secretsManager;
});

afterAll(async () => {
  clients.destroy();
  await endpoint.close();
});

function unique(prefix: string): string {
  counter += 1;
  return `${prefix}/${process.pid}-${counter}`;
}

const get = (SecretId: string, more: { VersionStage?: string; VersionId?: string } = {}) => sm.send(new GetSecretValueCommand({ SecretId, ...more }));

describe('CreateSecret', () => {
  it('makes the first version from SecretString, labelled AWSCURRENT, its VersionId the ClientRequestToken; the ARN is the name, "-" and six random characters', async () => {
    const name = unique('key');
    const token = '0123456789abcdef0123456789abcdef';
    const created = await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'value-1', ClientRequestToken: token }));
    expect(created.Name).toBe(name);
    expect(created.VersionId).toBe(token);
    expect(created.ARN).toMatch(new RegExp(`^arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-[A-Za-z0-9]{6}$`));
    const value = await get(name);
    expect(value).toMatchObject({ ARN: created.ARN, Name: name, VersionId: token, SecretString: 'value-1', VersionStages: ['AWSCURRENT'] });
    expect(value.CreatedDate).toBeInstanceOf(Date);
  });

  it('fills the token itself when the SDK sends one (a UUID), and refuses a name already taken (ResourceExistsException)', async () => {
    const name = unique('key');
    const created = await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'v' }));
    expect(created.VersionId).toMatch(/^[0-9a-f-]{36}$/);
    const error = await rejection(sm.send(new CreateSecretCommand({ Name: name, SecretString: 'w' })));
    expect(error).toBeInstanceOf(ResourceExistsException);
    expect(error.message).toBe(`The operation failed because the secret ${name} already exists.`);
  });

  it('refuses SecretString and SecretBinary together (InvalidParameterException); keeps SecretBinary as bytes', async () => {
    const error = await rejection(sm.send(new CreateSecretCommand({ Name: unique('both'), SecretString: 'a', SecretBinary: new Uint8Array([1]) })));
    expect(error).toBeInstanceOf(InvalidParameterException);
    const name = unique('binary');
    await sm.send(new CreateSecretCommand({ Name: name, SecretBinary: new Uint8Array([0, 1, 254, 255]) }));
    const value = await get(name);
    expect(value.SecretString).toBeUndefined();
    expect([...(value.SecretBinary as Uint8Array)]).toEqual([0, 1, 254, 255]);
  });
});

describe('GetSecretValue', () => {
  it('finds the secret by name, complete ARN and partial ARN (without the random suffix); an unknown one is ResourceNotFoundException', async () => {
    const name = unique('lookup');
    const { ARN } = await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'x' }));
    for (const id of [name, ARN as string, (ARN as string).slice(0, -7)]) expect((await get(id)).SecretString).toBe('x');
    const error = await rejection(get(unique('missing')));
    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect(error.message).toBe("Secrets Manager can't find the specified secret.");
  });

  it('has no AWSPREVIOUS version before the first rotation (ResourceNotFoundException), nor an AWSCURRENT one for a secret made without a value', async () => {
    const name = unique('fresh');
    await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'x' }));
    const previous = await rejection(get(name, { VersionStage: 'AWSPREVIOUS' }));
    expect(previous).toBeInstanceOf(ResourceNotFoundException);
    expect(previous.message).toBe("Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS");
    const empty = unique('empty');
    await sm.send(new CreateSecretCommand({ Name: empty }));
    expect(await rejection(get(empty))).toBeInstanceOf(ResourceNotFoundException);
  });
});

describe('PutSecretValue', () => {
  it('without VersionStages moves AWSCURRENT to the new version and AWSPREVIOUS to the one AWSCURRENT left; the version before that keeps no label but stays readable by VersionId', async () => {
    const name = unique('rotate');
    const v1 = (await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'one' }))).VersionId as string;
    const put2 = await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'two' }));
    expect(put2.VersionStages).toEqual(['AWSCURRENT']);
    const v2 = put2.VersionId as string;
    expect(await get(name)).toMatchObject({ VersionId: v2, SecretString: 'two', VersionStages: ['AWSCURRENT'] });
    expect(await get(name, { VersionStage: 'AWSPREVIOUS' })).toMatchObject({ VersionId: v1, SecretString: 'one', VersionStages: ['AWSPREVIOUS'] });
    const v3 = (await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'three' }))).VersionId as string;
    expect(await get(name)).toMatchObject({ VersionId: v3, SecretString: 'three' });
    expect(await get(name, { VersionStage: 'AWSPREVIOUS' })).toMatchObject({ VersionId: v2, SecretString: 'two' });
    expect(await get(name, { VersionId: v1 })).toMatchObject({ VersionId: v1, SecretString: 'one', VersionStages: [] });
    // VersionId and VersionStage must name the same version.
    expect(await rejection(get(name, { VersionId: v1, VersionStage: 'AWSCURRENT' }))).toBeInstanceOf(ResourceNotFoundException);
  });

  it('is idempotent for the same ClientRequestToken and value, and refuses the same token with another value (ResourceExistsException)', async () => {
    const name = unique('idempotent');
    await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'one' }));
    const token = 'aaaaaaaabbbbbbbbccccccccdddddddd';
    const first = await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'two', ClientRequestToken: token }));
    const again = await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'two', ClientRequestToken: token }));
    expect(again.VersionId).toBe(first.VersionId);
    expect((await get(name, { VersionStage: 'AWSPREVIOUS' })).SecretString).toBe('one');
    const error = await rejection(sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'other', ClientRequestToken: token })));
    expect(error).toBeInstanceOf(ResourceExistsException);
  });

  it('with VersionStages attaches only those labels, moving each from the version that had it; AWSCURRENT stays where it was unless named', async () => {
    const name = unique('stages');
    const v1 = (await sm.send(new CreateSecretCommand({ Name: name, SecretString: 'one' }))).VersionId as string;
    const pending = await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: 'two', VersionStages: ['AWSPENDING'] }));
    expect(pending.VersionStages).toEqual(['AWSPENDING']);
    expect((await get(name)).VersionId).toBe(v1);
    expect((await get(name, { VersionStage: 'AWSPENDING' })).SecretString).toBe('two');
  });

  it('on a secret that does not exist is ResourceNotFoundException', async () => {
    expect(await rejection(sm.send(new PutSecretValueCommand({ SecretId: unique('nothing'), SecretString: 'x' })))).toBeInstanceOf(ResourceNotFoundException);
  });
});

describe('persistence', () => {
  it('keeps secrets and their versions in the state file across a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgfanout-sm-'));
    try {
      const file = join(dir, 'state.json');
      const first = await startEndpoint({ port: 0, persistFile: file });
      const a = sdkClients(first.url);
      await a.secretsManager.send(new CreateSecretCommand({ Name: 'kept', SecretString: 'one' }));
      const v2 = (await a.secretsManager.send(new PutSecretValueCommand({ SecretId: 'kept', SecretString: 'two' }))).VersionId;
      a.destroy();
      await first.close();
      const second = await startEndpoint({ port: 0, persistFile: file });
      const b = sdkClients(second.url);
      try {
        expect(await b.secretsManager.send(new GetSecretValueCommand({ SecretId: 'kept' }))).toMatchObject({ VersionId: v2, SecretString: 'two' });
        expect((await b.secretsManager.send(new GetSecretValueCommand({ SecretId: 'kept', VersionStage: 'AWSPREVIOUS' }))).SecretString).toBe('one');
      } finally {
        b.destroy();
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
