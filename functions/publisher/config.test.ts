import { describe, expect, it } from 'vitest';
import { PUBLISHER_ENV } from '#core/config.ts';
import { readPublisherConfig } from './config.ts';

const topic = (name: string) => `arn:aws:sns:eu-west-1:123456789012:${name}`;
const env = (topics: string) => ({
  [PUBLISHER_ENV.SOURCE_URL]: 'postgres://u@localhost/app',
  [PUBLISHER_ENV.SIGNING_KEY_SECRET]: 'pgfanout/signing',
  [PUBLISHER_ENV.TOPIC_ARN]: topics,
});

describe('the publisher configuration: its topics', () => {
  it('takes one topic ARN, or every topic shard’s, comma-separated, in order', () => {
    expect(readPublisherConfig(env(topic('pgfanout.fifo'))).topicArns).toEqual([topic('pgfanout.fifo')]);
    expect(readPublisherConfig(env(`${topic('pgfanout.fifo')}, ${topic('pgfanout-shard1.fifo')},${topic('pgfanout-shard2.fifo')}`)).topicArns).toEqual([
      topic('pgfanout.fifo'),
      topic('pgfanout-shard1.fifo'),
      topic('pgfanout-shard2.fifo'),
    ]);
  });

  it('names an ARN that is not a FIFO topic, and one given twice', () => {
    expect(() => readPublisherConfig(env(`${topic('pgfanout.fifo')},${topic('standard')}`))).toThrow(
      `environment variable ${PUBLISHER_ENV.TOPIC_ARN} must be SNS FIFO topic ARNs (each ending in .fifo, comma-separated), got "${topic('standard')}"`,
    );
    expect(() => readPublisherConfig(env(`${topic('pgfanout.fifo')},`))).toThrow('got "" in');
    expect(() => readPublisherConfig(env(`${topic('a.fifo')},${topic('a.fifo')}`))).toThrow(`names "${topic('a.fifo')}" more than once`);
  });
});
