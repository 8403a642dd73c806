/** The applier's configuration: what the environment must hold, and the message when it does not. */
import { describe, expect, it } from 'vitest';
import { APPLIER_ENV } from '#core/config.ts';
import { readApplierConfig } from './config.ts';

const base = {
  [APPLIER_ENV.REPLICA_NAME]: 'eu',
  [APPLIER_ENV.REPLICA_URL]: 'postgres://localhost/replica',
  [APPLIER_ENV.SIGNING_KEY_SECRET]: 'pgfanout-signing-key',
};

describe('readApplierConfig', () => {
  it('reads the sources the replica follows and whether it runs schema changes (off unless set)', () => {
    expect(readApplierConfig({ ...base, [APPLIER_ENV.SOURCE_IDS]: 'a1, b2' })).toMatchObject({ sources: ['a1', 'b2'], allowSchemaChanges: false });
    expect(readApplierConfig({ ...base, [APPLIER_ENV.SOURCE_IDS]: 'a1', [APPLIER_ENV.ALLOW_SCHEMA_CHANGES]: 'true' })).toMatchObject({ allowSchemaChanges: true });
  });

  it('refuses to start without the sources, or with an unreadable schema-change setting', () => {
    expect(() => readApplierConfig(base)).toThrow(/environment variable PGFANOUT_SOURCE_IDS is required: the source ids this replica follows/);
    expect(() => readApplierConfig({ ...base, [APPLIER_ENV.SOURCE_IDS]: 'a1', [APPLIER_ENV.ALLOW_SCHEMA_CHANGES]: 'yes' })).toThrow(
      /PGFANOUT_ALLOW_SCHEMA_CHANGES must be one of true, false, got "yes"/,
    );
  });

  it('refuses to start without the signing key secret, naming the variable', () => {
    const { [APPLIER_ENV.SIGNING_KEY_SECRET]: _omitted, ...unsigned } = base;
    expect(() => readApplierConfig({ ...unsigned, [APPLIER_ENV.SOURCE_IDS]: 'a1' })).toThrow(/environment variable PGFANOUT_SIGNING_KEY_SECRET is required/);
    expect(readApplierConfig({ ...base, [APPLIER_ENV.SOURCE_IDS]: 'a1' }).signingKeySecret).toBe('pgfanout-signing-key');
  });

  it('refuses replica triggers unless PGFANOUT_REPLICA_TRIGGERS says fire; names a wrong value', () => {
    const withSource = { ...base, [APPLIER_ENV.SOURCE_IDS]: 'a1' };
    expect(readApplierConfig(withSource).replicaTriggers).toBe('refuse');
    expect(readApplierConfig({ ...withSource, [APPLIER_ENV.REPLICA_TRIGGERS]: 'fire' }).replicaTriggers).toBe('fire');
    expect(() => readApplierConfig({ ...withSource, [APPLIER_ENV.REPLICA_TRIGGERS]: 'yes' })).toThrow('environment variable PGFANOUT_REPLICA_TRIGGERS must be one of refuse, fire, got "yes"');
  });
});
