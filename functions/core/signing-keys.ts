/**
 * The message signing keys, kept in one Secrets Manager secret and shared by the publisher (which
 * signs with the current key) and every applier (which accepts the current and the previous one).
 *
 * The key is the secret's value (SecretString as UTF-8 bytes, or SecretBinary), and its id is the
 * VersionId of the secret version holding it. Rotating is putting a new value: PutSecretValue
 * without VersionStages moves the staging label AWSCURRENT to the new version and AWSPREVIOUS to the
 * version AWSCURRENT was removed from
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html), so
 * from then on the publisher signs with the new key while messages signed with the old one, still
 * in the queues, keep being accepted, until the next rotation moves AWSPREVIOUS on. GetSecretValue
 * reads a version by its staging label (`VersionStage`, AWSCURRENT when none is given) and returns
 * its VersionId with the value
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
 *
 * Read with the SDK client rather than Powertools Parameters' `getSecret`, which returns only the
 * value and not the VersionId that names the key. Both versions are cached for `maxAgeMs` (as the
 * applier caches the replica's credentials), and read again at once when a message names a key id
 * that is not among them (a rotation the cache has not seen yet).
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { keyIdProblem, MIN_SIGNING_KEY_BYTES, type SigningKey } from '#core/wire';

/** The staging label of the key the publisher signs with. */
const CURRENT_STAGE = 'AWSCURRENT';
/** The staging label of the key that signed before the last rotation, still accepted. */
const PREVIOUS_STAGE = 'AWSPREVIOUS';

/** Where the signing keys come from. */
export interface SigningKeys {
  /** The key to sign with now (AWSCURRENT). */
  current(): Promise<SigningKey>;
  /**
   * The keys a message may be signed with (AWSCURRENT, then AWSPREVIOUS when there is one).
   * `refresh` reads them again instead of using what is cached.
   */
  accepted(options?: { readonly refresh?: boolean }): Promise<readonly SigningKey[]>;
}

/** Options of {@link SecretsManagerSigningKeys}. */
export interface SecretsManagerSigningKeysOptions {
  /** How long the keys read are used before they are read again. @default 300000 (5 minutes) */
  readonly maxAgeMs?: number;
  /** Time now in milliseconds. @default Date.now */
  readonly now?: () => number;
}

interface Loaded {
  readonly at: number;
  readonly current: SigningKey;
  readonly previous: SigningKey | undefined;
}

/** The signing keys held in a Secrets Manager secret (its ARN or name). */
export class SecretsManagerSigningKeys implements SigningKeys {
  readonly secretId: string;
  readonly #client: SecretsManagerClient;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  #loaded: Loaded | undefined;
  #loading: Promise<Loaded> | undefined;

  constructor(client: SecretsManagerClient, secretId: string, options: SecretsManagerSigningKeysOptions = {}) {
    if (secretId.trim() === '') throw new Error('the signing key secret needs an ARN or a name');
    this.#client = client;
    this.secretId = secretId;
    this.#maxAgeMs = options.maxAgeMs ?? 300_000;
    this.#now = options.now ?? Date.now;
  }

  async current(): Promise<SigningKey> {
    return (await this.#get(false)).current;
  }

  async accepted(options: { readonly refresh?: boolean } = {}): Promise<readonly SigningKey[]> {
    const { current, previous } = await this.#get(options.refresh === true);
    return previous ? [current, previous] : [current];
  }

  #get(refresh: boolean): Promise<Loaded> {
    const loaded = this.#loaded;
    if (!refresh && loaded && this.#now() - loaded.at < this.#maxAgeMs) return Promise.resolve(loaded);
    this.#loading ??= this.#load().then(
      (fresh) => {
        this.#loaded = fresh;
        this.#loading = undefined;
        return fresh;
      },
      (err: unknown) => {
        this.#loading = undefined;
        throw err;
      },
    );
    return this.#loading;
  }

  async #load(): Promise<Loaded> {
    const at = this.#now();
    const [current, previous] = await Promise.all([this.#version(CURRENT_STAGE), this.#version(PREVIOUS_STAGE)]);
    if (!current) throw new Error(`signing key secret ${this.secretId} has no ${CURRENT_STAGE} version: put a value (a random string of at least ${MIN_SIGNING_KEY_BYTES} bytes)`);
    return { at, current, previous };
  }

  async #version(stage: string): Promise<SigningKey | undefined> {
    let out;
    try {
      out = await this.#client.send(new GetSecretValueCommand({ SecretId: this.secretId, VersionStage: stage }));
    } catch (err) {
      // A secret that was never rotated has no AWSPREVIOUS version.
      if ((err as { name?: unknown }).name === 'ResourceNotFoundException' && stage === PREVIOUS_STAGE) return undefined;
      throw new Error(`cannot read the signing key (secret ${this.secretId}, ${stage}): ${(err as Error).message ?? String(err)}`, { cause: err });
    }
    const where = `signing key secret ${this.secretId}, ${stage} version ${JSON.stringify(out.VersionId)}`;
    const problem = keyIdProblem(out.VersionId);
    if (problem) throw new Error(`${where}: its VersionId cannot name a key (${problem})`);
    const key = out.SecretString !== undefined ? Buffer.from(out.SecretString, 'utf8') : out.SecretBinary !== undefined ? Buffer.from(out.SecretBinary) : undefined;
    if (key === undefined || key.length < MIN_SIGNING_KEY_BYTES) {
      throw new Error(`${where}: the key holds ${key?.length ?? 0} bytes; put a value of at least ${MIN_SIGNING_KEY_BYTES} bytes (a random string)`);
    }
    return { id: out.VersionId as string, key };
  }
}
