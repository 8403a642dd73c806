/**
 * The Secrets Manager operations of the local endpoint that pgfanout uses: CreateSecret,
 * GetSecretValue and PutSecretValue, with versions and staging labels as AWS documents them, so
 * that the publisher and the appliers read the message signing key with the real SDK client.
 *
 * Documented behaviour implemented here (Secrets Manager API reference):
 * - CreateSecret (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html):
 *   a name of 1 to 512 characters from `A-Za-z0-9/_+=.@-`; a name already taken is
 *   `ResourceExistsException`; SecretString or SecretBinary, not both, makes the first version,
 *   whose VersionId is the ClientRequestToken (the SDK fills it with a UUID), labelled
 *   AWSCURRENT. The ARN ends in `-` and six random characters after the name.
 * - GetSecretValue (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html):
 *   the secret by name, complete ARN or partial ARN (without the random suffix); the version by
 *   VersionId and/or VersionStage (both must name the same version), AWSCURRENT when neither is
 *   given; a secret, version or label that does not exist is `ResourceNotFoundException`.
 *   Returns ARN, Name, VersionId, SecretString or SecretBinary, VersionStages, CreatedDate.
 * - PutSecretValue (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html):
 *   a new version whose VersionId is the ClientRequestToken; the same token with the same value
 *   again changes nothing, with another value is `ResourceExistsException`. Without
 *   VersionStages, AWSCURRENT moves to the new version; a label given in VersionStages moves
 *   from the version that had it; whenever AWSCURRENT moves, AWSPREVIOUS moves to the version it
 *   was removed from. A version left without labels is deprecated; Secrets Manager keeps the 100
 *   most recent versions (the local endpoint drops the oldest deprecated ones beyond that, and
 *   does not model the 24-hour grace AWS gives recent versions).
 *
 * Not modelled: KMS keys (KmsKeyId is accepted and ignored), resource policies, rotation,
 * replication, deletion, tags.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type InputErrors, type InputReader, show } from '../wire/input.ts';
import { secretsManagerError } from '../errors.ts';
import type { Clock } from '../clock.ts';

const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
/** Versions a secret keeps. */
const MAX_VERSIONS = 100;
const NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const TOKEN = /^.{32,64}$/s;
const ARN_SUFFIX_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Secrets Manager errors for missing or mistyped parameters. */
export const SECRETS_MANAGER_INPUT_ERRORS: InputErrors = {
  missing: (path) => secretsManagerError('InvalidParameterException', `Invalid parameter: ${path} is required.`),
  invalid: (path, value, expected) => secretsManagerError('InvalidParameterException', `Invalid parameter: ${path} is ${show(value)}; expected ${expected}.`),
};

interface Version {
  readonly id: string;
  readonly string?: string;
  /** Base64 of SecretBinary. */
  readonly binary?: string;
  readonly created: number;
  stages: string[];
}

interface Secret {
  readonly name: string;
  readonly arn: string;
  readonly created: number;
  readonly description?: string;
  /** Oldest first. */
  versions: Version[];
}

/** The saved state of the secrets (persistence). */
export interface SecretsManagerSnapshot {
  readonly secrets: readonly Secret[];
}

export interface SecretsManagerServiceOptions {
  readonly clock: Clock;
  readonly region: string;
  readonly accountId: string;
  /** Called after every change (persistence). */
  readonly onChange?: () => void;
}

export class SecretsManagerService {
  readonly #o: SecretsManagerServiceOptions;
  readonly #secrets = new Map<string, Secret>();

  constructor(options: SecretsManagerServiceOptions) {
    this.#o = options;
  }

  snapshot(): SecretsManagerSnapshot {
    return { secrets: [...this.#secrets.values()].map((s) => ({ ...s, versions: s.versions.map((v) => ({ ...v, stages: [...v.stages] })) })) };
  }

  restore(snapshot: SecretsManagerSnapshot | undefined): void {
    this.#secrets.clear();
    for (const s of snapshot?.secrets ?? []) this.#secrets.set(s.name, { ...s, versions: s.versions.map((v) => ({ ...v, stages: [...v.stages] })) });
  }

  /** The secret `id` names: its name, its complete ARN, or its ARN without the random suffix. */
  #secret(id: string): Secret {
    const byName = this.#secrets.get(id);
    if (byName) return byName;
    for (const secret of this.#secrets.values()) {
      if (secret.arn === id || secret.arn.slice(0, -7) === id) return secret;
    }
    throw secretsManagerError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
  }

  /** The value of a CreateSecret or PutSecretValue request: SecretString or SecretBinary, not both. */
  #value(input: InputReader, required: boolean): { string?: string; binary?: string } | undefined {
    const string = input.optionalString('SecretString');
    const binary = input.optionalString('SecretBinary');
    if (string !== undefined && binary !== undefined) {
      throw secretsManagerError('InvalidParameterException', "You can't specify both a binary secret value and a string secret value in the same secret.");
    }
    if (binary !== undefined && (binary === '' || !/^[A-Za-z0-9+/]*={0,2}$/.test(binary))) {
      throw secretsManagerError('InvalidParameterException', 'Invalid parameter: SecretBinary must be non-empty base64.');
    }
    if (string === undefined && binary === undefined) {
      if (required) throw secretsManagerError('InvalidRequestException', 'You must provide either SecretString or SecretBinary.');
      return undefined;
    }
    return string !== undefined ? { string } : { binary: binary as string };
  }

