/**
 * The publisher's CloudWatch metrics (Embedded Metric Format on stdout, which the awslogs
 * driver ships to CloudWatch Logs). Every metric carries the same dimensions from the first
 * one on, `{ service, Deployment }`, the set the dashboard and the alarms read, whatever state
 * the publisher is in. A heartbeat (`Heartbeat` = 1) is emitted on a timer independent of the
 * loop, so a publisher that waits for the lock or cannot reach the source still reports that
 * it runs, while `OldestUnpublishedSeconds`, emitted only by the active publisher, goes
 * missing (which the stalled alarm treats as breaching).
 */
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DIMENSIONS, METRIC_NAMESPACE, METRICS } from '#core/config.ts';
import type { PublisherMetrics } from './publisher.ts';

/** Powertools' `service` dimension value of the publisher. */
export const PUBLISHER_SERVICE = 'pgfanout-publisher';

export interface PublisherMetricsOptions {
  /** The `Deployment` dimension: the stack's name prefix. */
  readonly deployment: string;
  /** Milliseconds between heartbeats. @default 60000 (CloudWatch's one-minute periods) */
  readonly heartbeatMs?: number;
}

/** The publisher's metrics and its heartbeat; `stop()` ends the heartbeat. */
export function publisherMetrics(options: PublisherMetricsOptions): { readonly metrics: PublisherMetrics; stop(): void } {
  const metrics = new Metrics({ namespace: METRIC_NAMESPACE, serviceName: PUBLISHER_SERVICE, defaultDimensions: { [DIMENSIONS.deployment]: options.deployment } });
  const beat = () => {
    metrics.addMetric(METRICS.publisher.heartbeat, 'Count', 1);
    metrics.publishStoredMetrics();
  };
  beat();
  const timer = setInterval(beat, options.heartbeatMs ?? 60_000);
  timer.unref();
  return {
    metrics: { addMetric: (name, unit, value) => metrics.addMetric(name, unit, value), publishStoredMetrics: () => metrics.publishStoredMetrics() },
    stop: () => clearInterval(timer),
  };
}
