/**
 * The signing keys as the publisher and the appliers read them: from a Secrets Manager secret on
 * the local endpoint, through the real SDK client.
 */
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEndpoint, type Endpoint } from '#local/endpoint/index.ts';
import { sdkClients } from '#local/endpoint/testing.ts';
import { SecretsManagerSigningKeys } from './signing-keys.ts';

let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let n = 0;

beforeAll(async () => {
  endpoint = await startEndpoint({ port: 0 });
  clients = sdkClients(endpoint.url);
});

afterAll(async () => {
  clients.destroy();
  await endpoint.close();
});

async function secret(value: string): Promise<{ name: string; versionId: string }> {
  const name = `signing-${++n}`;
  const out = await clients.secretsManager.send(new CreateSecretCommand({ Name: name, SecretString: value }));
  return { name, versionId: out.VersionId as string };
}

const rotate = async (name: string, value: string) => (await clients.secretsManager.send(new PutSecretValueCommand({ SecretId: name, SecretString: value }))).VersionId as string;

describe('SecretsManagerSigningKeys', () => {
  it('signs with AWSCURRENT (its VersionId names the key, its value is the key) and accepts only it before the first rotation', async () => {
    const { name, versionId } = await secret('k'.repeat(40));
    const keys = new SecretsManagerSigningKeys(clients.secretsManager, name);
    expect(await keys.current()).toEqual({ id: versionId, key: Buffer.from('k'.repeat(40)) });
    expect((await keys.accepted()).map((k) => k.id)).toEqual([versionId]);
  });

  it('keeps what it read for maxAge, sees a rotation when told to refresh or when the age is over, then accepts AWSCURRENT and AWSPREVIOUS', async () => {
    const { name, versionId: first } = await secret('a'.repeat(32));
    let now = 1_000_000;
    const keys = new SecretsManagerSigningKeys(clients.secretsManager, name, { maxAgeMs: 60_000, now: () => now });
    expect((await keys.current()).id).toBe(first);
    const second = await rotate(name, 'b'.repeat(32));
    expect((await keys.current()).id).toBe(first);
    expect((await keys.accepted({ refresh: true })).map((k) => k.id)).toEqual([second, first]);
    const third = await rotate(name, 'c'.repeat(32));
    now += 60_000;
    expect((await keys.current()).id).toBe(third);
    expect((await keys.accepted()).map((k) => k.id)).toEqual([third, second]);
  });

  it('refuses a key shorter than 32 bytes and a secret that does not exist, naming the secret', async () => {
    const { name } = await secret('short');
    await expect(new SecretsManagerSigningKeys(clients.secretsManager, name).current()).rejects.toThrow(
      new RegExp(`^signing key secret ${name}, AWSCURRENT version "[^"]+": the key holds 5 bytes; put a value of at least 32 bytes`),
    );
    await expect(new SecretsManagerSigningKeys(clients.secretsManager, 'no-such-secret').current()).rejects.toThrow(
      /^cannot read the signing key \(secret no-such-secret, AWSCURRENT\): Secrets Manager can't find the specified secret\./,
    );
  });
});
