import { describe, expect, it } from 'vitest';
import { APPLIER_ENV } from '#core/config.ts';
import { readApplierConfig } from './config.ts';

const base = { [APPLIER_ENV.REPLICA_NAME]: 'eu', [APPLIER_ENV.REPLICA_URL]: 'postgres://localhost/replica' };

describe('readApplierConfig', () => {
  it('refuses replica triggers unless PGFANOUT_REPLICA_TRIGGERS says fire; names a wrong value', () => {
    expect(readApplierConfig(base).replicaTriggers).toBe('refuse');
    expect(readApplierConfig({ ...base, [APPLIER_ENV.REPLICA_TRIGGERS]: 'fire' }).replicaTriggers).toBe('fire');
    expect(() => readApplierConfig({ ...base, [APPLIER_ENV.REPLICA_TRIGGERS]: 'yes' })).toThrow('environment variable PGFANOUT_REPLICA_TRIGGERS must be one of refuse, fire, got "yes"');
  });
});