  #token(input: InputReader): string {
    // The SDK and the CLI fill ClientRequestToken with a UUID; a raw request must send one.
    const token = input.optionalString('ClientRequestToken') ?? randomUUID();
    if (!TOKEN.test(token)) throw secretsManagerError('InvalidParameterException', `Invalid parameter: ClientRequestToken must be 32 to 64 characters, got ${show(token)}.`);
    return token;
  }

  createSecret(input: InputReader): { ARN: string; Name: string; VersionId?: string } {
    const name = input.string('Name');
    if (!NAME.test(name)) {
      throw secretsManagerError('InvalidParameterException', `Invalid parameter: Name ${show(name)} must be 1 to 512 characters: letters, digits and /_+=.@-`);
    }
    if (this.#secrets.has(name)) throw secretsManagerError('ResourceExistsException', `The operation failed because the secret ${name} already exists.`);
    const value = this.#value(input, false);
    const token = this.#token(input);
    const now = this.#o.clock.now();
    const suffix = Array.from(randomBytes(6), (b) => ARN_SUFFIX_CHARS[b % ARN_SUFFIX_CHARS.length]).join('');
    const description = input.optionalString('Description');
    const secret: Secret = {
      name,
      arn: `arn:aws:secretsmanager:${this.#o.region}:${this.#o.accountId}:secret:${name}-${suffix}`,
      created: now,
      ...(description !== undefined ? { description } : {}),
      versions: value ? [{ id: token, ...value, created: now, stages: [CURRENT] }] : [],
    };
    this.#secrets.set(name, secret);
    this.#o.onChange?.();
    return { ARN: secret.arn, Name: name, ...(value ? { VersionId: token } : {}) };
  }

  getSecretValue(input: InputReader): Record<string, unknown> {
    const secret = this.#secret(input.string('SecretId'));
    const versionId = input.optionalString('VersionId');
    const stage = input.optionalString('VersionStage');
    let version: Version | undefined;
    if (versionId !== undefined) {
      version = secret.versions.find((v) => v.id === versionId);
      if (!version) throw secretsManagerError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${versionId}`);
      if (stage !== undefined && !version.stages.includes(stage)) {
        throw secretsManagerError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId ${versionId} and staging label ${stage}`);
      }
    } else {
      const label = stage ?? CURRENT;
      version = secret.versions.find((v) => v.stages.includes(label));
      if (!version) throw secretsManagerError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for staging label: ${label}`);
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.id,
      ...(version.string !== undefined ? { SecretString: version.string } : { SecretBinary: version.binary }),
      VersionStages: [...version.stages],
      // AWS JSON timestamps are epoch seconds.
      CreatedDate: version.created / 1000,
    };
  }

  putSecretValue(input: InputReader): { ARN: string; Name: string; VersionId: string; VersionStages: string[] } {
    const secret = this.#secret(input.string('SecretId'));
    const value = this.#value(input, true) as { string?: string; binary?: string };
    const token = this.#token(input);
    const stages = input.has('VersionStages') ? input.stringList('VersionStages') : [CURRENT];
    const existing = secret.versions.find((v) => v.id === token);
    if (existing) {
      if (existing.string === value.string && existing.binary === value.binary) {
        return { ARN: secret.arn, Name: secret.name, VersionId: existing.id, VersionStages: [...existing.stages] };
      }
      throw secretsManagerError('ResourceExistsException', `A version with VersionId ${token} already exists with another value: you can't modify an existing version, only create new versions.`);
    }
    const version: Version = { id: token, ...value, created: this.#o.clock.now(), stages: [] };
    const fromCurrent = stages.includes(CURRENT) ? secret.versions.find((v) => v.stages.includes(CURRENT)) : undefined;
    for (const label of stages) {
      for (const v of secret.versions) v.stages = v.stages.filter((s) => s !== label);
      version.stages.push(label);
    }
    if (fromCurrent) {
      for (const v of secret.versions) v.stages = v.stages.filter((s) => s !== PREVIOUS);
      if (!fromCurrent.stages.includes(PREVIOUS)) fromCurrent.stages.push(PREVIOUS);
    }
    secret.versions.push(version);
    while (secret.versions.length > MAX_VERSIONS) {
      const oldest = secret.versions.findIndex((v) => v.stages.length === 0);
      if (oldest < 0) break;
      secret.versions.splice(oldest, 1);
    }
    this.#o.onChange?.();
    return { ARN: secret.arn, Name: secret.name, VersionId: version.id, VersionStages: [...version.stages] };
  }
}
